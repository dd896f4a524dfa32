/**
 * smtpgate on PostgreSQL with two replicas, each its own process:
 *
 * 1. Propagation: how long after a password save through replica A does
 *    replica B send its first mail logged in with the new password? Once
 *    with mails already waiting on rejected credentials at B (B learns of
 *    the save from the change feed), once with a mail handed to B right
 *    after the save (B reads the provider fresh). Median and p99 over many
 *    saves, from the start of the save call to the sink's successful login.
 * 2. Write throughput of UpdateSMTPConfigPassword through replica A, next
 *    to a raw BEGIN; INSERT; COMMIT loop on the same database: the price of
 *    the event, the projection, the sequence check and the NOTIFY.
 *
 *   node dist/bench/postgres.js [--saves N] [--seconds S]
 *
 * Needs the PostgreSQL of the tests (SMTPGATE_TEST_POSTGRES_URL, default
 * the local server); creates a database of its own and drops it.
 */
import { randomBytes } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import nodemailer from "nodemailer";
import pg from "pg";
import { MailState } from "../src/gen/smtpgate/notify/v1/notify_pb.js";
import { addInstance } from "../src/domain/instances.js";
import { changeSmtpPassword } from "../src/domain/provider-commands.js";
import { SecretBox } from "../src/domain/secret-box.js";
import { createToken } from "../src/domain/tokens.js";
import { openPostgresStore } from "../src/store/postgres-store.js";
import { adminClient, adminClientAt, type AdminClient } from "../test/helpers/clients.js";
import { notifyClient } from "../test/helpers/notify.js";
import { createTestDatabase, withDatabaseClient, type TestDatabase } from "../test/helpers/postgres.js";
import { startReplicaProcess, startTimedSink, stopReplicaProcesses, type ReplicaProcess, type TimedSink } from "../test/helpers/replicas.js";

interface Replicas {
  readonly a: ReplicaProcess;
  readonly b: ReplicaProcess;
  readonly token: string;
  readonly providerId: string;
  readonly sink: TimedSink;
}

/** One row of the throughput table. */
interface Rate {
  readonly label: string;
  readonly clients: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

let postgresVersion = "";

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { saves: { type: "string", default: "150" }, seconds: { type: "string", default: "4" } } });
  const saves = Number(values.saves);
  const seconds = Number(values.seconds);
  const database = await createTestDatabase("bench");
  if (database.skip !== undefined) throw new Error(database.skip);
  postgresVersion = await withDatabaseClient(database.url, async (c) => (await c.query("SHOW server_version")).rows[0].server_version);
  try {
    const replicas = await startReplicas(database);
    try {
      progress(`propagation: ${saves} saves per case`);
      const waiting = await measurePropagation(replicas, saves, "waiting");
      const next = await measurePropagation(replicas, Math.ceil(saves / 2), "next");
      const baseline = await measureSinkLogin(replicas.sink, 30);
      progress(`throughput: ${seconds} s per row`);
      const rates = await measureThroughput(database, replicas, seconds * 1000);
      printReport([waiting, next, baseline], rates);
    } finally {
      await stopReplicaProcesses();
      await replicas.sink.stop();
    }
  } finally {
    await database.drop();
  }
}

/** A: the API only (sends nothing). B: sends every mail, polling only once a minute. */
async function startReplicas(database: TestDatabase): Promise<Replicas> {
  const sink = await startTimedSink({ users: { mailer: "password-0" } });
  const a = await startReplicaProcess(database.url, { outbox: { concurrency: 0 } });
  const token = await readOwnerToken(database);
  const b = await startReplicaProcess(database.url, { outbox: { pollMs: 60_000 } });
  const admin = adminClient("grpc", a.baseUrl, token);
  const { id } = await admin.addSMTPConfig({
    senderAddress: "noreply@bench.test", senderName: "bench", host: sink.hostPort, tls: false, user: "mailer", password: "password-0",
  });
  await admin.activateSMTPConfig({ id });
  return { a, b, token, providerId: id, sink };
}

/** A token of the bootstrap instance, made directly in the database (replica A keeps its own in its data directory). */
async function readOwnerToken(database: TestDatabase): Promise<string> {
  const store = await openPostgresStore(database.url, silent);
  try {
    const instance = await store.findInstanceByDomain("127.0.0.1");
    return (await createToken(store, { instanceId: instance!.id, roles: ["IAM_OWNER"] })).token;
  } finally {
    await store.close();
  }
}

