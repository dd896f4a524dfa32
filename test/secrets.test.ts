/**
 * SMTP passwords never leave the sealed form: not in any file of the data
 * directory, not in logs (in-process and a child `serve`), not in answers,
 * not in event payloads. Sealed values are salted and bound to their
 * provider, so a value copied onto another row fails closed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import Database from "better-sqlite3";
import {
  GetEmailProviderByIdRequestSchema,
  GetSMTPConfigByIdRequestSchema,
  ListSMTPConfigsRequestSchema,
} from "../src/gen/zitadel/admin/v1/admin_pb.js";
import { adminClient, type AdminClient } from "./helpers/clients.js";
import { startChildServer } from "./helpers/child-server.js";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp-sink.js";
import { startTestServer, type TestServer } from "./helpers/server.js";

/** A password no other text in the process could contain by chance. */
function distinctPassword(label: string): string {
  return `pw-${label}-${randomBytes(9).toString("base64url")}`;
}

/** The forms a leaked password could take: as typed, and as AUTH PLAIN/LOGIN send it. */
function leakForms(password: string): Buffer[] {
  return [
    Buffer.from(password, "utf8"),
    Buffer.from(password, "utf16le"),
    Buffer.from(Buffer.from(password).toString("base64")),
    Buffer.from(Buffer.from(`\0user\0${password}`).toString("base64")),
  ];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** Asserts that no form of any password occurs in `haystack`; `where` names it in the failure. */
function assertNoPassword(
  haystack: Buffer | string,
  passwords: readonly string[],
  where: string,
): void {
  const bytes = typeof haystack === "string" ? Buffer.from(haystack, "utf8") : haystack;
  for (const password of passwords) {
    for (const form of leakForms(password)) {
      assert.ok(!bytes.includes(form), `${where} contains password ${password}`);
    }
  }
}

const receiver = { receiverAddress: "receiver@example.test" };

function settings(sink: SmtpSink, user: string) {
  return {
    senderAddress: `${user}@secrets.test`,
    senderName: `Secrets ${user}`,
    tls: false,
    host: sink.hostPort,
    user,
    replyToAddress: "",
    description: `provider of ${user}`,
  };
}

/**
 * Sets passwords through every RPC that carries one, and sends test mails,
 * some with a rejected login. Returns every password used.
 */
async function exercisePasswords(
  client: AdminClient,
  sink: SmtpSink,
): Promise<{ passwords: string[]; ids: string[] }> {
  const passwords: string[] = [];
  const pw = (label: string) => {
    const p = distinctPassword(label);
    passwords.push(p);
    return p;
  };

  const a = (await client.addSMTPConfig({ ...settings(sink, "alpha"), password: pw("add") })).id;
  const b = (
    await client.addEmailProviderSMTP({ ...settings(sink, "beta"), password: pw("add-email") })
  ).id;
  await client.activateSMTPConfig({ id: a });
  await client.updateSMTPConfigPassword({ id: a, password: pw("by-id") });
  await client.updateSMTPConfigPassword({ password: pw("active") });
  await client.updateSMTPConfig({ ...settings(sink, "alpha"), id: a, password: pw("update") });
  await client.updateEmailProviderSMTP({
    ...settings(sink, "beta"),
    id: b,
    password: pw("update-email"),
  });
  const betaFinal = pw("email-password");
  await client.updateEmailProviderSMTPPassword({ id: b, password: betaFinal });

  // A login the sink accepts, one it rejects, and one with typed settings.
  sink.setPassword("beta", betaFinal);
  await client.testSMTPConfigById({ id: b, ...receiver });
  await assert.rejects(client.testSMTPConfigById({ id: a, ...receiver }), ConnectError);
  await assert.rejects(
    client.testSMTPConfig({
      ...settings(sink, "gamma"),
      password: pw("typed"),
      id: "",
      ...receiver,
    }),
  );
  // Refused input that carries a password must not echo it either.
  await assert.rejects(
    client.addSMTPConfig({
      ...settings(sink, "delta"),
      senderAddress: "bad",
      password: pw("invalid"),
    }),
  );
  return { passwords, ids: [a, b] };
}

/** Raw answer bodies of the reads, in Connect JSON and Connect binary. */
async function readBodies(
  baseUrl: string,
  token: string,
  ids: string[],
): Promise<Array<{ what: string; body: Buffer }>> {
  const calls: Array<{ method: string; json: unknown; binary: Uint8Array }> = [
    { method: "GetSMTPConfig", json: {}, binary: new Uint8Array() },
    { method: "GetEmailProvider", json: {}, binary: new Uint8Array() },
    {
      method: "ListSMTPConfigs",
      json: {},
      binary: toBinary(ListSMTPConfigsRequestSchema, create(ListSMTPConfigsRequestSchema)),
    },
    { method: "ListEmailProviders", json: {}, binary: new Uint8Array() },
    ...ids.flatMap((id) => [
      {
        method: "GetSMTPConfigById",
        json: { id },
        binary: toBinary(
          GetSMTPConfigByIdRequestSchema,
          create(GetSMTPConfigByIdRequestSchema, { id }),
        ),
      },
      {
        method: "GetEmailProviderById",
        json: { id },
        binary: toBinary(
          GetEmailProviderByIdRequestSchema,
          create(GetEmailProviderByIdRequestSchema, { id }),
        ),
      },
    ]),
  ];
  const bodies: Array<{ what: string; body: Buffer }> = [];
  for (const call of calls) {
    const url = `${baseUrl}/zitadel.admin.v1.AdminService/${call.method}`;
    const headers = { authorization: `Bearer ${token}` };
    const json = await fetch(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify(call.json),
    });
    const binary = await fetch(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/proto" },
      body: Buffer.from(call.binary),
    });
    assert.equal(json.status, 200, `${call.method} over JSON answered ${json.status}`);
    assert.equal(binary.status, 200, `${call.method} over binary answered ${binary.status}`);
    bodies.push({
      what: `${call.method} JSON answer`,
      body: Buffer.from(await json.arrayBuffer()),
    });
    bodies.push({
      what: `${call.method} binary answer`,
      body: Buffer.from(await binary.arrayBuffer()),
    });
  }
  return bodies;
}

