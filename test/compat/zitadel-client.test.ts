/**
 * Wire compatibility with clients nobody here wrote: ZITADEL's published
 * `@zitadel/proto` descriptors (its own field names and numbers) and
 * `@zitadel/client` helpers (its client factory, its gRPC and gRPC-web
 * transports, its bearer interceptor). Our generated code is not used on the
 * client side, so a wrong field number or JSON name in our protos shows up
 * as a field that does not round-trip.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
// @zitadel/client 1.3.1's types claim to re-export Code and ConnectError, but
// its ESM build does not, so those come from connect itself.
import { NewAuthorizationBearerInterceptor, toDate } from "@zitadel/client";
import { createServerTransport } from "@zitadel/client/node";
import { createAdminServiceClient } from "@zitadel/client/v1";
import { createClientTransport } from "@zitadel/client/web";
import { AdminService as ZitadelAdminService } from "@zitadel/proto/zitadel/admin_pb.js";
import { ErrorDetailSchema } from "@zitadel/proto/zitadel/message_pb.js";
import type { ObjectDetails } from "@zitadel/proto/zitadel/object_pb.js";
import {
  EmailProviderState,
  SMTPConfigState,
  type SMTPConfig,
} from "@zitadel/proto/zitadel/settings_pb.js";
import { AdminService as OurAdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { ErrorDetailSchema as OurErrorDetailSchema } from "../../src/gen/zitadel/v1/object_pb.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

type AdminClient = ReturnType<typeof createAdminServiceClient>;

/** The ways a ZITADEL user reaches the admin API, each with ZITADEL's own pieces where they exist. */
const transports: Record<string, (baseUrl: string, token: string) => Transport> = {
  // @zitadel/client ships no Connect transport; connect-node's with ZITADEL's interceptor.
  "Connect JSON": (baseUrl, token) =>
    createConnectTransport({
      baseUrl,
      httpVersion: "1.1",
      useBinaryFormat: false,
      interceptors: [NewAuthorizationBearerInterceptor(token)],
    }),
  "Connect binary": (baseUrl, token) =>
    createConnectTransport({
      baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      interceptors: [NewAuthorizationBearerInterceptor(token)],
    }),
  // ZITADEL's server-side helper: gRPC over HTTP/2.
  gRPC: (baseUrl, token) => createServerTransport(token, { baseUrl }),
  // ZITADEL's browser helper: gRPC-web over fetch.
  "gRPC-web": (baseUrl, token) => createClientTransport(token, { baseUrl }),
};

/** A fresh server and sink for one test, and a ZITADEL client over one protocol. */
interface Setup {
  readonly t: TestServer;
  readonly sink: SmtpSink;
  readonly client: AdminClient;
  readonly instanceId: string;
  stop(): Promise<void>;
}

async function setUp(protocol: string, users: Record<string, string>): Promise<Setup> {
  const t = await startTestServer();
  const sink = await startSmtpSink({ users });
  const client = createAdminServiceClient(transports[protocol](t.baseUrl, t.ownerToken));
  const instanceId = (await t.server.store.findInstanceByDomain("127.0.0.1"))!.id;
  return {
    t,
    sink,
    client,
    instanceId,
    async stop() {
      try {
        await sink.stop();
      } finally {
        await t.stop();
      }
    },
  };
}

function ms(date: Date | undefined): number {
  assert.ok(date, "timestamp missing");
  return date.getTime();
}

/** Asserts the details a write answered: its sequence follows `after`, owner and time are right. */
function assertWriteDetails(
  details: ObjectDetails | undefined,
  instanceId: string,
  after: bigint,
  since: number,
): bigint {
  assert.ok(details, "details missing");
  assert.ok(details.sequence > after, `sequence ${details.sequence} is not above ${after}`);
  assert.equal(details.resourceOwner, instanceId);
  const changed = ms(toDate(details.changeDate));
  assert.ok(
    changed >= since - 1000 && changed <= Date.now() + 1000,
    "changeDate is not the time of the write",
  );
  return details.sequence;
}

/** The fields of an SMTPConfig a test expects, besides its details. */
type ConfigFields = Omit<SMTPConfig, "$typeName" | "details" | "$unknown">;

/** Asserts every field of `config`; `details` as read: sequence and both dates. */
function assertConfig(
  config: SMTPConfig | undefined,
  fields: ConfigFields,
  details: { sequence: bigint; resourceOwner: string; created: number; changed: number },
): void {
  assert.ok(config, "smtp_config missing");
  const { $typeName: _t, $unknown: unknown, details: got, ...rest } = config;
  assert.equal(unknown, undefined, "the answer has fields ZITADEL's SMTPConfig does not know");
  assert.deepEqual(rest, fields);
  assert.ok(got, "details missing");
  assert.equal(got.sequence, details.sequence);
  assert.equal(got.resourceOwner, details.resourceOwner);
  assert.equal(ms(toDate(got.creationDate)), details.created);
  assert.equal(ms(toDate(got.changeDate)), details.changed);
}

