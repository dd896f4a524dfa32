/**
 * Protocol overhead: an authenticated GetSMTPConfig through smtpgate next to
 * a bare connect-node handler that returns a constant response of the same
 * bytes, for each protocol smtpgate serves. The load comes from h2load; each
 * protocol is probed once first, so a gRPC error answered with HTTP 200
 * cannot pass for a success.
 *
 *   node dist/bench/protocols.js [--rounds N] [--seconds S] [--quick]
 */
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { GetSMTPConfigResponseSchema } from "../src/gen/zitadel/admin/v1/admin_pb.js";
import { createFixture } from "./lib/fixture.js";
import { assertClean, verifyTarget } from "./lib/checked-load.js";
import { hasH2load, runLoad, type LoadSpec } from "./lib/h2load.js";
import { describeMachine, machineLine } from "./lib/machine.js";
import { describeOptions, parseOptions, progress, type BenchOptions } from "./lib/options.js";
import { probe } from "./lib/probe.js";
import { grpcPath, restPath } from "./lib/reference-servers.js";
import { measured, startChild, type ChildServer } from "./lib/servers.js";
import { formatCount, formatRatio, formatSpread, markdownTable, ratiosOf, spreadOf } from "./lib/stats.js";

/** One protocol as the load generator speaks it. */
interface Protocol {
  readonly name: string;
  readonly isHttp1: boolean;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** POST body; GET when absent. */
  readonly body?: Uint8Array;
  /** The answer carries a grpc-status that must be 0. */
  readonly hasGrpcStatus: boolean;
}

/** An empty request message in a gRPC envelope: no flags, length 0. */
const emptyEnvelope = new Uint8Array(5);

const protocols: readonly Protocol[] = [
  { name: "Connect JSON, HTTP/1.1", isHttp1: true, path: grpcPath, headers: { "content-type": "application/json" }, body: Buffer.from("{}"), hasGrpcStatus: false },
  { name: "Connect binary, h2c", isHttp1: false, path: grpcPath, headers: { "content-type": "application/proto" }, body: new Uint8Array(0), hasGrpcStatus: false },
  { name: "gRPC, h2c", isHttp1: false, path: grpcPath, headers: { "content-type": "application/grpc", te: "trailers" }, body: emptyEnvelope, hasGrpcStatus: true },
  { name: "gRPC-web, HTTP/1.1", isHttp1: true, path: grpcPath, headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body: emptyEnvelope, hasGrpcStatus: true },
  { name: "REST, HTTP/1.1", isHttp1: true, path: restPath, headers: {}, hasGrpcStatus: false },
];

/** Load shape: 16 requests in flight, as 16 connections or as 4 connections × 4 streams. */
function shapeOf(p: Protocol): { clients: number; streams: number } {
  return p.isHttp1 ? { clients: 16, streams: 1 } : { clients: 4, streams: 4 };
}

interface Target {
  readonly label: string;
  readonly server: ChildServer;
  readonly portFor: (p: Protocol) => number;
}

interface Sample {
  readonly rate: number;
  readonly cpu: number;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (!hasH2load()) throw new Error("h2load not found: apt-get install -y nghttp2-client");
  const machine = describeMachine();

  progress("protocols: seeding smtpgate");
  const { fixture, server: smtpgate } = await createFixture();
  const reference = await startReference(smtpgate.ports.main, fixture.token);
  const targets: Target[] = [
    { label: "bare", server: reference, portFor: (p) => (p.isHttp1 ? reference.ports.main : reference.ports.http2!) },
    { label: "smtpgate", server: smtpgate, portFor: () => smtpgate.ports.main },
  ];
  try {
    const rows = [];
    for (const p of protocols) rows.push(await measureProtocol(p, targets, fixture.token, options));
    printReport(rows, options, machineLine(machine));
  } finally {
    await Promise.all(targets.map((t) => t.server.stop()));
    fixture.remove();
  }
}