describe("passwords at rest, in logs, in answers and in events", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let client: AdminClient;
  let passwords: string[];
  let ids: string[];

  before(async () => {
    t = await startTestServer();
    sink = await startSmtpSink({ users: { alpha: "the sink knows another one" } });
    client = adminClient("connect-json", t.baseUrl, t.ownerToken);
    ({ passwords, ids } = await exercisePasswords(client, sink));
  });
  after(async () => {
    await sink.stop();
    await t.stop();
  });

  test("no file under the data dir holds a password while the server runs", () => {
    const files = filesUnder(t.dataDir);
    assert.ok(files.some((f) => f.endsWith("smtpgate.db")));
    for (const file of files) assertNoPassword(readFileSync(file), passwords, file);
  });

  test("no log line holds a password", () => {
    assert.ok(t.logLines.length > 10, "expected the server to have logged");
    for (const line of t.logLines) assertNoPassword(line, passwords, `log line ${line}`);
  });

  test("no answer of Get or List, JSON or binary, holds a password", async () => {
    for (const { what, body } of await readBodies(t.baseUrl, t.ownerToken, ids)) {
      assert.ok(body.length > 0, `${what} is empty`);
      assertNoPassword(body, passwords, what);
    }
  });

  test("no event payload holds a password or a sealed value", async () => {
    const instanceId = (await t.server.store.findInstanceByDomain("127.0.0.1"))!.id;
    const events = await t.server.store.listEvents(instanceId);
    assert.ok(events.filter((e) => e.type === "smtp.config.password.changed").length >= 5);
    const sealed = await Promise.all(
      ids.map(async (id) => (await t.server.store.findProvider(instanceId, id))!.sealedPassword),
    );
    for (const event of events) {
      const payload = JSON.stringify(event.payload);
      assertNoPassword(payload, passwords, `payload of ${event.type}`);
      for (const value of sealed)
        assert.ok(!payload.includes(value), `payload of ${event.type} holds a sealed password`);
    }
  });

  test("setting the same password twice stores two different sealed values, neither holding it", async () => {
    const instanceId = (await t.server.store.findInstanceByDomain("127.0.0.1"))!.id;
    const same = distinctPassword("same");
    const sealedOf = async (id: string) =>
      (await t.server.store.findProvider(instanceId, id))!.sealedPassword;

    await client.updateSMTPConfigPassword({ id: ids[0], password: same });
    const first = await sealedOf(ids[0]);
    await client.updateSMTPConfigPassword({ id: ids[0], password: same });
    const second = await sealedOf(ids[0]);
    await client.updateSMTPConfigPassword({ id: ids[1], password: same });
    const other = await sealedOf(ids[1]);

    assert.notEqual(first, second);
    assert.notEqual(first, other);
    assert.notEqual(second, other);
    for (const value of [first, second, other]) assertNoPassword(value, [same], "a sealed value");
    passwords.push(same);
  });

  test("after a graceful stop, no file under the data dir holds a password", async () => {
    await t.stop({ keepData: true });
    for (const file of filesUnder(t.dataDir)) assertNoPassword(readFileSync(file), passwords, file);
    // Restart so that after() has a server to stop.
    t = await startTestServer({ dataDir: t.dataDir });
  });
});