/** Asserts a ConnectError of `code` carrying ZITADEL's ErrorDetail; returns the detail. */
async function assertError(
  promise: Promise<unknown>,
  code: Code,
): Promise<{ id: string; message: string }> {
  const err = await promise.then(
    () => assert.fail(`expected ${Code[code]}, the call succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectError, `not a ConnectError: ${String(err)}`);
  assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
  const details = err.findDetails(ErrorDetailSchema);
  assert.equal(details.length, 1, "no zitadel.v1.ErrorDetail in the error");
  assert.equal(err.rawMessage, `${details[0].message} (${details[0].id})`);
  return details[0];
}

/** Asserts that the sink's newest AUTH was `user` with `password`, accepted. */
function assertLastLogin(sink: SmtpSink, user: string, password: string): void {
  const last = sink.authAttempts.at(-1);
  assert.ok(last, "no AUTH reached the sink");
  assert.deepEqual([last.username, last.password, last.accepted], [user, password, true]);
}

const receiver = { receiverAddress: "receiver@example.test" };

/** "Type.field=number" for every field a message reaches, with kind and JSON name. */
function describeFields(message: DescMessage, seen = new Set<string>()): string[] {
  if (seen.has(message.typeName)) return [];
  seen.add(message.typeName);
  // By number: the order fields are declared in does not reach the wire.
  return [...message.fields]
    .sort((a, b) => a.number - b.number)
    .flatMap((f) => {
      const kind = f.fieldKind === "list" ? `repeated ${f.listKind}` : f.fieldKind;
      const type = f.message?.typeName ?? f.enum?.typeName ?? String(f.scalar);
      const line = `${message.typeName}.${f.name}=${f.number} ${kind} ${type} json:${f.jsonName} oneof:${f.oneof?.name ?? "-"}`;
      const values = f.enum
        ? [`${f.enum.typeName}: ${f.enum.values.map((v) => `${v.name}=${v.number}`).join(" ")}`]
        : [];
      return [line, ...values, ...(f.message ? describeFields(f.message, seen) : [])];
    });
}

test("every RPC smtpgate serves has exactly ZITADEL's paths, fields, numbers and JSON names", () => {
  for (const ours of OurAdminService.methods) {
    const theirs = ZitadelAdminService.methods.find((m) => m.name === ours.name);
    assert.ok(theirs, `ZITADEL has no ${ours.name}`);
    assert.equal(theirs.parent.typeName, ours.parent.typeName);
    assert.equal(theirs.methodKind, ours.methodKind);
    assert.deepEqual(
      describeFields(ours.input),
      describeFields(theirs.input),
      `${ours.name} request`,
    );
    assert.deepEqual(
      describeFields(ours.output),
      describeFields(theirs.output),
      `${ours.name} response`,
    );
  }
  assert.deepEqual(describeFields(OurErrorDetailSchema), describeFields(ErrorDetailSchema));
});

for (const protocol of Object.keys(transports)) {
  describe(`@zitadel/client over ${protocol}`, () => {
    test("the SMTP config lifecycle round-trips every field, state and detail", async () => {
      const s = await setUp(protocol, { "zitadel-user": "pw-add", "zitadel-user-2": "pw-update" });
      try {
        await runLifecycle(s);
      } finally {
        await s.stop();
      }
    });

    test("UpdateSMTPConfigPassword with id and without id (the active one) is applied to the next login", async () => {
      const s = await setUp(protocol, { "seed-user": "pw-initial" });
      try {
        await runPasswordUpdates(s);
      } finally {
        await s.stop();
      }
    });

    test("errors carry ZITADEL's code and zitadel.v1.ErrorDetail", async () => {
      const s = await setUp(protocol, {});
      try {
        const notFound = await assertError(
          s.client.getSMTPConfigById({ id: "missing" }),
          Code.NotFound,
        );
        assert.match(notFound.message, /not found/);
        await assertError(s.client.getSMTPConfig({}), Code.NotFound);
        await assertError(s.client.updateSMTPConfigPassword({ password: "x" }), Code.NotFound);

        const viewer = await s.t.token(["IAM_OWNER_VIEWER"]);
        const asViewer = createAdminServiceClient(transports[protocol](s.t.baseUrl, viewer));
        await assertError(
          asViewer.updateSMTPConfigPassword({ id: "any", password: "x" }),
          Code.PermissionDenied,
        );

        const stranger = createAdminServiceClient(
          transports[protocol](s.t.baseUrl, "sgpat_unknown"),
        );
        await assertError(stranger.listSMTPConfigs({}), Code.Unauthenticated);

        // ZITADEL RPCs outside the SMTP subset are cleanly refused.
        await assert.rejects(s.client.getMyInstance({}), (err: unknown) => {
          assert.ok(err instanceof ConnectError);
          assert.equal(err.code, Code.Unimplemented, `got ${Code[err.code]}: ${err.message}`);
          return true;
        });

        const bad = { ...smtpInput("127.0.0.1:25"), senderAddress: "not-an-address" };
        const invalid = await assertError(s.client.addSMTPConfig(bad), Code.InvalidArgument);
        assert.match(invalid.message, /sender_address/);
      } finally {
        await s.stop();
      }
    });
  });
}

function smtpInput(host: string) {
  return {
    senderAddress: "zitadel-compat@example.test",
    senderName: "ZITADEL compat",
    tls: false,
    host,
    user: "zitadel-user",
    password: "pw-add",
    replyToAddress: "reply-to@example.test",
    description: "added by @zitadel/client",
  };
}

async function runLifecycle({ client, sink, instanceId }: Setup): Promise<void> {
  const since = Date.now();
  const { password: _p, ...addedFields } = smtpInput(sink.hostPort);

  // Add: inactive, every field stored, password (field 6) used for AUTH.
  const added = await client.addSMTPConfig(smtpInput(sink.hostPort));
  assert.ok(added.id);
  let seq = assertWriteDetails(added.details, instanceId, 0n, since);
  const created = ms(toDate(added.details!.changeDate));
  assert.equal(ms(toDate(added.details!.creationDate)), created);

  let fields: ConfigFields = {
    ...addedFields,
    id: added.id,
    state: SMTPConfigState.SMTP_CONFIG_INACTIVE,
  };
  let read = (await client.getSMTPConfigById({ id: added.id })).smtpConfig;
  assertConfig(read, fields, {
    sequence: seq,
    resourceOwner: instanceId,
    created,
    changed: created,
  });
  await client.testSMTPConfigById({ id: added.id, ...receiver });
  assertLastLogin(sink, "zitadel-user", "pw-add");

  // Update every field, with tls true and a new password (field 7).
  const changedFields = {
    senderAddress: "changed@example.test",
    senderName: "Changed name",
    tls: true,
    host: "smtp.changed.example:2525",
    user: "zitadel-user-2",
    replyToAddress: "changed-reply@example.test",
    description: "changed by @zitadel/client",
  };
  const updated = await client.updateSMTPConfig({
    id: added.id,
    ...changedFields,
    password: "pw-update",
  });
  seq = assertWriteDetails(updated.details, instanceId, seq, since);
  fields = { ...fields, ...changedFields };
  read = (await client.getSMTPConfigById({ id: added.id })).smtpConfig;
  assertConfig(read, fields, {
    sequence: seq,
    resourceOwner: instanceId,
    created,
    changed: ms(toDate(updated.details!.changeDate)),
  });

  // Back to the sink: a new host needs the password again (smtpgate's rule).
  const back = await client.updateSMTPConfig({
    id: added.id,
    ...changedFields,
    tls: false,
    host: sink.hostPort,
    password: "pw-update",
  });
  seq = assertWriteDetails(back.details, instanceId, seq, since);
  fields = { ...fields, tls: false, host: sink.hostPort };
  await client.testSMTPConfigById({ id: added.id, ...receiver });
  assertLastLogin(sink, "zitadel-user-2", "pw-update");

  // An update without a password keeps the stored one.
  const described = await client.updateSMTPConfig({
    id: added.id,
    ...changedFields,
    tls: false,
    host: sink.hostPort,
    description: "described again",
  });
  seq = assertWriteDetails(described.details, instanceId, seq, since);
  fields = { ...fields, description: "described again" };
  await client.testSMTPConfigById({ id: added.id, ...receiver });
  assertLastLogin(sink, "zitadel-user-2", "pw-update");

  // Activate: GetSMTPConfig answers it, List and ListEmailProviders show it.
  const activated = await client.activateSMTPConfig({ id: added.id });
  seq = assertWriteDetails(activated.details, instanceId, seq, since);
  const activeAt = ms(toDate(activated.details!.changeDate));
  fields = { ...fields, state: SMTPConfigState.SMTP_CONFIG_ACTIVE };
  const active = (await client.getSMTPConfig({})).smtpConfig;
  assertConfig(active, fields, {
    sequence: seq,
    resourceOwner: instanceId,
    created,
    changed: activeAt,
  });

  const list = await client.listSMTPConfigs({ query: { offset: 0n, limit: 10, asc: true } });
  assert.equal(list.details?.totalResult, 1n);
  assert.equal(list.details?.processedSequence, seq);
  assert.ok(Math.abs(ms(toDate(list.details?.viewTimestamp)) - Date.now()) < 5000);
  assert.equal(list.result.length, 1);
  assertConfig(list.result[0], fields, {
    sequence: seq,
    resourceOwner: instanceId,
    created,
    changed: activeAt,
  });
  await assertEmailProvider(client, fields, seq);

  // Deactivate, then remove.
  const deactivated = await client.deactivateSMTPConfig({ id: added.id });
  seq = assertWriteDetails(deactivated.details, instanceId, seq, since);
  read = (await client.getSMTPConfigById({ id: added.id })).smtpConfig;
  assert.equal(read?.state, SMTPConfigState.SMTP_CONFIG_INACTIVE);
  assert.equal(read?.details?.sequence, seq);
  await assertError(client.getSMTPConfig({}), Code.NotFound);

  const removed = await client.removeSMTPConfig({ id: added.id });
  assertWriteDetails(removed.details, instanceId, seq, since);
  await assertError(client.getSMTPConfigById({ id: added.id }), Code.NotFound);
  assert.equal((await client.listSMTPConfigs({})).details?.totalResult, 0n);
}

/** The same provider through ZITADEL's EmailProvider view (oneof smtp = 4). */
async function assertEmailProvider(
  client: AdminClient,
  fields: ConfigFields,
  sequence: bigint,
): Promise<void> {
  const providers = await client.listEmailProviders({});
  assert.equal(providers.result.length, 1);
  const provider = providers.result[0];
  assert.equal(provider.id, fields.id);
  assert.equal(provider.description, fields.description);
  assert.equal(provider.state, EmailProviderState.EMAIL_PROVIDER_ACTIVE);
  assert.equal(provider.details?.sequence, sequence);
  assert.equal(provider.config.case, "smtp");
  const { $typeName: _t, ...smtp } = provider.config.value!;
  assert.deepEqual(smtp, {
    senderAddress: fields.senderAddress,
    senderName: fields.senderName,
    tls: fields.tls,
    host: fields.host,
    user: fields.user,
    replyToAddress: fields.replyToAddress,
  });
}

async function runPasswordUpdates({ client, sink, instanceId }: Setup): Promise<void> {
  const since = Date.now();
  const input = { ...smtpInput(sink.hostPort), user: "seed-user", password: "pw-initial" };
  const active = await client.addSMTPConfig(input);
  const inactive = await client.addSMTPConfig({ ...input, description: "second, inactive" });
  const activated = await client.activateSMTPConfig({ id: active.id });
  let seq = activated.details!.sequence;

  // Newer generation: by id (field 2).
  sink.setPassword("seed-user", "pw-by-id");
  const byId = await client.updateSMTPConfigPassword({ id: active.id, password: "pw-by-id" });
  seq = assertWriteDetails(byId.details, instanceId, seq, since);
  await client.testSMTPConfigById({ id: active.id, ...receiver });
  assertLastLogin(sink, "seed-user", "pw-by-id");

  // Older generation: no id means the active provider.
  sink.setPassword("seed-user", "pw-active");
  const noId = await client.updateSMTPConfigPassword({ password: "pw-active" });
  seq = assertWriteDetails(noId.details, instanceId, seq, since);
  await client.testSMTPConfigById({ id: active.id, ...receiver });
  assertLastLogin(sink, "seed-user", "pw-active");
  assert.equal(
    (await client.getSMTPConfigById({ id: active.id })).smtpConfig?.details?.sequence,
    seq,
  );

  // Unlike ZITADEL, an inactive provider's password may be set before activating it.
  sink.setPassword("seed-user", "pw-inactive");
  const other = await client.updateSMTPConfigPassword({ id: inactive.id, password: "pw-inactive" });
  assertWriteDetails(other.details, instanceId, seq, since);
  await client.testSMTPConfigById({ id: inactive.id, ...receiver });
  assertLastLogin(sink, "seed-user", "pw-inactive");
  // ...and the active one kept its own.
  sink.setPassword("seed-user", "pw-active");
  await client.testSMTPConfigById({ id: active.id, ...receiver });
  assertLastLogin(sink, "seed-user", "pw-active");
}
