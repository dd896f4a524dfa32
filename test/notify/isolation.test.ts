import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { MailState, NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { bootstrapDomains } from "../../src/server.js";
import { adminClient, adminClientAt, loopbackLookup, transportFor, type AdminClient } from "../helpers/clients.js";
import { eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSilentServer, startSlowSink, type SilentServer, type SlowSink } from "../helpers/slow-sink.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

const domainB = "isolation.notify.test";
const perInstance = 2;

/** One instance as a test drives it: its admin and notification clients and its sink. */
interface Side {
  readonly admin: AdminClient;
  readonly notify: Client<typeof NotificationService>;
  readonly sink: SmtpSink;
}

async function activate(admin: AdminClient, hostPort: string, login = { user: "", password: "" }): Promise<string> {
  const { id } = await admin.addSMTPConfig({ senderAddress: "noreply@smtpgate.test", senderName: "smtpgate", host: hostPort, tls: false, ...login });
  await admin.activateSMTPConfig({ id });
  return id;
}

async function sendAll(side: Side, subjects: readonly string[]): Promise<string[]> {
  const answers = await Promise.all(subjects.map((subject) => side.notify.sendMail({ to: ["user@example.com"], subject, textBody: "x" })));
  return answers.map((a) => a.mail!.id);
}

describe("instances sharing one server", () => {
  let t: TestServer;
  let a: Side;
  let b: Side;
  let silent: SilentServer;
  before(async () => {
    t = await startTestServer({ outbox: { pollMs: 50, concurrency: 8, perInstance }, shutdownGraceMs: 200 });
    silent = await startSilentServer();
    a = { admin: adminClient("grpc", t.baseUrl, t.ownerToken), notify: notifyClient("grpc", t.baseUrl, t.ownerToken), sink: await startSmtpSink({ users: { a: "pw-a" } }) };
    await t.addInstance([domainB]);
    const tokenB = await t.token(["IAM_OWNER"], domainB);
    b = {
      admin: adminClientAt("grpc", domainB, t.port, tokenB),
      notify: createClient(NotificationService, transportFor("grpc", `http://${domainB}:${t.port}`, { token: tokenB, lookup: loopbackLookup })),
      sink: await startSmtpSink({ users: { b: "pw-b" } }),
    };
    await activate(a.admin, a.sink.hostPort, { user: "a", password: "pw-a" });
    await activate(b.admin, b.sink.hostPort, { user: "b", password: "pw-b" });
  });
  after(async () => {
    await t.stop();
    await silent.stop();
    await a.sink.stop();
    await b.sink.stop();
  });

  test("each instance's mails reach only its own provider, with its own domain in the Message-ID", async () => {
    const subjectsA = ["A 0", "A 1", "A 2", "A 3", "A 4"];
    const subjectsB = ["B 0", "B 1", "B 2", "B 3", "B 4"];
    await Promise.all([sendAll(a, subjectsA), sendAll(b, subjectsB)]);
    await a.sink.waitForMessages(5);
    await b.sink.waitForMessages(5);

    assert.deepEqual(a.sink.messages.map((m) => m.headers.subject).sort(), subjectsA);
    assert.deepEqual(b.sink.messages.map((m) => m.headers.subject).sort(), subjectsB);
    const domainsA = new Set(bootstrapDomains);
    assert.ok(a.sink.messages.every((m) => m.user === "a" && domainsA.has(/@([^@>]+)>$/.exec(m.headers["message-id"])?.[1] ?? "")));
    assert.ok(b.sink.messages.every((m) => m.user === "b" && m.headers["message-id"].endsWith(`@${domainB}>`)));
  });

  test("an instance whose provider accepts connections and never greets does not delay another instance's mails", async () => {
    await activate(a.admin, silent.hostPort);
    const stuck = await sendAll(a, Array.from({ length: 8 }, (_, i) => `stuck ${i}`));
    await eventually(() => silent.connectionCount() >= 1, 5000, "instance A to connect to its silent provider");
    const countA = a.sink.messages.length;
    const countB = b.sink.messages.length;

    await sendAll(b, ["B while A hangs 0", "B while A hangs 1", "B while A hangs 2"]);
    await b.sink.waitForMessages(countB + 3, 5000);

    const states = await Promise.all(stuck.map(async (id) => (await a.notify.getMail({ id })).mail!.state));
    assert.ok(states.every((s) => s === MailState.QUEUED || s === MailState.SENDING), `states: ${states.join(",")}`);
    assert.ok(states.filter((s) => s === MailState.SENDING).length <= perInstance);
    assert.equal(a.sink.messages.length, countA);
    assert.ok(b.sink.messages.every((m) => m.headers.subject.startsWith("B ")));
  });
});

describe("the per-instance limit of mails in flight", () => {
  let t: TestServer;
  let sink: SlowSink;
  before(async () => {
    // Slow mails hold a connection while fast ones finish around them, so
    // the instance keeps dropping below its limit and claiming again.
    sink = await startSlowSink((arrival) => (arrival.subject.startsWith("slow") ? 300 : 0));
    t = await startTestServer({ outbox: { pollMs: 20, concurrency: 8, perInstance } });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("one instance never has more mails SENDING than perInstance, also while some of its mails finish early", async () => {
    await activate(adminClient("grpc", t.baseUrl, t.ownerToken), sink.hostPort);
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    let most = 0;
    const sampler = setInterval(() => {
      void t.server.store.countMails().then((counts) => {
        most = Math.max(most, counts.sending ?? 0);
      });
    }, 2);
    try {
      const subjects = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? `slow ${i}` : `fast ${i}`));
      await sendAll({ notify } as Side, subjects);
      await eventually(() => sink.arrivals.filter((x) => x.answered).length >= subjects.length, 15_000, "every mail to be answered");
    } finally {
      clearInterval(sampler);
    }
    assert.ok(most >= 1, "the sampler saw nothing in flight");
    assert.ok(most <= perInstance, `${most} mails of one instance were SENDING at once; the limit is ${perInstance}`);
  });
});

describe("instances whose SMTP servers never answer", () => {
  const stalledDomains = ["stall-1.notify.test", "stall-2.notify.test"];
  let t: TestServer;
  let silent: SilentServer;
  let healthy: Side;
  const stalled: Side[] = [];
  before(async () => {
    // Two stalled instances at perInstance each would take all four slots.
    t = await startTestServer({
      outbox: { pollMs: 50, concurrency: 4, perInstance: 2 },
      smtpTimeouts: { connectionTimeoutMs: 300 },
      shutdownGraceMs: 200,
    });
    silent = await startSilentServer();
    healthy = { admin: adminClient("grpc", t.baseUrl, t.ownerToken), notify: notifyClient("grpc", t.baseUrl, t.ownerToken), sink: await startSmtpSink({ users: { h: "pw-h" } }) };
    await activate(healthy.admin, healthy.sink.hostPort, { user: "h", password: "pw-h" });
    for (const domain of stalledDomains) {
      await t.addInstance([domain]);
      const token = await t.token(["IAM_OWNER"], domain);
      const admin = adminClientAt("grpc", domain, t.port, token);
      await activate(admin, silent.hostPort);
      const notify = createClient(NotificationService, transportFor("grpc", `http://${domain}:${t.port}`, { token, lookup: loopbackLookup }));
      stalled.push({ admin, notify, sink: healthy.sink });
    }
  });
  after(async () => {
    await t.stop();
    await silent.stop();
    await healthy.sink.stop();
  });

  test("are held to one mail in flight after a timeout, so another instance's mail overtakes their untried backlog", async () => {
    const backlog = await Promise.all(stalled.map((side, i) => sendAll(side, Array.from({ length: 10 }, (_, j) => `stalled ${i}.${j}`))));
    const slowed = () => t.logLines.filter((line) => line.includes('"event":"outbox.instance_slowed"')).length;
    await eventually(() => slowed() >= stalled.length, 5000, "both stalled instances to be slowed");

    const before = healthy.sink.messages.length;
    await sendAll(healthy, ["healthy 0", "healthy 1", "healthy 2"]);
    await healthy.sink.waitForMessages(before + 3, 5000);

    const attempts = await Promise.all(
      backlog.flatMap((ids, i) => ids.map(async (id) => (await stalled[i].notify.getMail({ id })).mail!.attempts)),
    );
    assert.ok(attempts.some((n) => n === 0), `every stalled mail was tried before the healthy ones went out: ${attempts.join(",")}`);
    assert.ok(silent.openConnections() <= stalled.length, `${silent.openConnections()} connections to the silent server; at most one per stalled instance`);
  });
});
