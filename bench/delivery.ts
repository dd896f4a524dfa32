/**
 * Delivery throughput and rotation latency, end to end on loopback:
 *
 * (a) mails/s through smtpgate: SendMail over gRPC with 16 calls in flight,
 *     outbox, worker, pooled nodemailer, SMTP sink, timed until the sink has
 *     every mail;
 * (b) mails/s of bare nodemailer with `pool: true` and the same number of
 *     connections (2, smtpgate's default per provider) to the same sink,
 *     also 16 in flight; (a) / (b) is what the gateway costs;
 * (c) time from UpdateSMTPConfigPassword returning to the sink accepting the
 *     first mail logged in with the new password, while mails wait on the
 *     rejected old one.
 *
 * smtpgate runs as `smtpgate serve` in its own process, and so does the sink
 * (this file with --sink), so neither shares an event loop with the driver.
 * The sink stamps arrivals with process.hrtime, a clock every process on the
 * machine shares, so IPC delay is not counted.
 *
 *   npm run build && node dist/bench/delivery.js [--rounds 3] [--mails 500] [--saves 20]
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Client } from "@connectrpc/connect";
import Database from "better-sqlite3";
import nodemailer from "nodemailer";
import { MailState, type NotificationService } from "../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient, type AdminClient } from "../test/helpers/clients.js";
import { startChildServer, type ChildServer } from "../test/helpers/child-server.js";
import { notifyClient } from "../test/helpers/notify.js";
import { startSmtpSink } from "../test/helpers/smtp-sink.js";
import { describeMachine, machineLine } from "./lib/machine.js";
import { formatRatio, formatSpread, markdownTable, ratiosOf, spreadOf } from "./lib/stats.js";

/** Calls in flight from the driver, for both paths. */
const inFlight = 16;
/** Connections of the bare nodemailer pool: smtpgate's default per provider. */
const poolConnections = 2;
const smtpUser = "bench";
const textBody = "Your sign-in code is 418 207. It expires in ten minutes. ".repeat(4);

type Notify = Client<typeof NotificationService>;

/** Messages between the driver and the sink process. */
type ToSink =
  | { readonly type: "password"; readonly password: string }
  | { readonly type: "drop" }
  | { readonly type: "expect"; readonly count: number };
type FromSink =
  | { readonly type: "ready"; readonly hostPort: string }
  | { readonly type: "reached"; readonly count: number; readonly atNs: string };

/** The sink process as the driver sees it. */
interface SinkProcess {
  readonly hostPort: string;
  setPassword(password: string): void;
  dropConnections(): void;
  /** Resolves with the hrtime (ns) at which the sink held `count` mails in all. */
  reached(count: number): Promise<bigint>;
  stop(): void;
}

/** Runs in the sink process: a real SMTP server with AUTH, driven over IPC. */
async function runSink(): Promise<void> {
  const sink = await startSmtpSink({ users: { [smtpUser]: "pw-0" } });
  process.on("message", (msg: ToSink) => {
    if (msg.type === "password") sink.setPassword(smtpUser, msg.password);
    if (msg.type === "drop") sink.dropConnections();
    if (msg.type === "expect") {
      void sink.waitForMessages(msg.count, 120_000).then(() => {
        const atNs = process.hrtime.bigint().toString();
        // Bodies are not needed; keep the process small over many rounds.
        sink.messages.forEach((m) => Object.assign(m, { raw: "" }));
        process.send!({ type: "reached", count: msg.count, atNs } satisfies FromSink);
      });
    }
  });
  process.send!({ type: "ready", hostPort: sink.hostPort } satisfies FromSink);
}

function startSinkProcess(): Promise<SinkProcess> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--sink"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiters = new Map<number, (atNs: bigint) => void>();
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`sink process exited with ${code}`)));
    child.on("message", (msg: FromSink) => {
      if (msg.type === "reached") waiters.get(msg.count)?.(BigInt(msg.atNs));
      if (msg.type !== "ready") return;
      const send = (m: ToSink) => child.send(m);
      resolve({
        hostPort: msg.hostPort,
        setPassword: (password) => send({ type: "password", password }),
        dropConnections: () => send({ type: "drop" }),
        reached: (count) =>
          new Promise((done) => {
            waiters.set(count, done);
            send({ type: "expect", count });
          }),
        stop: () => {
          child.removeAllListeners("exit");
          child.kill();
        },
      });
    });
  });
}

/** Runs `task(0..count-1)` with at most `limit` running at once. */
async function runPooled(count: number, limit: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane));
}

const secondsSince = (startNs: bigint, endNs: bigint) => Number(endNs - startNs) / 1e9;

/** The state one benchmark run shares between its measurements. */
interface Bench {
  readonly sink: SinkProcess;
  readonly gateway: ChildServer;
  readonly admin: AdminClient;
  readonly notify: Notify;
  readonly providerId: string;
  /** Mails handed to either path so far; each arrives exactly once. */
  sent: number;
}

