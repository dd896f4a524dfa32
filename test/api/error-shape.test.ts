/**
 * Every row of WIRE.md's error table on every protocol: the code, the
 * Connect HTTP status, and the shape every error shares (a
 * zitadel.v1.ErrorDetail with a stable id, and a message ending in "(<id>)").
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import {
  assertRawError,
  expectError,
  jsonOf,
  providerInput,
  rawConnect,
  type RawCall,
} from "../helpers/admin-api.js";
import { adminClientAt, protocols, type AdminClient } from "../helpers/clients.js";
import { breakEventLog, startTestServer, type TestServer } from "../helpers/server.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";

/** One row of the table: how to provoke it, and what each protocol answers. */
interface Row {
  readonly code: Code;
  readonly httpStatus: number;
  readonly connectCode: string;
  /** The call over a client; `owner` has IAM_OWNER, `viewer` IAM_OWNER_VIEWER. */
  provoke(clients: {
    owner: AdminClient;
    viewer: AdminClient;
    anonymous: AdminClient;
    inactiveId: string;
  }): Promise<unknown>;
  /** The same failure as a raw Connect JSON request. */
  raw(ctx: { tenant: Tenant; viewerToken: string; inactiveId: string }): Omit<RawCall, "port">;
}

const rows: readonly Row[] = [
  {
    code: Code.Unauthenticated,
    httpStatus: 401,
    connectCode: "unauthenticated",
    provoke: ({ anonymous }) => anonymous.listSMTPConfigs({}),
    raw: ({ tenant }) => ({ host: tenant.domain, method: "ListSMTPConfigs", body: {} }),
  },
  {
    code: Code.PermissionDenied,
    httpStatus: 403,
    connectCode: "permission_denied",
    provoke: ({ viewer }) => viewer.addSMTPConfig(providerInput()),
    raw: ({ tenant, viewerToken }) => ({
      host: tenant.domain,
      method: "AddSMTPConfig",
      body: providerInput(),
      token: viewerToken,
    }),
  },
  {
    code: Code.NotFound,
    httpStatus: 404,
    connectCode: "not_found",
    provoke: ({ owner }) => owner.getSMTPConfigById({ id: "42" }),
    raw: ({ tenant }) => ({
      host: tenant.domain,
      method: "GetSMTPConfigById",
      body: { id: "42" },
      token: tenant.ownerToken,
    }),
  },
  {
    code: Code.InvalidArgument,
    httpStatus: 400,
    connectCode: "invalid_argument",
    provoke: ({ owner }) => owner.addSMTPConfig(providerInput({ senderAddress: "" })),
    raw: ({ tenant }) => ({
      host: tenant.domain,
      method: "AddSMTPConfig",
      body: providerInput({ senderAddress: "" }),
      token: tenant.ownerToken,
    }),
  },
  {
    code: Code.FailedPrecondition,
    httpStatus: 400,
    connectCode: "failed_precondition",
    provoke: ({ owner, inactiveId }) => owner.deactivateSMTPConfig({ id: inactiveId }),
    raw: ({ tenant, inactiveId }) => ({
      host: tenant.domain,
      method: "DeactivateSMTPConfig",
      body: { id: inactiveId },
      token: tenant.ownerToken,
    }),
  },
];

describe("error shape", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let clients: Parameters<Row["provoke"]>[0];
      before(async () => {
        const tenant = await addTenant(t, protocol, "shape");
        const { id } = await tenant.owner.addSMTPConfig(providerInput());
        const viewer = tenant.client(await tenant.token(["IAM_OWNER_VIEWER"]));
        clients = { owner: tenant.owner, viewer, anonymous: tenant.client(), inactiveId: id };
      });

      for (const row of rows) {
        test(`${Code[row.code]} carries an ErrorDetail and a message ending in its id`, async () => {
          await expectError(row.provoke(clients), row.code);
        });
      }

      test("NotFound for an unknown host carries an ErrorDetail too", async () => {
        await expectError(
          adminClientAt(protocol, "unknown.test", t.port).getSMTPConfig({}),
          Code.NotFound,
        );
      });
    });
  }

  describe("Connect JSON on the wire", () => {
    let ctx: Parameters<Row["raw"]>[0];
    before(async () => {
      const tenant = await addTenant(t, "connect-json", "shape-raw");
      const { id } = await tenant.owner.addSMTPConfig(providerInput());
      ctx = { tenant, viewerToken: await tenant.token(["IAM_OWNER_VIEWER"]), inactiveId: id };
    });

    for (const row of rows) {
      test(`${Code[row.code]} answers HTTP ${row.httpStatus} with code "${row.connectCode}" and one ErrorDetail`, async () => {
        assertRawError(
          await rawConnect({ port: t.port, ...row.raw(ctx) }),
          row.httpStatus,
          row.connectCode,
        );
      });
    }
  });
});

describe("Internal", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
    breakEventLog(t.dataDir);
  });
  after(() => t.stop());

  for (const protocol of protocols) {
    test(`an unexpected failure answers Internal with a fixed message over ${protocol}`, async () => {
      const client = adminClientAt(protocol, "127.0.0.1", t.port, t.ownerToken);
      const err = await expectError(client.addSMTPConfig(providerInput()), Code.Internal);
      assert.equal(err.rawMessage, "internal error (INTERNAL-0001)");
      assert.ok(
        t.logLines.some((line) => line.includes('"rpc.fault"')),
        "the fault is logged",
      );
    });
  }

  test("an unexpected failure answers HTTP 500 over Connect JSON", async () => {
    const answer = await rawConnect({
      port: t.port,
      method: "AddSMTPConfig",
      body: providerInput(),
      token: t.ownerToken,
    });
    assertRawError(answer, 500, "internal");
    assert.equal(jsonOf(answer, 500).message, "internal error (INTERNAL-0001)");
  });
});
