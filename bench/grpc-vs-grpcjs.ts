/**
 * gRPC against the reference implementation: GetSMTPConfig through smtpgate
 * (one Connect router for every protocol) next to @grpc/grpc-js serving the
 * same RPC with the same handler logic (instance from the host, token,
 * permission, SQLite read, converter, one log line), and, to separate the
 * frameworks from our code, a bare connect-node handler next to a bare
 * grpc-js one, both returning the same constant.
 *
 *   node dist/bench/grpc-vs-grpcjs.js [--rounds N] [--seconds S] [--quick]
 *       [--before DIST]   also run the smtpgate server of another build (its
 *                         dist directory, built with this bench/), e.g. the
 *                         tree before a change, as "smtpgate before"
 *       [--profile DIR]   write a V8 CPU profile of each server into DIR
 */
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { assertClean, verifyTarget } from "./lib/checked-load.js";
import { createFixture } from "./lib/fixture.js";
import { hasH2load, runLoad, type LoadSpec } from "./lib/h2load.js";
import { describeMachine, machineLine } from "./lib/machine.js";
import { describeOptions, flagValue, parseOptions, progress, type BenchOptions } from "./lib/options.js";
import { probe } from "./lib/probe.js";
import { grpcPath } from "./lib/reference-servers.js";
import { measured, startChild, type ChildOptions, type ChildServer, type ServerSpec } from "./lib/servers.js";
import { formatCount, formatRatio, formatSpread, markdownTable, ratiosOf, spreadOf } from "./lib/stats.js";

/** Load shapes: one call at a time (latency-bound), and 16 in flight on 4 connections. */
const shapes = [
  { clients: 1, streams: 1 },
  { clients: 4, streams: 4 },
] as const;

interface Target {
  readonly label: string;
  readonly server: ChildServer;
  readonly port: number;
}

interface Sample {
  readonly rate: number;
  readonly cpu: number;
  readonly latencyMs: number;
}

/** Pairs whose ratio the report shows: numerator / denominator. */
const comparisons = [
  { of: "smtpgate", to: "grpc-js", label: "smtpgate / grpc-js (same handler logic)" },
  { of: "smtpgate before", to: "grpc-js", label: "smtpgate before / grpc-js" },
  { of: "bare connect-node", to: "bare grpc-js", label: "bare connect-node / bare grpc-js" },
];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const beforeDist = flagValue(argv, "--before");
  const profileDir = flagValue(argv, "--profile");
  if (!hasH2load()) throw new Error("h2load not found: apt-get install -y nghttp2-client");
  const machine = describeMachine();

  progress("grpc vs grpc-js: seeding smtpgate");
  const { fixture, server } = await createFixture();
  // Each server reads its own copy of the data, so none waits on another's file locks.
  await server.stop();
  const copies: string[] = [];
  const copyOf = () => {
    const dir = mkdtempSync(join(tmpdir(), "smtpgate-bench-copy-"));
    cpSync(fixture.dataDir, dir, { recursive: true });
    copies.push(dir);
    return dir;
  };
  const withProfile = (name: string): ChildOptions =>
    profileDir ? { execArgv: ["--cpu-prof", `--cpu-prof-dir=${resolve(profileDir)}`, `--cpu-prof-name=${name}.cpuprofile`] } : {};

  const targets: Target[] = [];
  const add = async (label: string, spec: ServerSpec, options: ChildOptions, port = (s: ChildServer) => s.ports.main) => {
    const child = await startChild(spec, options);
    targets.push({ label, server: child, port: port(child) });
  };
  try {
    await add("smtpgate", { kind: "smtpgate", dataDir: copyOf() }, withProfile("smtpgate"));
    if (beforeDist) await add("smtpgate before", { kind: "smtpgate", dataDir: copyOf() }, { ...withProfile("smtpgate-before"), distDir: resolve(beforeDist) });
    await add("grpc-js", { kind: "grpcjs-smtpgate", dataDir: copyOf() }, withProfile("grpcjs"));
    const response = await constantResponse(targets[0].port, fixture.token);
    await add("bare connect-node", { kind: "connect-bare", response, restJson: "{}" }, withProfile("bare-connect"), (s) => s.ports.http2!);
    await add("bare grpc-js", { kind: "grpcjs-bare", response }, withProfile("bare-grpcjs"));

    const results = [];
    for (const shape of shapes) results.push(await measureShape(shape, targets, fixture.token, options));
    printReport(results, options, machineLine(machine), beforeDist);
  } finally {
    await Promise.all(targets.map((t) => t.server.stop()));
    for (const dir of [fixture.dataDir, ...copies]) rmSync(dir, { recursive: true, force: true });
  }
  if (profileDir) progress(`grpc vs grpc-js: CPU profiles in ${resolve(profileDir)}`);
}

