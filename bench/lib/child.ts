/**
 * Entry point of a benchmark server process. The parent (servers.ts) forks
 * this file with a ServerSpec, so that the load generator, the parent and
 * each server under test have their own process and event loop, and the
 * parent can ask for the server's CPU time, memory and event-loop delay.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { pino } from "pino";
import { startServer } from "../../src/server.js";
import type { Closable } from "./reference-servers.js";
import type { ChildReply, ParentRequest, ServerSpec } from "./servers.js";

async function start(spec: ServerSpec): Promise<Closable> {
  if (spec.kind === "smtpgate") return startSmtpgate(spec);
  // Loaded only here, so an smtpgate process holds no grpc-js in its memory.
  const reference = await import("./reference-servers.js");
  switch (spec.kind) {
    case "connect-bare":
      return reference.startBareConnect(spec.response, spec.restJson);
    case "grpcjs-bare":
      return reference.startBareGrpcJs(spec.response);
    case "grpcjs-smtpgate":
      return reference.startGrpcJsOverStore(spec.dataDir);
  }
}

async function startSmtpgate(spec: Extract<ServerSpec, { kind: "smtpgate" }>): Promise<Closable> {
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    dataDir: spec.dataDir,
    // The production default level: one line per request is part of the cost.
    logLevel: "info",
    logDestination: pino.destination({ dest: "/dev/null", sync: false }),
    outbox: spec.outbox,
    rateLimits: spec.isSendUnlimited ? { send_mail: undefined } : undefined,
  });
  return { ports: { main: server.port }, close: () => server.close() };
}

function send(reply: ChildReply): void {
  process.send?.(reply);
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]) as ServerSpec;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const server = await start(spec);

  process.on("message", (message: ParentRequest) => {
    if (message.type === "stats") {
      const cpu = process.cpuUsage();
      send({
        type: "stats",
        cpuMicros: cpu.user + cpu.system,
        rssBytes: process.memoryUsage().rss,
        heapUsedBytes: process.memoryUsage().heapUsed,
        loopDelayP99Ms: delay.percentile(99) / 1e6,
      });
      delay.reset();
    } else if (message.type === "stop") {
      void server.close().finally(() => process.exit(0));
    }
  });
  send({ type: "ready", ports: server.ports });
}

main().catch((err: unknown) => {
  process.stderr.write(`benchmark server failed to start: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