/** Starts the bare server with smtpgate's own answer as its constant, so both send the same bytes. */
async function startReference(port: number, token: string): Promise<ChildServer> {
  const binary = await probe({
    url: `http://127.0.0.1:${port}${grpcPath}`,
    isHttp1: true,
    headers: { "content-type": "application/proto", authorization: `Bearer ${token}` },
    body: new Uint8Array(0),
  });
  const rest = await probe({ url: `http://127.0.0.1:${port}${restPath}`, isHttp1: true, headers: { authorization: `Bearer ${token}` } });
  if (binary.httpStatus !== 200 || rest.httpStatus !== 200) throw new Error("smtpgate did not answer GetSMTPConfig");
  // Round-trip through the schema, so a field the server adds is noticed here, not in a table.
  const response = toBinary(GetSMTPConfigResponseSchema, create(GetSMTPConfigResponseSchema, fromBinary(GetSMTPConfigResponseSchema, binary.body)));
  return startChild({ kind: "connect-bare", response: Buffer.from(response).toString("base64"), restJson: rest.body.toString("utf8") });
}

interface ProtocolRow {
  readonly protocol: Protocol;
  readonly samples: Record<string, Sample[]>;
  readonly bodyBytes: Record<string, number>;
}

async function measureProtocol(p: Protocol, targets: readonly Target[], token: string, o: BenchOptions): Promise<ProtocolRow> {
  const headers = { ...p.headers, authorization: `Bearer ${token}` };
  const bodyBytes: Record<string, number> = {};
  for (const t of targets) bodyBytes[t.label] = await verifyTarget(`${t.label}, ${p.name}`, loadOf(p, t, headers, o), p.hasGrpcStatus);

  const samples: Record<string, Sample[]> = Object.fromEntries(targets.map((t) => [t.label, []]));
  for (let round = 0; round < o.rounds; round++) {
    // Alternate who goes first, so a slow minute on the machine hits both.
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      progress(`protocols: ${p.name}, ${t.label}, round ${round + 1}/${o.rounds}`);
      const result = await measured(t.server, o.seconds + o.warmupSeconds, () => runLoad(loadOf(p, t, headers, o)));
      assertClean(`${t.label}, ${p.name}`, result);
      samples[t.label].push({ rate: result.requestsPerSecond, cpu: result.cpuMicrosPerRequest });
    }
  }
  return { protocol: p, samples, bodyBytes };
}

function loadOf(p: Protocol, t: Target, headers: Record<string, string>, o: BenchOptions): LoadSpec {
  return {
    url: `http://127.0.0.1:${t.portFor(p)}${p.path}`,
    isHttp1: p.isHttp1,
    ...shapeOf(p),
    seconds: o.seconds,
    warmupSeconds: o.warmupSeconds,
    headers,
    body: p.body,
  };
}

function printReport(rows: readonly ProtocolRow[], o: BenchOptions, machine: string): void {
  const table = [
    ["Protocol", "smtpgate req/s", "bare req/s", "ratio smtpgate / bare", "CPU µs/req smtpgate", "CPU µs/req bare", "response bytes"],
  ];
  for (const row of rows) {
    const sg = row.samples.smtpgate;
    const bare = row.samples.bare;
    table.push([
      row.protocol.name,
      formatSpread(spreadOf(sg.map((s) => s.rate))),
      formatSpread(spreadOf(bare.map((s) => s.rate))),
      formatRatio(spreadOf(ratiosOf(sg.map((s) => s.rate), bare.map((s) => s.rate)))),
      formatCount(spreadOf(sg.map((s) => s.cpu)).median),
      formatCount(spreadOf(bare.map((s) => s.cpu)).median),
      `${row.bodyBytes.smtpgate} / ${row.bodyBytes.bare}`,
    ]);
  }
  const text = [
    "## Protocol overhead: GetSMTPConfig, smtpgate vs a bare connect-node handler",
    "",
    `${machine} · \`node dist/bench/protocols.js ${describeOptions(o)}\``,
    "",
    markdownTable(table),
    "",
    "Medians of the rounds, range in parentheses; each ratio is taken within a round.",
    "Load: h2load, 16 requests in flight (HTTP/1.1: 16 connections; h2c: 4 connections × 4 streams).",
    "smtpgate resolves the instance, checks the bearer token and the permission, reads the active",
    "config from SQLite and logs one line per request; the bare handler returns smtpgate's own answer",
    "as a constant (REST: bare node:http, since connect-node has no REST binding). Every response",
    "was checked: HTTP 200, grpc-status 0 where the protocol has one, and the probed body size.",
    "CPU µs/req is the server process's user+system time divided by the requests it answered.",
    "",
  ];
  process.stdout.write(text.join("\n") + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
