import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient } from "../helpers/clients.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

describe("password rotation without loss", () => {
  let t: TestServer;
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink({ users: { mailer: "old-secret-1" } });
    t = await startTestServer({ outbox: { pollMs: 50 } });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("mails rejected with the old password wait, and all go out once with the new one right after the save", async () => {
    const providerId = await addActiveProvider(t, sink.hostPort, { user: "mailer", password: "old-secret-1" });
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const first = await notify.sendMail({ to: ["a@example.com"], subject: "before", textBody: "1" });
    await sink.waitForMessages(1);
    assert.equal(first.created, true);

    // The provider rotates: the old password stops working.
    sink.setPassword("mailer", "new-secret-2");
    sink.dropConnections();
    const waiting: string[] = [];
    for (let i = 0; i < 5; i++) {
      waiting.push((await notify.sendMail({ to: [`w${i}@example.com`], subject: `waiting ${i}`, textBody: "x" })).mail!.id);
    }
    await eventually(async () => {
      const states = await Promise.all(waiting.map(async (id) => (await notify.getMail({ id })).mail!));
      return states.every((m) => m.state === MailState.QUEUED && m.lastError.includes("credentials"));
    }, 5000, "mails to wait on rejected credentials");
    assert.equal(sink.messages.length, 1);

    const saved = Date.now();
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    await admin.updateSMTPConfigPassword({ id: providerId, password: "new-secret-2" });
    await sink.waitForMessages(6, 3000);
    const tookMs = Date.now() - saved;

    const subjects = sink.messages.map((m) => m.headers.subject).sort();
    assert.deepEqual(subjects, ["before", "waiting 0", "waiting 1", "waiting 2", "waiting 3", "waiting 4"]);
    // The sink has a mail a moment before smtpgate records it as sent.
    await eventually(async () => {
      const mails = await Promise.all(waiting.map(async (id) => (await notify.getMail({ id })).mail!));
      return mails.every((m) => m.state === MailState.SENT && m.providerId === providerId);
    }, 5000, "every waiting mail recorded as sent through the provider");
    // Nothing is queued or in flight any more, so no copy can still arrive: each mail came once.
    assert.deepEqual(await t.server.store.countMails(), { sent: 6 });
    assert.deepEqual(sink.messages.map((m) => m.headers.subject).sort(), subjects);
    const afterSave = sink.authAttempts.filter((a) => a.accepted && a.password !== "old-secret-1");
    assert.ok(afterSave.length >= 1);
    assert.ok(sink.authAttempts.filter((a) => a.accepted).every((a) => a.password === "old-secret-1" || a.password === "new-secret-2"));
    t.server.log.info({ event: "test.rotation", tookMs }, "rotation measured");
  });
});
