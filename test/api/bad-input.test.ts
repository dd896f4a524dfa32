/**
 * Bad input end to end: every limit of WIRE.md at its boundary, malformed
 * fields, and bodies no client library would send. Each refusal must carry
 * the documented code, write nothing, and leave the server answering.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code } from "@connectrpc/connect";
import { AddSMTPConfigRequestSchema } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import {
  assertRawError,
  expectError,
  jsonOf,
  providerInput,
  rawConnect,
  type ProviderInput,
} from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { addTenant, type Tenant } from "../helpers/tenants.js";

/** A syntactically valid mail address exactly `length` characters long. */
function addressOf(length: number): string {
  const domain = "@example.com";
  return "a".repeat(length - domain.length) + domain;
}

/** A "host:port" exactly `length` characters long. */
function hostOf(length: number): string {
  return "h".repeat(length - ":25".length) + ":25";
}

/** A limited field, a value of a given length for it, and whether test requests carry it. */
interface LimitedField {
  readonly field: "senderAddress" | "senderName" | "host" | "replyToAddress" | "description";
  readonly max: number;
  readonly valueOf: (length: number) => string;
  readonly inTestRequest: boolean;
}

const limitedFields: readonly LimitedField[] = [
  { field: "senderAddress", max: 200, valueOf: addressOf, inTestRequest: true },
  { field: "senderName", max: 200, valueOf: (n) => "N".repeat(n), inTestRequest: true },
  { field: "host", max: 500, valueOf: hostOf, inTestRequest: true },
  { field: "replyToAddress", max: 200, valueOf: addressOf, inTestRequest: false },
  { field: "description", max: 200, valueOf: (n) => "d".repeat(n), inTestRequest: false },
];

/** Settings that each break one rule. */
const invalidSettings: readonly [string, Partial<ProviderInput>][] = [
  ["an empty sender_address", { senderAddress: "" }],
  ["a sender_address that is no address", { senderAddress: "noreply" }],
  ["an empty sender_name", { senderName: "" }],
  ["CR/LF in sender_name", { senderName: "Evil\r\nBcc: victim@example.com" }],
  ["LF in sender_name", { senderName: "Evil\nBcc: victim@example.com" }],
  ["an empty host", { host: "" }],
  ["a host without port", { host: "smtp.example.com" }],
  ["a host with port 0", { host: "smtp.example.com:0" }],
  ["a host with port 99999", { host: "smtp.example.com:99999" }],
  ["an IPv6 host without brackets", { host: "2001:db8::1:2525" }],
  ["a reply_to_address that is no address", { replyToAddress: "support" }],
];

const tooLongId = "1".repeat(101);

