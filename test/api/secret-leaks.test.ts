/**
 * After every kind of write that carries an SMTP password, over each
 * protocol and including refused and failing ones, no password appears in
 * an answer, a log line, or any file of the data directory.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { providerInput, rawConnect } from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { assertNoSecretsInFiles, assertNoSecretsInTexts } from "../helpers/leaks.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";

const receiverAddress = "leaks@example.com";

describe("SMTP passwords never leak", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let isStopped = false;
  const secrets: string[] = [];
  const answers = new Map<string, string>();
  const tenants: Tenant[] = [];

  /** A new password no other text could contain by chance. */
  const newSecret = (label: string) => {
    const secret = `leak-${label}-${randomBytes(12).toString("base64url")}`;
    secrets.push(secret);
    return secret;
  };

  /** Awaits a call that may fail, keeping its error text as an answer to check. */
  const keepAnswer = async (place: string, call: Promise<unknown>) => {
    try {
      await call;
    } catch (err) {
      answers.set(place, ConnectError.from(err).message);
    }
  };

  before(async () => {
    t = await startTestServer();
    sink = await startSmtpSink({ users: { leaky: "not-yet-known" } });
  });
  after(async () => {
    await sink.stop();
    if (!isStopped) await t.stop();
  });

  for (const protocol of protocols) {
    test(`every write that carries a password succeeds or fails over ${protocol}`, async () => {
      const tenant = await addTenant(t, protocol, "leaks");
      tenants.push(tenant);
      const owner = tenant.owner;
      const settings = providerInput({ host: sink.hostPort, user: "leaky" });
      const label = (what: string) => `${protocol}-${what}`;

      const { id } = await owner.addSMTPConfig({ ...settings, password: newSecret(label("add")) });
      await owner.updateSMTPConfig({
        ...settings,
        id,
        description: "changed",
        password: newSecret(label("update")),
      });
      await owner.updateSMTPConfigPassword({ id, password: newSecret(label("by-id")) });
      await owner.activateSMTPConfig({ id });
      const current = newSecret(label("active"));
      await owner.updateSMTPConfigPassword({ password: current });
      sink.setPassword("leaky", current);
      await owner.testSMTPConfigById({ id, receiverAddress });

      const email = await owner.addEmailProviderSMTP({
        ...settings,
        password: newSecret(label("email-add")),
      });
      await owner.updateEmailProviderSMTP({
        ...settings,
        id: email.id,
        password: newSecret(label("email-update")),
      });
      await owner.updateEmailProviderSMTPPassword({
        id: email.id,
        password: newSecret(label("email-by-id")),
      });
      await keepAnswer(
        label("stale test"),
        owner.testEmailProviderSMTPById({ id: email.id, receiverAddress }),
      );
      await keepAnswer(
        label("typed test"),
        owner.testSMTPConfig({ ...settings, password: newSecret(label("typed")), receiverAddress }),
      );
      await keepAnswer(
        label("typed email test"),
        owner.testEmailProviderSMTP({
          ...settings,
          password: newSecret(label("typed-email")),
          receiverAddress,
        }),
      );

      const viewer = tenant.client(await tenant.token(["IAM_OWNER_VIEWER"]));
      const refused: [string, () => Promise<unknown>][] = [
        [
          "bad host",
          () =>
            owner.addSMTPConfig({
              ...settings,
              host: "no-port",
              password: newSecret(label("bad-host")),
            }),
        ],
        [
          "viewer",
          () => viewer.addSMTPConfig({ ...settings, password: newSecret(label("viewer")) }),
        ],
        [
          "anonymous",
          () =>
            tenant
              .client()
              .updateSMTPConfigPassword({ id, password: newSecret(label("anonymous")) }),
        ],
        [
          "unknown id",
          () => owner.updateSMTPConfigPassword({ id: "42", password: newSecret(label("unknown")) }),
        ],
        [
          "line break",
          () => owner.updateSMTPConfigPassword({ id, password: `${newSecret(label("crlf"))}\r\n` }),
        ],
      ];
      for (const [what, call] of refused) await keepAnswer(label(what), call());

      // A secret pasted into the wrong field must not be quoted back by the decoder.
      const misplaced = { ...settings, tls: newSecret(label("misplaced")) };
      const raw = { port: t.port, host: tenant.domain, token: tenant.ownerToken };
      const answer = await rawConnect({ ...raw, method: "AddSMTPConfig", body: misplaced });
      answers.set(label("misplaced"), answer.body);
    });
  }

  test("no Get or List answer, as raw Connect JSON, holds a password", async () => {
    for (const tenant of tenants) {
      const ids = (await tenant.owner.listSMTPConfigs({})).result.map((c) => c.id);
      const calls: [string, object][] = [
        ["GetSMTPConfig", {}],
        ["ListSMTPConfigs", {}],
        ["GetEmailProvider", {}],
        ["ListEmailProviders", {}],
        ...ids.flatMap((id): [string, object][] => [
          ["GetSMTPConfigById", { id }],
          ["GetEmailProviderById", { id }],
        ]),
      ];
      for (const [method, body] of calls) {
        const answer = await rawConnect({
          port: t.port,
          host: tenant.domain,
          method,
          body,
          token: tenant.ownerToken,
        });
        answers.set(`${tenant.domain} ${method} ${JSON.stringify(body)}`, answer.body);
      }
    }
    assertNoSecretsInTexts(secrets, answers);
  });

  test("no log line holds a password", () => {
    assertNoSecretsInTexts(secrets, new Map(t.logLines.map((line, i) => [`log line ${i}`, line])));
  });

  test("no file under the data directory holds a password while the server runs", () => {
    assertNoSecretsInFiles(secrets, t.dataDir, sink.hostPort);
  });

  test("no file under the data directory holds a password after a graceful stop", async () => {
    isStopped = true;
    await t.stop({ keepData: true });
    try {
      assertNoSecretsInFiles(secrets, t.dataDir, sink.hostPort);
    } finally {
      rmSync(t.dataDir, { recursive: true, force: true });
    }
  });
});
