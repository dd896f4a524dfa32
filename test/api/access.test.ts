/**
 * Who may call what, for every RPC of the admin service over each protocol:
 * Healthz needs nothing, every other RPC a valid token, and writes need
 * iam.write. Also the order of the checks: instance, token, permission, input.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { expectError } from "../helpers/admin-api.js";
import { adminClientAt, protocols, type AdminClient } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";

/** RPCs that need iam.read, from WIRE.md. */
const readRpcs = [
  "getSMTPConfig",
  "getSMTPConfigById",
  "listSMTPConfigs",
  "listEmailProviders",
  "getEmailProvider",
  "getEmailProviderById",
] as const;

/** RPCs that need iam.write, from WIRE.md. */
const writeRpcs = [
  "addSMTPConfig",
  "updateSMTPConfig",
  "updateSMTPConfigPassword",
  "activateSMTPConfig",
  "deactivateSMTPConfig",
  "removeSMTPConfig",
  "testSMTPConfigById",
  "testSMTPConfig",
  "addEmailProviderSMTP",
  "updateEmailProviderSMTP",
  "updateEmailProviderSMTPPassword",
  "activateEmailProvider",
  "deactivateEmailProvider",
  "removeEmailProvider",
  "testEmailProviderSMTPById",
  "testEmailProviderSMTP",
  // Not offered, but guarded like any write (see email-provider.test.ts).
  "addEmailProviderHTTP",
  "updateEmailProviderHTTP",
] as const;

type Rpc = (typeof readRpcs)[number] | (typeof writeRpcs)[number];

/** Calls `rpc` with an empty request: the gate decides before the body matters. */
function callEmpty(client: AdminClient, rpc: Rpc): Promise<unknown> {
  const method = client[rpc] as (request: object) => Promise<unknown>;
  return method({});
}

/** The code a call failed with, or "ok". */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

describe("access to the admin API", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test("the RPC lists cover every method of the service", () => {
    const listed = new Set<string>(["healthz", ...readRpcs, ...writeRpcs]);
    assert.deepEqual(
      AdminService.methods.map((m) => m.localName).filter((name) => !listed.has(name)),
      [],
    );
    assert.equal(listed.size, AdminService.methods.length);
  });

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let tenant: Tenant;
      let viewer: AdminClient;
      before(async () => {
        tenant = await addTenant(t, protocol, "access");
        viewer = tenant.client(await tenant.token(["IAM_OWNER_VIEWER"]));
      });

      test("Healthz answers without a token, even on a host no instance owns", async () => {
        await tenant.client().healthz({});
        await adminClientAt(protocol, "nobody.test", t.port).healthz({});
      });

      test("every other RPC answers Unauthenticated without a token", async () => {
        for (const rpc of [...readRpcs, ...writeRpcs]) {
          await expectError(callEmpty(tenant.client(), rpc), Code.Unauthenticated, rpc);
        }
      });

      test("every other RPC answers Unauthenticated to a token that does not exist", async () => {
        const forged = tenant.client(`sgpat_${"A".repeat(43)}`);
        for (const rpc of [...readRpcs, ...writeRpcs]) {
          await expectError(callEmpty(forged, rpc), Code.Unauthenticated, rpc);
        }
      });

      test("an IAM_OWNER_VIEWER token is refused every write with PermissionDenied", async () => {
        const before = await tenant.events();
        for (const rpc of writeRpcs) {
          await expectError(callEmpty(viewer, rpc), Code.PermissionDenied, rpc);
        }
        assert.deepEqual(await tenant.events(), before);
      });

      test("an IAM_OWNER_VIEWER token may read", async () => {
        const list = await viewer.listSMTPConfigs({});
        assert.equal(list.details?.totalResult, 0n);
        await viewer.listEmailProviders({});
        for (const rpc of readRpcs) {
          const code = await outcome(callEmpty(viewer, rpc));
          assert.ok(!["Unauthenticated", "PermissionDenied"].includes(code), `${rpc}: ${code}`);
        }
      });

      test("the instance is checked before the token: an unknown host answers NotFound without one", async () => {
        await expectError(
          adminClientAt(protocol, "nobody.test", t.port).listSMTPConfigs({}),
          Code.NotFound,
        );
      });

      test("the token is checked before the input: a bad request without a token answers Unauthenticated", async () => {
        const call = tenant
          .client()
          .addSMTPConfig({ senderAddress: "not an address", host: "no-port" });
        await expectError(call, Code.Unauthenticated);
      });

      test("the permission is checked before the input: a viewer's bad request answers PermissionDenied", async () => {
        const call = viewer.addSMTPConfig({ senderAddress: "not an address", host: "no-port" });
        await expectError(call, Code.PermissionDenied);
      });
    });
  }
});
