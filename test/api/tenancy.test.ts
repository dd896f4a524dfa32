/**
 * Instances are selected by the request's host (Host under HTTP/1.1,
 * :authority under HTTP/2) and never see each other: an unknown host is
 * NotFound, one instance's token is worthless on another's host, and one
 * instance's providers cannot be read or changed through another's.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClientAt, protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";

describe("tenancy", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let a: Tenant;
      let b: Tenant;
      let providerOfA: string;
      before(async () => {
        a = await addTenant(t, protocol, "tenant-a");
        b = await addTenant(t, protocol, "tenant-b");
        providerOfA = (await a.owner.addSMTPConfig(providerInput({ description: "of a" }))).id;
        await a.owner.activateSMTPConfig({ id: providerOfA });
      });

      test("a host no instance owns answers NotFound, also to a valid token", async () => {
        await expectError(
          adminClientAt(protocol, "unknown.test", t.port, a.ownerToken).listSMTPConfigs({}),
          Code.NotFound,
        );
        await expectError(
          adminClientAt(protocol, "unknown.test", t.port, t.ownerToken).getSMTPConfig({}),
          Code.NotFound,
        );
      });

      test("the bootstrap instance answers under both of its names, localhost and 127.0.0.1", async () => {
        const viaName = adminClientAt(protocol, "localhost", t.port, t.ownerToken);
        const viaAddress = adminClientAt(protocol, "127.0.0.1", t.port, t.ownerToken);
        const { id } = await viaName.addSMTPConfig(
          providerInput({ description: `bootstrap ${protocol}` }),
        );
        const { smtpConfig } = await viaAddress.getSMTPConfigById({ id });
        assert.equal(smtpConfig?.description, `bootstrap ${protocol}`);
        await viaAddress.removeSMTPConfig({ id });
      });

      test("a token of instance A used on instance B's host answers Unauthenticated", async () => {
        const intruder = b.client(a.ownerToken);
        await expectError(intruder.listSMTPConfigs({}), Code.Unauthenticated);
        await expectError(intruder.addSMTPConfig(providerInput()), Code.Unauthenticated);
        await expectError(
          adminClientAt(protocol, "127.0.0.1", t.port, a.ownerToken).listSMTPConfigs({}),
          Code.Unauthenticated,
        );
      });

      test("providers of instance A are never listed or found through instance B", async () => {
        const list = await b.owner.listSMTPConfigs({});
        assert.equal(list.details?.totalResult, 0n);
        assert.deepEqual(list.result, []);
        assert.equal((await b.owner.listEmailProviders({})).details?.totalResult, 0n);
        await expectError(b.owner.getSMTPConfig({}), Code.NotFound);
        await expectError(b.owner.getEmailProvider({}), Code.NotFound);
        await expectError(b.owner.getSMTPConfigById({ id: providerOfA }), Code.NotFound);
        await expectError(b.owner.getEmailProviderById({ id: providerOfA }), Code.NotFound);
      });

      test("providers of instance A cannot be changed, tested or removed through instance B", async () => {
        const eventsOfA = await a.events();
        const id = providerOfA;

        await expectError(b.owner.updateSMTPConfig({ ...providerInput(), id }), Code.NotFound);
        await expectError(
          b.owner.updateSMTPConfigPassword({ id, password: "intruder-secret" }),
          Code.NotFound,
        );
        await expectError(
          b.owner.updateSMTPConfigPassword({ password: "intruder-secret" }),
          Code.NotFound,
        );
        await expectError(b.owner.deactivateSMTPConfig({ id }), Code.NotFound);
        await expectError(b.owner.activateEmailProvider({ id }), Code.NotFound);
        await expectError(
          b.owner.testSMTPConfigById({ id, receiverAddress: "x@example.com" }),
          Code.NotFound,
        );
        const reuse = { ...providerInput(), id, receiverAddress: "x@example.com" };
        await expectError(b.owner.testSMTPConfig(reuse), Code.NotFound);
        await expectError(b.owner.removeSMTPConfig({ id }), Code.NotFound);
        await expectError(b.owner.removeEmailProvider({ id }), Code.NotFound);

        assert.deepEqual(await a.events(), eventsOfA);
        assert.equal((await a.owner.getSMTPConfig({})).smtpConfig?.id, providerOfA);
      });

      test("activating a provider in instance B leaves instance A's active provider alone", async () => {
        const { id } = await b.owner.addSMTPConfig(providerInput({ description: "of b" }));
        await b.owner.activateSMTPConfig({ id });

        assert.equal((await a.owner.getSMTPConfig({})).smtpConfig?.id, providerOfA);
        assert.equal((await b.owner.getSMTPConfig({})).smtpConfig?.id, id);
        assert.ok((await a.events()).every((e) => e.objectId !== id));
      });
    });
  }
});
