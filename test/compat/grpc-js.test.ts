/**
 * @grpc/grpc-js as an independent gRPC client (the stack under
 * `@zitadel/node` and most Node gRPC users): no connect code on the client
 * side, only raw paths, our message schemas for (de)serialization, and
 * metadata. Error details are read from `grpc-status-details-bin` and
 * decoded by hand as google.rpc.Status.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import {
  ActivateSMTPConfigRequestSchema,
  ActivateSMTPConfigResponseSchema,
  AddSMTPConfigRequestSchema,
  AddSMTPConfigResponseSchema,
  GetSMTPConfigRequestSchema,
  GetSMTPConfigResponseSchema,
  TestSMTPConfigByIdRequestSchema,
  TestSMTPConfigByIdResponseSchema,
  UpdateSMTPConfigPasswordRequestSchema,
  UpdateSMTPConfigPasswordResponseSchema,
} from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { SMTPConfigState } from "../../src/gen/zitadel/settings/v1/smtp_pb.js";
import { ErrorDetailSchema } from "../../src/gen/zitadel/v1/object_pb.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const service = "/zitadel.admin.v1.AdminService";

/** One RPC as grpc-js sees it: a path and two schemas. */
interface Rpc<I extends DescMessage, O extends DescMessage> {
  readonly name: string;
  readonly input: I;
  readonly output: O;
}

const rpcs = {
  getSMTPConfig: {
    name: "GetSMTPConfig",
    input: GetSMTPConfigRequestSchema,
    output: GetSMTPConfigResponseSchema,
  },
  addSMTPConfig: {
    name: "AddSMTPConfig",
    input: AddSMTPConfigRequestSchema,
    output: AddSMTPConfigResponseSchema,
  },
  activateSMTPConfig: {
    name: "ActivateSMTPConfig",
    input: ActivateSMTPConfigRequestSchema,
    output: ActivateSMTPConfigResponseSchema,
  },
  updateSMTPConfigPassword: {
    name: "UpdateSMTPConfigPassword",
    input: UpdateSMTPConfigPasswordRequestSchema,
    output: UpdateSMTPConfigPasswordResponseSchema,
  },
  testSMTPConfigById: {
    name: "TestSMTPConfigById",
    input: TestSMTPConfigByIdRequestSchema,
    output: TestSMTPConfigByIdResponseSchema,
  },
} as const;

/** Calls `rpc` with grpc-js, sending `token` (if any) as bearer metadata. */
function call<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  rpc: Rpc<I, O>,
  input: MessageInitShape<I>,
  token?: string,
): Promise<MessageShape<O>> {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `${service}/${rpc.name}`,
      (value: MessageInitShape<I>) => Buffer.from(toBinary(rpc.input, create(rpc.input, value))),
      (bytes: Buffer) => fromBinary(rpc.output, bytes),
      input,
      metadata,
      { deadline: Date.now() + 10_000 },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}

/** google.rpc.Status, decoded by hand from its three fields. */
interface RpcStatus {
  code: number;
  message: string;
  details: Array<{ typeUrl: string; value: Uint8Array }>;
}

function decodeStatus(bytes: Uint8Array): RpcStatus {
  const status: RpcStatus = { code: 0, message: "", details: [] };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) status.code = reader.int32();
    else if (field === 2 && wireType === WireType.LengthDelimited) status.message = reader.string();
    else if (field === 3 && wireType === WireType.LengthDelimited)
      status.details.push(decodeAny(reader.bytes()));
    else reader.skip(wireType);
  }
  return status;
}

function decodeAny(bytes: Uint8Array): { typeUrl: string; value: Uint8Array } {
  const any: { typeUrl: string; value: Uint8Array } = { typeUrl: "", value: new Uint8Array() };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) any.typeUrl = reader.string();
    else if (field === 2 && wireType === WireType.LengthDelimited) any.value = reader.bytes();
    else reader.skip(wireType);
  }
  return any;
}

/**
 * Asserts that `promise` fails with gRPC status `code`, and that the
 * trailer's status details agree with it and carry one zitadel.v1.ErrorDetail.
 * Returns that detail.
 */
