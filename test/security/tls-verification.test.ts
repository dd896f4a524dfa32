/**
 * With tls=true the server's certificate is verified against the system
 * roots plus --smtp-ca-file, for the name the provider was configured with
 * (the connection goes to the checked address, the certificate must still
 * name the host). A server with a certificate that fails, or one that hides
 * STARTTLS, gets no AUTH: neither from a test mail nor from the outbox.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClient, type AdminClient } from "../helpers/clients.js";
import { eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { createTestCertificates, startSmtpSink, type SmtpSink, type TestCertificates } from "../helpers/smtp-sink.js";
import { detailId, tableLookup } from "./fixtures.js";

const password = "tls-secret-77aa";
const receiverAddress = "admin@example.test";

function testMail(host: string) {
  const { senderAddress, senderName } = providerInput();
  return { senderAddress, senderName, tls: true, host, user: "mailer", password, receiverAddress };
}

describe("certificate checks of test mails", () => {
  let certs: TestCertificates;
  let caDir: string;
  let trusting: TestServer;
  let plainRoots: TestServer;
  let implicit: SmtpSink;
  let starttls: SmtpSink;
  let hidden: SmtpSink;
  let admin: AdminClient;
  const dns = tableLookup({ localhost: "127.0.0.1", "mail.wrong.test": "127.0.0.1" });

  before(async () => {
    certs = await createTestCertificates();
    caDir = mkdtempSync(join(tmpdir(), "smtpgate-ca-"));
    writeFileSync(join(caDir, "ca.pem"), certs.ca);
    const keyPair = { key: certs.key, cert: certs.cert, users: { mailer: password } };
    implicit = await startSmtpSink({ tls: "implicit", ...keyPair });
    starttls = await startSmtpSink({ tls: "starttls", ...keyPair });
    // Plain, no STARTTLS on offer, but happy to take a login in the clear.
    hidden = await startSmtpSink({ users: { mailer: password } });
    trusting = await startTestServer({ smtpCaFile: join(caDir, "ca.pem"), smtpOutbound: { lookup: dns.lookup } });
    plainRoots = await startTestServer({ smtpOutbound: { lookup: dns.lookup } });
    admin = adminClient("connect-json", trusting.baseUrl, trusting.ownerToken);
  });
  after(async () => {
    await Promise.all([trusting.stop(), plainRoots.stop()]);
    await Promise.all([implicit.stop(), starttls.stop(), hidden.stop()]);
    rmSync(caDir, { recursive: true, force: true });
  });

  test("a certificate from the --smtp-ca-file CA is trusted, by IP and by name, and the login is encrypted", async () => {
    await admin.testSMTPConfig(testMail(implicit.hostPort));
    await admin.testSMTPConfig(testMail(`localhost:${implicit.port}`));
    await admin.testSMTPConfig(testMail(`localhost:${starttls.port}`));
    const logins = [...implicit.authAttempts, ...starttls.authAttempts];
    assert.equal(logins.length, 3);
    assert.ok(logins.every((login) => login.secure && login.accepted));
  });

  test("the same certificate is untrusted with the system roots only: FailedPrecondition SMTP-tls and no AUTH", async () => {
    const logins = implicit.authAttempts.length + starttls.authAttempts.length;
    const other = adminClient("connect-json", plainRoots.baseUrl, plainRoots.ownerToken);
    for (const sink of [implicit, starttls]) {
      const err = await expectError(other.testSMTPConfig(testMail(sink.hostPort)), Code.FailedPrecondition);
      assert.equal(detailId(err), "SMTP-tls");
    }
    assert.equal(implicit.authAttempts.length + starttls.authAttempts.length, logins);
  });

  test("a certificate that does not name the configured host fails, though the address it resolves to is in it", async () => {
    const logins = implicit.authAttempts.length + starttls.authAttempts.length;
    for (const sink of [implicit, starttls]) {
      const err = await expectError(admin.testSMTPConfig(testMail(`mail.wrong.test:${sink.port}`)), Code.FailedPrecondition);
      assert.equal(detailId(err), "SMTP-tls");
      assert.match(err.rawMessage, /mail\.wrong\.test/);
    }
    assert.equal(implicit.authAttempts.length + starttls.authAttempts.length, logins);
  });

  test("a server that hides STARTTLS gets no AUTH and no mail", async () => {
    const err = await expectError(admin.testSMTPConfig(testMail(hidden.hostPort)), Code.FailedPrecondition);
    assert.equal(detailId(err), "SMTP-tls");
    assert.deepEqual(hidden.authAttempts, []);
    assert.equal(hidden.messages.length, 0);
  });
});

describe("certificate checks of queued mails", () => {
  test("the outbox gives neither a wrongly named server nor one hiding STARTTLS a login or a mail", async () => {
    const certs = await createTestCertificates();
    const caDir = mkdtempSync(join(tmpdir(), "smtpgate-ca-"));
    writeFileSync(join(caDir, "ca.pem"), certs.ca);
    const wrongName = await startSmtpSink({ tls: "implicit", key: certs.key, cert: certs.cert, users: { mailer: password } });
    const hidden = await startSmtpSink({ users: { mailer: password } });
    const dns = tableLookup({ "mail.wrong.test": "127.0.0.1" });
    const t = await startTestServer({ smtpCaFile: join(caDir, "ca.pem"), smtpOutbound: { lookup: dns.lookup } });
    try {
      const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
      const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
      for (const host of [`mail.wrong.test:${wrongName.port}`, hidden.hostPort]) {
        const { id } = await admin.addSMTPConfig({ ...providerInput({ host, user: "mailer", tls: true }), password });
        await admin.activateSMTPConfig({ id });
        const { mail } = await notify.sendMail({ to: ["user@example.test"], subject: host, textBody: "x" });
        // attempts counts from the claim; lastError is written when the attempt ends.
        await eventually(async () => ((await notify.getMail({ id: mail!.id })).mail?.lastError ?? "") !== "", 10_000, `an attempt through ${host}`);
        assert.match((await notify.getMail({ id: mail!.id })).mail?.lastError ?? "", /TLS|STARTTLS/);
      }
      assert.deepEqual([...wrongName.authAttempts, ...hidden.authAttempts], []);
      assert.equal(wrongName.messages.length + hidden.messages.length, 0);
    } finally {
      await t.stop();
      await Promise.all([wrongName.stop(), hidden.stop()]);
      rmSync(caDir, { recursive: true, force: true });
    }
  });
});
