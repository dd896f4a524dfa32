/**
 * The `smtpgate` command against PostgreSQL: `instance add` and
 * `token create` write to the shared database (flag or environment), and
 * `serve` refuses to start there without an explicit master key.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { adminClientAt } from "../helpers/clients.js";
import { runCommand } from "../helpers/child-server.js";
import { createTestDatabase } from "../helpers/postgres.js";
import { startReplica } from "../helpers/replicas.js";
import type { TestServer } from "../helpers/server.js";

const database = await createTestDatabase("cli");

describe("smtpgate commands on PostgreSQL", { skip: database.skip }, () => {
  let replica: TestServer;
  let url: string;
  // Where the commands may put files; PostgreSQL holds the data.
  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-cli-pg-"));
  before(async () => {
    if (database.skip !== undefined) return;
    url = database.url;
    replica = await startReplica(url);
  });
  after(async () => {
    await replica?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    if (database.skip === undefined) await database.drop();
  });

  test("instance add and token create write to the shared database, and the token works on a running replica", async () => {
    const added = await runCommand(["instance", "add", "--database-url", url, "--data-dir", dataDir, "--domain", "cli.pg.test"]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout.trim(), /^\d+$/);

    const created = await runCommand(["token", "create", "--data-dir", dataDir, "--instance", "cli.pg.test", "--role", "IAM_OWNER"], {
      env: { SMTPGATE_DATABASE_URL: url },
    });
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim().split("\n").at(-1)!;

    const admin = adminClientAt("grpc", "cli.pg.test", replica.port, token);
    assert.deepEqual((await admin.listSMTPConfigs({})).result, []);
    const elsewhere = adminClientAt("grpc", "127.0.0.1", replica.port, token);
    await assert.rejects(elsewhere.listSMTPConfigs({}), (err) => ConnectError.from(err).code === Code.Unauthenticated);
  });

  test("instance add refuses a domain that an instance on the shared database already has", async () => {
    const taken = await runCommand(["instance", "add", "--database-url", url, "--data-dir", dataDir, "--domain", "localhost"]);
    assert.equal(taken.code, 2);
    assert.match(taken.stderr, /already belongs to an instance/);
  });

  test("serve with a database URL and no SMTPGATE_MASTERKEY exits non-zero, saying the key is required", async () => {
    for (const [args, env] of [
      [["--database-url", url], {}],
      [[], { SMTPGATE_DATABASE_URL: url }],
    ] as const) {
      const result = await runCommand(["serve", "--port", "0", "--data-dir", dataDir, ...args], { env, timeoutMs: 10_000 });
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /SMTPGATE_MASTERKEY is required with --database-url/);
    }
  });
});
