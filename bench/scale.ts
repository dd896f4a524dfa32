/**
 * Scale: per-request latency and server memory as smtpgate grows from 1 to
 * 1 000 instances, then from 0 to 100 000 queued mails. Both should stay
 * flat: a request touches its own instance's rows through indexes, and the
 * outbox worker's periodic queries must not slow down with the backlog.
 * RSS should stay under 150 MB.
 *
 * One server for the instance sweep, restarted for each backlog step, its
 * outbox worker running with default settings. Instances and tokens are added through the store, as the CLI
 * does; their SMTP configs through the API. The backlog belongs to an
 * instance without an active provider, so its mails wait for one, as they
 * would in production, and nothing leaves the machine.
 *
 *   node dist/bench/scale.js [--rounds N] [--seconds S] [--quick]
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addInstance } from "../src/domain/instances.js";
import { createToken } from "../src/domain/tokens.js";
import { openSqliteStore, type SqliteStore } from "../src/store/sqlite-store.js";
import { benchSmtpSettings, callJson } from "./lib/fixture.js";
import { hasH2load, runLoad } from "./lib/h2load.js";
import { describeMachine, machineLine } from "./lib/machine.js";
import { describeOptions, parseOptions, progress, type BenchOptions } from "./lib/options.js";
import { grpcPath } from "./lib/reference-servers.js";
import { startChild, type ChildServer } from "./lib/servers.js";
import { formatCount, markdownTable, spreadOf } from "./lib/stats.js";
import { runWriteLoad, type WriteClient } from "./lib/write-load.js";

const instanceSteps = [1, 10, 100, 1000];
const mailSteps = [0, 1_000, 10_000, 100_000];
/** Calls in flight while seeding through the API. */
const seedingConcurrency = 32;

interface Tenant {
  readonly host: string;
  readonly token: string;
}

/** One step's measurements, medians over rounds. */
interface StepResult {
  readonly step: number;
  readonly readP50: number;
  readonly readP99: number;
  readonly sendP50?: number;
  readonly sendP99?: number;
  readonly loopDelayP99: number;
  readonly rssMiB: number;
  readonly heapMiB: number;
}

async function addTenant(store: SqliteStore, index: number): Promise<Tenant> {
  const host = `tenant-${index}.scale.example`;
  const instance = await addInstance(store, [host]);
  return { host, token: (await createToken(store, { instanceId: instance.id, roles: ["IAM_OWNER"] })).token };
}

/** Adds and activates one SMTP config per tenant, `seedingConcurrency` at a time. */
async function addConfigs(port: number, tenants: readonly Tenant[]): Promise<void> {
  const admin = "/zitadel.admin.v1.AdminService";
  for (let i = 0; i < tenants.length; i += seedingConcurrency) {
    await Promise.all(
      tenants.slice(i, i + seedingConcurrency).map(async (t) => {
        const added = await callJson(port, `${admin}/AddSMTPConfig`, t.token, benchSmtpSettings, t.host);
        await callJson(port, `${admin}/ActivateSMTPConfig`, t.token, { id: added.id }, t.host);
      }),
    );
  }
}

