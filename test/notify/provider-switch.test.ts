import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient } from "../helpers/clients.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

describe("switching the active provider", () => {
  let t: TestServer;
  let sinkA: SmtpSink;
  let sinkB: SmtpSink;
  before(async () => {
    sinkA = await startSmtpSink({ users: { a: "secret-a" } });
    sinkB = await startSmtpSink({ users: { b: "secret-b" } });
    t = await startTestServer({ outbox: { pollMs: 50 } });
  });
  after(async () => {
    await t.stop();
    await sinkA.stop();
    await sinkB.stop();
  });

  test("after ActivateSMTPConfig of another provider, every later mail goes through it and none through the old one", async () => {
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const providerA = await addActiveProvider(t, sinkA.hostPort, { user: "a", password: "secret-a" });
    const { id: providerB } = await admin.addSMTPConfig({
      senderAddress: "noreply@smtpgate.test", senderName: "smtpgate", host: sinkB.hostPort, tls: false, user: "b", password: "secret-b",
    });

    for (let i = 0; i < 3; i++) await notify.sendMail({ to: ["user@example.com"], subject: `before ${i}`, textBody: "x" });
    await sinkA.waitForMessages(3);

    await admin.activateSMTPConfig({ id: providerB });
    const afterSwitch: string[] = [];
    for (let i = 0; i < 3; i++) {
      afterSwitch.push((await notify.sendMail({ to: ["user@example.com"], subject: `after ${i}`, textBody: "x" })).mail!.id);
    }
    await sinkB.waitForMessages(3);

    // The sink holds a mail before its reply reaches smtpgate, which marks it SENT after.
    const sent = async () => Promise.all(afterSwitch.map(async (id) => (await notify.getMail({ id })).mail!));
    await eventually(async () => (await sent()).every((m) => m.state === MailState.SENT), 5000, "the mails to be SENT");
    for (const mail of await sent()) assert.equal(mail.providerId, providerB);
    assert.deepEqual(sinkA.messages.map((m) => m.headers.subject).sort(), ["before 0", "before 1", "before 2"]);
    assert.deepEqual(sinkB.messages.map((m) => m.headers.subject).sort(), ["after 0", "after 1", "after 2"]);
    assert.ok(sinkB.messages.every((m) => m.user === "b"));
    assert.notEqual(providerA, providerB);
  });

  test("mails waiting on rejected credentials of the old provider go out through the newly activated one", async () => {
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    const { id: providerA } = await admin.addSMTPConfig({
      senderAddress: "noreply@smtpgate.test", senderName: "smtpgate", host: sinkA.hostPort, tls: false, user: "a", password: "wrong",
    });
    await admin.activateSMTPConfig({ id: providerA });
    const { mail } = await notify.sendMail({ to: ["user@example.com"], subject: "stuck on A", textBody: "x" });
    await eventually(async () => (await notify.getMail({ id: mail!.id })).mail!.lastError.includes("credentials"), 5000, "the mail to wait on credentials");
    const countA = sinkA.messages.length;
    const countB = sinkB.messages.length;

    const providerB = await addActiveProvider(t, sinkB.hostPort, { user: "b", password: "secret-b" });
    await sinkB.waitForMessages(countB + 1);

    await eventually(async () => (await notify.getMail({ id: mail!.id })).mail!.state === MailState.SENT, 5000, "the mail to be SENT");
    assert.equal((await notify.getMail({ id: mail!.id })).mail!.providerId, providerB);
    assert.equal(sinkB.messages.at(-1)!.headers.subject, "stuck on A");
    assert.equal(sinkA.messages.length, countA);
  });
});
