/**
 * No credential redirection: an update that changes the host or the user
 * without a new password is refused (InvalidArgument SMTP-upd01), so a
 * stored password never reaches a server it was not entered for. The
 * attacker in these tests holds an owner token and runs an SMTP server of
 * their own that would record any password it is offered.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { assertGatewayError, rest } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";
import { detailId } from "./fixtures.js";

const stored = "stored-secret-9b2c";
const receiverAddress = "admin@example.test";

describe("updating a provider with a stored password", () => {
  let t: TestServer;
  let legit: SmtpSink;
  let attacker: SmtpSink;
  before(async () => {
    t = await startTestServer();
    legit = await startSmtpSink({ users: { mailer: stored, other: "other-secret" } });
    attacker = await startSmtpSink();
  });
  after(async () => {
    await Promise.all([legit.stop(), attacker.stop()]);
    await t.stop();
  });

  const settings = (host: string, user = "mailer") => providerInput({ host, user, senderName: "redirect tests" });

  async function withStoredPassword(tenant: Tenant): Promise<string> {
    return (await tenant.owner.addSMTPConfig({ ...settings(legit.hostPort), password: stored })).id;
  }

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let tenant: Tenant;
      let labels = 0;
      before(async () => {
        tenant = await addTenant(t, protocol, "redirect");
      });

      test("UpdateSMTPConfig to another host without a password is InvalidArgument SMTP-upd01, changes nothing, and the attacker gets no login", async () => {
        const id = await withStoredPassword(tenant);
        const before = await tenant.events();

        const err = await expectError(tenant.owner.updateSMTPConfig({ ...settings(attacker.hostPort), id, password: "" }), Code.InvalidArgument);
        assert.equal(detailId(err), "SMTP-upd01");
        assert.match(err.rawMessage, /changing the host needs the password again/);
        assert.deepEqual(await tenant.events(), before);

        await tenant.owner.testSMTPConfigById({ id, receiverAddress });
        assert.equal(attacker.connectionCount(), 0);
        assert.deepEqual(attacker.authAttempts, []);
      });

      test("UpdateEmailProviderSMTP to another host without a password is refused the same way", async () => {
        const id = await withStoredPassword(tenant);
        const err = await expectError(tenant.owner.updateEmailProviderSMTP({ ...settings(attacker.hostPort), id, password: "" }), Code.InvalidArgument);
        assert.equal(detailId(err), "SMTP-upd01");
        assert.equal((await tenant.owner.getSMTPConfigById({ id })).smtpConfig?.host, legit.hostPort);
      });

      test("changing only the user without a password is refused too: the password belongs to a login", async () => {
        const id = await withStoredPassword(tenant);
        const err = await expectError(tenant.owner.updateSMTPConfig({ ...settings(legit.hostPort, "other"), id, password: "" }), Code.InvalidArgument);
        assert.equal(detailId(err), "SMTP-upd01");
        assert.match(err.rawMessage, /changing the user needs the password again/);
      });

      test("a new host with a new password is accepted, and that password goes to the new host only", async () => {
        const id = await withStoredPassword(tenant);
        await tenant.owner.updateSMTPConfig({ ...settings(legit.hostPort, "other"), id, password: "other-secret" });

        const logins = legit.authAttempts.length;
        await tenant.owner.testSMTPConfigById({ id, receiverAddress });
        assert.deepEqual(legit.authAttempts.slice(logins).map((a) => [a.username, a.password]), [["other", "other-secret"]]);
      });

      test("other settings change without a password and the stored one stays in use", async () => {
        const id = await withStoredPassword(tenant);
        await tenant.owner.updateSMTPConfig({ ...settings(legit.hostPort), description: "renamed", senderName: "Renamed", id, password: "" });

        const logins = legit.authAttempts.length;
        await tenant.owner.testSMTPConfigById({ id, receiverAddress });
        assert.deepEqual(legit.authAttempts.slice(logins).map((a) => [a.username, a.password, a.accepted]), [["mailer", stored, true]]);
      });

      test("with no password stored, host and user may change freely", async () => {
        const fresh = await addTenant(t, protocol, `redirectfree${++labels}`);
        const { id } = await fresh.owner.addSMTPConfig({ ...settings(legit.hostPort), password: "" });
        await fresh.owner.updateSMTPConfig({ ...settings(attacker.hostPort, "someone"), id, password: "" });
        assert.equal((await fresh.owner.getSMTPConfigById({ id })).smtpConfig?.host, attacker.hostPort);
      });
    });
  }

  test("PUT /admin/v1/smtp/{id} to another host without a password is 400 SMTP-upd01 over REST", async () => {
    const call = (verb: string, path: string, body: object) => rest(t.baseUrl, verb, path, { token: t.ownerToken, body });
    const added = await call("POST", "/admin/v1/smtp", { ...settings(legit.hostPort), password: stored });
    const { id } = added.json as { id: string };

    const answer = await call("PUT", `/admin/v1/smtp/${id}`, { ...settings(attacker.hostPort), password: "" });
    assertGatewayError(answer, 400, Code.InvalidArgument, "SMTP-upd01");
  });
});
