/**
 * What survives a restart on the same data directory: providers, their
 * states and sequences, and the sealed passwords, after a graceful close and
 * after SIGKILL of a child `smtpgate serve`. And what happens when the master
 * key no longer matches: delivery fails closed, before any byte reaches the
 * SMTP server.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeMasterKey } from "../src/config/master-key.js";
import { keyIdOf } from "../src/domain/secret-box.js";
import { SMTPConfigState, type SMTPConfig } from "../src/gen/zitadel/settings/v1/smtp_pb.js";
import { adminClient, type AdminClient } from "./helpers/clients.js";
import { startChildServer, type ChildServer } from "./helpers/child-server.js";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp-sink.js";
import { startTestServer, type TestServer } from "./helpers/server.js";

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const cleanUp of cleanups.reverse()) await cleanUp();
});

async function sinkFor(users: Record<string, string>): Promise<SmtpSink> {
  const sink = await startSmtpSink({ users });
  cleanups.push(() => sink.stop());
  return sink;
}

function newDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "smtpgate-restart-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A server that stops itself at the end of the file if the test did not. */
async function server(
  dataDir: string,
  overrides: Parameters<typeof startTestServer>[0] = {},
): Promise<TestServer> {
  const t = await startTestServer({ ...overrides, dataDir });
  let stopped = false;
  const stop = t.stop.bind(t);
  cleanups.push(() => (stopped ? undefined : stop({ keepData: true })));
  return { ...t, stop: (opts) => ((stopped = true), stop({ keepData: true, ...opts })) };
}

async function child(args: string[], env?: Record<string, string>): Promise<ChildServer> {
  const c = await startChildServer(args, { env });
  cleanups.push(async () => void (await c.stop("SIGKILL")));
  return c;
}

const receiver = { receiverAddress: "receiver@example.test" };

function providerInput(sink: SmtpSink, user: string, password: string, description: string) {
  return {
    senderAddress: `${user}@restart.test`,
    senderName: `Restart ${description}`,
    tls: false,
    host: sink.hostPort,
    user,
    password,
    replyToAddress: "reply@restart.test",
    description,
  };
}

/**
 * Adds an active provider "alpha" and an inactive "beta", and rotates their
 * passwords a few times; the final passwords are the sink's.
 */
async function seedProviders(
  client: AdminClient,
  sink: SmtpSink,
): Promise<{ alpha: string; beta: string }> {
  const alpha = (await client.addSMTPConfig(providerInput(sink, "alpha", "alpha-old", "alpha"))).id;
  const beta = (await client.addSMTPConfig(providerInput(sink, "beta", "beta-old", "beta"))).id;
  await client.activateSMTPConfig({ id: beta });
  await client.activateSMTPConfig({ id: alpha });
  await client.updateSMTPConfigPassword({ id: alpha, password: "alpha-middle" });
  await client.updateSMTPConfigPassword({ password: "alpha-final" });
  await client.updateSMTPConfig({
    ...providerInput(sink, "beta", "beta-final", "beta, changed"),
    id: beta,
  });
  return { alpha, beta };
}

/** Every provider as read, sorted by id. */
async function snapshot(client: AdminClient): Promise<SMTPConfig[]> {
  const list = await client.listSMTPConfigs({ query: { limit: 100, asc: true } });
  return [...list.result].sort((a, b) => a.id.localeCompare(b.id));
}

function highestSequence(configs: SMTPConfig[]): bigint {
  return configs.reduce((max, c) => (c.details!.sequence > max ? c.details!.sequence : max), 0n);
}

/** Sends a test mail through `id` and asserts the sink saw an accepted login of `user`/`password`. */
async function assertLogsIn(
  client: AdminClient,
  sink: SmtpSink,
  id: string,
  user: string,
  password: string,
): Promise<void> {
  const before = sink.authAttempts.length;
  await client.testSMTPConfigById({ id, ...receiver });
  const attempts = sink.authAttempts.slice(before);
  assert.equal(attempts.length, 1, "expected exactly one AUTH");
  assert.deepEqual(
    [attempts[0].username, attempts[0].password, attempts[0].accepted],
    [user, password, true],
  );
}