describe("passwords in a child serve's output", () => {
  test("neither stdout nor stderr of smtpgate serve --log-level debug holds a password", async () => {
    const sink = await startSmtpSink({ users: { alpha: "the sink knows another one" } });
    const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-secrets-"));
    const server = await startChildServer([
      "--data-dir",
      dataDir,
      "--port",
      "0",
      "--log-level",
      "debug",
    ]);
    try {
      const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
      const { passwords } = await exercisePasswords(
        adminClient("grpc", server.baseUrl, token),
        sink,
      );
      assert.deepEqual(await server.stop("SIGTERM"), { code: 0, signal: null });
      assert.ok(
        server.stdoutLines.some((l) => l.includes('"event":"rpc.done"')),
        "expected request logs on stdout",
      );
      for (const line of server.stdoutLines)
        assertNoPassword(line, passwords, `stdout line ${line}`);
      assertNoPassword(server.stderr(), passwords, "stderr");
      for (const file of filesUnder(dataDir)) assertNoPassword(readFileSync(file), passwords, file);
    } finally {
      await server.stop("SIGKILL");
      await sink.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("a sealed value copied onto another provider", () => {
  test("fails closed with FailedPrecondition, and no AUTH reaches the SMTP server", async () => {
    const sink = await startSmtpSink({ users: { alpha: "alpha-secret", beta: "beta-secret" } });
    let t = await startTestServer();
    try {
      const client = adminClient("connect-json", t.baseUrl, t.ownerToken);
      const alpha = (
        await client.addSMTPConfig({ ...settings(sink, "alpha"), password: "alpha-secret" })
      ).id;
      const beta = (
        await client.addSMTPConfig({ ...settings(sink, "beta"), password: "beta-secret" })
      ).id;
      await client.testSMTPConfigById({ id: beta, ...receiver });
      assert.equal(sink.authAttempts.length, 1);
      await t.stop({ keepData: true });

      // Same instance, same master key: only the provider id differs.
      const db = new Database(join(t.dataDir, "smtpgate.db"));
      try {
        const copy = db
          .prepare("SELECT sealed_password FROM smtp_providers WHERE id = ?")
          .get(alpha) as { sealed_password: string };
        const changed = db
          .prepare("UPDATE smtp_providers SET sealed_password = ? WHERE id = ?")
          .run(copy.sealed_password, beta);
        assert.equal(changed.changes, 1);
      } finally {
        db.close();
      }

      t = await startTestServer({ dataDir: t.dataDir });
      const restarted = adminClient("connect-json", t.baseUrl, t.ownerToken);
      await assert.rejects(
        restarted.testSMTPConfigById({ id: beta, ...receiver }),
        (err: unknown) => {
          assert.ok(err instanceof ConnectError);
          assert.equal(err.code, Code.FailedPrecondition);
          assert.match(err.rawMessage, /set the password again/);
          assert.ok(!err.message.includes("alpha-secret") && !err.message.includes("beta-secret"));
          return true;
        },
      );
      assert.equal(sink.authAttempts.length, 1, "an AUTH reached the sink with the copied value");

      // The original row still opens where it belongs.
      await restarted.testSMTPConfigById({ id: alpha, ...receiver });
      assert.deepEqual(
        sink.authAttempts.map((a) => [a.username, a.password, a.accepted]),
        [
          ["beta", "beta-secret", true],
          ["alpha", "alpha-secret", true],
        ],
      );
    } finally {
      await sink.stop();
      await t.stop();
    }
  });
});