/** GetSMTPConfig of `tenant`, one call at a time: p50 and p99 latency in ms. */
async function measureRead(port: number, tenant: Tenant, o: BenchOptions): Promise<{ p50: number; p99: number }> {
  const result = await runLoad({
    url: `http://127.0.0.1:${port}${grpcPath}`,
    isHttp1: false,
    clients: 1,
    streams: 1,
    seconds: o.seconds,
    warmupSeconds: o.warmupSeconds,
    headers: { ":authority": tenant.host, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${tenant.token}` },
    body: new Uint8Array(5),
    wantsLatencies: true,
  });
  if (result.failed > 0 || result.non2xx > 0) throw new Error(`GetSMTPConfig failed ${result.failed + result.non2xx} times under load`);
  return { p50: result.p50LatencyMs!, p99: result.p99LatencyMs! };
}

async function measureStep(
  step: number,
  server: ChildServer,
  reader: Tenant,
  sender: WriteClient | undefined,
  o: BenchOptions,
): Promise<StepResult> {
  const rounds = Math.min(o.rounds, 3);
  const reads = [];
  const sends = [];
  const delays = [];
  for (let round = 0; round < rounds; round++) {
    await server.stats(); // resets the loop-delay histogram
    reads.push(await measureRead(server.ports.main, reader, o));
    if (sender) {
      const sent = await runWriteLoad({ port: server.ports.main, kind: "send-mail", clients: [sender], warmupSeconds: o.warmupSeconds, seconds: o.seconds });
      if (sent.failures > 0) throw new Error(`SendMail failed ${sent.failures} times: ${sent.firstFailure}`);
      sends.push(sent);
    }
    delays.push((await server.stats()).loopDelayP99Ms);
  }
  const median = (values: number[]) => spreadOf(values).median;
  const after = await server.stats();
  return {
    step,
    readP50: median(reads.map((r) => r.p50)),
    readP99: median(reads.map((r) => r.p99)),
    sendP50: sends.length > 0 ? median(sends.map((s) => s.p50Ms)) : undefined,
    sendP99: sends.length > 0 ? median(sends.map((s) => s.p99Ms)) : undefined,
    loopDelayP99: median(delays),
    rssMiB: after.rssBytes / 2 ** 20,
    heapMiB: after.heapUsedBytes / 2 ** 20,
  };
}

/** Queues `count` mails for `instanceId` through the store, then parks them as waiting for a provider. */
async function queueBacklog(store: SqliteStore, instanceId: string, count: number): Promise<void> {
  const chunk = 5_000;
  for (let done = 0; done < count; done += chunk) {
    const now = new Date();
    await Promise.all(
      Array.from({ length: Math.min(chunk, count - done) }, () => {
        // Not newObjectId(): its 22 random bits collide within a 5 000-mail millisecond.
        const id = randomUUID();
        return store.enqueueMail({
          id,
          instanceId,
          idempotencyKey: "",
          messageId: `<${id}@backlog.scale.example>`,
          to: ["someone@example.com"],
          subject: "Your sign-in code",
          textBody: "Your sign-in code is 418 207. It expires in ten minutes.\n".repeat(18),
          htmlBody: "",
          replyTo: "",
          createdAt: now,
        });
      }),
    );
  }
  // What the worker would do to each after one attempt (the instance has
  // no active provider), without making the sweep wait for it.
  store.db
    .prepare("UPDATE mails SET wait_reason = 'no_provider' WHERE instance_id = ? AND state = 'queued' AND wait_reason = ''")
    .run(instanceId);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (!hasH2load()) throw new Error("h2load not found: apt-get install -y nghttp2-client");
  const machine = describeMachine();
  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-bench-scale-"));
  const store = openSqliteStore(join(dataDir, "smtpgate.db"));
  const tenants = [await addTenant(store, 0)];
  const serverSpec = { kind: "smtpgate", dataDir, isSendUnlimited: true } as const;
  let server = await startChild(serverSpec);
  try {
    await addConfigs(server.ports.main, tenants);
    const byInstances: StepResult[] = [];
    for (const step of instanceSteps) {
      progress(`scale: ${step} instances`);
      const added: Tenant[] = [];
      while (tenants.length < step) added.push(await addTenant(store, tenants.length)), tenants.push(added[added.length - 1]);
      await addConfigs(server.ports.main, added);
      byInstances.push(await measureStep(step, server, tenants[tenants.length - 1], undefined, options));
    }

    const backlog = await addInstance(store, ["backlog.scale.example"]);
    const sender: WriteClient = {
      host: "backlog.scale.example",
      token: (await createToken(store, { instanceId: backlog.id, roles: ["NOTIFY_SENDER"] })).token,
      configId: "",
    };
    const byMails: StepResult[] = [];
    let queued = 0;
    for (const step of mailSteps) {
      progress(`scale: ${step} queued mails`);
      // Queued while the server is down: with a large backlog the worker's
      // writes keep SQLite's write lock so busy that this process could
      // starve waiting for it (see bench/RESULTS.md).
      await server.stop();
      await queueBacklog(store, backlog.id, step - queued);
      queued = step;
      server = await startChild(serverSpec);
      byMails.push(await measureStep(step, server, tenants[0], sender, options));
    }
    printReport(byInstances, byMails, options, machineLine(machine));
  } finally {
    await server.stop();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function printReport(byInstances: readonly StepResult[], byMails: readonly StepResult[], o: BenchOptions, machine: string): void {
  const ms = (n: number | undefined) => (n === undefined ? "–" : formatCount(n));
  const relative = (r: StepResult, first: StepResult) => (r.readP50 / first.readP50).toFixed(2);
  const memory = (r: StepResult) => `${r.rssMiB.toFixed(0)} / ${r.heapMiB.toFixed(0)}`;
  const step = (r: StepResult) => r.step.toLocaleString("en-US");
  const instances = [["Instances", "GetSMTPConfig p50 ms", "p99 ms", "p50 vs 1 instance", "loop delay p99 ms", "RSS / heap MiB"]];
  for (const r of byInstances) {
    instances.push([step(r), ms(r.readP50), ms(r.readP99), relative(r, byInstances[0]), ms(r.loopDelayP99), memory(r)]);
  }
  const mails = [
    ["Queued mails", "GetSMTPConfig p50 ms", "p99 ms", "p50 vs none", "SendMail p50 ms", "SendMail p99 ms", "loop delay p99 ms", "RSS / heap MiB"],
  ];
  for (const r of byMails) {
    mails.push([step(r), ms(r.readP50), ms(r.readP99), relative(r, byMails[0]), ms(r.sendP50), ms(r.sendP99), ms(r.loopDelayP99), memory(r)]);
  }
  const text = [
    "## Scale: instances and queued mails",
    "",
    `${machine} · \`node dist/bench/scale.js ${describeOptions(o)}\``,
    "",
    markdownTable(instances),
    "",
    markdownTable(mails),
    "",
    "One smtpgate process for the instance sweep, restarted before each backlog step (the backlog",
    "is queued while it is down); outbox worker on with default settings. Latency of",
    "one call at a time (GetSMTPConfig: gRPC from h2load, to the newest instance, then to the first;",
    "SendMail: gRPC from a Node client, to the backlog's instance, whose mails wait for a provider).",
    "Medians over up to 3 rounds per step. Loop delay: 99th percentile of the server's event-loop",
    "delay during the step; RSS and JavaScript heap in use (garbage included) after it. V8 lets",
    "the heap grow with the allocation rate of the load, so RSS under load is mostly heap room",
    "(node --max-old-space-size caps it), not data held per instance or per mail.",
    "",
  ];
  process.stdout.write(text.join("\n") + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
