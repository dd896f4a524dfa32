/**
 * The write-load process (see write-load.ts): runs the clients, then sends
 * its WriteLoadResult to the parent and exits.
 */
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMailRequestSchema } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { UpdateSMTPConfigPasswordRequestSchema } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import type { WriteClient, WriteKind, WriteLoadResult, WriteLoadSpec } from "./write-load.js";

const paths: Record<WriteKind, string> = {
  password: "/zitadel.admin.v1.AdminService/UpdateSMTPConfigPassword",
  "send-mail": "/smtpgate.notify.v1.NotificationService/SendMail",
};

/** A sign-in mail of ordinary size: one recipient, a short subject, 1 KiB of text. */
export const benchMail = {
  to: ["someone@example.com"],
  subject: "Your sign-in code",
  textBody: "Your sign-in code is 418 207. It expires in ten minutes.\n".repeat(18),
};

function messageOf(kind: WriteKind, client: WriteClient, n: number): Uint8Array {
  if (kind === "password") {
    // A new password each time, so every call is a real change.
    return toBinary(UpdateSMTPConfigPasswordRequestSchema, create(UpdateSMTPConfigPasswordRequestSchema, { id: client.configId, password: `bench-password-${n}` }));
  }
  return toBinary(SendMailRequestSchema, create(SendMailRequestSchema, benchMail));
}

function envelope(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

interface Tally {
  isMeasuring: boolean;
  isStopping: boolean;
  ok: number;
  failures: number;
  firstFailure?: string;
  latenciesMs: number[];
}

/** One unary gRPC call; resolves to "" on grpc-status 0, else a description. */
function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const stream = session.request(headers);
    let status: string | undefined;
    let message = "";
    const note = (h: http2.IncomingHttpHeaders) => {
      if (typeof h["grpc-status"] === "string") status = h["grpc-status"];
      if (typeof h["grpc-message"] === "string") message = h["grpc-message"];
    };
    stream.on("response", note);
    stream.on("trailers", note);
    stream.on("data", () => {});
    stream.on("error", (err) => resolve(`stream error: ${err.message}`));
    stream.on("close", () => resolve(status === "0" ? "" : `grpc-status ${status}: ${decodeURIComponent(message)}`));
    stream.end(body);
  });
}

async function runClient(spec: WriteLoadSpec, client: WriteClient, tally: Tally): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${spec.port}`);
  session.on("error", () => {});
  const headers = {
    ":method": "POST",
    ":path": paths[spec.kind],
    ":authority": client.host,
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${client.token}`,
  };
  for (let n = 0; !tally.isStopping; n++) {
    const body = envelope(messageOf(spec.kind, client, n));
    const started = performance.now();
    const failure = await call(session, headers, body);
    if (!tally.isMeasuring || tally.isStopping) continue;
    if (failure === "") {
      tally.ok++;
      tally.latenciesMs.push(performance.now() - started);
    } else {
      tally.failures++;
      tally.firstFailure ??= failure;
    }
  }
  session.close();
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]) as WriteLoadSpec;
  const tally: Tally = { isMeasuring: false, isStopping: false, ok: 0, failures: 0, latenciesMs: [] };
  const running = spec.clients.map((c) => runClient(spec, c, tally));
  await new Promise((r) => setTimeout(r, spec.warmupSeconds * 1000));
  tally.isMeasuring = true;
  await new Promise((r) => setTimeout(r, spec.seconds * 1000));
  tally.isStopping = true;
  await Promise.all(running);

  const sorted = tally.latenciesMs.sort((a, b) => a - b);
  const result: WriteLoadResult = {
    callsPerSecond: tally.ok / spec.seconds,
    failures: tally.failures,
    firstFailure: tally.firstFailure,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
  process.send?.(result, () => process.exit(0));
}

if (process.argv[2]?.startsWith("{")) {
  main().catch((err: unknown) => {
    process.stderr.write(`write load failed: ${String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  });
}
