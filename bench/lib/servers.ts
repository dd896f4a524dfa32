/**
 * Starts benchmark servers in child processes (child.ts) and reads their
 * CPU time, memory and event-loop delay over IPC.
 */
import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** What a child process serves. */
export type ServerSpec =
  | {
      readonly kind: "smtpgate";
      readonly dataDir: string;
      /** Outbox worker tuning, e.g. { concurrency: 0 } to keep it from sending. */
      readonly outbox?: { readonly concurrency?: number; readonly pollMs?: number };
      /** Lifts the per-instance SendMail rate limit, which would cap a load test at its rate. */
      readonly isSendUnlimited?: boolean;
    }
  /** connect-node answering GetSMTPConfig with a constant, plus a bare REST route. */
  | { readonly kind: "connect-bare"; readonly response: string; readonly restJson: string }
  /** @grpc/grpc-js answering GetSMTPConfig with a constant. */
  | { readonly kind: "grpcjs-bare"; readonly response: string }
  /** @grpc/grpc-js serving GetSMTPConfig with smtpgate's own gate and domain over dataDir's store. */
  | { readonly kind: "grpcjs-smtpgate"; readonly dataDir: string };

/** Messages from parent to child. */
export type ParentRequest = { readonly type: "stats" } | { readonly type: "stop" };

/** Messages from child to parent. */
export type ChildReply =
  | { readonly type: "ready"; readonly ports: Ports }
  | ({ readonly type: "stats" } & ChildStats);

/** The ports a server listens on: `main` always; `http2` when HTTP/2 has its own. */
export interface Ports {
  readonly main: number;
  readonly http2?: number;
}

/** A snapshot of a child's counters. */
export interface ChildStats {
  /** User + system CPU time since the child started, µs. */
  readonly cpuMicros: number;
  readonly rssBytes: number;
  /** JavaScript heap in use, garbage not yet collected included; the rest of RSS is code, buffers and heap room. */
  readonly heapUsedBytes: number;
  /** 99th percentile of event-loop delay since the previous snapshot, ms. */
  readonly loopDelayP99Ms: number;
}

/** A running child server. */
export interface ChildServer {
  readonly ports: Ports;
  readonly pid: number;
  stats(): Promise<ChildStats>;
  stop(): Promise<void>;
}

const childEntry = fileURLToPath(new URL("./child.js", import.meta.url));

/** How to start a child beyond its spec. */
export interface ChildOptions {
  /** Arguments for node, e.g. ["--cpu-prof", "--cpu-prof-dir=..."]. */
  readonly execArgv?: readonly string[];
  /**
   * Another build's dist directory to run the server from, to compare two
   * versions of smtpgate in one run; this build when absent.
   */
  readonly distDir?: string;
}

/** Forks a server and resolves once it listens. Rejects when the child exits first. */
export function startChild(spec: ServerSpec, options: ChildOptions = {}): Promise<ChildServer> {
  const entry = options.distDir ? join(options.distDir, "bench", "lib", "child.js") : childEntry;
  const child = fork(entry, [JSON.stringify(spec)], {
    execArgv: [...(options.execArgv ?? [])],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${spec.kind} server exited with ${code} before listening`));
    child.once("exit", onExit);
    child.once("message", (message: ChildReply) => {
      child.off("exit", onExit);
      if (message.type !== "ready") return reject(new Error(`unexpected first message from ${spec.kind} server`));
      resolve(handleOf(child, message.ports));
    });
  });
}

function handleOf(child: ChildProcess, ports: Ports): ChildServer {
  return {
    ports,
    pid: child.pid ?? -1,
    stats: () => request(child),
    stop: () => stop(child),
  };
}

function request(child: ChildProcess): Promise<ChildStats> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildReply) => {
      if (message.type !== "stats") return;
      child.off("message", onMessage);
      child.off("exit", onExit);
      resolve(message);
    };
    const onExit = () => reject(new Error("benchmark server exited"));
    child.on("message", onMessage);
    child.once("exit", onExit);
    child.send({ type: "stats" } satisfies ParentRequest);
  });
}

/** Asks the child to close, and kills it if it has not exited in 15 s. */
function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.send({ type: "stop" } satisfies ParentRequest);
  });
}

/**
 * Runs `load` and returns its result with the child's CPU time per request
 * (µs) over it. `loadSeconds` is warm-up plus measured time: the CPU window
 * covers both, and warm-up is assumed to run at the measured rate.
 */
export async function measured<T extends { requestsPerSecond: number }>(
  server: ChildServer,
  loadSeconds: number,
  load: () => Promise<T>,
): Promise<T & { cpuMicrosPerRequest: number; loopDelayP99Ms: number }> {
  const before = await server.stats();
  const result = await load();
  const after = await server.stats();
  const requests = result.requestsPerSecond * loadSeconds;
  return {
    ...result,
    cpuMicrosPerRequest: requests > 0 ? (after.cpuMicros - before.cpuMicros) / requests : NaN,
    loopDelayP99Ms: after.loopDelayP99Ms,
  };
}
