/**
 * Soak: runs smtpgate for a given time at a given request rate with mixed
 * API calls and sends, then reports errors, RSS and open handles at the start
 * and the end. Everything stays on loopback and stops by itself.
 *
 *   npm run build && node dist/bench/soak.js [--seconds 60] [--rate 200]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { NotificationService } from "../src/gen/smtpgate/notify/v1/notify_pb.js";
import { AdminService } from "../src/gen/zitadel/admin/v1/admin_pb.js";
import { startServer } from "../src/server.js";
import { startSmtpSink } from "../test/helpers/smtp-sink.js";

interface Snapshot {
  readonly rssMb: number;
  readonly heapMb: number;
  readonly externalMb: number;
  readonly handles: number;
}

function snapshot(): Snapshot {
  // With --expose-gc, measure what is retained, not what is merely not collected yet.
  (globalThis as { gc?: () => void }).gc?.();
  return {
    rssMb: Math.round(process.memoryUsage().rss / 1024 / 1024),
    heapMb: Math.round(process.memoryUsage().heapUsed / 1024 / 1024),
    externalMb: Math.round(process.memoryUsage().external / 1024 / 1024),
    handles: process.getActiveResourcesInfo().length,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: "60" }, rate: { type: "string", default: "200" } } });
  const seconds = Number(values.seconds);
  const rate = Number(values.rate);

  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-soak-"));
  const sink = await startSmtpSink({ users: { soak: "soak-password-1" } });
  const quiet = new Writable({ write: (_c, _e, done) => done() });
  // The per-instance send limit would turn load into ResourceExhausted: off here.
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    logLevel: "warn",
    logDestination: quiet,
    rateLimits: { send_mail: undefined },
  });
  const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
  const transport = createGrpcTransport({
    baseUrl: `http://127.0.0.1:${server.port}`,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  });
  const admin = createClient(AdminService, transport);
  const notify = createClient(NotificationService, transport);
  const { id } = await admin.addSMTPConfig({ senderAddress: "soak@smtpgate.test", senderName: "soak", host: sink.hostPort, user: "soak", password: "soak-password-1" });
  await admin.activateSMTPConfig({ id });

  const start = snapshot();
  const counts = { ok: 0, errors: 0, sends: 0 };
  const errorsByCode = new Map<string, number>();
  const deadline = Date.now() + seconds * 1000;
  const inFlight = new Set<Promise<void>>();
  let n = 0;

  const call = async (i: number): Promise<void> => {
    try {
      if (i % 10 < 7) {
        await notify.sendMail({ to: [`r${i}@smtpgate.test`], subject: `soak ${i}`, textBody: "soak" });
        counts.sends++;
      } else if (i % 10 < 9) {
        await admin.getSMTPConfig({});
      } else {
        await admin.updateSMTPConfigPassword({ id, password: "soak-password-1" });
      }
      counts.ok++;
    } catch (err) {
      counts.errors++;
      const code = String((err as { code?: unknown }).code ?? "unknown");
      errorsByCode.set(code, (errorsByCode.get(code) ?? 0) + 1);
    }
  };

  // Paced in 10 ms slices; bounded by the deadline and by 256 calls in flight.
  while (Date.now() < deadline) {
    const due = Math.floor(((Date.now() - (deadline - seconds * 1000)) / 1000) * rate);
    while (n < due && inFlight.size < 256) {
      const p = call(n++).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await Promise.all(inFlight);
  const drainDeadline = Date.now() + 30_000;
  while (sink.messages.length < counts.sends && Date.now() < drainDeadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const end = snapshot();

  await server.close();
  await sink.stop();
  rmSync(dataDir, { recursive: true, force: true });

  const rows = [
    ["seconds", String(seconds)],
    ["target rate (req/s)", String(rate)],
    ["requests", String(n)],
    ["ok", String(counts.ok)],
    ["errors", `${counts.errors}${errorsByCode.size ? " " + JSON.stringify(Object.fromEntries(errorsByCode)) : ""}`],
    ["mails accepted / delivered", `${counts.sends} / ${sink.messages.length}`],
    ["RSS start → end (MB)", `${start.rssMb} → ${end.rssMb}`],
    ["JS heap used start → end (MB)", `${start.heapMb} → ${end.heapMb}`],
    ["external (Buffers) start → end (MB)", `${start.externalMb} → ${end.externalMb}`],
    ["active handles start → end", `${start.handles} → ${end.handles}`],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
  process.exitCode = counts.errors > 0 || sink.messages.length < counts.sends ? 1 : 0;
}

await main();