let passwordCounter = 0;

/**
 * Saves `count` new passwords through A; resolves the delays, ms, from the
 * start of each save to B's first accepted login with it.
 */
async function measurePropagation(r: Replicas, count: number, mode: "waiting" | "next"): Promise<{ mode: string; delays: number[] }> {
  const delays: number[] = [];
  const admin = adminClient("grpc", r.a.baseUrl, r.token);
  const notify = notifyClient("grpc", r.b.baseUrl, r.token);
  for (let i = 0; i < count; i++) {
    const password = `password-${++passwordCounter}`;
    r.sink.users.set("mailer", password);
    if (mode === "waiting") {
      // The provider ends old sessions; B's next attempt fails and waits.
      r.sink.dropConnections();
      const id = (await notify.sendMail({ to: ["w@example.com"], subject: `${mode} ${passwordCounter}`, textBody: "x" })).mail!.id;
      await until(async () => {
        const m = (await notify.getMail({ id })).mail!;
        return m.state === MailState.QUEUED && m.lastError !== "";
      });
    }
    const login = nextLogin(r.sink, password);
    const started = performance.now();
    await admin.updateSMTPConfigPassword({ id: r.providerId, password });
    if (mode === "next") await notify.sendMail({ to: ["n@example.com"], subject: `${mode} ${passwordCounter}`, textBody: "x" });
    delays.push((await login.catch((err) => explain(err, r.b))) - started);
    // Nothing of this round may still be on the wire when the next one cuts connections.
    const subject = `${mode} ${passwordCounter}`;
    await until(async () => r.sink.arrivals.some((m) => m.subject === subject && m.answered));
  }
  return { mode, delays };
}

function explain(err: Error, replica: ReplicaProcess): never {
  progress(`replica B's last log lines:\n${replica.lines.slice(-20).join("\n")}`);
  throw err;
}

/**
 * The part of every delay above that is not smtpgate's: nodemailer alone,
 * connecting and logging in to the same sink (whose greeting alone waits
 * 100 ms, as smtp-server does to catch clients that talk too early).
 */
async function measureSinkLogin(sink: TimedSink, count: number): Promise<{ mode: string; delays: number[] }> {
  const [host, port] = sink.hostPort.split(":");
  sink.users.set("baseline", "baseline-password");
  const delays: number[] = [];
  for (let i = 0; i < count; i++) {
    const login = nextLogin(sink, "baseline-password");
    const started = performance.now();
    const transport = nodemailer.createTransport({
      host, port: Number(port), secure: false, ignoreTLS: true, auth: { user: "baseline", pass: "baseline-password" },
    });
    await transport.sendMail({ from: "noreply@bench.test", to: "b@example.com", subject: "baseline", text: "x" });
    transport.close();
    delays.push((await login) - started);
  }
  return { mode: "baseline", delays };
}

/** Resolves the time of the sink's next accepted login with `password`. */
function nextLogin(sink: TimedSink, password: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const seen = sink.logins.length;
    const timer = setTimeout(() => {
      stop();
      reject(new Error("no login with the new password within 10 s"));
    }, 10_000);
    const stop = sink.onEvent(() => {
      const login = sink.logins.slice(seen).find((l) => l.accepted && l.password === password);
      if (!login) return;
      clearTimeout(timer);
      stop();
      resolve(login.at);
    });
  });
}

async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function measureThroughput(database: TestDatabase, r: Replicas, durationMs: number): Promise<Rate[]> {
  const own = await instancesWithProviders(database, r.a.port, 8);
  const viaApi = (i: number) => async () => {
    await own[i].admin.updateSMTPConfigPassword({ id: own[i].providerId, password: "bench-password" });
  };
  const raw = await rawInserter(database.url, 8);
  const local = await openPostgresStore(database.url, silent);
  const deps = { store: local, secrets: new SecretBox([randomBytes(32)]), mailer: unusedMailer, log: silent, now: () => new Date() };
  const inProcess = (i: number) => async () => {
    const principal = { tokenId: "bench", instanceId: own[i].instanceId, roles: ["IAM_OWNER" as const] };
    await changeSmtpPassword(deps, principal, { id: own[i].providerId, password: "bench-password" });
  };
  const ms = durationMs;
  try {
    return [
      await rate(rawLabel, 1, ms, (i) => raw.insertWith(i)),
      await rate("password change in this process (domain and store, no API)", 1, ms, inProcess),
      await rate("UpdateSMTPConfigPassword over gRPC via replica A", 1, ms, viaApi),
      await rate(rawLabel, 8, ms, (i) => raw.insertWith(i)),
      await rate("password change in this process, one instance each", 8, ms, inProcess),
      await rate("UpdateSMTPConfigPassword via A, one instance each", 8, ms, viaApi),
      await rate("UpdateSMTPConfigPassword via A, all on one instance", 8, ms, () => viaApi(0)),
    ];
  } finally {
    await raw.close();
    await local.close();
  }
}