/** Asserts that a restarted server still has `configs` and can use and extend them. */
async function assertIntact(
  client: AdminClient,
  sink: SmtpSink,
  configs: SMTPConfig[],
  ids: { alpha: string; beta: string },
) {
  assert.deepEqual(await snapshot(client), configs);
  const active = (await client.getSMTPConfig({})).smtpConfig;
  assert.equal(active?.id, ids.alpha);
  assert.equal(active?.state, SMTPConfigState.SMTP_CONFIG_ACTIVE);

  await assertLogsIn(client, sink, ids.alpha, "alpha", "alpha-final");
  await assertLogsIn(client, sink, ids.beta, "beta", "beta-final");

  // The next write continues above every sequence written before the restart.
  const next = await client.updateSMTPConfigPassword({
    id: ids.beta,
    password: "beta-after-restart",
  });
  assert.equal(next.details?.sequence, highestSequence(configs) + 1n);
  sink.setPassword("beta", "beta-after-restart");
  await assertLogsIn(client, sink, ids.beta, "beta", "beta-after-restart");
}

/** Asserts the refusal of a password no configured key opens: FailedPrecondition, asking for it again, no secret. */
async function assertUnopenable(promise: Promise<unknown>, secrets: string[]): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(
      err.code,
      Code.FailedPrecondition,
      `expected FailedPrecondition, got ${Code[err.code]}: ${err.message}`,
    );
    assert.match(err.rawMessage, /cannot be opened with the configured master keys; set the password again \(CRYPTO-key01\)/);
    for (const secret of secrets)
      assert.ok(!err.message.includes(secret), "the error message contains a secret");
    return true;
  });
}

const sinkUsers = { alpha: "alpha-final", beta: "beta-final" };

describe("restart after a graceful close", () => {
  test("providers, states, sequences and sealed passwords are intact and usable", async () => {
    const sink = await sinkFor(sinkUsers);
    const dataDir = newDataDir();
    const first = await server(dataDir);
    const firstClient = adminClient("connect-json", first.baseUrl, first.ownerToken);
    const ids = await seedProviders(firstClient, sink);
    const configs = await snapshot(firstClient);
    await first.stop();

    const second = await server(dataDir);
    assert.equal(second.ownerToken, first.ownerToken);
    await assertIntact(adminClient("grpc", second.baseUrl, second.ownerToken), sink, configs, ids);
    await second.stop();
  });
});

describe("restart after SIGKILL", () => {
  test("a killed serve loses no acknowledged write, and the restarted one uses the stored passwords", async () => {
    const sink = await sinkFor(sinkUsers);
    const dataDir = newDataDir();
    const first = await child(["--data-dir", dataDir, "--port", "0"]);
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const firstClient = adminClient("connect-json", first.baseUrl, token);
    const ids = await seedProviders(firstClient, sink);
    const configs = await snapshot(firstClient);
    const { signal } = await first.stop("SIGKILL");
    assert.equal(signal, "SIGKILL");

    const second = await child(["--data-dir", dataDir, "--port", "0"]);
    await assertIntact(adminClient("grpc", second.baseUrl, token), sink, configs, ids);
    assert.deepEqual(await second.stop("SIGTERM"), { code: 0, signal: null });
  });
});