/** One smtpgate round: returns delivered mails/s and accepted (SendMail answered) mails/s. */
async function smtpgateRound(b: Bench, mails: number, label: string): Promise<{ delivered: number; accepted: number }> {
  const target = b.sent + mails;
  const arrived = b.sink.reached(target);
  const start = process.hrtime.bigint();
  await runPooled(mails, inFlight, (i) => b.notify.sendMail({ to: [`user${i}@example.com`], subject: `${label} ${i}`, textBody }));
  const acceptedAt = process.hrtime.bigint();
  b.sent = target;
  const end = await arrived;
  return { delivered: mails / secondsSince(start, end), accepted: mails / secondsSince(start, acceptedAt) };
}

/** One bare nodemailer round over a fresh pool; returns delivered mails/s. */
async function nodemailerRound(b: Bench, mails: number, password: string): Promise<number> {
  const [host, port] = b.sink.hostPort.split(":");
  const transport = nodemailer.createTransport({
    host, port: Number(port), secure: false, ignoreTLS: true, auth: { user: smtpUser, pass: password },
    pool: true, maxConnections: poolConnections, maxMessages: 100,
  });
  const target = b.sent + mails;
  const arrived = b.sink.reached(target);
  const start = process.hrtime.bigint();
  await runPooled(mails, inFlight, (i) =>
    transport.sendMail({ from: "noreply@example.com", to: `user${i}@example.com`, subject: `bare ${i}`, text: textBody }),
  );
  b.sent = target;
  const end = await arrived;
  transport.close();
  return mails / secondsSince(start, end);
}

/**
 * One rotation: the sink starts wanting a new password, three mails fail to
 * log in and wait, then the password is saved. Returns ms from the save's
 * answer to the first arrival (negative if it came before the answer) and
 * the save call's own duration.
 */
async function rotationRound(b: Bench, round: number): Promise<{ afterAnswerMs: number; afterCallMs: number; callMs: number }> {
  const password = `pw-${round}`;
  b.sink.setPassword(password);
  b.sink.dropConnections();
  const ids = await Promise.all(
    [0, 1, 2].map(async (i) => (await b.notify.sendMail({ to: ["rotation@example.com"], subject: `rotation ${round}.${i}`, textBody })).mail!.id),
  );
  await waitUntilWaiting(b.notify, ids);

  const first = b.sink.reached(b.sent + 1);
  const all = b.sink.reached(b.sent + ids.length);
  const called = process.hrtime.bigint();
  await b.admin.updateSMTPConfigPassword({ id: b.providerId, password });
  const answered = process.hrtime.bigint();
  const arrivedAt = await first;
  await all;
  b.sent += ids.length;
  return {
    afterAnswerMs: Number(arrivedAt - answered) / 1e6,
    afterCallMs: Number(arrivedAt - called) / 1e6,
    callMs: Number(answered - called) / 1e6,
  };
}

/**
 * The floor under (c): bare nodemailer on a fresh connection, one mail, to
 * the same sink. A new password needs a new SMTP session, so no client can
 * beat this; smtp-server alone holds its greeting back by 100 ms.
 */
async function freshConnectionMs(b: Bench, password: string): Promise<number> {
  const [host, port] = b.sink.hostPort.split(":");
  const transport = nodemailer.createTransport({ host, port: Number(port), secure: false, ignoreTLS: true, auth: { user: smtpUser, pass: password } });
  const arrived = b.sink.reached(b.sent + 1);
  const start = process.hrtime.bigint();
  await transport.sendMail({ from: "noreply@example.com", to: "floor@example.com", subject: "floor", text: textBody });
  b.sent += 1;
  const end = await arrived;
  transport.close();
  return Number(end - start) / 1e6;
}

