import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { startChildServer, type ChildServer } from "../helpers/child-server.js";
import { adminClient } from "../helpers/clients.js";
import { eventually, notifyClient } from "../helpers/notify.js";
import { startSlowSink, type Arrival, type SlowSink } from "../helpers/slow-sink.js";

/** What a test needs from one data directory and the server on it. */
interface Gateway {
  readonly dataDir: string;
  server: ChildServer;
}

async function startGateway(dataDir: string): Promise<ChildServer> {
  return startChildServer(["--port", "0", "--data-dir", dataDir, "--log-level", "info"]);
}

/** Queues `count` mails with subjects "<label> <i>" and returns their ids and Message-IDs by subject. */
async function queueMails(g: Gateway, label: string, count: number): Promise<Map<string, { id: string; messageId: string }>> {
  const token = readFileSync(join(g.dataDir, "admin.pat"), "utf8").trim();
  const notify = notifyClient("grpc", g.server.baseUrl, token);
  const sent = await Promise.all(
    Array.from({ length: count }, (_, i) => notify.sendMail({ to: [`r${i}@example.com`], subject: `${label} ${i}`, textBody: "x" })),
  );
  return new Map(sent.map(({ mail }) => [mail!.subject, { id: mail!.id, messageId: mail!.messageId }]));
}

async function activateProvider(g: Gateway, hostPort: string): Promise<void> {
  const token = readFileSync(join(g.dataDir, "admin.pat"), "utf8").trim();
  const admin = adminClient("connect-json", g.server.baseUrl, token);
  const { id } = await admin.addSMTPConfig({ senderAddress: "noreply@smtpgate.test", senderName: "smtpgate", host: hostPort, tls: false });
  await admin.activateSMTPConfig({ id });
}

function countBySubject(arrivals: readonly Arrival[]): Map<string, Arrival[]> {
  const bySubject = new Map<string, Arrival[]>();
  for (const a of arrivals) bySubject.set(a.subject, [...(bySubject.get(a.subject) ?? []), a]);
  return bySubject;
}

describe("a server process that dies or is stopped while sending", () => {
  let sink: SlowSink;
  const gateways: Gateway[] = [];
  const slowly = () => 200;
  before(async () => {
    sink = await startSlowSink(slowly);
  });
  afterEach(async () => {
    for (const g of gateways.splice(0)) {
      await g.server.stop("SIGKILL");
      rmSync(g.dataDir, { recursive: true, force: true });
    }
    sink.replyDelayMs = slowly;
  });
  after(async () => {
    await sink.stop();
  });

  test("after SIGKILL and a restart on the same data directory every mail arrives, and only mails in flight arrive twice, with the same Message-ID", async (ctx) => {
    const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-crash-"));
    const g: Gateway = { dataDir, server: await startGateway(dataDir) };
    gateways.push(g);
    await activateProvider(g, sink.hostPort);
    const start = sink.arrivals.length;
    const queued = await queueMails(g, "crash", 30);

    await eventually(
      () => sink.arrivals.length - start >= 4 && sink.arrivals.slice(start).some((a) => !a.answered),
      15_000,
      "some mails delivered and one waiting for its reply",
    );
    const ended = g.server.stop("SIGKILL");
    const seenBeforeKill = new Set(sink.arrivals.slice(start).map((a) => a.subject));
    const unansweredAtKill = new Set(sink.arrivals.slice(start).filter((a) => !a.answered).map((a) => a.subject));
    assert.deepEqual(await ended, { code: null, signal: "SIGKILL" });

    sink.replyDelayMs = () => 0;
    g.server = await startGateway(dataDir);
    await eventually(() => new Set(sink.arrivals.slice(start).map((a) => a.subject)).size === queued.size, 15_000, "every mail to arrive");
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const notify = notifyClient("connect-json", g.server.baseUrl, token);
    await eventually(async () => {
      const states = await Promise.all([...queued.values()].map(async ({ id }) => (await notify.getMail({ id })).mail!.state));
      return states.every((s) => s === MailState.SENT);
    }, 10_000, "every mail to be SENT");

    const bySubject = countBySubject(sink.arrivals.slice(start));
    const twice = [...bySubject].filter(([, copies]) => copies.length > 1).map(([subject]) => subject);
    for (const subject of twice) {
      assert.ok(seenBeforeKill.has(subject), `${subject} arrived twice but was not in flight at the kill`);
      assert.equal(bySubject.get(subject)!.length, 2, `${subject} arrived more than twice`);
    }
    for (const subject of unansweredAtKill) assert.ok(twice.includes(subject), `${subject} was unanswered at the kill but arrived once`);
    for (const [subject, copies] of bySubject) {
      assert.ok(copies.every((c) => c.messageId === queued.get(subject)!.messageId), `${subject} carries another Message-ID`);
    }
    assert.ok(g.server.stdoutLines.some((l) => l.includes('"event":"outbox.recovered"')));
    ctx.diagnostic(`${seenBeforeKill.size} mails reached the sink before the kill, ${unansweredAtKill.size} unanswered; ${twice.length} arrived twice`);
  });

  test("SIGTERM finishes the mails in flight and exits 0, and a restart sends the rest, each exactly once", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-term-"));
    const g: Gateway = { dataDir, server: await startGateway(dataDir) };
    gateways.push(g);
    await activateProvider(g, sink.hostPort);
    const start = sink.arrivals.length;
    const queued = await queueMails(g, "term", 30);

    await eventually(
      () => sink.arrivals.length - start >= 4 && sink.arrivals.slice(start).some((a) => !a.answered),
      15_000,
      "some mails delivered and one waiting for its reply",
    );
    const inFlight = sink.arrivals.slice(start).filter((a) => !a.answered).map((a) => a.subject);
    assert.deepEqual(await g.server.stop("SIGTERM"), { code: 0, signal: null });
    const firstRun = sink.arrivals.slice(start);
    assert.ok(firstRun.every((a) => a.answered), "the server exited before the sink answered a mail");
    assert.ok(firstRun.length < queued.size, "every mail went out before the stop; the test proves nothing");
    const stopped = g.server.stdoutLines.find((l) => l.includes('"event":"outbox.stopped"'));
    assert.ok(stopped, "no outbox.stopped line");

    sink.replyDelayMs = () => 0;
    g.server = await startGateway(dataDir);
    await eventually(() => sink.arrivals.length - start >= queued.size, 15_000, "every mail to arrive");
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const notify = notifyClient("connect-json", g.server.baseUrl, token);
    await eventually(async () => {
      const states = await Promise.all([...queued.values()].map(async ({ id }) => (await notify.getMail({ id })).mail!.state));
      return states.every((s) => s === MailState.SENT);
    }, 10_000, "every mail to be SENT");

    const subjects = sink.arrivals.slice(start).map((a) => a.subject).sort();
    assert.deepEqual(subjects, [...queued.keys()].sort());
    for (const subject of inFlight) assert.ok(firstRun.some((a) => a.subject === subject));
  });
});
