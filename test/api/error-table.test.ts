/**
 * One table of outcomes, run over all four protocols. Each row names its
 * call once; each protocol makes it through a connect-node client (REST:
 * fetch) and on the wire, and checks what a caller there sees: the code, the
 * HTTP status (Connect and REST show the error's; gRPC and gRPC-web always
 * answer 200 and put the status in trailers), the body or trailer shape, and
 * the stable id of the zitadel.v1.ErrorDetail.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fromBinary, fromJson, toBinary, toJson, type JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString, errorFromJson } from "@connectrpc/connect/protocol-connect";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { ErrorDetailSchema } from "../../src/gen/zitadel/v1/object_pb.js";
import { assertErrorShape, expectError, providerInput, rawConnect } from "../helpers/admin-api.js";
import { adminClient, type Protocol } from "../helpers/clients.js";
import { rawGrpc, rawGrpcWeb, type WireCall, type WireAnswer } from "../helpers/grpc-wire.js";
import { assertGatewayError, okJson, rest } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

type Caller = "anonymous" | "viewer" | "owner";

/** What every row may use: a provider that exists and is inactive, and tokens. */
interface Fixture {
  readonly t: TestServer;
  readonly inactiveId: string;
  readonly tokens: Readonly<Record<Caller, string | undefined>>;
}

/** One outcome and the call that provokes it. */
interface Row {
  readonly name: string;
  /** Absent for the success row. */
  readonly code?: Code;
  /** The HTTP status under Connect and REST. */
  readonly httpStatus: number;
  /** The ErrorDetail's id; absent for the success row. */
  readonly detailId?: string;
  readonly caller: Caller;
  readonly rpc: "listSMTPConfigs" | "addSMTPConfig" | "getSMTPConfigById" | "deactivateSMTPConfig";
  /** The REST binding, "VERB template" under /admin/v1; path variables come from the request. */
  readonly route: string;
  /** The request in proto3 JSON. */
  request(f: Fixture): JsonObject;
}

const rows: readonly Row[] = [
  {
    name: "no token",
    code: Code.Unauthenticated,
    httpStatus: 401,
    detailId: "AUTH-none01",
    caller: "anonymous",
    rpc: "listSMTPConfigs",
    route: "POST /smtp/_search",
    request: () => ({}),
  },
  {
    name: "a viewer adding a provider",
    code: Code.PermissionDenied,
    httpStatus: 403,
    detailId: "AUTHZ-perm01",
    caller: "viewer",
    rpc: "addSMTPConfig",
    route: "POST /smtp",
    request: () => ({ ...providerInput() }),
  },
  {
    name: "reading an unknown provider",
    code: Code.NotFound,
    httpStatus: 404,
    detailId: "SMTP-nf01",
    caller: "owner",
    rpc: "getSMTPConfigById",
    route: "GET /smtp/{id}",
    request: () => ({ id: "4242" }),
  },
  {
    name: "a host without a port",
    code: Code.InvalidArgument,
    httpStatus: 400,
    detailId: "SMTP-host01",
    caller: "owner",
    rpc: "addSMTPConfig",
    route: "POST /smtp",
    request: () => ({ ...providerInput({ host: "smtp.example.com" }) }),
  },
  {
    name: "deactivating an inactive provider",
    code: Code.FailedPrecondition,
    httpStatus: 400,
    detailId: "SMTP-act02",
    caller: "owner",
    rpc: "deactivateSMTPConfig",
    route: "POST /smtp/{id}/_deactivate",
    request: (f) => ({ id: f.inactiveId }),
  },
  {
    name: "a viewer reading a provider",
    httpStatus: 200,
    caller: "viewer",
    rpc: "getSMTPConfigById",
    route: "GET /smtp/{id}",
    request: (f) => ({ id: f.inactiveId }),
  },
];

/** Checks a success answer in proto3 JSON: the provider the row asked for. */
function assertProvider(answer: JsonObject | undefined, f: Fixture): void {
  assert.equal((answer?.smtpConfig as JsonObject | undefined)?.id, f.inactiveId);
}

/** Checks an error's code, its shape, and its ErrorDetail's id. */
function assertRowError(err: ConnectError | undefined, row: Row): void {
  assert.ok(err, "expected an error, got success");
  assert.equal(Code[err.code], Code[row.code!], err.rawMessage);
  assertErrorShape(err);
  assert.equal(err.findDetails(ErrorDetailSchema)[0].id, row.detailId);
}

