/**
 * UpdateSMTPConfigPassword end to end: the three answers clients were seeded
 * with (success, PermissionDenied, NotFound, plus Unauthenticated), both
 * generations of the request (with an id, and without one meaning the active
 * provider), and what a password change records.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import {
  assertRecent,
  expectError,
  jsonOf,
  loginsSince,
  providerInput,
  rawConnect,
} from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addFreshTenant, type Tenant } from "../helpers/tenants.js";

const rfc3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

describe("UpdateSMTPConfigPassword", () => {
  let t: TestServer;
  let sink: SmtpSink;
  before(async () => {
    t = await startTestServer();
    sink = await startSmtpSink({ users: { mailer: "sink-password" } });
  });
  after(async () => {
    await sink.stop();
    await t.stop();
  });

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let tenant: Tenant;
      const freshTenant = () => addFreshTenant(t, protocol, "password");
      before(async () => {
        tenant = await freshTenant();
      });

      test("succeeds with details whose sequence rises from call to call", async () => {
        const { id } = await tenant.owner.addSMTPConfig(providerInput());
        let previous = 0n;
        for (const password of ["first-secret", "second-secret", "third-secret"]) {
          const { details } = await tenant.owner.updateSMTPConfigPassword({ id, password });
          assert.ok(
            (details?.sequence ?? 0n) > previous,
            `sequence ${details?.sequence} after ${previous}`,
          );
          assert.equal(details?.resourceOwner, tenant.instanceId);
          assertRecent(details?.changeDate, "changeDate");
          previous = details?.sequence ?? 0n;
        }
      });

      test("answers PermissionDenied to an IAM_OWNER_VIEWER token and changes nothing", async () => {
        const { id } = await tenant.owner.addSMTPConfig(providerInput());
        const viewer = tenant.client(await tenant.token(["IAM_OWNER_VIEWER"]));
        const before = await tenant.events();

        await expectError(
          viewer.updateSMTPConfigPassword({ id, password: "viewer-secret" }),
          Code.PermissionDenied,
        );
        assert.deepEqual(await tenant.events(), before);
      });

      test("answers NotFound for an id no provider has", async () => {
        const call = tenant.owner.updateSMTPConfigPassword({
          id: "123456789012345678",
          password: "lost-secret",
        });
        await expectError(call, Code.NotFound);
      });

      test("answers Unauthenticated without a token and with a garbage token", async () => {
        const { id } = await tenant.owner.addSMTPConfig(providerInput());
        const request = { id, password: "anonymous-secret" };
        await expectError(tenant.client().updateSMTPConfigPassword(request), Code.Unauthenticated);
        await expectError(
          tenant.client("not-a-token").updateSMTPConfigPassword(request),
          Code.Unauthenticated,
        );
      });

      test("records a new event on every call, even with the same password", async () => {
        const { id } = await tenant.owner.addSMTPConfig(providerInput());
        const before = (await tenant.events()).length;

        const first = await tenant.owner.updateSMTPConfigPassword({ id, password: "same-secret" });
        const second = await tenant.owner.updateSMTPConfigPassword({ id, password: "same-secret" });

        assert.ok((second.details?.sequence ?? 0n) > (first.details?.sequence ?? 0n));
        const events = (await tenant.events()).slice(before);
        assert.deepEqual(
          events.map((e) => [e.type, e.objectId, e.sequence]),
          [
            ["smtp.config.password.changed", id, first.details?.sequence],
            ["smtp.config.password.changed", id, second.details?.sequence],
          ],
        );
      });

      test("works on an inactive provider", async () => {
        const { id } = await tenant.owner.addSMTPConfig(providerInput());
        const { details } = await tenant.owner.updateSMTPConfigPassword({
          id,
          password: "inactive-secret",
        });
        assert.equal((await tenant.events()).at(-1)?.sequence, details?.sequence);
      });

      test("without an id changes the active provider's password", async () => {
        const own = await freshTenant();
        const inactive = await own.owner.addSMTPConfig(providerInput({ description: "inactive" }));
        const active = await own.owner.addSMTPConfig(providerInput({ description: "active" }));
        await own.owner.activateSMTPConfig({ id: active.id });

        const { details } = await own.owner.updateSMTPConfigPassword({ password: "active-secret" });

        const last = (await own.events()).at(-1);
        assert.deepEqual([last?.type, last?.objectId], ["smtp.config.password.changed", active.id]);
        assert.equal(details?.sequence, last?.sequence);
        assert.notEqual(last?.objectId, inactive.id);
      });

      test("without an id answers NotFound when no provider is active", async () => {
        const own = await freshTenant();
        await own.owner.addSMTPConfig(providerInput());
        const before = await own.events();

        await expectError(
          own.owner.updateSMTPConfigPassword({ password: "nowhere-secret" }),
          Code.NotFound,
        );
        assert.deepEqual(await own.events(), before);
      });

      test("with an empty password clears it, so the next login sends none", async () => {
        const settings = providerInput({
          host: sink.hostPort,
          user: "mailer",
          password: "sink-password",
        });
        const { id } = await tenant.owner.addSMTPConfig(settings);
        await tenant.owner.testSMTPConfigById({ id, receiverAddress: "clear@example.com" });
        assert.deepEqual(loginsSince(sink).at(-1), ["mailer", "sink-password", true]);

        await tenant.owner.updateSMTPConfigPassword({ id, password: "" });

        // The user is still set, so the sender logs in, now without a password.
        await expectError(
          tenant.owner.testSMTPConfigById({ id, receiverAddress: "clear@example.com" }),
          Code.FailedPrecondition,
        );
        assert.deepEqual(loginsSince(sink).at(-1), ["mailer", "", false]);
      });
    });
  }

  describe("over Connect JSON on the wire", () => {
    let instanceId: string;
    before(async () => {
      instanceId = (await t.server.store.findInstanceByDomain("127.0.0.1"))?.id ?? "";
    });

    test("details carry sequence as a JSON string and dates in RFC 3339", async () => {
      const added = jsonOf(
        await rawConnect({
          port: t.port,
          method: "AddSMTPConfig",
          body: providerInput(),
          token: t.ownerToken,
        }),
      );
      const answer = await rawConnect({
        port: t.port,
        method: "UpdateSMTPConfigPassword",
        body: { id: added.id, password: "wire-secret" },
        token: t.ownerToken,
      });
      const details = jsonOf(answer).details as Record<string, unknown>;

      assert.equal(typeof details.sequence, "string");
      assert.match(details.sequence as string, /^[1-9]\d*$/);
      assert.match(details.changeDate as string, rfc3339);
      assert.match(details.creationDate as string, rfc3339);
      assert.equal(details.resourceOwner, instanceId);
    });

    test("the older request shape with only a password changes the active provider", async () => {
      const own = await addFreshTenant(t, "connect-json", "password-legacy");
      const { id } = await own.owner.addSMTPConfig(providerInput());
      await own.owner.activateSMTPConfig({ id });

      const answer = await rawConnect({
        port: t.port,
        host: own.domain,
        method: "UpdateSMTPConfigPassword",
        body: { password: "legacy-secret" },
        token: own.ownerToken,
      });

      const details = jsonOf(answer).details as Record<string, unknown>;
      const last = (await own.events()).at(-1);
      assert.deepEqual([last?.type, last?.objectId], ["smtp.config.password.changed", id]);
      assert.equal(details.sequence, String(last?.sequence));
    });
  });
});
