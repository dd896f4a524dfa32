import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { MailState, NotificationService, type Mail } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { closedPort } from "../helpers/admin-api.js";
import { adminClient, loopbackLookup, transportFor } from "../helpers/clients.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

type NotifyClient = Client<typeof NotificationService>;

const pollMs = 50;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function sendAll(notify: NotifyClient, label: string, count: number): Promise<string[]> {
  const answers = await Promise.all(
    Array.from({ length: count }, (_, i) => notify.sendMail({ to: ["user@example.com"], subject: `${label} ${i}`, textBody: "x" })),
  );
  return answers.map((a) => a.mail!.id);
}

async function readAll(notify: NotifyClient, ids: readonly string[]): Promise<Mail[]> {
  return Promise.all(ids.map(async (id) => (await notify.getMail({ id })).mail!));
}

describe("mails while the instance has no active provider", () => {
  let t: TestServer;
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink({ users: { mailer: "secret" } });
    t = await startTestServer({ outbox: { pollMs } });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("mails wait QUEUED without retrying while no provider is active, and go out once one is activated", async () => {
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const ids = await sendAll(notify, "waiting", 3);
    await eventually(async () => (await readAll(notify, ids)).every((m) => m.attempts === 1), 5000, "one attempt per mail");

    // Many ticks later: still waiting on the first attempt, with no retry due.
    await sleep(10 * pollMs);
    for (const mail of await readAll(notify, ids)) {
      assert.equal(mail.state, MailState.QUEUED);
      assert.equal(mail.attempts, 1);
      assert.match(mail.lastError, /no active SMTP provider/);
      assert.equal(mail.nextAttemptTime, undefined);
    }

    // An inactive provider changes nothing.
    const admin = adminClient("grpc", t.baseUrl, t.ownerToken);
    const { id: providerId } = await admin.addSMTPConfig({
      senderAddress: "noreply@smtpgate.test", senderName: "smtpgate", host: sink.hostPort, tls: false, user: "mailer", password: "secret",
    });
    await sleep(10 * pollMs);
    assert.ok((await readAll(notify, ids)).every((m) => m.state === MailState.QUEUED && m.attempts === 1));
    assert.equal(sink.messages.length, 0);

    await admin.activateSMTPConfig({ id: providerId });
    await sink.waitForMessages(3, 5000);
    await eventually(async () => (await readAll(notify, ids)).every((m) => m.state === MailState.SENT), 5000, "every mail to be SENT");
    for (const mail of await readAll(notify, ids)) {
      assert.equal(mail.providerId, providerId);
      assert.equal(mail.attempts, 2);
    }
    assert.deepEqual(sink.messages.map((m) => m.headers.subject).sort(), ["waiting 0", "waiting 1", "waiting 2"]);
  });
});

describe("the maximum age of a mail", () => {
  const domainB = "max-age.notify.test";
  let t: TestServer;
  let notifyB: NotifyClient;
  before(async () => {
    t = await startTestServer({ outbox: { pollMs, policy: { baseDelayMs: 50, maxDelayMs: 100, maxAgeMs: 600 } } });
    await t.addInstance([domainB]);
    const tokenB = await t.token(["IAM_OWNER"], domainB);
    notifyB = createClient(NotificationService, transportFor("grpc", `http://${domainB}:${t.port}`, { token: tokenB, lookup: loopbackLookup }));
  });
  after(async () => {
    await t.stop();
  });

  test("a mail its provider keeps refusing fails after the maximum age, naming the last error", async () => {
    const port = await closedPort();
    await addActiveProvider(t, `127.0.0.1:${port}`, { user: "", password: "" });
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const [id] = await sendAll(notify, "too old", 1);

    await eventually(async () => (await notify.getMail({ id })).mail!.state === MailState.FAILED, 10_000, "the mail to fail");
    const failed = (await notify.getMail({ id })).mail!;
    assert.match(failed.lastError, /^gave up: not delivered within the maximum age; last error: connection refused by 127\.0\.0\.1:\d+$/);
    assert.ok(failed.attempts >= 2, `only ${failed.attempts} attempt(s) before giving up`);

    await sleep(5 * pollMs);
    assert.equal((await notify.getMail({ id })).mail!.attempts, failed.attempts);
  });

  test("a mail waiting for a provider that never comes fails after the maximum age", async () => {
    const [id] = await sendAll(notifyB, "no provider", 1);

    await eventually(async () => (await notifyB.getMail({ id })).mail!.state === MailState.FAILED, 10_000, "the mail to fail");
    const failed = (await notifyB.getMail({ id })).mail!;
    assert.equal(failed.lastError, "gave up: not delivered within the maximum age; last error: no active SMTP provider");
    assert.equal(failed.attempts, 1);
  });
});