/** smtpgate's GetSMTPConfigResponse, base64, so the bare servers send the same bytes. */
async function constantResponse(port: number, token: string): Promise<string> {
  const answer = await probe({
    url: `http://127.0.0.1:${port}${grpcPath}`,
    isHttp1: false,
    headers: { "content-type": "application/proto", authorization: `Bearer ${token}` },
    body: new Uint8Array(0),
  });
  if (answer.httpStatus !== 200) throw new Error(`smtpgate answered GetSMTPConfig with HTTP ${answer.httpStatus}`);
  return answer.body.toString("base64");
}

function loadOf(t: Target, shape: (typeof shapes)[number], token: string, o: BenchOptions): LoadSpec {
  return {
    url: `http://127.0.0.1:${t.port}${grpcPath}`,
    isHttp1: false,
    ...shape,
    seconds: o.seconds,
    warmupSeconds: o.warmupSeconds,
    // The bare servers ignore the token; it is sent anyway, so every request has the same bytes.
    headers: { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${token}` },
    body: new Uint8Array(5),
  };
}

interface ShapeResult {
  readonly shape: (typeof shapes)[number];
  readonly samples: Map<string, Sample[]>;
  readonly bodyBytes: Map<string, number>;
}

async function measureShape(shape: (typeof shapes)[number], targets: readonly Target[], token: string, o: BenchOptions): Promise<ShapeResult> {
  const name = `${shape.clients}×${shape.streams}`;
  const bodyBytes = new Map<string, number>();
  for (const t of targets) bodyBytes.set(t.label, await verifyTarget(`${t.label}, ${name}`, loadOf(t, shape, token, o), true));
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.label, []]));
  for (let round = 0; round < o.rounds; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      progress(`grpc vs grpc-js: ${name}, ${t.label}, round ${round + 1}/${o.rounds}`);
      const result = await measured(t.server, o.seconds + o.warmupSeconds, () => runLoad(loadOf(t, shape, token, o)));
      assertClean(`${t.label}, ${name}`, result);
      samples.get(t.label)!.push({ rate: result.requestsPerSecond, cpu: result.cpuMicrosPerRequest, latencyMs: result.meanLatencyMs });
    }
  }
  return { shape, samples, bodyBytes };
}

function printReport(results: readonly ShapeResult[], o: BenchOptions, machine: string, beforeDist: string | undefined): void {
  const table = [["Server", "in flight", "req/s", "CPU µs/req", "mean latency ms", "response bytes"]];
  const ratios = [["Ratio of req/s", "in flight", "median (range)", "CPU µs/req ratio"]];
  for (const r of results) {
    const inFlight = `${r.shape.clients}×${r.shape.streams}`;
    for (const [label, samples] of r.samples) {
      table.push([
        label,
        inFlight,
        formatSpread(spreadOf(samples.map((s) => s.rate))),
        formatCount(spreadOf(samples.map((s) => s.cpu)).median),
        formatCount(spreadOf(samples.map((s) => s.latencyMs)).median),
        String(r.bodyBytes.get(label)),
      ]);
    }
    for (const c of comparisons) {
      const a = r.samples.get(c.of);
      const b = r.samples.get(c.to);
      if (!a || !b) continue;
      const rate = spreadOf(ratiosOf(a.map((s) => s.rate), b.map((s) => s.rate)));
      const cpu = spreadOf(ratiosOf(a.map((s) => s.cpu), b.map((s) => s.cpu)));
      ratios.push([c.label, inFlight, formatRatio(rate), cpu.median.toFixed(2)]);
    }
  }
  const text = [
    "## gRPC: smtpgate vs @grpc/grpc-js",
    "",
    `${machine} · \`node dist/bench/grpc-vs-grpcjs.js ${describeOptions(o)}${beforeDist ? " --before <dist of the tree before>" : ""}\``,
    "",
    markdownTable(ratios),
    "",
    markdownTable(table),
    "",
    "Unary GetSMTPConfig over h2c, load from h2load (1×1: one connection, one call at a time;",
    "4×4: four connections with four streams each). Ratios are taken within a round, then the",
    "median; CPU µs/req is the server process's user+system CPU per answered call (lower is",
    "better, so a CPU ratio above 1 means smtpgate spends more). \"grpc-js\" serves the RPC with",
    "smtpgate's own instance lookup, token check, permission, store read, converter and log line;",
    "the bare servers return smtpgate's answer as a constant. Every answer was checked for",
    "grpc-status 0 and the expected size.",
    "",
  ];
  process.stdout.write(text.join("\n") + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
