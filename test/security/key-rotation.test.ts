/**
 * Master-key rotation and failing closed. `smtpgate keys rotate` puts a new
 * key in front of the embedded key file and re-seals every password under
 * it; `smtpgate keys reseal` does the second half for SMTPGATE_MASTERKEY.
 * Afterwards the store holds no value under a retired key (read from the
 * key ids in the store), and a running server keeps working: it learns the
 * new key from the file. A tampered value, or one under a key nobody holds,
 * sends nothing.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { Code } from "@connectrpc/connect";
import { decodeMasterKey } from "../../src/config/master-key.js";
import { keyIdOf, sealedKeyId } from "../../src/domain/secret-box.js";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClient, type AdminClient } from "../helpers/clients.js";
import { runCommand } from "../helpers/child-server.js";
import { eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { addTenant } from "../helpers/tenants.js";

const receiverAddress = "admin@example.test";
const logins = { alpha: "alpha-secret-1", beta: "beta-secret-2", gamma: "gamma-secret-3" };

/** The key ids of every sealed value in the store, by provider id. */
async function keyIdsInStore(t: TestServer): Promise<Map<string, string | undefined>> {
  const ids = new Map<string, string | undefined>();
  for (const instanceId of await t.server.store.listInstanceIds()) {
    for (const p of (await t.server.store.readProviders(instanceId)).providers) {
      if (p.sealedPassword !== "") ids.set(p.id, sealedKeyId(p.sealedPassword));
    }
  }
  return ids;
}

/** The key ids in the embedded key file, in order. */
function keyFileIds(dataDir: string): string[] {
  return readFileSync(join(dataDir, "masterkey"), "utf8").trim().split("\n").map((line) => keyIdOf(decodeMasterKey(line)));
}

function addProvider(admin: AdminClient, sink: SmtpSink, user: keyof typeof logins): Promise<{ id: string }> {
  return admin.addSMTPConfig({ ...providerInput({ host: sink.hostPort, user }), password: logins[user] });
}

/** Sends a test mail through `id` and returns the login the sink saw. */
async function loginOf(admin: AdminClient, sink: SmtpSink, id: string): Promise<[string, string, boolean]> {
  const before = sink.authAttempts.length;
  await admin.testSMTPConfigById({ id, receiverAddress });
  const attempt = sink.authAttempts[before];
  assert.ok(attempt, "no login reached the sink");
  return [attempt.username, attempt.password, attempt.accepted];
}

