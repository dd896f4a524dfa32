/**
 * Abuse limits: test mails and SendMail are rate-limited per instance. Past
 * the limit a call is ResourceExhausted (HTTP 429) with RATE-lim01, a
 * message that says when to retry and, on Connect, gRPC and gRPC-web, a
 * google.rpc.RetryInfo detail. This is the new error kind's test per protocol.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { loopbackLookup, protocols, transportFor, type Protocol } from "../helpers/clients.js";
import { assertGatewayError, rest } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";
import { detailId } from "./fixtures.js";

const receiverAddress = "admin@example.test";
// Two test mails and three sends at once, then one per minute: slow enough
// that no token comes back while a test runs.
const limits = {
  test_mail: { burst: 2, perSecond: 1 / 60 },
  send_mail: { burst: 3, perSecond: 1 / 60 },
};

/** The retry delay of a google.rpc.RetryInfo detail, in ms; undefined without one. */
function retryDelayMs(err: ConnectError): number | undefined {
  const detail = err.details.find((d) => "type" in d && d.type === "google.rpc.RetryInfo");
  if (!detail || !("value" in detail) || !(detail.value instanceof Uint8Array)) return undefined;
  const info = new BinaryReader(detail.value);
  let ms = 0;
  while (info.pos < info.len) {
    const [field] = info.tag();
    assert.equal(field, 1, "RetryInfo has one field, retry_delay");
    const duration = new BinaryReader(info.bytes());
    while (duration.pos < duration.len) {
      const [part] = duration.tag();
      if (part === 1) ms += Number(duration.int64()) * 1000;
      else ms += duration.int32() / 1_000_000;
    }
  }
  return ms;
}

function notifyAt(tenant: Tenant, port: number, protocol: Protocol) {
  const transport = transportFor(protocol, `http://${tenant.domain}:${port}`, { token: tenant.ownerToken, lookup: loopbackLookup });
  return createClient(NotificationService, transport);
}

describe("rate limits", () => {
  let t: TestServer;
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink();
    t = await startTestServer({ rateLimits: limits });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  const testMail = () => {
    const { senderAddress, senderName } = providerInput();
    return { senderAddress, senderName, tls: false, host: sink.hostPort, user: "", password: "", receiverAddress };
  };

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      test("the third test mail within a minute is ResourceExhausted with a retry hint, and is not sent", async () => {
        const tenant = await addTenant(t, protocol, "ratetest");
        const mails = sink.messages.length;
        await tenant.owner.testSMTPConfig(testMail());
        await tenant.owner.testSMTPConfig(testMail());

        const err = await expectError(tenant.owner.testSMTPConfig(testMail()), Code.ResourceExhausted);
        assert.equal(detailId(err), "RATE-lim01");
        assert.match(err.rawMessage, /^too many test mails for this instance \(at most 1 per minute\); retry in (59|60) s \(RATE-lim01\)$/);
        const delay = retryDelayMs(err);
        assert.ok(delay !== undefined && delay > 58_000 && delay <= 60_000, `retry delay ${delay}`);
        assert.equal(sink.messages.length, mails + 2);
      });

      test("TestSMTPConfigById shares the bucket of TestSMTPConfig", async () => {
        const tenant = await addTenant(t, protocol, "ratebyid");
        const { id } = await tenant.owner.addSMTPConfig({ ...providerInput({ host: sink.hostPort, user: "" }), password: "" });
        await tenant.owner.testSMTPConfig(testMail());
        await tenant.owner.testSMTPConfigById({ id, receiverAddress });
        await expectError(tenant.owner.testEmailProviderSMTPById({ id, receiverAddress }), Code.ResourceExhausted);
        await expectError(tenant.owner.testEmailProviderSMTP(testMail()), Code.ResourceExhausted);
      });

      test("refused input spends nothing, and another instance has its own limit", async () => {
        const tenant = await addTenant(t, protocol, "ratefree");
        for (let i = 0; i < 4; i++) {
          await expectError(tenant.owner.testSMTPConfig({ ...testMail(), receiverAddress: "not an address" }), Code.InvalidArgument);
        }
        await tenant.owner.testSMTPConfig(testMail());
        await tenant.owner.testSMTPConfig(testMail());

        const other = await addTenant(t, protocol, "rateother");
        await other.owner.testSMTPConfig(testMail());
      });

      test("the fourth SendMail within a minute is ResourceExhausted with a retry hint", async () => {
        const tenant = await addTenant(t, protocol, "ratesend");
        const notify = notifyAt(tenant, t.port, protocol);
        const request = { to: ["user@example.test"], subject: "hello", textBody: "x" };
        for (let i = 0; i < 3; i++) await notify.sendMail(request);

        const err = await expectError(notify.sendMail(request), Code.ResourceExhausted);
        assert.equal(detailId(err), "RATE-lim01");
        assert.match(err.rawMessage, /^too many mails for this instance \(at most 1 per minute\); retry in \d+ s/);
        assert.ok((retryDelayMs(err) ?? 0) > 0);
      });
    });
  }

  describe("over REST", () => {
    test("a test mail past the limit is 429 with RATE-lim01 and the retry time in the message", async () => {
      const call = () => rest(t.baseUrl, "POST", "/admin/v1/smtp/_test", { token: t.ownerToken, body: testMail() });
      assert.equal((await call()).status, 200);
      assert.equal((await call()).status, 200);
      const detail = assertGatewayError(await call(), 429, Code.ResourceExhausted, "RATE-lim01");
      assert.match(detail.message, /retry in \d+ s$/);
    });

    test("a SendMail past the limit is 429 with RATE-lim01", async () => {
      const call = () => rest(t.baseUrl, "POST", "/notify/v1/mails", {
        token: t.ownerToken,
        body: { to: ["user@example.test"], subject: "hello", textBody: "x" },
      });
      for (let i = 0; i < 3; i++) assert.equal((await call()).status, 200);
      assertGatewayError(await call(), 429, Code.ResourceExhausted, "RATE-lim01");
    });
  });
});
