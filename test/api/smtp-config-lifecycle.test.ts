/**
 * The SMTP-config family end to end: add, read, list, update, activate,
 * deactivate and remove, over each protocol, each protocol in an instance of
 * its own so that counts and the active provider are predictable.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { SMTPConfigState } from "../../src/gen/zitadel/settings/v1/smtp_pb.js";
import { assertRecent, expectError, providerInput } from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { addFreshTenant, type Tenant } from "../helpers/tenants.js";

const unknownId = "123456789012345678";

describe("SMTP config lifecycle", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let tenant: Tenant;
      const freshTenant = () => addFreshTenant(t, protocol, "lifecycle");
      before(async () => {
        tenant = await freshTenant();
      });

      test("AddSMTPConfig stores an inactive provider and returns its id and details", async () => {
        const input = providerInput({
          description: "primary relay",
          replyToAddress: "help@example.com",
          tls: true,
        });
        const added = await tenant.owner.addSMTPConfig({ ...input, password: "add-secret" });

        assert.match(added.id, /^\d+$/);
        assert.equal(added.details?.resourceOwner, tenant.instanceId);
        assert.ok((added.details?.sequence ?? 0n) > 0n);
        assertRecent(added.details?.changeDate, "changeDate");

        const { smtpConfig } = await tenant.owner.getSMTPConfigById({ id: added.id });
        assert.equal(smtpConfig?.id, added.id);
        assert.equal(smtpConfig?.state, SMTPConfigState.SMTP_CONFIG_INACTIVE);
        assert.deepEqual(
          [smtpConfig?.senderAddress, smtpConfig?.senderName, smtpConfig?.host, smtpConfig?.user],
          [input.senderAddress, input.senderName, input.host, input.user],
        );
        assert.equal(smtpConfig?.description, "primary relay");
        assert.equal(smtpConfig?.replyToAddress, "help@example.com");
        assert.equal(smtpConfig?.tls, true);
        assert.equal(smtpConfig?.details?.sequence, added.details?.sequence);
        assert.equal(smtpConfig?.details?.resourceOwner, tenant.instanceId);
        assert.deepEqual(smtpConfig?.details?.creationDate, added.details?.changeDate);
      });

      test("GetSMTPConfigById answers NotFound for an id no provider has", async () => {
        await expectError(tenant.owner.getSMTPConfigById({ id: unknownId }), Code.NotFound);
      });

      test("GetSMTPConfig answers NotFound while no provider is active, then the active one", async () => {
        const own = await freshTenant();
        const { id } = await own.owner.addSMTPConfig(providerInput());
        await expectError(own.owner.getSMTPConfig({}), Code.NotFound);

        await own.owner.activateSMTPConfig({ id });
        const { smtpConfig } = await own.owner.getSMTPConfig({});
        assert.equal(smtpConfig?.id, id);
        assert.equal(smtpConfig?.state, SMTPConfigState.SMTP_CONFIG_ACTIVE);
      });

      test("ListSMTPConfigs pages by offset and limit, newest first unless asc", async () => {
        const own = await freshTenant();
        const empty = await own.owner.listSMTPConfigs({});
        assert.equal(empty.details?.totalResult, 0n);
        assert.deepEqual(empty.result, []);

        const ids: string[] = [];
        let lastSequence = 0n;
        for (const name of ["first", "second", "third"]) {
          const added = await own.owner.addSMTPConfig(providerInput({ description: name }));
          ids.push(added.id);
          lastSequence = added.details?.sequence ?? 0n;
        }

        const all = await own.owner.listSMTPConfigs({});
        assert.deepEqual(
          all.result.map((c) => c.id),
          [...ids].reverse(),
        );
        assert.equal(all.details?.totalResult, 3n);
        assert.equal(all.details?.processedSequence, lastSequence);
        assertRecent(all.details?.viewTimestamp, "viewTimestamp");

        const firstPage = await own.owner.listSMTPConfigs({
          query: { offset: 0n, limit: 2, asc: true },
        });
        assert.deepEqual(
          firstPage.result.map((c) => c.id),
          ids.slice(0, 2),
        );
        assert.equal(firstPage.details?.totalResult, 3n);
        const secondPage = await own.owner.listSMTPConfigs({
          query: { offset: 2n, limit: 2, asc: true },
        });
        assert.deepEqual(
          secondPage.result.map((c) => c.id),
          ids.slice(2),
        );
        assert.equal(secondPage.details?.totalResult, 3n);
        const descending = await own.owner.listSMTPConfigs({ query: { offset: 1n, limit: 1 } });
        assert.deepEqual(
          descending.result.map((c) => c.id),
          [ids[1]],
        );
        const beyond = await own.owner.listSMTPConfigs({ query: { offset: 10n, limit: 5 } });
        assert.deepEqual(beyond.result, []);
        assert.equal(beyond.details?.totalResult, 3n);
      });

      test("ListSMTPConfigs refuses a limit above 1000 with InvalidArgument", async () => {
        await expectError(
          tenant.owner.listSMTPConfigs({ query: { limit: 1001 } }),
          Code.InvalidArgument,
        );
      });

      test("UpdateSMTPConfig changes every setting and records one change event", async () => {
        const added = await tenant.owner.addSMTPConfig(providerInput());
        const before = (await tenant.events()).length;
        const changed = {
          senderAddress: "alerts@example.org",
          senderName: "Alerts",
          tls: true,
          host: "mail.example.org:465",
          user: "alerts",
          replyToAddress: "support@example.org",
          description: "changed",
        };
        const { details } = await tenant.owner.updateSMTPConfig({ id: added.id, ...changed });

        assert.ok((details?.sequence ?? 0n) > (added.details?.sequence ?? 0n));
        assert.equal(details?.resourceOwner, tenant.instanceId);
        const { smtpConfig } = await tenant.owner.getSMTPConfigById({ id: added.id });
        assert.deepEqual(
          {
            senderAddress: smtpConfig?.senderAddress,
            senderName: smtpConfig?.senderName,
            tls: smtpConfig?.tls,
            host: smtpConfig?.host,
            user: smtpConfig?.user,
            replyToAddress: smtpConfig?.replyToAddress,
            description: smtpConfig?.description,
          },
          changed,
        );
        assert.equal(smtpConfig?.details?.sequence, details?.sequence);
        assert.deepEqual(smtpConfig?.details?.creationDate, added.details?.creationDate);
        const events = (await tenant.events()).slice(before);
        assert.deepEqual(
          events.map((e) => [e.type, e.objectId]),
          [["smtp.config.changed", added.id]],
        );
      });

      test("UpdateSMTPConfig that changes nothing succeeds with the same sequence and records no event", async () => {
        const input = providerInput({ description: "unchanged" });
        const added = await tenant.owner.addSMTPConfig(input);
        const before = await tenant.events();

        const { details } = await tenant.owner.updateSMTPConfig({ ...input, id: added.id });

        assert.equal(details?.sequence, added.details?.sequence);
        assert.equal(details?.resourceOwner, tenant.instanceId);
        assert.deepEqual(await tenant.events(), before);
      });

      test("UpdateSMTPConfig answers NotFound for an id no provider has", async () => {
        await expectError(
          tenant.owner.updateSMTPConfig({ ...providerInput(), id: unknownId }),
          Code.NotFound,
        );
      });

      test("ActivateSMTPConfig deactivates the provider that was active before", async () => {
        const own = await freshTenant();
        const first = await own.owner.addSMTPConfig(providerInput({ description: "first" }));
        const second = await own.owner.addSMTPConfig(providerInput({ description: "second" }));
        await own.owner.activateSMTPConfig({ id: first.id });
        const before = (await own.events()).length;

        const { details } = await own.owner.activateSMTPConfig({ id: second.id });

        const states = await own.owner.listSMTPConfigs({ query: { asc: true } });
        assert.deepEqual(
          states.result.map((c) => [c.id, c.state]),
          [
            [first.id, SMTPConfigState.SMTP_CONFIG_INACTIVE],
            [second.id, SMTPConfigState.SMTP_CONFIG_ACTIVE],
          ],
        );
        assert.equal((await own.owner.getSMTPConfig({})).smtpConfig?.id, second.id);
        const events = (await own.events()).slice(before);
        assert.deepEqual(
          events.map((e) => [e.type, e.objectId]),
          [
            ["smtp.config.deactivated", first.id],
            ["smtp.config.activated", second.id],
          ],
        );
        assert.equal(details?.sequence, events.at(-1)?.sequence);
      });

      test("ActivateSMTPConfig answers FailedPrecondition for the active provider and NotFound for an unknown one", async () => {
        const own = await freshTenant();
        const { id } = await own.owner.addSMTPConfig(providerInput());
        await own.owner.activateSMTPConfig({ id });
        const before = await own.events();

        await expectError(own.owner.activateSMTPConfig({ id }), Code.FailedPrecondition);
        await expectError(own.owner.activateSMTPConfig({ id: unknownId }), Code.NotFound);
        assert.deepEqual(await own.events(), before);
      });

      test("DeactivateSMTPConfig leaves no provider active; an inactive one answers FailedPrecondition", async () => {
        const own = await freshTenant();
        const { id } = await own.owner.addSMTPConfig(providerInput());
        await expectError(own.owner.deactivateSMTPConfig({ id }), Code.FailedPrecondition);
        await own.owner.activateSMTPConfig({ id });

        const { details } = await own.owner.deactivateSMTPConfig({ id });

        assert.equal(details?.resourceOwner, own.instanceId);
        const { smtpConfig } = await own.owner.getSMTPConfigById({ id });
        assert.equal(smtpConfig?.state, SMTPConfigState.SMTP_CONFIG_INACTIVE);
        await expectError(own.owner.getSMTPConfig({}), Code.NotFound);
        await expectError(own.owner.deactivateSMTPConfig({ id }), Code.FailedPrecondition);
        await expectError(own.owner.deactivateSMTPConfig({ id: unknownId }), Code.NotFound);
      });

      test("RemoveSMTPConfig deletes a provider, active or not, and a second removal answers NotFound", async () => {
        const own = await freshTenant();
        const kept = await own.owner.addSMTPConfig(providerInput({ description: "kept" }));
        const active = await own.owner.addSMTPConfig(providerInput({ description: "active" }));
        await own.owner.activateSMTPConfig({ id: active.id });

        const { details } = await own.owner.removeSMTPConfig({ id: active.id });

        assert.ok((details?.sequence ?? 0n) > (active.details?.sequence ?? 0n));
        await expectError(own.owner.getSMTPConfigById({ id: active.id }), Code.NotFound);
        await expectError(own.owner.getSMTPConfig({}), Code.NotFound);
        const list = await own.owner.listSMTPConfigs({});
        assert.deepEqual(
          list.result.map((c) => c.id),
          [kept.id],
        );
        assert.equal(list.details?.totalResult, 1n);
        await expectError(own.owner.removeSMTPConfig({ id: active.id }), Code.NotFound);
        assert.equal((await own.events()).at(-1)?.type, "smtp.config.removed");
      });
    });
  }
});