describe("smtpgate keys rotate, while the server runs on the embedded key file", () => {
  let sink: SmtpSink;
  let t: TestServer;
  let admin: AdminClient;
  const ids: Record<string, string> = {};
  let oldKeyId: string;
  let rotation: { code: number | null; stdout: string; stderr: string };

  before(async () => {
    sink = await startSmtpSink({ users: logins });
    t = await startTestServer();
    admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    ids.alpha = (await addProvider(admin, sink, "alpha")).id;
    ids.beta = (await addProvider(admin, sink, "beta")).id;
    const other = await addTenant(t, "connect-json", "keys");
    ids.gamma = (await addProvider(other.owner, sink, "gamma")).id;
    oldKeyId = keyFileIds(t.dataDir)[0];
    assert.deepEqual([...new Set((await keyIdsInStore(t)).values())], [oldKeyId]);

    rotation = await runCommand(["keys", "rotate", "--data-dir", t.dataDir]);
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("exits 0, puts a new key first in the key file and keeps the old one after it", () => {
    assert.equal(rotation.code, 0, rotation.stderr);
    const fileIds = keyFileIds(t.dataDir);
    assert.equal(fileIds.length, 2);
    assert.equal(fileIds[1], oldKeyId);
    assert.notEqual(fileIds[0], oldKeyId);
    assert.match(rotation.stdout, new RegExp(`new master key ${fileIds[0]} is first in `));
    assert.match(rotation.stdout, new RegExp(`re-sealed 3 password\\(s\\) under key ${fileIds[0]}`));
    assert.match(rotation.stdout, new RegExp(`stored passwords by key: ${fileIds[0]}=3\\n`));
  });

  test("leaves no stored value under the retired key, in any instance", async () => {
    const newKeyId = keyFileIds(t.dataDir)[0];
    const stored = await keyIdsInStore(t);
    assert.equal(stored.size, 3);
    assert.deepEqual([...new Set(stored.values())], [newKeyId]);
  });

  test("records one resealed event per provider, by the command, naming the new key and no secret", async () => {
    const instance = await t.server.store.findInstanceByDomain("127.0.0.1");
    const events = (await t.server.store.listEvents(instance!.id)).filter((e) => e.type === "smtp.config.password.resealed");
    assert.deepEqual(events.map((e) => e.objectId).sort(), [ids.alpha, ids.beta].sort());
    for (const event of events) {
      assert.equal(event.actor, "system:keys-reseal");
      assert.deepEqual(event.payload, { keyId: keyFileIds(t.dataDir)[0] });
    }
  });

  test("the running server opens the values sealed under the key it learned after it started", async () => {
    assert.deepEqual(await loginOf(admin, sink, ids.alpha), ["alpha", logins.alpha, true]);
    assert.deepEqual(await loginOf(admin, sink, ids.beta), ["beta", logins.beta, true]);
  });

  test("the running server seals new passwords under the new key", async () => {
    await admin.updateSMTPConfigPassword({ id: ids.beta, password: logins.beta });
    assert.equal((await keyIdsInStore(t)).get(ids.beta), keyFileIds(t.dataDir)[0]);
    assert.deepEqual(await loginOf(admin, sink, ids.beta), ["beta", logins.beta, true]);
  });

  test("a second rotation puts a third key first and again leaves nothing under an older one", async () => {
    const again = await runCommand(["keys", "rotate", "--data-dir", t.dataDir]);
    assert.equal(again.code, 0, again.stderr);
    const fileIds = keyFileIds(t.dataDir);
    assert.equal(fileIds.length, 3);
    assert.deepEqual([...new Set((await keyIdsInStore(t)).values())], [fileIds[0]]);
    assert.deepEqual(await loginOf(admin, sink, ids.alpha), ["alpha", logins.alpha, true]);
  });
});

describe("smtpgate keys with SMTPGATE_MASTERKEY", () => {
  const oldKey = randomBytes(32).toString("base64");
  const newKey = randomBytes(32).toString("base64");
  const oldId = keyIdOf(decodeMasterKey(oldKey));
  const newId = keyIdOf(decodeMasterKey(newKey));
  let sink: SmtpSink;
  let dataDir: string;
  let id: string;
  before(async () => {
    sink = await startSmtpSink({ users: logins });
    const first = await startTestServer({ masterKeyEnv: oldKey });
    dataDir = first.dataDir;
    id = (await addProvider(adminClient("grpc", first.baseUrl, first.ownerToken), sink, "alpha")).id;
    await first.stop({ keepData: true });
  });
  after(() => sink.stop());

  test("keys rotate refuses to run and says to put the new key first and run keys reseal", async () => {
    const result = await runCommand(["keys", "rotate", "--data-dir", dataDir], { env: { SMTPGATE_MASTERKEY: oldKey } });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /SMTPGATE_MASTERKEY.*"new,old".*smtpgate keys reseal/);
  });

  test("keys reseal with \"new,old\" moves every value to the new key, and the old key can then be dropped", async () => {
    const result = await runCommand(["keys", "reseal", "--data-dir", dataDir], { env: { SMTPGATE_MASTERKEY: `${newKey},${oldKey}` } });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`re-sealed 1 password\\(s\\) under key ${newId}\\n`));
    assert.doesNotMatch(result.stdout, new RegExp(oldId));

    const t = await startTestServer({ dataDir, masterKeyEnv: newKey });
    try {
      assert.deepEqual([...(await keyIdsInStore(t)).values()], [newId]);
      assert.deepEqual(await loginOf(adminClient("grpc", t.baseUrl, t.ownerToken), sink, id), ["alpha", logins.alpha, true]);
    } finally {
      await t.stop({ keepData: true });
    }
  });

  test("keys reseal with a key that opens nothing exits 1, names the providers and changes nothing", async () => {
    const wrong = randomBytes(32).toString("base64");
    const result = await runCommand(["keys", "reseal", "--data-dir", dataDir], { env: { SMTPGATE_MASTERKEY: wrong } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`1 stored password\\(s\\) do not open with the given keys .*/${id}\\); save them again`));
    assert.match(result.stdout, new RegExp(`stored passwords by key: ${newId}=1\\n`));
  });
});