const rawLabel = "raw BEGIN; INSERT; COMMIT";

const unusedMailer = {
  send(): never {
    throw new Error("the benchmark sends no test mail");
  },
};

/** `count` more instances, each with an inactive provider, and an admin client of each via replica A. */
async function instancesWithProviders(
  database: TestDatabase,
  port: number,
  count: number,
): Promise<{ instanceId: string; admin: AdminClient; providerId: string }[]> {
  const store = await openPostgresStore(database.url, silent);
  try {
    const out = [];
    for (let i = 0; i < count; i++) {
      const domain = `bench-${i}.test`;
      const instance = await addInstance(store, [domain]);
      const { token } = await createToken(store, { instanceId: instance.id, roles: ["IAM_OWNER"] });
      const admin = adminClientAt("grpc", domain, port, token);
      const { id } = await admin.addSMTPConfig({
        senderAddress: "noreply@bench.test", senderName: "bench", host: "smtp.bench.test:465", tls: true, user: "u", password: "p",
      });
      out.push({ instanceId: instance.id, admin, providerId: id });
    }
    return out;
  } finally {
    await store.close();
  }
}

/** One connection per client, each inserting a row per transaction into a table of the bench's own. */
async function rawInserter(url: string, connections: number) {
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  await clients[0].query(
    "CREATE TABLE IF NOT EXISTS bench_raw (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL)",
  );
  return {
    insertWith: (i: number) => async () => {
      const c = clients[i];
      await c.query("BEGIN");
      await c.query("INSERT INTO bench_raw (payload, created_at) VALUES ($1, now())", ["bench-password"]);
      await c.query("COMMIT");
    },
    close: () => Promise.all(clients.map((c) => c.end())),
  };
}

/**
 * Runs `clients` loops for `durationMs`, loop i calling the operation that
 * `operationFor(i)` returns; resolves completed operations per second and
 * latency percentiles. Failed operations are counted, not timed.
 */
async function rate(label: string, clients: number, durationMs: number, operationFor: (i: number) => () => Promise<void>): Promise<Rate> {
  progress(`  ${label}, ${clients} client(s)`);
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const end = started + durationMs;
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const operation = operationFor(i);
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await operation();
          latencies.push(performance.now() - t);
        } catch {
          errors += 1;
        }
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  return {
    label,
    clients,
    perSecond: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    errors,
  };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function printReport(propagation: { mode: string; delays: number[] }[], rates: Rate[]): void {
  const ms = (n: number) => n.toFixed(1);
  const lines = [
    "## PostgreSQL: propagation between two replicas, and write throughput",
    "",
    `machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} at the end; PostgreSQL ${postgresVersion}`,
    "",
    "Propagation: start of a save through replica A to replica B's first login with the new password",
    "(the sink, smtp-server, holds its greeting 100 ms; the last row is that part alone)",
    "",
    "| case | saves | median ms | p99 ms | max ms |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...propagation.map(({ mode, delays }) => {
      const what = {
        waiting: "mail already waiting at B on the old password",
        next: "mail handed to B right after the save",
        baseline: "for scale: nodemailer alone, connect and log in to the same sink",
      }[mode];
      return `| ${what} | ${delays.length} | ${ms(percentile(delays, 0.5))} | ${ms(percentile(delays, 0.99))} | ${ms(Math.max(...delays))} |`;
    }),
    "",
    "Write throughput on PostgreSQL: a password change, next to raw transactions with as many connections",
    "",
    "| write | clients | per second | p50 ms | p99 ms | errors | vs raw |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rates.map((r) => {
      const raw = rates.find((x) => x.label === rawLabel && x.clients === r.clients)!;
      const ratio = r === raw ? "1.00" : (r.perSecond / raw.perSecond).toFixed(2);
      return `| ${r.label} | ${r.clients} | ${r.perSecond.toFixed(0)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.errors} | ${ratio} |`;
    }),
    "",
  ];
  process.stdout.write(lines.join("\n"));
}

function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

await main();
