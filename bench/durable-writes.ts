/**
 * Durable writes: UpdateSMTPConfigPassword and SendMail through smtpgate
 * with 1, 16 and 64 clients, next to a raw loop of INSERT + COMMIT of one
 * row of the same size, on the same SQLite file with the same settings (WAL,
 * synchronous=FULL). A call counts once the server answered grpc-status 0,
 * which it does only after its commit returned.
 *
 * Each client is the admin of its own instance, the common case of a
 * multi-tenant gateway: writes to one instance contend on its sequence by
 * design and are retried, which is not what this measures.
 *
 *   node dist/bench/durable-writes.js [--rounds N] [--seconds S] [--quick]
 *       [--profile DIR]   write a V8 CPU profile of the server into DIR
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { addInstance } from "../src/domain/instances.js";
import { createToken } from "../src/domain/tokens.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { benchSmtpSettings, callJson } from "./lib/fixture.js";
import { describeMachine, machineLine } from "./lib/machine.js";
import { describeOptions, flagValue, parseOptions, progress, type BenchOptions } from "./lib/options.js";
import { runRawCommits } from "./lib/raw-commits.js";
import { startChild, type ChildServer } from "./lib/servers.js";
import { formatCount, formatRatio, formatSpread, markdownTable, ratiosOf, spreadOf } from "./lib/stats.js";
import { runWriteLoad, type WriteClient, type WriteKind } from "./lib/write-load.js";

const clientCounts = [1, 16, 64] as const;
const kinds: readonly WriteKind[] = ["password", "send-mail"];
const labels: Record<WriteKind, string> = { password: "UpdateSMTPConfigPassword", "send-mail": "SendMail" };

/** Adds one instance, owner token and SMTP config per client, before and after the server starts. */
async function seed(dataDir: string, count: number, profileDir: string | undefined): Promise<{ server: ChildServer; clients: WriteClient[] }> {
  const store = openSqliteStore(join(dataDir, "smtpgate.db"));
  const owners: { host: string; token: string }[] = [];
  for (let i = 0; i < count; i++) {
    const host = `tenant-${i}.bench.example`;
    const instance = await addInstance(store, [host]);
    owners.push({ host, token: (await createToken(store, { instanceId: instance.id, roles: ["IAM_OWNER"] })).token });
  }
  await store.close();

  // Delivery is measured elsewhere (bench/delivery.ts): the worker claims
  // nothing here. The SendMail rate limit is policy, not storage: lifted.
  const execArgv = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${resolve(profileDir)}`, "--cpu-prof-name=smtpgate-writes.cpuprofile"] : [];
  const server = await startChild({ kind: "smtpgate", dataDir, outbox: { concurrency: 0 }, isSendUnlimited: true }, { execArgv });
  const clients: WriteClient[] = [];
  for (const owner of owners) {
    const added = await callJson(server.ports.main, "/zitadel.admin.v1.AdminService/AddSMTPConfig", owner.token, benchSmtpSettings, owner.host);
    clients.push({ ...owner, configId: String(added.id) });
  }
  return { server, clients };
}

/** Bytes of a row's values as stored: text and blob lengths, 8 per number. */
function rowBytes(row: Record<string, unknown> | undefined): number {
  let bytes = 0;
  for (const value of Object.values(row ?? {})) {
    if (typeof value === "string") bytes += Buffer.byteLength(value);
    else if (value instanceof Uint8Array) bytes += value.length;
    else if (value !== null) bytes += 8;
  }
  return bytes;
}

/**
 * What one call of `kind` stores, in bytes, read back after a call: the
 * mail row, or the password event plus the provider row it rewrites.
 */
function bytesPerWrite(path: string, kind: WriteKind): number {
  const db = new Database(path, { readonly: true });
  try {
    if (kind === "send-mail") return rowBytes(db.prepare("SELECT * FROM mails ORDER BY rowid DESC LIMIT 1").get() as Record<string, unknown>);
    const event = db.prepare("SELECT * FROM events ORDER BY rowid DESC LIMIT 1").get() as Record<string, unknown>;
    const provider = db.prepare("SELECT * FROM smtp_providers WHERE id = ?").get(event.object_id) as Record<string, unknown>;
    return rowBytes(event) + rowBytes(provider);
  } finally {
    db.close();
  }
}

interface Samples {
  raw: number[];
  byClients: Map<number, { rate: number; p50: number; p99: number }[]>;
  failures: string[];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const profileDir = flagValue(argv, "--profile");
  const machine = describeMachine();
  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-bench-writes-"));
  const path = join(dataDir, "smtpgate.db");
  progress("durable writes: seeding instances");
  const { server, clients } = await seed(dataDir, Math.max(...clientCounts), profileDir);
  try {
    const bytes = {} as Record<WriteKind, number>;
    const samples = {} as Record<WriteKind, Samples>;
    for (const kind of kinds) {
      await runWriteLoad({ port: server.ports.main, kind, clients: clients.slice(0, 1), warmupSeconds: 0, seconds: 0.5 });
      bytes[kind] = bytesPerWrite(path, kind);
      samples[kind] = { raw: [], byClients: new Map(clientCounts.map((c) => [c, []])), failures: [] };
    }
    for (let round = 0; round < options.rounds; round++) {
      for (const kind of kinds) await measureRound(kind, round, { server, clients, path, rowBytes: bytes[kind], samples: samples[kind], options });
    }
    printReport(samples, bytes, options, machineLine(machine));
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface RoundContext {
  readonly server: ChildServer;
  readonly clients: readonly WriteClient[];
  readonly path: string;
  readonly rowBytes: number;
  readonly samples: Samples;
  readonly options: BenchOptions;
}

async function measureRound(kind: WriteKind, round: number, ctx: RoundContext): Promise<void> {
  const o = ctx.options;
  progress(`durable writes: ${labels[kind]}, raw loop, round ${round + 1}/${o.rounds}`);
  ctx.samples.raw.push(await runRawCommits({ path: ctx.path, rowBytes: ctx.rowBytes, seconds: o.seconds }));
  for (const count of clientCounts) {
    progress(`durable writes: ${labels[kind]}, ${count} clients, round ${round + 1}/${o.rounds}`);
    const result = await runWriteLoad({
      port: ctx.server.ports.main,
      kind,
      clients: ctx.clients.slice(0, count),
      warmupSeconds: o.warmupSeconds,
      seconds: o.seconds,
    });
    ctx.samples.byClients.get(count)!.push({ rate: result.callsPerSecond, p50: result.p50Ms, p99: result.p99Ms });
    if (result.failures > 0) ctx.samples.failures.push(`${labels[kind]}, ${count} clients: ${result.failures} failed calls, first: ${result.firstFailure}`);
  }
}

function printReport(samples: Record<WriteKind, Samples>, bytes: Record<WriteKind, number>, o: BenchOptions, machine: string): void {
  const table = [["Write", "clients", "smtpgate calls/s", "raw rows/s", "ratio smtpgate / raw", "p50 ms", "p99 ms"]];
  for (const kind of kinds) {
    const s = samples[kind];
    for (const count of clientCounts) {
      const runs = s.byClients.get(count)!;
      const rates = runs.map((r) => r.rate);
      table.push([
        `${labels[kind]} (${bytes[kind]} B/row)`,
        String(count),
        formatSpread(spreadOf(rates)),
        formatSpread(spreadOf(s.raw)),
        formatRatio(spreadOf(ratiosOf(rates, s.raw))),
        formatCount(spreadOf(runs.map((r) => r.p50)).median),
        formatCount(spreadOf(runs.map((r) => r.p99)).median),
      ]);
    }
  }
  const failures = kinds.flatMap((k) => samples[k].failures);
  const text = [
    "## Durable writes: smtpgate vs one INSERT + COMMIT per row",
    "",
    `${machine} · \`node dist/bench/durable-writes.js ${describeOptions(o)}\``,
    "",
    markdownTable(table),
    "",
    "Medians of the rounds, range in parentheses; each ratio divides by the raw loop of the same round.",
    "smtpgate: gRPC over h2c, each client the owner of its own instance, one call in flight per client;",
    "a call counts when answered with grpc-status 0. Raw: better-sqlite3 in its own process, autocommit",
    "INSERT of a row as large as what the call stores (B/row), same file, WAL, synchronous=FULL.",
    failures.length === 0 ? "No call failed." : `Failures: ${failures.join("; ")}`,
    "",
  ];
  process.stdout.write(text.join("\n") + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
