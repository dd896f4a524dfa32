/**
 * TestSMTPConfigById and TestSMTPConfig end to end: a real mail reaches a
 * local SMTP sink, SMTP failures come back as errors that say what the server
 * answered, and a stored password is only reused for the host and user it
 * was saved for.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { closedPort, expectError, loginsSince, providerInput } from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";

const receiverAddress = "admin@example.com";

describe("test mails", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let otherSink: SmtpSink;
  let relay: SmtpSink;
  before(async () => {
    t = await startTestServer();
    sink = await startSmtpSink({ users: { mailer: "stored-secret", other: "other-secret" } });
    otherSink = await startSmtpSink({ users: { mailer: "stored-secret" } });
    relay = await startSmtpSink({ authMethods: [] });
  });
  after(async () => {
    await Promise.all([sink.stop(), otherSink.stop(), relay.stop()]);
    await t.stop();
  });

  /** Runs `send`, which must deliver exactly one mail to `target`; returns it. */
  async function expectOneMail(target: SmtpSink, send: () => Promise<unknown>) {
    const before = target.messages.length;
    await send();
    const mails = await target.waitForMessages(before + 1);
    assert.equal(mails.length, before + 1);
    return mails[before];
  }

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let tenant: Tenant;
      let storedId: string;
      const stored = () =>
        providerInput({ host: sink.hostPort, user: "mailer", senderName: `Sender ${protocol}` });
      before(async () => {
        tenant = await addTenant(t, protocol, "testmail");
        storedId = (await tenant.owner.addSMTPConfig({ ...stored(), password: "stored-secret" }))
          .id;
      });

      test("TestSMTPConfigById sends a real mail through an inactive provider with its stored login", async () => {
        const authBefore = sink.authAttempts.length;
        const mail = await expectOneMail(sink, () =>
          tenant.owner.testSMTPConfigById({ id: storedId, receiverAddress }),
        );

        assert.equal(mail.from, "noreply@example.com");
        assert.deepEqual(mail.to, [receiverAddress]);
        assert.equal(mail.user, "mailer");
        assert.match(mail.headers.from ?? "", new RegExp(`Sender ${protocol}`));
        assert.ok((mail.headers.subject ?? "").length > 0);
        assert.deepEqual(loginsSince(sink, authBefore), [["mailer", "stored-secret", true]]);
      });

      test("TestSMTPConfigById logs in with a password that UpdateSMTPConfig just saved", async () => {
        const { id } = await tenant.owner.addSMTPConfig({
          ...stored(),
          password: "outdated-secret",
        });
        await tenant.owner.updateSMTPConfig({ ...stored(), id, password: "stored-secret" });
        const authBefore = sink.authAttempts.length;

        await expectOneMail(sink, () => tenant.owner.testSMTPConfigById({ id, receiverAddress }));

        assert.deepEqual(loginsSince(sink, authBefore), [["mailer", "stored-secret", true]]);
        assert.equal((await tenant.events()).at(-1)?.type, "smtp.config.password.changed");
      });

      test("TestSMTPConfigById answers NotFound for an id no provider has", async () => {
        await expectError(
          tenant.owner.testSMTPConfigById({ id: "123456789012345678", receiverAddress }),
          Code.NotFound,
        );
      });

      test("TestSMTPConfigById with a wrong password fails with the server's answer, not Internal", async () => {
        const { id } = await tenant.owner.addSMTPConfig({ ...stored(), password: "wrong-secret" });
        const err = await expectError(
          tenant.owner.testSMTPConfigById({ id, receiverAddress }),
          Code.FailedPrecondition,
        );
        assert.match(err.rawMessage, /535 .*Authentication failed/);
        assert.doesNotMatch(err.rawMessage, /wrong-secret/);
      });

      test("TestSMTPConfigById to a port nothing listens on fails as unavailable, not Internal", async () => {
        const host = `127.0.0.1:${await closedPort()}`;
        const { id } = await tenant.owner.addSMTPConfig(providerInput({ host }));
        const err = await expectError(
          tenant.owner.testSMTPConfigById({ id, receiverAddress }),
          Code.Unavailable,
        );
        assert.match(err.rawMessage, new RegExp(`connection refused by ${host}`));
      });

      test("TestSMTPConfig sends with the typed settings and password", async () => {
        const authBefore = sink.authAttempts.length;
        const typed = {
          ...providerInput({ host: sink.hostPort, user: "other" }),
          password: "other-secret",
        };
        const mail = await expectOneMail(sink, () =>
          tenant.owner.testSMTPConfig({ ...typed, receiverAddress }),
        );

        assert.equal(mail.user, "other");
        assert.deepEqual(loginsSince(sink, authBefore), [["other", "other-secret", true]]);
      });

      test("TestSMTPConfig without user and password sends without AUTH", async () => {
        const typed = providerInput({ host: relay.hostPort, user: "" });
        const mail = await expectOneMail(relay, () =>
          tenant.owner.testSMTPConfig({ ...typed, receiverAddress }),
        );
        assert.equal(mail.user, undefined);
        assert.deepEqual(relay.authAttempts, []);
      });

      test("TestSMTPConfig with an id and no password reuses the stored password for the same host and user", async () => {
        const authBefore = sink.authAttempts.length;
        await expectOneMail(sink, () =>
          tenant.owner.testSMTPConfig({ ...stored(), password: "", id: storedId, receiverAddress }),
        );
        assert.deepEqual(loginsSince(sink, authBefore), [["mailer", "stored-secret", true]]);
      });

      test("TestSMTPConfig with an id and no password refuses another host without contacting it", async () => {
        const connectionsBefore = otherSink.connectionCount();
        const elsewhere = {
          ...stored(),
          host: otherSink.hostPort,
          password: "",
          id: storedId,
          receiverAddress,
        };

        await expectError(tenant.owner.testSMTPConfig(elsewhere), Code.InvalidArgument);

        assert.equal(otherSink.connectionCount(), connectionsBefore);
        assert.deepEqual(otherSink.authAttempts, []);
      });

      test("TestSMTPConfig with an id and no password refuses another user without contacting the host", async () => {
        const connectionsBefore = sink.connectionCount();
        const authBefore = sink.authAttempts.length;
        const otherUser = {
          ...stored(),
          user: "other",
          password: "",
          id: storedId,
          receiverAddress,
        };

        await expectError(tenant.owner.testSMTPConfig(otherUser), Code.InvalidArgument);

        assert.equal(sink.connectionCount(), connectionsBefore);
        assert.equal(sink.authAttempts.length, authBefore);
      });

      test("TestSMTPConfig with the id of no provider answers NotFound", async () => {
        const request = { ...stored(), password: "", id: "123456789012345678", receiverAddress };
        await expectError(tenant.owner.testSMTPConfig(request), Code.NotFound);
      });
    });
  }
});