async function assertStatus(
  promise: Promise<unknown>,
  code: grpc.status,
): Promise<{ id: string; message: string }> {
  const err = await promise.then(
    () => assert.fail(`expected status ${grpc.status[code]}, the call succeeded`),
    (e: unknown) => e as grpc.ServiceError,
  );
  assert.equal(
    err.code,
    code,
    `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`,
  );

  const raw = err.metadata.get("grpc-status-details-bin");
  assert.equal(raw.length, 1, "grpc-status-details-bin missing from the trailers");
  const status = decodeStatus(raw[0] as Buffer);
  assert.equal(status.code, code);
  assert.equal(status.message, err.details);
  assert.equal(status.details.length, 1);
  assert.equal(status.details[0].typeUrl, "type.googleapis.com/zitadel.v1.ErrorDetail");

  const detail = fromBinary(ErrorDetailSchema, status.details[0].value);
  assert.ok(detail.id !== "", "ErrorDetail.id is empty");
  // ZITADEL's form: the text, then the stable id in parentheses.
  assert.equal(err.details, `${detail.message} (${detail.id})`);
  return { id: detail.id, message: detail.message };
}

/** Asserts that the sink's newest AUTH used `password` and was accepted. */
function assertLastLogin(sink: SmtpSink, password: string): void {
  const last = sink.authAttempts.at(-1);
  assert.ok(last, "no AUTH reached the sink");
  assert.equal(last.password, password);
  assert.equal(last.accepted, true);
}

const settings = {
  senderAddress: "grpcjs@example.test",
  senderName: "grpc-js sender",
  tls: false,
  user: "grpcjs-user",
  replyToAddress: "replies@example.test",
  description: "added over grpc-js",
};

