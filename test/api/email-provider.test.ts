/**
 * The EmailProvider family end to end, and that it is a second view of the
 * same providers as the SMTP-config family: what one adds, the other reads,
 * changes, tests and removes.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import type { EmailProvider } from "../../src/gen/zitadel/settings/v1/smtp_pb.js";
import { EmailProviderState, SMTPConfigState } from "../../src/gen/zitadel/settings/v1/smtp_pb.js";
import { assertRecent, expectError, loginsSince, providerInput } from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addFreshTenant, type Tenant } from "../helpers/tenants.js";

const unknownId = "123456789012345678";
const receiverAddress = "family@example.com";

/** The SMTP settings of an EmailProvider; fails when it has none. */
function smtpOf(provider: EmailProvider | undefined) {
  assert.equal(provider?.config.case, "smtp");
  return provider.config.value;
}

describe("email providers", () => {
  let t: TestServer;
  let sink: SmtpSink;
  before(async () => {
    t = await startTestServer();
    sink = await startSmtpSink({ users: { family: "family-secret", rotated: "rotated-secret" } });
  });
  after(async () => {
    await sink.stop();
    await t.stop();
  });

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      const freshTenant = () => addFreshTenant(t, protocol, "email");
      let tenant: Tenant;
      before(async () => {
        tenant = await freshTenant();
      });

      test("AddEmailProviderSMTP stores an inactive SMTP provider that GetEmailProviderById returns", async () => {
        const input = providerInput({
          description: "email family",
          tls: true,
          replyToAddress: "r@example.com",
        });
        const added = await tenant.owner.addEmailProviderSMTP({
          ...input,
          password: "email-secret",
        });
        assert.equal(added.details?.resourceOwner, tenant.instanceId);
        assertRecent(added.details?.changeDate, "changeDate");

        const { config } = await tenant.owner.getEmailProviderById({ id: added.id });
        assert.equal(config?.id, added.id);
        assert.equal(config?.state, EmailProviderState.EMAIL_PROVIDER_INACTIVE);
        assert.equal(config?.description, "email family");
        assert.equal(config?.details?.sequence, added.details?.sequence);
        const smtp = smtpOf(config);
        assert.deepEqual(
          [
            smtp.senderAddress,
            smtp.senderName,
            smtp.tls,
            smtp.host,
            smtp.user,
            smtp.replyToAddress,
          ],
          [input.senderAddress, input.senderName, true, input.host, input.user, "r@example.com"],
        );
        await expectError(tenant.owner.getEmailProviderById({ id: unknownId }), Code.NotFound);
      });

      test("ListEmailProviders pages and counts like ListSMTPConfigs", async () => {
        const own = await freshTenant();
        const ids: string[] = [];
        for (const description of ["one", "two", "three"]) {
          ids.push((await own.owner.addEmailProviderSMTP(providerInput({ description }))).id);
        }

        const page = await own.owner.listEmailProviders({
          query: { offset: 1n, limit: 1, asc: true },
        });
        assert.deepEqual(
          page.result.map((p) => p.id),
          [ids[1]],
        );
        assert.equal(page.details?.totalResult, 3n);
        assert.equal(page.details?.processedSequence, (await own.events()).at(-1)?.sequence);
        const newestFirst = await own.owner.listEmailProviders({});
        assert.deepEqual(
          newestFirst.result.map((p) => p.id),
          [...ids].reverse(),
        );
        await expectError(
          own.owner.listEmailProviders({ query: { limit: 1001 } }),
          Code.InvalidArgument,
        );
      });

      test("UpdateEmailProviderSMTP changes settings; an update that changes nothing records nothing", async () => {
        const input = providerInput({ description: "before" });
        const added = await tenant.owner.addEmailProviderSMTP(input);

        const changed = await tenant.owner.updateEmailProviderSMTP({
          ...input,
          id: added.id,
          description: "after",
          user: "u2",
        });
        assert.ok((changed.details?.sequence ?? 0n) > (added.details?.sequence ?? 0n));
        const { config } = await tenant.owner.getEmailProviderById({ id: added.id });
        assert.equal(config?.description, "after");
        assert.equal(smtpOf(config).user, "u2");

        const events = await tenant.events();
        const same = await tenant.owner.updateEmailProviderSMTP({
          ...input,
          id: added.id,
          description: "after",
          user: "u2",
        });
        assert.equal(same.details?.sequence, changed.details?.sequence);
        assert.deepEqual(await tenant.events(), events);
        await expectError(
          tenant.owner.updateEmailProviderSMTP({ ...input, id: unknownId }),
          Code.NotFound,
        );
      });

      test("UpdateEmailProviderSMTPPassword records a change per call and needs an id", async () => {
        const { id } = await tenant.owner.addEmailProviderSMTP(providerInput());
        const first = await tenant.owner.updateEmailProviderSMTPPassword({
          id,
          password: "p1-secret",
        });
        const second = await tenant.owner.updateEmailProviderSMTPPassword({
          id,
          password: "p1-secret",
        });
        assert.ok((second.details?.sequence ?? 0n) > (first.details?.sequence ?? 0n));
        assert.equal(second.details?.resourceOwner, tenant.instanceId);

        await expectError(
          tenant.owner.updateEmailProviderSMTPPassword({ id: "", password: "x" }),
          Code.InvalidArgument,
        );
        await expectError(
          tenant.owner.updateEmailProviderSMTPPassword({ id: unknownId, password: "x" }),
          Code.NotFound,
        );
      });

      test("ActivateEmailProvider, GetEmailProvider and DeactivateEmailProvider follow the one-active rule", async () => {
        const own = await freshTenant();
        const first = await own.owner.addEmailProviderSMTP(providerInput({ description: "first" }));
        const second = await own.owner.addEmailProviderSMTP(
          providerInput({ description: "second" }),
        );
        await expectError(own.owner.getEmailProvider({}), Code.NotFound);

        await own.owner.activateEmailProvider({ id: first.id });
        await own.owner.activateEmailProvider({ id: second.id });
        const { config } = await own.owner.getEmailProvider({});
        assert.equal(config?.id, second.id);
        assert.equal(config?.state, EmailProviderState.EMAIL_PROVIDER_ACTIVE);
        const firstNow = await own.owner.getEmailProviderById({ id: first.id });
        assert.equal(firstNow.config?.state, EmailProviderState.EMAIL_PROVIDER_INACTIVE);
        await expectError(
          own.owner.activateEmailProvider({ id: second.id }),
          Code.FailedPrecondition,
        );

        await own.owner.deactivateEmailProvider({ id: second.id });
        await expectError(own.owner.getEmailProvider({}), Code.NotFound);
        await expectError(
          own.owner.deactivateEmailProvider({ id: second.id }),
          Code.FailedPrecondition,
        );
        await expectError(own.owner.activateEmailProvider({ id: unknownId }), Code.NotFound);
        await expectError(own.owner.deactivateEmailProvider({ id: unknownId }), Code.NotFound);
      });

      test("RemoveEmailProvider deletes a provider; removing it again answers NotFound", async () => {
        const { id } = await tenant.owner.addEmailProviderSMTP(providerInput());
        const { details } = await tenant.owner.removeEmailProvider({ id });
        assert.equal(details?.resourceOwner, tenant.instanceId);
        await expectError(tenant.owner.getEmailProviderById({ id }), Code.NotFound);
        await expectError(tenant.owner.removeEmailProvider({ id }), Code.NotFound);
      });

      test("TestEmailProviderSMTPById and TestEmailProviderSMTP send real mail", async () => {
        const settings = providerInput({ host: sink.hostPort, user: "family" });
        const { id } = await tenant.owner.addEmailProviderSMTP({
          ...settings,
          password: "family-secret",
        });
        const before = sink.messages.length;

        await tenant.owner.testEmailProviderSMTPById({ id, receiverAddress });
        await tenant.owner.testEmailProviderSMTP({
          ...settings,
          password: "",
          id,
          receiverAddress,
        });

        const mails = (await sink.waitForMessages(before + 2)).slice(before);
        assert.deepEqual(
          mails.map((m) => [m.user, m.to]),
          [
            ["family", [receiverAddress]],
            ["family", [receiverAddress]],
          ],
        );
        const elsewhere = { ...settings, host: "127.0.0.1:1", password: "", id, receiverAddress };
        await expectError(tenant.owner.testEmailProviderSMTP(elsewhere), Code.InvalidArgument);
        await expectError(
          tenant.owner.testEmailProviderSMTPById({ id: unknownId, receiverAddress }),
          Code.NotFound,
        );
      });

      test("AddEmailProviderHTTP and UpdateEmailProviderHTTP answer Unimplemented saying why and store nothing; a viewer is refused first", async () => {
        const own = await freshTenant();
        const eventsBefore = (await own.events()).length;
        const calls = (client: typeof own.owner) => [
          client.addEmailProviderHTTP({ endpoint: "https://hooks.example.com/mail", description: "webhook" }),
          client.updateEmailProviderHTTP({ id: unknownId, endpoint: "https://hooks.example.com/mail" }),
        ];
        for (const call of calls(own.owner)) {
          const err = await expectError(call, Code.Unimplemented);
          assert.match(err.rawMessage, /HTTP email providers \(webhook delivery\) are not supported.*AddEmailProviderSMTP \(EMAIL-http01\)$/);
        }
        const viewer = own.client(await own.token(["IAM_OWNER_VIEWER"]));
        for (const call of calls(viewer)) await expectError(call, Code.PermissionDenied);
        assert.equal((await own.events()).length, eventsBefore);
        assert.equal((await own.owner.listEmailProviders({})).result.length, 0);
      });

      test("a provider added as an SMTP config is read, changed, activated and removed as an email provider", async () => {
        const own = await freshTenant();
        const { id } = await own.owner.addSMTPConfig(providerInput({ description: "smtp family" }));

        const listed = await own.owner.listEmailProviders({});
        assert.deepEqual(
          listed.result.map((p) => p.id),
          [id],
        );
        await own.owner.updateEmailProviderSMTP({
          ...providerInput({ description: "email family" }),
          id,
        });
        assert.equal(
          (await own.owner.getSMTPConfigById({ id })).smtpConfig?.description,
          "email family",
        );

        await own.owner.activateEmailProvider({ id });
        const { smtpConfig } = await own.owner.getSMTPConfig({});
        assert.equal(smtpConfig?.id, id);
        assert.equal(smtpConfig?.state, SMTPConfigState.SMTP_CONFIG_ACTIVE);

        await own.owner.removeEmailProvider({ id });
        await expectError(own.owner.getSMTPConfigById({ id }), Code.NotFound);
        assert.equal((await own.owner.listSMTPConfigs({})).details?.totalResult, 0n);
      });

      test("a provider added as an email provider gets its password and removal through the SMTP-config family", async () => {
        const settings = providerInput({
          host: sink.hostPort,
          user: "rotated",
          description: "email first",
        });
        const { id } = await tenant.owner.addEmailProviderSMTP({ ...settings, password: "stale" });
        assert.equal(
          (await tenant.owner.getSMTPConfigById({ id })).smtpConfig?.description,
          "email first",
        );

        await tenant.owner.updateSMTPConfigPassword({ id, password: "rotated-secret" });
        await tenant.owner.testSMTPConfigById({ id, receiverAddress });
        assert.deepEqual(loginsSince(sink).at(-1), ["rotated", "rotated-secret", true]);
        await tenant.owner.removeSMTPConfig({ id });
        await expectError(tenant.owner.getEmailProviderById({ id }), Code.NotFound);
      });
    });
  }
});
