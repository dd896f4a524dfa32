/**
 * Request size and deadline limits on every protocol: an admin message over
 * 1 MiB (readMaxBytes), a SendMail over 2 MiB and a REST body over 2 MiB are
 * ResourceExhausted and write nothing; a deadline over five minutes
 * (maxTimeoutMs) is refused; a short deadline is honoured even while the
 * SMTP server keeps the test mail waiting.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { mailReadMaxBytes, maxTimeoutMs, readMaxBytes } from "../../src/api/handler.js";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClient, protocols } from "../helpers/clients.js";
import { notifyClient } from "../helpers/notify.js";
import { rest } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSilentServer, type SilentServer } from "../helpers/slow-sink.js";
import { instanceState } from "./fixtures.js";

async function codeOf(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await call;
  } catch (err) {
    const connectErr = ConnectError.from(err);
    return { code: connectErr.code, message: connectErr.rawMessage };
  }
  assert.fail("the call succeeded");
}

describe("request limits", () => {
  let t: TestServer;
  let silent: SilentServer;
  before(async () => {
    t = await startTestServer();
    // Accepts connections and never greets: a test mail to it waits for the
    // sender's 10 s connection timeout unless the deadline ends it first.
    silent = await startSilentServer();
  });
  after(async () => {
    await silent.stop();
    await t.stop();
  });

  test("the limits are 1 MiB per admin message, 2 MiB per SendMail and five minutes per deadline", () => {
    assert.equal(readMaxBytes, 1024 * 1024);
    assert.equal(mailReadMaxBytes, 2 * 1024 * 1024);
    assert.equal(maxTimeoutMs, 5 * 60_000);
  });

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      test("an AddSMTPConfig message over 1 MiB is ResourceExhausted and writes nothing", async () => {
        const before = await instanceState(t);
        const admin = adminClient(protocol, t.baseUrl, t.ownerToken);
        const huge = { ...providerInput(), password: "", description: "d".repeat(readMaxBytes + 1) };
        const err = await expectError(admin.addSMTPConfig(huge), Code.ResourceExhausted);
        assert.match(err.rawMessage, /larger than the 1048576 bytes allowed \(REQ-size01\)$/);
        assert.deepEqual(await instanceState(t), before);
      });

      test("an oversized message without a token is Unauthenticated: the token is checked first", async () => {
        const huge = { ...providerInput(), password: "", description: "d".repeat(readMaxBytes + 1) };
        await expectError(adminClient(protocol, t.baseUrl).addSMTPConfig(huge), Code.Unauthenticated);
      });

      test("a SendMail message over 2 MiB is ResourceExhausted", async () => {
        const notify = notifyClient(protocol, t.baseUrl, t.ownerToken);
        const huge = { to: ["user@example.test"], subject: "big", textBody: "b".repeat(mailReadMaxBytes + 1) };
        const err = await expectError(notify.sendMail(huge), Code.ResourceExhausted);
        assert.match(err.rawMessage, /larger than the 2097152 bytes allowed \(REQ-size01\)$/);
      });

      test("a deadline over five minutes is InvalidArgument", async () => {
        const admin = adminClient(protocol, t.baseUrl, t.ownerToken);
        const err = await expectError(admin.listSMTPConfigs({}, { timeoutMs: maxTimeoutMs + 60_000 }), Code.InvalidArgument);
        assert.equal(err.rawMessage, "the deadline is longer than the 300000 ms allowed (REQ-deadline01)");
      });

      test("a deadline over five minutes without a token is Unauthenticated: the token is checked first", async () => {
        await expectError(adminClient(protocol, t.baseUrl).listSMTPConfigs({}, { timeoutMs: maxTimeoutMs + 60_000 }), Code.Unauthenticated);
      });

      test("a short deadline ends a test mail that the SMTP server keeps waiting, with DeadlineExceeded", async () => {
        const admin = adminClient(protocol, t.baseUrl, t.ownerToken);
        const { senderAddress, senderName } = providerInput();
        const request = { senderAddress, senderName, tls: false, host: silent.hostPort, user: "", password: "", receiverAddress: "a@example.test" };
        const started = Date.now();
        const answer = await codeOf(admin.testSMTPConfig(request, { timeoutMs: 300 }));
        assert.equal(answer.code, Code.DeadlineExceeded);
        assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
      });
    });
  }

  test("a malformed Connect deadline header is InvalidArgument with its own error id", async () => {
    const res = await fetch(`${t.baseUrl}/zitadel.admin.v1.AdminService/ListSMTPConfigs`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "soon", authorization: `Bearer ${t.ownerToken}` },
      body: "{}",
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.equal(body.message, 'the deadline header value "soon" is malformed (REQ-deadline02)');
  });

  test("a REST body over 2 MiB is 429 ResourceExhausted and writes nothing", async () => {
    const before = await instanceState(t);
    const body = JSON.stringify({ ...providerInput(), description: "d".repeat(mailReadMaxBytes + 1) });
    const answer = await rest(t.baseUrl, "POST", "/admin/v1/smtp", { token: t.ownerToken, body });
    assert.equal(answer.status, 429, answer.text);
    assert.equal(answer.json?.code, Code.ResourceExhausted);
    assert.deepEqual(await instanceState(t), before);
  });
});
