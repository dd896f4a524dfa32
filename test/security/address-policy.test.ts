/**
 * Outbound address policy: SMTP hosts are resolved by smtpgate itself and
 * refused (FailedPrecondition SMTP-deny01) when any address lies in a
 * denied network; the connection then goes to the checked address, with no
 * second lookup. Names are answered by a table lookup injected through the
 * server's options, so "metadata.evil.test" can point at 169.254.169.254.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { defaultDeniedNetworks, OutboundPolicy, parseNetwork } from "../../src/notify/outbound-guard.js";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClient, protocols } from "../helpers/clients.js";
import { eventually, notifyClient } from "../helpers/notify.js";
import { assertGatewayError, rest } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { detailId, tableLookup } from "./fixtures.js";

const receiverAddress = "admin@example.test";

describe("the deny list", () => {
  test("denies link-local and cloud metadata addresses by default, IPv4-mapped forms included", () => {
    const policy = new OutboundPolicy();
    for (const address of ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254"]) {
      assert.equal(policy.isDenied(address), true, address);
    }
  });

  test("allows private ranges and loopback by default", () => {
    const policy = new OutboundPolicy();
    for (const address of ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd12::1", "100.100.100.201", "8.8.8.8"]) {
      assert.equal(policy.isDenied(address), false, address);
    }
  });

  test("operator networks are added to the defaults, which stay", () => {
    const policy = new OutboundPolicy({ denyNetworks: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"] });
    for (const address of ["10.9.9.9", "2001:db8::5", "192.0.2.7", "169.254.169.254"]) assert.equal(policy.isDenied(address), true, address);
    assert.equal(policy.isDenied("192.0.2.8"), false);
  });

  test("parseNetwork reads CIDR and single addresses and refuses anything else", () => {
    assert.deepEqual(parseNetwork("10.0.0.0/8"), { address: "10.0.0.0", prefix: 8, family: "ipv4" });
    assert.deepEqual(parseNetwork("fd00::/8"), { address: "fd00::", prefix: 8, family: "ipv6" });
    assert.deepEqual(parseNetwork("192.0.2.1"), { address: "192.0.2.1", prefix: 32, family: "ipv4" });
    for (const bad of ["", "10.0.0.0/33", "fd00::/129", "example.com/8", "10.0.0.0/8/1", "10.0.0.0/x", "10.0.0/8"]) {
      assert.throws(() => parseNetwork(bad), /is not a network/, bad);
    }
    assert.ok(defaultDeniedNetworks.every((text) => parseNetwork(text)));
  });
});

describe("test mails to hosts that resolve to denied addresses", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let answer = "127.0.0.1";
  const dns = tableLookup({
    "metadata.evil.test": "169.254.169.254",
    "v6-metadata.evil.test": "fd00:ec2::254",
    "mapped.evil.test": "::ffff:169.254.169.254",
    "mixed.evil.test": ["127.0.0.1", "169.254.10.1"],
    "sink.good.test": "127.0.0.1",
    "rebind.evil.test": () => answer,
  });
  before(async () => {
    sink = await startSmtpSink({ users: { mailer: "secret" } });
    // Plaintext AUTH is allowed here so names other than loopback can carry
    // the sink's login; that rule has its own tests.
    t = await startTestServer({ smtpOutbound: { lookup: dns.lookup, allowPlaintextAuth: true } });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  const testMail = (host: string) => {
    const { senderAddress, senderName, tls, user } = providerInput({ host, user: "mailer" });
    return { senderAddress, senderName, tls, host, user, password: "secret", receiverAddress };
  };

  for (const protocol of protocols) {
    test(`a name resolving to the metadata address is FailedPrecondition SMTP-deny01 over ${protocol}`, async () => {
      const admin = adminClient(protocol, t.baseUrl, t.ownerToken);
      const err = await expectError(admin.testSMTPConfig(testMail(`metadata.evil.test:${sink.port}`)), Code.FailedPrecondition);
      assert.equal(detailId(err), "SMTP-deny01");
      assert.match(err.rawMessage, /resolves to 169\.254\.169\.254, an address this server does not connect to/);
    });
  }

  test("POST /admin/v1/smtp/_test to such a name is 400 SMTP-deny01 over REST", async () => {
    const answer = await rest(t.baseUrl, "POST", "/admin/v1/smtp/_test", { token: t.ownerToken, body: testMail(`metadata.evil.test:${sink.port}`) });
    assertGatewayError(answer, 400, Code.FailedPrecondition, "SMTP-deny01");
  });

  test("IPv6 metadata, IPv4-mapped and literal link-local hosts are refused as well", async () => {
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    for (const host of ["v6-metadata.evil.test:25", "mapped.evil.test:25", "169.254.169.254:25", "[fe80::1]:25", "100.100.100.200:25"]) {
      const err = await expectError(admin.testSMTPConfig(testMail(host)), Code.FailedPrecondition);
      assert.equal(detailId(err), "SMTP-deny01", host);
    }
  });

  test("a name with one good and one denied address is refused, and the good one sees no connection", async () => {
    const connections = sink.connectionCount();
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    const err = await expectError(admin.testSMTPConfig(testMail(`mixed.evil.test:${sink.port}`)), Code.FailedPrecondition);
    assert.match(err.rawMessage, /resolves to 169\.254\.10\.1/);
    assert.equal(sink.connectionCount(), connections);
  });

  test("an allowed name is looked up exactly once per connection: nodemailer does not resolve it again", async () => {
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    const lookups = dns.calls.filter((name) => name === "sink.good.test").length;
    await admin.testSMTPConfig(testMail(`sink.good.test:${sink.port}`));
    assert.equal(dns.calls.filter((name) => name === "sink.good.test").length, lookups + 1);
    assert.equal(sink.authAttempts.at(-1)?.password, "secret");
  });

  test("a name that rebinds to a denied address between two test mails is refused the second time", async () => {
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    answer = "127.0.0.1";
    await admin.testSMTPConfig(testMail(`rebind.evil.test:${sink.port}`));

    answer = "169.254.169.254";
    const connections = sink.connectionCount();
    const err = await expectError(admin.testSMTPConfig(testMail(`rebind.evil.test:${sink.port}`)), Code.FailedPrecondition);
    assert.equal(detailId(err), "SMTP-deny01");
    assert.equal(sink.connectionCount(), connections);
  });
});

describe("an operator deny list that covers the sink", () => {
  test("refuses the sink's address, literal or by name, before connecting", async () => {
    const sink = await startSmtpSink();
    const dns = tableLookup({ "relay.internal.test": "127.0.0.1" });
    const t = await startTestServer({ smtpOutbound: { denyNetworks: ["127.0.0.0/8"], lookup: dns.lookup } });
    try {
      const admin = adminClient("grpc", t.baseUrl, t.ownerToken);
      for (const host of [sink.hostPort, `relay.internal.test:${sink.port}`]) {
        const input = { ...providerInput({ host, user: "" }), password: "", receiverAddress };
        const err = await expectError(admin.testSMTPConfig(input), Code.FailedPrecondition);
        assert.equal(detailId(err), "SMTP-deny01", host);
      }
      assert.equal(sink.connectionCount(), 0);
    } finally {
      await t.stop();
      await sink.stop();
    }
  });
});

describe("queued mails through a provider whose name rebinds", () => {
  test("the pool checks every new connection: after the rebind the mail waits and the sink sees no new connection", async () => {
    const sink = await startSmtpSink({ users: { mailer: "secret" } });
    let answer = "127.0.0.1";
    const dns = tableLookup({ "relay.rebind.test": () => answer });
    const t = await startTestServer({ smtpOutbound: { lookup: dns.lookup, allowPlaintextAuth: true } });
    try {
      const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
      const { id } = await admin.addSMTPConfig({ ...providerInput({ host: `relay.rebind.test:${sink.port}`, user: "mailer" }), password: "secret" });
      await admin.activateSMTPConfig({ id });
      const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
      await notify.sendMail({ to: ["first@example.test"], subject: "first", textBody: "x" });
      await sink.waitForMessages(1, 10_000);

      answer = "169.254.169.254";
      sink.dropConnections();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const connections = sink.connectionCount();
      const { mail } = await notify.sendMail({ to: ["second@example.test"], subject: "second", textBody: "x" });

      let lastError = "";
      await eventually(async () => {
        const current = (await notify.getMail({ id: mail!.id })).mail;
        lastError = current?.lastError ?? "";
        return lastError !== "";
      }, 10_000, "an attempt of the second mail");
      assert.match(lastError, /resolves to 169\.254\.169\.254/);
      assert.equal((await notify.getMail({ id: mail!.id })).mail?.state, MailState.QUEUED);
      assert.equal(sink.connectionCount(), connections);
      assert.equal(sink.messages.length, 1);
    } finally {
      await t.stop();
      await sink.stop();
    }
  });
});