async function waitUntilWaiting(notify: Notify, ids: readonly string[]): Promise<void> {
  for (;;) {
    const mails = await Promise.all(ids.map(async (id) => (await notify.getMail({ id })).mail!));
    if (mails.every((m) => m.state === MailState.QUEUED && m.lastError.includes("credentials"))) return;
    if (mails.some((m) => m.state === MailState.SENT || m.state === MailState.FAILED)) {
      throw new Error("a rotation mail was sent or failed before the password was saved");
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Median time of one small SQLite commit with smtpgate's settings (WAL,
 * synchronous FULL) in a temp directory, ms. smtpgate commits three times per
 * mail (accept, claim, outcome), so this bounds its rate on this disk.
 */
function commitMs(): number {
  const dir = mkdtempSync(join(tmpdir(), "smtpgate-fsync-"));
  const db = new Database(join(dir, "probe.db"));
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec("CREATE TABLE t (v TEXT)");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const times = Array.from({ length: 50 }, () => {
      const start = process.hrtime.bigint();
      insert.run(textBody);
      return Number(process.hrtime.bigint() - start) / 1e6;
    });
    return spreadOf(times).median;
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Nearest-rank percentile of `values`, p in (0, 100]. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function setUp(dataDir: string): Promise<Bench> {
  const sink = await startSinkProcess();
  // No SendMail rate limit: the default (100/s per instance) would cap (a).
  const gateway = await startChildServer(["--port", "0", "--data-dir", dataDir, "--send-rate", "0"]);
  const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
  const admin = adminClient("grpc", gateway.baseUrl, token);
  const { id } = await admin.addSMTPConfig({
    senderAddress: "noreply@example.com", senderName: "Bench", host: sink.hostPort, tls: false, user: smtpUser, password: "pw-0",
  });
  await admin.activateSMTPConfig({ id });
  return { sink, gateway, admin, notify: notifyClient("grpc", gateway.baseUrl, token), providerId: id, sent: 0 };
}

function progress(text: string): void {
  process.stderr.write(`[delivery] ${text}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: "string", default: "3" }, mails: { type: "string", default: "500" }, saves: { type: "string", default: "20" } },
  });
  const rounds = Number(values.rounds);
  const mails = Number(values.mails);
  const saves = Number(values.saves);
  const machine = describeMachine();
  const commit = commitMs();
  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-bench-"));
  const b = await setUp(dataDir);
  try {
    progress("warm-up");
    await smtpgateRound(b, Math.ceil(mails / 5), "warm-up");
    await nodemailerRound(b, Math.ceil(mails / 5), "pw-0");

    const gateway: number[] = [];
    const accepted: number[] = [];
    const bare: number[] = [];
    for (let r = 0; r < rounds; r++) {
      progress(`throughput round ${r + 1}/${rounds}`);
      const result = await smtpgateRound(b, mails, `round ${r}`);
      gateway.push(result.delivered);
      accepted.push(result.accepted);
      bare.push(await nodemailerRound(b, mails, "pw-0"));
    }

    const latencies: number[] = [];
    const sinceCall: number[] = [];
    const calls: number[] = [];
    for (let s = 1; s <= saves; s++) {
      if (s % 5 === 0) progress(`rotation ${s}/${saves}`);
      const { afterAnswerMs, afterCallMs, callMs } = await rotationRound(b, s);
      latencies.push(afterAnswerMs);
      sinceCall.push(afterCallMs);
      calls.push(callMs);
    }
    const floor: number[] = [];
    for (let s = 0; s < Math.min(saves, 10); s++) floor.push(await freshConnectionMs(b, `pw-${saves}`));
    report({ machine: machineLine(machine), commit, rounds, mails, gateway, accepted, bare, latencies, sinceCall, calls, floor });
  } finally {
    await b.gateway.stop("SIGTERM");
    b.sink.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface Results {
  readonly machine: string;
  /** Median ms of one synchronous SQLite commit. */
  readonly commit: number;
  readonly rounds: number;
  readonly mails: number;
  readonly gateway: readonly number[];
  readonly accepted: readonly number[];
  readonly bare: readonly number[];
  readonly latencies: readonly number[];
  readonly sinceCall: readonly number[];
  readonly calls: readonly number[];
  readonly floor: readonly number[];
}

function report(r: Results): void {
  const rate = (n: number) => n.toFixed(0);
  const row = (label: string, values: readonly number[]) => {
    const ms = (n: number) => n.toFixed(1);
    return [label, ms(spreadOf(values).median), ms(percentile(values, 95)), ms(Math.min(...values)), ms(Math.max(...values))];
  };
  const lines = [
    "## Delivery",
    "",
    r.machine,
    "",
    `One SQLite commit (WAL, synchronous FULL) takes ${r.commit.toFixed(2)} ms on this disk; smtpgate makes three per mail.`,
    "",
    `${r.mails} mails per round, ${r.rounds} rounds after a warm-up, ${inFlight} calls in flight; median (min–max) over rounds.`,
    "",
    markdownTable([
      ["path", "mails/s"],
      ["smtpgate: SendMail over gRPC → outbox → 2 pooled connections → sink", formatSpread(spreadOf(r.gateway), rate)],
      ["  of which SendMail answered (accepted into the outbox)", formatSpread(spreadOf(r.accepted), rate)],
      [`nodemailer, pool: true, ${poolConnections} connections → sink`, formatSpread(spreadOf(r.bare), rate)],
      ["ratio smtpgate / nodemailer (per round)", formatRatio(spreadOf(ratiosOf(r.gateway, r.bare)))],
    ]),
    "",
    `Password rotation, ${r.latencies.length} saves with 3 mails waiting on the rejected old password each:`,
    "",
    markdownTable([
      ["measure", "median ms", "p95 ms", "min ms", "max ms"],
      row("UpdateSMTPConfigPassword answered → first mail with the new password", r.latencies),
      row("UpdateSMTPConfigPassword sent → first mail with the new password", r.sinceCall),
      row("the save call itself", r.calls),
      row(`floor: bare nodemailer, new connection, 1 mail (${r.floor.length}×)`, r.floor),
    ]),
    "",
    "A mail can arrive before the save's answer does (a negative first row): the worker is woken",
    "inside the save. The sink (smtp-server) waits 100 ms before greeting a new connection, and a",
    "new password always needs a new SMTP session, so the floor row is the least any client could take.",
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

if (process.argv.includes("--sink")) {
  await runSink();
} else {
  await main();
}