async function viaClient(protocol: Protocol, row: Row, f: Fixture): Promise<void> {
  const client = adminClient(protocol, f.t.baseUrl, f.tokens[row.caller]);
  const method = AdminService.method[row.rpc];
  const send = client[row.rpc] as unknown as (req: unknown) => Promise<unknown>;
  const call = send(fromJson(method.input, row.request(f)));
  if (row.code === undefined) {
    assertProvider(toJson(method.output, (await call) as never) as JsonObject, f);
    return;
  }
  const err = await expectError(call, row.code);
  assert.equal(err.findDetails(ErrorDetailSchema)[0].id, row.detailId);
}

async function viaConnectWire(row: Row, f: Fixture): Promise<void> {
  const method = AdminService.method[row.rpc];
  const token = f.tokens[row.caller];
  const answer = await rawConnect({ port: f.t.port, method: method.name, body: row.request(f), token });
  assert.equal(answer.status, row.httpStatus, answer.body);
  const body = JSON.parse(answer.body) as JsonObject;
  if (row.code === undefined) return assertProvider(body, f);

  assert.equal(body.code, codeToString(row.code));
  assert.deepEqual(Object.keys(body).sort(), ["code", "details", "message"]);
  assert.equal((body.details as JsonObject[])[0].type, ErrorDetailSchema.typeName);
  assertRowError(errorFromJson(body, undefined, new ConnectError("not an error body", Code.Unknown)), row);
}

async function viaGrpcWire(send: (call: WireCall) => Promise<WireAnswer>, row: Row, f: Fixture): Promise<void> {
  const method = AdminService.method[row.rpc];
  const message = toBinary(method.input, fromJson(method.input, row.request(f)));
  const path = `/${AdminService.typeName}/${method.name}`;
  const answer = await send({ port: f.t.port, path, message, token: f.tokens[row.caller] });
  assert.equal(answer.httpStatus, 200);
  if (row.code === undefined) {
    assert.equal(answer.metadata.get("grpc-status"), "0");
    assert.ok(answer.message, "no response message");
    return assertProvider(toJson(method.output, fromBinary(method.output, answer.message)) as JsonObject, f);
  }
  assert.ok(answer.metadata.has("grpc-status-details-bin"), "no grpc-status-details-bin");
  assertRowError(answer.error, row);
}

async function viaRest(row: Row, f: Fixture): Promise<void> {
  const [verb, template] = row.route.split(" ");
  const body = { ...row.request(f) };
  const path = template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = String(body[name]);
    delete body[name];
    return encodeURIComponent(value);
  });
  const hasBody = verb === "POST" || verb === "PUT";
  const options = { token: f.tokens[row.caller], body: hasBody ? body : undefined };
  const answer = await rest(f.t.baseUrl, verb, `/admin/v1${path}`, options);
  if (row.code === undefined) return assertProvider(okJson(answer), f);
  assertGatewayError(answer, row.httpStatus, row.code, row.detailId);
}

/** How each protocol runs a row. */
const runners: Readonly<Record<string, (row: Row, f: Fixture) => Promise<void>>> = {
  "Connect JSON": async (row, f) => {
    await viaClient("connect-json", row, f);
    await viaConnectWire(row, f);
  },
  gRPC: async (row, f) => {
    await viaClient("grpc", row, f);
    await viaGrpcWire(rawGrpc, row, f);
  },
  "gRPC-web": async (row, f) => {
    await viaClient("grpc-web", row, f);
    await viaGrpcWire(rawGrpcWeb, row, f);
  },
  REST: viaRest,
};

function expectation(row: Row): string {
  if (row.code === undefined) return "succeeds";
  return `is ${Code[row.code]} (${row.code}) with ErrorDetail ${row.detailId}`;
}

describe("the error table over every protocol", () => {
  let fixture: Fixture;
  before(async () => {
    const t = await startTestServer();
    const { id } = await adminClient("grpc", t.baseUrl, t.ownerToken).addSMTPConfig(providerInput());
    const tokens = { anonymous: undefined, viewer: await t.token(["IAM_OWNER_VIEWER"]), owner: t.ownerToken };
    fixture = { t, inactiveId: id, tokens };
  });
  after(() => fixture.t.stop());

  for (const [protocol, run] of Object.entries(runners)) {
    describe(`over ${protocol}`, () => {
      for (const row of rows) {
        test(`${row.name} ${expectation(row)}`, () => run(row, fixture));
      }
    });
  }
});