describe("grpc-js client against the AdminService", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let client: grpc.Client;
  let instanceId: string;
  let viewer: string;

  before(async () => {
    t = await startTestServer();
    sink = await startSmtpSink({ users: { "grpcjs-user": "first-password" } });
    client = new grpc.Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    instanceId = (await t.server.store.findInstanceByDomain("127.0.0.1"))!.id;
    viewer = await t.token(["IAM_OWNER_VIEWER"]);
  });
  after(async () => {
    client.close();
    await sink.stop();
    await t.stop();
  });

  test("GetSMTPConfig without an active provider is NotFound (5) with an ErrorDetail", async () => {
    const detail = await assertStatus(
      call(client, rpcs.getSMTPConfig, {}, t.ownerToken),
      grpc.status.NOT_FOUND,
    );
    assert.match(detail.message, /no active SMTP configuration/);
  });

  test("UpdateSMTPConfigPassword without id and no active provider is NotFound (5)", async () => {
    await assertStatus(
      call(client, rpcs.updateSMTPConfigPassword, { password: "x" }, t.ownerToken),
      grpc.status.NOT_FOUND,
    );
  });

  test("UpdateSMTPConfigPassword of an unknown id is NotFound (5)", async () => {
    const input = { id: "no-such-provider", password: "x" };
    const detail = await assertStatus(
      call(client, rpcs.updateSMTPConfigPassword, input, t.ownerToken),
      grpc.status.NOT_FOUND,
    );
    assert.match(detail.message, /not found/);
  });

  test("an added and activated provider is returned by GetSMTPConfig with every field and its details", async () => {
    const added = await call(
      client,
      rpcs.addSMTPConfig,
      { ...settings, host: sink.hostPort, password: "first-password" },
      t.ownerToken,
    );
    const activated = await call(client, rpcs.activateSMTPConfig, { id: added.id }, t.ownerToken);
    assert.ok(activated.details!.sequence > added.details!.sequence);

    const res = await call(client, rpcs.getSMTPConfig, {}, viewer);
    const config = res.smtpConfig!;
    assert.equal(config.id, added.id);
    assert.equal(config.senderAddress, settings.senderAddress);
    assert.equal(config.senderName, settings.senderName);
    assert.equal(config.tls, false);
    assert.equal(config.host, sink.hostPort);
    assert.equal(config.user, settings.user);
    assert.equal(config.replyToAddress, settings.replyToAddress);
    assert.equal(config.description, settings.description);
    assert.equal(config.state, SMTPConfigState.SMTP_CONFIG_ACTIVE);
    assert.equal(config.details!.sequence, activated.details!.sequence);
    assert.equal(config.details!.resourceOwner, instanceId);
    assert.deepEqual(
      timestampDate(config.details!.creationDate!),
      timestampDate(added.details!.creationDate!),
    );
    assert.deepEqual(
      timestampDate(config.details!.changeDate!),
      timestampDate(activated.details!.changeDate!),
    );
  });

  test("UpdateSMTPConfigPassword with and without id answers details and the next login uses the new password", async () => {
    const active = (await call(client, rpcs.getSMTPConfig, {}, t.ownerToken)).smtpConfig!;
    const before = Date.now();

    sink.setPassword("grpcjs-user", "second-password");
    const byId = await call(
      client,
      rpcs.updateSMTPConfigPassword,
      { id: active.id, password: "second-password" },
      t.ownerToken,
    );
    assert.ok(byId.details!.sequence > active.details!.sequence);
    assert.equal(byId.details!.resourceOwner, instanceId);
    const changed = timestampDate(byId.details!.changeDate!).getTime();
    assert.ok(
      changed >= before - 1000 && changed <= Date.now() + 1000,
      "changeDate is not the time of the write",
    );
    await call(
      client,
      rpcs.testSMTPConfigById,
      { id: active.id, receiverAddress: "rcpt@example.test" },
      t.ownerToken,
    );
    assertLastLogin(sink, "second-password");

    // The older generation of the RPC: no id means the active provider.
    sink.setPassword("grpcjs-user", "third-password");
    const noId = await call(
      client,
      rpcs.updateSMTPConfigPassword,
      { password: "third-password" },
      t.ownerToken,
    );
    assert.equal(noId.details!.sequence, byId.details!.sequence + 1n);
    assert.equal(noId.details!.resourceOwner, instanceId);
    await call(
      client,
      rpcs.testSMTPConfigById,
      { id: active.id, receiverAddress: "rcpt@example.test" },
      t.ownerToken,
    );
    assertLastLogin(sink, "third-password");

    const after = (await call(client, rpcs.getSMTPConfig, {}, t.ownerToken)).smtpConfig!;
    assert.equal(after.details!.sequence, noId.details!.sequence);
  });

  test("a viewer token is PermissionDenied (7) on UpdateSMTPConfigPassword but may GetSMTPConfig", async () => {
    const detail = await assertStatus(
      call(client, rpcs.updateSMTPConfigPassword, { password: "viewer-tries" }, viewer),
      grpc.status.PERMISSION_DENIED,
    );
    assert.match(detail.message, /iam\.write/);
    assert.ok((await call(client, rpcs.getSMTPConfig, {}, viewer)).smtpConfig);
  });

  for (const [label, token] of [
    ["no token", undefined],
    ["an unknown token", "sgpat_not-a-real-token"],
  ] as const) {
    test(`${label} is Unauthenticated (16) on GetSMTPConfig and UpdateSMTPConfigPassword`, async () => {
      await assertStatus(call(client, rpcs.getSMTPConfig, {}, token), grpc.status.UNAUTHENTICATED);
      await assertStatus(
        call(client, rpcs.updateSMTPConfigPassword, { password: "anonymous" }, token),
        grpc.status.UNAUTHENTICATED,
      );
    });
  }

  test("a token of another instance is Unauthenticated (16) here", async () => {
    await t.addInstance(["grpcjs-other.test"]);
    const foreign = await t.token(["IAM_OWNER"], "grpcjs-other.test");
    await assertStatus(call(client, rpcs.getSMTPConfig, {}, foreign), grpc.status.UNAUTHENTICATED);
  });

  test("an :authority no instance owns is NotFound (5), before the token is looked at", async () => {
    const stranger = new grpc.Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure(), {
      "grpc.default_authority": "unknown-instance.test",
    });
    try {
      const detail = await assertStatus(
        call(stranger, rpcs.getSMTPConfig, {}, "sgpat_whatever"),
        grpc.status.NOT_FOUND,
      );
      assert.match(detail.message, /instance/);
    } finally {
      stranger.close();
    }
  });

  test("an invalid password (line break) is InvalidArgument (3) and names the field", async () => {
    const detail = await assertStatus(
      call(client, rpcs.updateSMTPConfigPassword, { password: "a\r\nb" }, t.ownerToken),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.match(detail.message, /password/);
  });
});