describe("restart with another master key", () => {
  test("TestSMTPConfigById fails closed with FailedPrecondition and no AUTH reaches the sink", async () => {
    const sink = await sinkFor(sinkUsers);
    const dataDir = newDataDir();
    const first = await server(dataDir);
    const ids = await seedProviders(
      adminClient("connect-json", first.baseUrl, first.ownerToken),
      sink,
    );
    await first.stop();

    const wrongKey = randomBytes(32).toString("base64");
    const second = await server(dataDir, { masterKeyEnv: wrongKey });
    const client = adminClient("connect-json", second.baseUrl, second.ownerToken);
    const connectionsBefore = sink.connectionCount();
    const authBefore = sink.authAttempts.length;
    const secrets = ["alpha-final", "beta-final", "alpha-old", wrongKey];

    await assertUnopenable(client.testSMTPConfigById({ id: ids.alpha, ...receiver }), secrets);
    await assertUnopenable(client.testSMTPConfigById({ id: ids.beta, ...receiver }), secrets);
    assert.equal(sink.authAttempts.length, authBefore, "an AUTH reached the sink");
    assert.equal(sink.connectionCount(), connectionsBefore, "the server connected to the sink");
    for (const line of second.logLines) {
      for (const secret of secrets)
        assert.ok(!line.includes(secret), `a log line contains a secret: ${line}`);
    }

    // Reads need no key, and the providers are untouched.
    assert.equal((await client.getSMTPConfig({})).smtpConfig?.id, ids.alpha);
    await second.stop();
  });

  test("SMTPGATE_MASTERKEY with a wrong key makes a child serve fail closed too", async () => {
    const sink = await sinkFor(sinkUsers);
    const dataDir = newDataDir();
    const first = await child(["--data-dir", dataDir, "--port", "0"]);
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const ids = await seedProviders(adminClient("connect-json", first.baseUrl, token), sink);
    await first.stop("SIGTERM");

    const wrongKey = randomBytes(32).toString("hex");
    const second = await child(["--data-dir", dataDir, "--port", "0"], {
      SMTPGATE_MASTERKEY: wrongKey,
    });
    const authBefore = sink.authAttempts.length;
    await assertUnopenable(
      adminClient("grpc-web", second.baseUrl, token).testSMTPConfigById({
        id: ids.alpha,
        ...receiver,
      }),
      ["alpha-final", wrongKey],
    );
    assert.equal(sink.authAttempts.length, authBefore);
    await second.stop("SIGTERM");
    for (const line of second.stdoutLines)
      assert.ok(!line.includes("alpha-final") && !line.includes(wrongKey));
  });

  test("with the new key first and the old one second, old passwords open and new ones use the new key", async () => {
    const sink = await sinkFor(sinkUsers);
    const dataDir = newDataDir();
    const first = await server(dataDir);
    const ids = await seedProviders(
      adminClient("connect-json", first.baseUrl, first.ownerToken),
      sink,
    );
    const oldKeyId = (await first.server.store.findProvider(
      await instanceOf(first),
      ids.alpha,
    ))!.sealedPassword.split(".")[1];
    await first.stop();

    const oldKey = readFileSync(join(dataDir, "masterkey"), "utf8").trim();
    const newKey = randomBytes(32).toString("base64");
    const second = await server(dataDir, { masterKeyEnv: `${newKey},${oldKey}` });
    const client = adminClient("connect-json", second.baseUrl, second.ownerToken);
    await assertLogsIn(client, sink, ids.alpha, "alpha", "alpha-final");

    await client.updateSMTPConfigPassword({ id: ids.alpha, password: "alpha-rotated" });
    sink.setPassword("alpha", "alpha-rotated");
    await assertLogsIn(client, sink, ids.alpha, "alpha", "alpha-rotated");
    const instanceId = await instanceOf(second);
    const rotated = (await second.server.store.findProvider(instanceId, ids.alpha))!.sealedPassword;
    const untouched = (await second.server.store.findProvider(instanceId, ids.beta))!
      .sealedPassword;
    assert.equal(rotated.split(".")[1], keyIdOf(decodeMasterKey(newKey)));
    assert.equal(untouched.split(".")[1], oldKeyId);
    await second.stop();
  });
});

async function instanceOf(t: TestServer): Promise<string> {
  return (await t.server.store.findInstanceByDomain("127.0.0.1"))!.id;
}