describe("a tampered sealed value", () => {
  let sink: SmtpSink;
  let t: TestServer;
  let admin: AdminClient;
  let tamperedId: string;
  let intactId: string;
  before(async () => {
    sink = await startSmtpSink({ users: logins });
    t = await startTestServer();
    admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    tamperedId = (await addProvider(admin, sink, "alpha")).id;
    intactId = (await addProvider(admin, sink, "beta")).id;
    await admin.activateSMTPConfig({ id: tamperedId });

    // One base64url character of the ciphertext changed, as a disk error or
    // an attacker with write access to the database would.
    const db = new Database(join(t.dataDir, "smtpgate.db"));
    try {
      const row = db.prepare("SELECT sealed_password FROM smtp_providers WHERE id = ?").get(tamperedId) as { sealed_password: string };
      const parts = row.sealed_password.split(".");
      parts[3] = (parts[3][0] === "A" ? "B" : "A") + parts[3].slice(1);
      db.prepare("UPDATE smtp_providers SET sealed_password = ? WHERE id = ?").run(parts.join("."), tamperedId);
    } finally {
      db.close();
    }
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("TestSMTPConfigById fails closed with FailedPrecondition asking for the password again, and the SMTP server sees no connection", async () => {
    const connections = sink.connectionCount();
    const err = await expectError(admin.testSMTPConfigById({ id: tamperedId, receiverAddress }), Code.FailedPrecondition);
    assert.match(err.rawMessage, /stored password failed its integrity check; set the password again \(CRYPTO-open01\)/);
    assert.equal(sink.connectionCount(), connections);
    assert.deepEqual(sink.authAttempts, []);
    assert.ok(t.logLines.some((line) => line.includes("stored password failed its integrity check")), "the log names the cause");
  });

  test("a queued mail waits with a clear reason, and the SMTP server sees no connection", async () => {
    const connections = sink.connectionCount();
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    const { mail } = await notify.sendMail({ to: ["user@example.test"], subject: "welcome", textBody: "x" });
    let lastError = "";
    await eventually(async () => {
      lastError = (await notify.getMail({ id: mail!.id })).mail?.lastError ?? "";
      return lastError !== "";
    }, 10_000, "an attempt");
    assert.match(lastError, /stored SMTP password cannot be opened; save it again/);
    assert.equal((await notify.getMail({ id: mail!.id })).mail?.state, MailState.QUEUED);
    assert.equal(sink.connectionCount(), connections);
    assert.equal(sink.messages.length, 0);
  });

  test("keys rotate re-seals the intact value, leaves the tampered one alone and exits 1 naming it", async () => {
    const result = await runCommand(["keys", "rotate", "--data-dir", t.dataDir]);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /re-sealed 1 password\(s\)/);
    assert.match(result.stderr, new RegExp(`1 stored password\\(s\\) do not open .*/${tamperedId}\\)`));
    const newKeyId = keyFileIds(t.dataDir)[0];
    assert.equal((await keyIdsInStore(t)).get(intactId), newKeyId);
    assert.deepEqual(await loginOf(admin, sink, intactId), ["beta", logins.beta, true]);
  });
});
