import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

const pollMs = 50;

describe("replies of the SMTP server to a mail", () => {
  let t: TestServer;
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink({
      users: { mailer: "secret" },
      rejectRecipients: (address) => (address.startsWith("gone@") ? "5.1.1 <gone@example.com>: mailbox unavailable" : undefined),
    });
    t = await startTestServer({ outbox: { pollMs, policy: { baseDelayMs: 50, maxDelayMs: 200, maxAgeMs: 60_000 } } });
    await addActiveProvider(t, sink.hostPort, { user: "mailer", password: "secret" });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("a recipient refused with 550 makes the mail FAILED after one attempt, with the server's reply", async () => {
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const { mail } = await notify.sendMail({ to: ["gone@example.com"], subject: "refused", textBody: "x" });
    await eventually(async () => (await notify.getMail({ id: mail!.id })).mail!.state === MailState.FAILED, 5000, "the mail to fail");

    await new Promise((resolve) => setTimeout(resolve, 10 * pollMs));
    const failed = (await notify.getMail({ id: mail!.id })).mail!;
    assert.equal(failed.state, MailState.FAILED);
    assert.equal(failed.attempts, 1);
    assert.match(failed.lastError, /^SMTP server rejected recipient gone@example\.com: 550 5\.1\.1 <gone@example\.com>: mailbox unavailable$/);
    assert.equal(failed.nextAttemptTime, undefined);
    assert.ok(!sink.messages.some((m) => m.headers.subject === "refused"));
  });

  test("a 451 at RCPT TO is retried and the mail is delivered once", async () => {
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    sink.failNext({ stage: "rcpt", code: 451, message: "4.3.0 try again later" });
    const { mail } = await notify.sendMail({ to: ["here@example.com"], subject: "deferred", textBody: "x" });
    await eventually(async () => (await notify.getMail({ id: mail!.id })).mail!.state === MailState.SENT, 5000, "the mail to be SENT");

    const sent = (await notify.getMail({ id: mail!.id })).mail!;
    assert.equal(sent.attempts, 2);
    assert.equal(sink.messages.filter((m) => m.headers.subject === "deferred").length, 1);
  });
});
