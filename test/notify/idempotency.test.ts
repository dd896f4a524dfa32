import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { MailState, NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClientAt, loopbackLookup, transportFor } from "../helpers/clients.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

const otherDomain = "idempotency.notify.test";

describe("SendMail with an idempotency key", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let otherSink: SmtpSink;
  let otherToken: string;
  before(async () => {
    sink = await startSmtpSink({ users: { mailer: "secret" } });
    otherSink = await startSmtpSink({ users: { other: "other-secret" } });
    t = await startTestServer({ outbox: { pollMs: 50 } });
    await addActiveProvider(t, sink.hostPort, { user: "mailer", password: "secret" });

    await t.addInstance([otherDomain]);
    otherToken = await t.token(["IAM_OWNER"], otherDomain);
    const otherAdmin = adminClientAt("connect-json", otherDomain, t.port, otherToken);
    const { id } = await otherAdmin.addSMTPConfig({
      senderAddress: "noreply@other.test", senderName: "other", host: otherSink.hostPort, tls: false, user: "other", password: "other-secret",
    });
    await otherAdmin.activateSMTPConfig({ id });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
    await otherSink.stop();
  });

  test("a repeated call with the same key returns the first mail with created false, and one mail is delivered", async () => {
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const first = await notify.sendMail({ to: ["a@example.com"], subject: "once", textBody: "1", idempotencyKey: "order-17" });
    const again = await notify.sendMail({ to: ["b@example.com"], subject: "twice", textBody: "2", idempotencyKey: "order-17" });

    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.mail!.id, first.mail!.id);
    assert.equal(again.mail!.subject, "once");
    assert.deepEqual(again.mail!.to, ["a@example.com"]);
    assert.equal(again.mail!.idempotencyKey, "order-17");

    await eventually(async () => (await notify.getMail({ id: first.mail!.id })).mail!.state === MailState.SENT, 5000, "the mail to be SENT");
    assert.deepEqual(sink.messages.filter((m) => m.headers.subject === "once" || m.headers.subject === "twice").map((m) => m.to), [["a@example.com"]]);
  });

  test("concurrent calls with one key create one mail and all answer its id", async () => {
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => notify.sendMail({ to: ["c@example.com"], subject: "race", textBody: "x", idempotencyKey: "race-key" })),
    );

    assert.equal(answers.filter((a) => a.created).length, 1);
    assert.equal(new Set(answers.map((a) => a.mail!.id)).size, 1);
    await eventually(async () => (await notify.getMail({ id: answers[0].mail!.id })).mail!.state === MailState.SENT, 5000, "the mail to be SENT");
    assert.equal(sink.messages.filter((m) => m.headers.subject === "race").length, 1);
  });

  test("calls without a key are never merged", async () => {
    const notify = notifyClient("grpc-web", t.baseUrl, t.ownerToken);
    const first = await notify.sendMail({ to: ["d@example.com"], subject: "no key", textBody: "x" });
    const second = await notify.sendMail({ to: ["d@example.com"], subject: "no key", textBody: "x" });

    assert.equal(first.created, true);
    assert.equal(second.created, true);
    assert.notEqual(first.mail!.id, second.mail!.id);
  });

  test("the same key in another instance makes an independent mail, delivered through that instance's provider", async () => {
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const other = createClient(
      NotificationService,
      transportFor("grpc", `http://${otherDomain}:${t.port}`, { token: otherToken, lookup: loopbackLookup }),
    );
    const mine = await notify.sendMail({ to: ["e@example.com"], subject: "shared key here", textBody: "x", idempotencyKey: "shared-key" });
    const theirs = await other.sendMail({ to: ["f@example.com"], subject: "shared key there", textBody: "x", idempotencyKey: "shared-key" });

    assert.equal(mine.created, true);
    assert.equal(theirs.created, true);
    assert.notEqual(theirs.mail!.id, mine.mail!.id);
    assert.equal(theirs.mail!.subject, "shared key there");

    await otherSink.waitForMessages(1);
    await eventually(() => sink.messages.some((m) => m.headers.subject === "shared key here"), 5000, "this instance's mail");
    assert.deepEqual(otherSink.messages.map((m) => m.headers.subject), ["shared key there"]);
    assert.ok(!sink.messages.some((m) => m.headers.subject === "shared key there"));
  });
});