describe("bad input", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  /** What a refused request must leave unchanged. */
  async function snapshot(tenant: Tenant) {
    const list = await tenant.owner.listSMTPConfigs({});
    return { events: await tenant.events(), total: list.details?.totalResult, result: list.result };
  }

  /**
   * Runs `call`, which must fail with `code`, then checks that nothing was
   * written and the server still answers.
   */
  async function expectRefused(
    tenant: Tenant,
    call: () => Promise<unknown>,
    code = Code.InvalidArgument,
  ) {
    const before = await snapshot(tenant);
    const err = await expectError(call(), code);
    assert.deepEqual(await snapshot(tenant), before);
    await tenant.client().healthz({});
    return err;
  }

  for (const protocol of protocols) {
    describe(`over ${protocol}`, () => {
      let tenant: Tenant;
      let id: string;
      before(async () => {
        tenant = await addTenant(t, protocol, "badinput");
        id = (await tenant.owner.addSMTPConfig(providerInput())).id;
      });

      for (const { field, max, valueOf, inTestRequest } of limitedFields) {
        test(`${field} of ${max} characters is accepted and ${max + 1} refused, on add and update`, async () => {
          const longest = providerInput({ [field]: valueOf(max) });
          const added = await tenant.owner.addSMTPConfig(longest);
          assert.equal(
            (await tenant.owner.getSMTPConfigById({ id: added.id })).smtpConfig?.[field],
            valueOf(max),
          );
          await tenant.owner.updateSMTPConfig({ ...longest, description: "updated", id: added.id });

          const tooLong = providerInput({ [field]: valueOf(max + 1) });
          await expectRefused(tenant, () => tenant.owner.addSMTPConfig(tooLong));
          await expectRefused(tenant, () =>
            tenant.owner.updateSMTPConfig({ ...tooLong, id: added.id }),
          );
          if (inTestRequest) {
            await expectRefused(tenant, () =>
              tenant.owner.testSMTPConfig({ ...tooLong, receiverAddress: "a@example.com" }),
            );
          }
        });
      }

      for (const [what, settings] of invalidSettings) {
        test(`${what} is refused with InvalidArgument on add, update and test`, async () => {
          const bad = providerInput(settings);
          const err = await expectRefused(tenant, () => tenant.owner.addSMTPConfig(bad));
          assert.doesNotMatch(err.rawMessage, /\r|\n/);
          await expectRefused(tenant, () => tenant.owner.updateSMTPConfig({ ...bad, id }));
          if (settings.replyToAddress === undefined) {
            await expectRefused(tenant, () =>
              tenant.owner.testSMTPConfig({ ...bad, receiverAddress: "a@example.com" }),
            );
          }
        });
      }

      test("a bracketed IPv6 host with a port is accepted", async () => {
        const { id: ipv6 } = await tenant.owner.addSMTPConfig(
          providerInput({ host: "[2001:db8::1]:2525" }),
        );
        assert.equal(
          (await tenant.owner.getSMTPConfigById({ id: ipv6 })).smtpConfig?.host,
          "[2001:db8::1]:2525",
        );
      });

      test("an id of 100 characters is looked up and one of 101 refused", async () => {
        await expectError(tenant.owner.getSMTPConfigById({ id: "1".repeat(100) }), Code.NotFound);
        await expectRefused(tenant, () => tenant.owner.getSMTPConfigById({ id: tooLongId }));
        await expectRefused(tenant, () =>
          tenant.owner.updateSMTPConfig({ ...providerInput(), id: tooLongId }),
        );
        await expectRefused(tenant, () =>
          tenant.owner.updateSMTPConfigPassword({ id: tooLongId, password: "x" }),
        );
        await expectRefused(tenant, () => tenant.owner.removeSMTPConfig({ id: tooLongId }));
        await expectRefused(tenant, () =>
          tenant.owner.testSMTPConfigById({ id: tooLongId, receiverAddress: "a@example.com" }),
        );
        await expectRefused(tenant, () => tenant.owner.getEmailProviderById({ id: tooLongId }));
        await expectRefused(tenant, () =>
          tenant.owner.updateEmailProviderSMTPPassword({ id: tooLongId, password: "x" }),
        );
      });

      test("activate and deactivate look up an id of 200 characters and refuse one of 201", async () => {
        const longest = "1".repeat(200);
        const tooLong = "1".repeat(201);
        await expectError(tenant.owner.activateSMTPConfig({ id: longest }), Code.NotFound);
        await expectError(tenant.owner.deactivateSMTPConfig({ id: longest }), Code.NotFound);
        await expectRefused(tenant, () => tenant.owner.activateSMTPConfig({ id: tooLong }));
        await expectRefused(tenant, () => tenant.owner.deactivateSMTPConfig({ id: tooLong }));
        await expectRefused(tenant, () => tenant.owner.activateEmailProvider({ id: tooLong }));
        await expectRefused(tenant, () => tenant.owner.deactivateEmailProvider({ id: tooLong }));
      });

      // Connect JSON has its own cases below; gRPC and gRPC-web send protobuf.
      if (protocol !== "connect-json") {
        test("a request body that is not valid protobuf answers InvalidArgument and writes nothing", async () => {
          // An unknown field that claims more bytes than follow, written as is:
          // the body becomes truncated protobuf.
          const request = create(AddSMTPConfigRequestSchema, providerInput());
          request.$unknown = [
            { no: 1, wireType: WireType.LengthDelimited, data: new Uint8Array([0xff, 0xff, 0x03]) },
          ];
          await expectRefused(tenant, () => tenant.owner.addSMTPConfig(request));
        });
      }

      test("receiver_address must be an address of 1 to 200 characters", async () => {
        const unknown = "123456789012345678";
        await expectError(
          tenant.owner.testSMTPConfigById({ id: unknown, receiverAddress: addressOf(200) }),
          Code.NotFound,
        );
        for (const receiverAddress of [
          addressOf(201),
          "",
          "not-an-address",
          "a@example.com\r\nRCPT TO:<b@example.com>",
        ]) {
          await expectRefused(tenant, () =>
            tenant.owner.testSMTPConfigById({ id, receiverAddress }),
          );
          await expectRefused(tenant, () =>
            tenant.owner.testSMTPConfig({ ...providerInput(), receiverAddress }),
          );
        }
      });
    });
  }

  describe("raw Connect JSON bodies", () => {
    let tenant: Tenant;
    before(async () => {
      tenant = await addTenant(t, "connect-json", "badinput-raw");
      await tenant.owner.addSMTPConfig(providerInput());
    });

    const bodies: readonly [string, string][] = [
      ["a malformed JSON body", '{"senderAddress": "noreply@example.com", '],
      ["a JSON array instead of an object", "[]"],
      ["a string where a bool belongs", JSON.stringify({ ...providerInput(), tls: "yes" })],
      ["a number where a string belongs", JSON.stringify({ ...providerInput(), host: 25 })],
    ];

    for (const [what, body] of bodies) {
      test(`${what} answers InvalidArgument with an ErrorDetail and writes nothing`, async () => {
        const before = await snapshot(tenant);
        const call = {
          port: t.port,
          host: tenant.domain,
          method: "AddSMTPConfig",
          body,
          token: tenant.ownerToken,
        };
        assertRawError(await rawConnect(call), 400, "invalid_argument");
        assert.deepEqual(await snapshot(tenant), before);
        await tenant.client().healthz({});
      });
    }

    test("an unknown field is ignored, as ZITADEL's servers do, so newer clients keep working", async () => {
      const answer = await rawConnect({
        port: t.port,
        host: tenant.domain,
        method: "AddSMTPConfig",
        body: { ...providerInput(), senderAddress: "newer@example.com", fieldFromTheFuture: "x" },
        token: tenant.ownerToken,
      });
      const { id } = jsonOf(answer) as { id: string };
      const stored = (await tenant.owner.getSMTPConfigById({ id })).smtpConfig;
      assert.equal(stored?.senderAddress, "newer@example.com");
    });

    test("snake_case field names are accepted like camelCase", async () => {
      const answer = await rawConnect({
        port: t.port,
        host: tenant.domain,
        method: "AddSMTPConfig",
        body: {
          sender_address: "snake@example.com",
          sender_name: "Snake",
          host: "smtp.example.com:25",
          reply_to_address: "",
        },
        token: tenant.ownerToken,
      });
      const { id } = jsonOf(answer) as { id: string };
      assert.equal(
        (await tenant.owner.getSMTPConfigById({ id })).smtpConfig?.senderAddress,
        "snake@example.com",
      );
    });
  });
});
