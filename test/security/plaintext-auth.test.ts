/**
 * No credentials in the clear: with tls=false a password is only sent to a
 * loopback host, unless the operator allows plaintext AUTH. Refused when
 * saved (Add, Update, Test: InvalidArgument SMTP-plain01) and again when
 * connecting (FailedPrecondition SMTP-plain02, before any connection), so a
 * provider saved under a looser policy cannot leak either.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { DomainError } from "../../src/domain/errors.js";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { OutboundPolicy } from "../../src/notify/outbound-guard.js";
import { NodemailerSender } from "../../src/notify/smtp-sender.js";
import { TransportPool } from "../../src/notify/transport-pool.js";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClient, protocols } from "../helpers/clients.js";
import { eventually, notifyClient } from "../helpers/notify.js";
import { rest, assertGatewayError } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addTenant } from "../helpers/tenants.js";
import { detailId, instanceState, tableLookup } from "./fixtures.js";

const password = "plain-secret-4d1e";
const remote = "smtp.remote.test:25";
const mail = { fromAddress: "noreply@smtpgate.test", fromName: "smtpgate", to: ["a@example.test"], subject: "hi", text: "x" };

describe("saving a password for an unencrypted connection to a remote host", () => {
  let t: TestServer;
  const lookup = tableLookup({});
  before(async () => {
    t = await startTestServer({ smtpOutbound: { lookup: lookup.lookup } });
  });
  after(() => t.stop());

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      const plain = () => ({ ...providerInput({ host: remote, tls: false }), password });

      test("AddSMTPConfig and AddEmailProviderSMTP are InvalidArgument SMTP-plain01 and write nothing", async () => {
        const tenant = await addTenant(t, protocol, "plainadd");
        const err = await expectError(tenant.owner.addSMTPConfig(plain()), Code.InvalidArgument);
        assert.equal(detailId(err), "SMTP-plain01");
        assert.match(err.rawMessage, /password would be sent unencrypted; set tls to true/);
        await expectError(tenant.owner.addEmailProviderSMTP(plain()), Code.InvalidArgument);
        assert.deepEqual(await tenant.events(), []);
      });

      test("UpdateSMTPConfig that turns tls off while a password is stored is InvalidArgument and changes nothing", async () => {
        const tenant = await addTenant(t, protocol, "plainupdate");
        const { id } = await tenant.owner.addSMTPConfig({ ...plain(), tls: true });
        const before = await tenant.events();

        const err = await expectError(tenant.owner.updateSMTPConfig({ ...plain(), password: "", id }), Code.InvalidArgument);
        assert.equal(detailId(err), "SMTP-plain01");
        await expectError(tenant.owner.updateEmailProviderSMTP({ ...plain(), id }), Code.InvalidArgument);
        assert.deepEqual(await tenant.events(), before);
        assert.equal((await tenant.owner.getSMTPConfigById({ id })).smtpConfig?.tls, true);
      });

      test("TestSMTPConfig is InvalidArgument before any lookup or connection", async () => {
        const tenant = await addTenant(t, protocol, "plaintest");
        const lookupsBefore = lookup.calls.length;
        const err = await expectError(
          tenant.owner.testSMTPConfig({ ...plain(), receiverAddress: "admin@example.test" }),
          Code.InvalidArgument,
        );
        assert.equal(detailId(err), "SMTP-plain01");
        assert.equal(lookup.calls.length, lookupsBefore);
      });

      test("without a password, with tls, or to a loopback host, the same settings are accepted", async () => {
        const tenant = await addTenant(t, protocol, "plainok");
        await tenant.owner.addSMTPConfig({ ...plain(), password: "" });
        await tenant.owner.addSMTPConfig({ ...plain(), tls: true });
        await tenant.owner.addSMTPConfig({ ...plain(), host: "127.0.0.1:25" });
        await tenant.owner.addSMTPConfig({ ...plain(), host: "localhost:25" });
        await tenant.owner.addSMTPConfig({ ...plain(), host: "[::1]:25" });
        assert.equal((await tenant.owner.listSMTPConfigs({})).result.length, 5);
      });
    });
  }

  test("POST /admin/v1/smtp is 400 SMTP-plain01 over REST", async () => {
    const before = await instanceState(t);
    const answer = await rest(t.baseUrl, "POST", "/admin/v1/smtp", {
      token: t.ownerToken,
      body: { ...providerInput({ host: remote, tls: false }), password },
    });
    assertGatewayError(answer, 400, Code.InvalidArgument, "SMTP-plain01");
    assert.deepEqual(await instanceState(t), before);
  });
});

describe("an operator who allows plaintext AUTH", () => {
  test("can save and use a password with tls=false for a remote host", async () => {
    const sink = await startSmtpSink({ users: { mailer: password } });
    const lookup = tableLookup({ "smtp.remote.test": "127.0.0.1" });
    const t = await startTestServer({ smtpOutbound: { allowPlaintextAuth: true, plaintextAuthLoopbackExempt: false, lookup: lookup.lookup } });
    try {
      const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
      const host = `smtp.remote.test:${sink.port}`;
      const { id } = await admin.addSMTPConfig({ ...providerInput({ host, user: "mailer" }), password });
      await admin.testSMTPConfigById({ id, receiverAddress: "admin@example.test" });
      assert.deepEqual(sink.authAttempts.map((a) => [a.username, a.password, a.secure]), [["mailer", password, false]]);
    } finally {
      await t.stop();
      await sink.stop();
    }
  });
});

describe("a stored plaintext login after the loopback exemption is switched off", () => {
  let sink: SmtpSink;
  let t: TestServer;
  let providerId: string;
  before(async () => {
    // Saved while loopback was exempt, then the server restarts without the
    // exemption: only the send-time check stands between the password and the wire.
    sink = await startSmtpSink({ users: { mailer: password } });
    const first = await startTestServer();
    const admin = adminClient("connect-json", first.baseUrl, first.ownerToken);
    providerId = (await admin.addSMTPConfig({ ...providerInput({ host: sink.hostPort, user: "mailer" }), password })).id;
    await admin.activateSMTPConfig({ id: providerId });
    await admin.testSMTPConfigById({ id: providerId, receiverAddress: "admin@example.test" });
    assert.equal(sink.authAttempts.length, 1, "the sink offers AUTH over plain and got it while loopback was exempt");
    await first.stop({ keepData: true });
    t = await startTestServer({ dataDir: first.dataDir, smtpOutbound: { plaintextAuthLoopbackExempt: false } });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  for (const protocol of protocols) {
    test(`TestSMTPConfigById is FailedPrecondition SMTP-plain02 and the sink sees no connection, over ${protocol}`, async () => {
      const connections = sink.connectionCount();
      const err = await expectError(
        adminClient(protocol, t.baseUrl, t.ownerToken).testSMTPConfigById({ id: providerId, receiverAddress: "admin@example.test" }),
        Code.FailedPrecondition,
      );
      assert.equal(detailId(err), "SMTP-plain02");
      assert.match(err.rawMessage, /password is not sent unencrypted to 127\.0\.0\.1:\d+; set tls to true/);
      assert.equal(sink.connectionCount(), connections);
      assert.equal(sink.authAttempts.length, 1);
    });
  }

  test("a queued mail waits with the reason and the sink records no connection and no AUTH", async () => {
    const connections = sink.connectionCount();
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    const { mail: queued } = await notify.sendMail({ to: ["user@example.test"], subject: "welcome", textBody: "hello" });

    let lastError = "";
    await eventually(async () => {
      const { mail: current } = await notify.getMail({ id: queued!.id });
      lastError = current?.lastError ?? "";
      return lastError !== "";
    }, 10_000, "a first attempt");
    assert.match(lastError, /password is not sent unencrypted/);
    assert.equal((await notify.getMail({ id: queued!.id })).mail?.state, MailState.QUEUED);
    assert.equal(sink.connectionCount(), connections);
    assert.equal(sink.authAttempts.length, 1);
    assert.equal(sink.messages.length, 1);
  });
});

describe("the sender and the pool without the loopback exemption", () => {
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink({ users: { mailer: password, relayuser: "" } });
  });
  after(() => sink.stop());
  const strict = () => new OutboundPolicy({ plaintextAuthLoopbackExempt: false });
  const settings = () => ({ host: sink.hostPort, tls: false, user: "mailer", password });

  async function refusal(send: () => Promise<unknown>): Promise<DomainError> {
    const err = await send().then(() => assert.fail("sent"), (caught: unknown) => caught);
    assert.ok(err instanceof DomainError, String(err));
    return err;
  }

  test("NodemailerSender refuses before connecting: no connection, no AUTH", async () => {
    const connections = sink.connectionCount();
    const err = await refusal(() => new NodemailerSender({ outbound: strict() }).send(settings(), mail));
    assert.equal(err.kind, "failed_precondition");
    assert.equal(err.id, "SMTP-plain02");
    assert.equal(sink.connectionCount(), connections);
    assert.deepEqual(sink.authAttempts, []);
  });

  test("TransportPool refuses before connecting: no connection, no AUTH", async () => {
    const pool = new TransportPool({ outbound: strict() });
    try {
      const connections = sink.connectionCount();
      const err = await refusal(() => pool.send({ providerId: "p1", sequence: 1n }, settings(), mail));
      assert.equal(err.id, "SMTP-plain02");
      assert.equal(sink.connectionCount(), connections);
      assert.deepEqual(sink.authAttempts, []);
    } finally {
      pool.closeAll();
    }
  });

  test("a user without a password still logs in over a plain connection: no secret travels", async () => {
    await new NodemailerSender({ outbound: strict() }).send({ ...settings(), user: "relayuser", password: "" }, mail);
    assert.deepEqual(sink.authAttempts.map((a) => [a.username, a.password]), [["relayuser", ""]]);
  });
});
