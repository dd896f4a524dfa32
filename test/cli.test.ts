/**
 * The `smtpgate` command as an operator runs it: real child processes of
 * bin/smtpgate.js, each on its own temp data directory and port 0.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/zitadel/admin/v1/admin_pb.js";
import { MailState } from "../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient, bearer } from "./helpers/clients.js";
import { notifyClient } from "./helpers/notify.js";
import { startSlowSink } from "./helpers/slow-sink.js";
import { runCommand, startChildServer, type ChildServer, type CommandResult } from "./helpers/child-server.js";

const tempDirs: string[] = [];
const children: ChildServer[] = [];

function newDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "smtpgate-cli-"));
  tempDirs.push(dir);
  return dir;
}

async function serve(args: string[], env?: Record<string, string>): Promise<ChildServer> {
  const server = await startChildServer(args, { env });
  children.push(server);
  return server;
}

after(async () => {
  await Promise.all(children.map((c) => c.stop("SIGKILL")));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A client of `host` (selecting the instance) on a server's port. */
function clientFor(port: number, token: string, host = "127.0.0.1") {
  const transport = createConnectTransport({
    baseUrl: `http://${host}:${port}`,
    httpVersion: "1.1",
    interceptors: [bearer(token)],
  });
  return createClient(AdminService, transport);
}

/** A client that reaches 127.0.0.1 but names `instanceHost` in the Host header. */
function clientForInstance(port: number, token: string, instanceHost: string) {
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    httpVersion: "1.1",
    interceptors: [
      bearer(token),
      (next) => (req) => {
        req.header.set("host", `${instanceHost}:${port}`);
        return next(req);
      },
    ],
  });
  return createClient(AdminService, transport);
}

const smtpInput = {
  senderAddress: "noreply@cli.test",
  senderName: "CLI test",
  tls: false,
  host: "127.0.0.1:2525",
  user: "cli",
  password: "cli-secret-password",
  replyToAddress: "",
  description: "from the cli test",
};

async function assertCode(promise: Promise<unknown>, code: Code): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    return true;
  });
}

function lastLine(text: string): string {
  const lines = text.trim().split("\n");
  return lines[lines.length - 1].trim();
}

/** Runs `smtpgate token create --data-dir <dataDir> --instance <instance> <more>`. */
function tokenCreate(dataDir: string, instance: string, ...more: string[]) {
  return runCommand(["token", "create", "--data-dir", dataDir, "--instance", instance, ...more]);
}

/** The token a `token create` printed as its last line; fails the test unless it exited 0. */
function printedToken(result: CommandResult): string {
  assert.equal(result.code, 0, result.stderr);
  return lastLine(result.stdout);
}

/** Asserts that each "--flag" line of a command's help is followed by its SMTPGATE_* variable. */
function assertEveryOptionNamesItsEnv(help: string): void {
  const lines = help.split("\n");
  lines.forEach((line, i) => {
    const option = /^\s+--([a-z-]+)/.exec(line)?.[1];
    if (!option || option === "help") return;
    const env = `SMTPGATE_${option.toUpperCase().replaceAll("-", "_")}`;
    assert.ok(lines[i + 1]?.includes(`env ${env}`), `--${option} does not name ${env}:\n${help}`);
  });
}

describe("smtpgate --help", () => {
  const commands: Array<{ args: string[]; flags: string[]; env: string[] }> = [
    { args: ["--help"], flags: ["serve", "token create", "instance add"], env: ["SMTPGATE_"] },
    {
      args: ["serve", "--help"],
      flags: ["--port", "--host", "--data-dir", "--log-level", "--smtp-ca-file", "--help"],
      env: ["SMTPGATE_PORT", "SMTPGATE_HOST", "SMTPGATE_DATA_DIR", "SMTPGATE_LOG_LEVEL"],
    },
    {
      args: ["token", "create", "--help"],
      flags: ["--instance", "--role", "--data-dir", "--help"],
      env: ["SMTPGATE_INSTANCE", "SMTPGATE_ROLE", "SMTPGATE_DATA_DIR"],
    },
    {
      args: ["instance", "add", "--help"],
      flags: ["--domain", "--data-dir", "--help"],
      env: ["SMTPGATE_DOMAIN", "SMTPGATE_DATA_DIR"],
    },
  ];
  for (const { args, flags, env } of commands) {
    test(`smtpgate ${args.join(" ")} exits 0 and names every option and its env variable`, async () => {
      const result = await runCommand(args);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Usage: smtpgate/);
      for (const text of [...flags, ...env])
        assert.ok(result.stdout.includes(text), `help lacks ${text}:\n${result.stdout}`);
      assertEveryOptionNamesItsEnv(result.stdout);
    });
  }

  test("help creates no data directory", async () => {
    const parent = newDataDir();
    const dataDir = join(parent, "never");
    const result = await runCommand(["serve", "--help", "--data-dir", dataDir]);
    assert.equal(result.code, 0);
    assert.equal(existsSync(dataDir), false);
  });
});

describe("smtpgate usage errors", () => {
  test("an unknown command exits 2 and says the command is unknown", async () => {
    const result = await runCommand(["frobnicate"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command "frobnicate"/);
    assert.match(result.stderr, /smtpgate --help/);
  });

  test("an unknown subcommand exits 2 and names it", async () => {
    const result = await runCommand(["token", "delete"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command "token delete"/);
  });

  for (const args of [
    ["serve", "--bogus"],
    ["token", "create", "--bogus"],
    ["instance", "add", "--bogus"],
  ]) {
    test(`an unknown flag of ${args.slice(0, -1).join(" ")} exits 2 and names the flag`, async () => {
      const result = await runCommand([...args, "--data-dir", newDataDir()]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /--bogus/);
      assert.equal(result.stdout, "");
    });
  }

  test("serve with a port out of range exits 2 and names --port", async () => {
    const result = await runCommand(["serve", "--port", "70000", "--data-dir", newDataDir()]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--port/);
  });

  for (const value of ["24", "0h", "1w", "5 m", "1.5h"]) {
    test(`serve --mail-max-age ${value} exits 2 and names the flag and the form it wants`, async () => {
      const result = await runCommand(["serve", "--mail-max-age", value, "--data-dir", newDataDir()]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /--mail-max-age must be a positive number followed by s, m, h or d/);
    });
  }

  test("an invalid SMTPGATE_PORT exits 2 and names --port", async () => {
    const result = await runCommand(["serve", "--data-dir", newDataDir()], {
      env: { SMTPGATE_PORT: "http" },
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--port/);
  });

  test("token create without --instance exits 2 and asks for it", async () => {
    const result = await runCommand(["token", "create", "--data-dir", newDataDir()]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--instance/);
  });

  test("token create with an unknown role exits 2 and lists the known roles", async () => {
    const dir = newDataDir();
    const result = await tokenCreate(dir, "localhost", "--role", "ROOT");
    assert.equal(result.code, 2);
    assert.match(result.stderr, /ROOT/);
    assert.match(result.stderr, /IAM_OWNER_VIEWER/);
  });

  test("instance add with a domain that is taken exits 2 and says so", async () => {
    const dir = newDataDir();
    assert.equal(
      (await runCommand(["instance", "add", "--data-dir", dir, "--domain", "taken.test"])).code,
      0,
    );
    const again = await runCommand([
      "instance",
      "add",
      "--data-dir",
      dir,
      "--domain",
      "taken.test",
    ]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already belongs/);
  });
});

describe("smtpgate serve", () => {
  test("bootstraps admin.pat and masterkey with mode 0600 and logs the token's path, not the token", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const tokenFile = join(dataDir, "admin.pat");
    const keyFile = join(dataDir, "masterkey");

    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const token = readFileSync(tokenFile, "utf8").trim();
    assert.match(token, /^\S{20,}$/);

    const bootstrapped = server.stdoutLines.find((l) =>
      l.includes('"event":"instance.bootstrapped"'),
    );
    assert.ok(bootstrapped, "no instance.bootstrapped log line");
    assert.equal(JSON.parse(bootstrapped).tokenFile, tokenFile);

    // The token works, and neither it nor the master key appears in the log.
    await clientFor(server.port, token).listSMTPConfigs({});
    const key = readFileSync(keyFile, "utf8").trim();
    const { code } = await server.stop("SIGTERM");
    assert.equal(code, 0);
    for (const line of server.stdoutLines) {
      assert.ok(!line.includes(token), "a log line contains the token");
      assert.ok(!line.includes(key), "a log line contains the master key");
    }
  });

  test("a second start on the same data dir keeps the first token and writes no new one", async () => {
    const dataDir = newDataDir();
    const first = await serve(["--data-dir", dataDir, "--port", "0"]);
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8");
    assert.equal((await first.stop()).code, 0);

    const second = await serve(["--data-dir", dataDir, "--port", "0"]);
    assert.equal(readFileSync(join(dataDir, "admin.pat"), "utf8"), token);
    assert.ok(!second.stdoutLines.some((l) => l.includes("instance.bootstrapped")));
    await clientFor(second.port, token.trim()).listSMTPConfigs({});
    assert.equal((await second.stop()).code, 0);
  });

  test("SIGTERM stops serve with exit code 0 and a server.stopped log line", async () => {
    const server = await serve(["--data-dir", newDataDir(), "--port", "0"]);
    const { code, signal } = await server.stop("SIGTERM");
    assert.equal(signal, null);
    assert.equal(code, 0);
    assert.ok(server.stdoutLines.some((l) => l.includes('"event":"server.stopped"')));
  });

  test("SIGTERM ends serve promptly while a client holds an idle keep-alive connection", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    // The HTTP/1.1 client keeps its socket open after the answer.
    await clientFor(server.port, token).listSMTPConfigs({});
    const started = Date.now();
    assert.deepEqual(await server.stop("SIGTERM"), { code: 0, signal: null });
    // Node's keep-alive timeout is 5 s: waiting it out would mean idle sockets are not closed.
    assert.ok(Date.now() - started < 2500, `serve took ${Date.now() - started} ms to stop`);
  });

  test("SIGTERM ends serve promptly while a gRPC client holds an idle HTTP/2 session", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    // The connect-node gRPC transport keeps its HTTP/2 session open between calls.
    await adminClient("grpc", server.baseUrl, token).listSMTPConfigs({});
    const started = Date.now();
    assert.deepEqual(await server.stop("SIGTERM"), { code: 0, signal: null });
    assert.ok(Date.now() - started < 2500, `serve took ${Date.now() - started} ms to stop`);
  });

  test("SIGTERM lets a gRPC call in flight finish with its answer before serve exits", async () => {
    const sink = await startSlowSink(() => 1000);
    try {
      const dataDir = newDataDir();
      const server = await serve(["--data-dir", dataDir, "--port", "0"]);
      const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
      const call = adminClient("grpc", server.baseUrl, token).testSMTPConfig({
        senderAddress: "noreply@smtpgate.test",
        senderName: "smtpgate",
        tls: false,
        host: sink.hostPort,
        receiverAddress: "someone@example.com",
      });
      for (let i = 0; i < 200 && sink.arrivals.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
      assert.equal(sink.arrivals.length, 1, "the test mail is in flight");

      const stopped = server.stop("SIGTERM");
      await call;
      assert.equal(sink.arrivals[0].answered, true);
      assert.deepEqual(await stopped, { code: 0, signal: null });
    } finally {
      await sink.stop();
    }
  });

  test("SIGINT stops serve with exit code 0", async () => {
    const server = await serve(["--data-dir", newDataDir(), "--port", "0"]);
    assert.deepEqual(await server.stop("SIGINT"), { code: 0, signal: null });
  });

  test("SMTPGATE_PORT and SMTPGATE_DATA_DIR configure serve without flags", async () => {
    const dataDir = newDataDir();
    const server = await serve([], { SMTPGATE_PORT: "0", SMTPGATE_DATA_DIR: dataDir });
    assert.notEqual(server.port, 8080);
    assert.ok(server.port > 0);
    assert.equal(server.listening.dataDir, dataDir);
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    await clientFor(server.port, token).listSMTPConfigs({});
    assert.equal((await server.stop()).code, 0);
  });

  test("SMTPGATE_MAIL_MAX_AGE sets how long a mail may wait: past it, a mail waiting for a provider fails and says why", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--port", "0", "--data-dir", dataDir], { SMTPGATE_MAIL_MAX_AGE: "1s" });
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const notify = notifyClient("connect-json", server.baseUrl, token);
    const { mail } = await notify.sendMail({ to: ["someone@example.com"], subject: "hello", textBody: "body" });

    let found = mail;
    for (let tries = 0; tries < 100 && found?.state !== MailState.FAILED; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      found = (await notify.getMail({ id: mail!.id })).mail;
    }
    assert.equal(found?.state, MailState.FAILED);
    assert.match(found?.lastError ?? "", /gave up: not delivered within the maximum age; last error: no active SMTP provider/);
    assert.equal((await server.stop()).code, 0);
  });

  test("SMTPGATE_MAIL_RETENTION deletes finished mails once they are older: GetMail then answers NotFound", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--port", "0", "--data-dir", dataDir, "--mail-max-age", "1s"], { SMTPGATE_MAIL_RETENTION: "2s" });
    const token = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const notify = notifyClient("connect-json", server.baseUrl, token);
    const { mail } = await notify.sendMail({ to: ["someone@example.com"], subject: "hello", textBody: "body" });

    let code = "";
    for (let tries = 0; tries < 100 && code !== "NotFound"; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      code = await notify.getMail({ id: mail!.id }).then((r) => MailState[r.mail!.state], (err: unknown) => Code[ConnectError.from(err).code]);
    }
    assert.equal(code, "NotFound");
    assert.ok(server.stdoutLines.some((l) => l.includes('"event":"mail.purged"') && l.includes('"count":1')), "the purge is logged");
    assert.equal((await server.stop()).code, 0);
  });

  test("a flag wins over its environment variable", async () => {
    const flagDir = newDataDir();
    const envDir = newDataDir();
    const server = await serve(["--data-dir", flagDir], {
      SMTPGATE_PORT: "0",
      SMTPGATE_DATA_DIR: envDir,
    });
    assert.equal(server.listening.dataDir, flagDir);
    assert.ok(existsSync(join(flagDir, "admin.pat")));
    assert.equal(existsSync(join(envDir, "admin.pat")), false);
    await server.stop();
  });
});

describe("smtpgate token create and instance add", () => {
  test("a viewer token created while the server runs can read but not write", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const viewer = printedToken(await tokenCreate(dataDir, "localhost", "--role", "IAM_OWNER_VIEWER"));

    const client = clientFor(server.port, viewer);
    const list = await client.listSMTPConfigs({});
    assert.equal(list.details?.totalResult, 0n);
    await assertCode(client.addSMTPConfig(smtpInput), Code.PermissionDenied);
    await assertCode(client.updateSMTPConfigPassword({ password: "x" }), Code.PermissionDenied);
    await server.stop();
  });

  test("an owner token created by the CLI can write", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const owner = printedToken(await tokenCreate(dataDir, "127.0.0.1"));
    const added = await clientFor(server.port, owner).addSMTPConfig(smtpInput);
    assert.ok(added.id);
    await server.stop();
  });

  test("token create for an unknown instance exits with an error and prints no token", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const result = await tokenCreate(dataDir, "nowhere.test");
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /nowhere\.test/);
    assert.equal(result.stdout, "");
    await server.stop();
  });

  test("instance add, then token create for it, gives a token of that instance only", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--data-dir", dataDir, "--port", "0"]);
    const added = await runCommand([
      "instance",
      "add",
      "--data-dir",
      dataDir,
      "--domain",
      "other.test",
    ]);
    assert.equal(added.code, 0, added.stderr);
    const instanceId = lastLine(added.stdout);
    assert.match(instanceId, /^\S+$/);

    const token = printedToken(await tokenCreate(dataDir, "other.test"));

    // Works on other.test and its writes carry that instance as owner...
    const other = clientForInstance(server.port, token, "other.test");
    const res = await other.addSMTPConfig(smtpInput);
    assert.equal(res.details?.resourceOwner, instanceId);
    // ...and is worthless on the bootstrap instance.
    await assertCode(clientFor(server.port, token).listSMTPConfigs({}), Code.Unauthenticated);
    const bootstrapToken = readFileSync(join(dataDir, "admin.pat"), "utf8").trim();
    const list = await clientFor(server.port, bootstrapToken).listSMTPConfigs({});
    assert.equal(list.details?.totalResult, 0n);
    await server.stop();
  });

  test("SMTPGATE_DATA_DIR, SMTPGATE_DOMAIN, SMTPGATE_INSTANCE and SMTPGATE_ROLE replace the flags", async () => {
    const dataDir = newDataDir();
    const server = await serve(["--port", "0"], { SMTPGATE_DATA_DIR: dataDir });
    const added = await runCommand(["instance", "add"], {
      env: { SMTPGATE_DATA_DIR: dataDir, SMTPGATE_DOMAIN: "env.test" },
    });
    assert.equal(added.code, 0, added.stderr);
    const created = await runCommand(["token", "create"], {
      env: {
        SMTPGATE_DATA_DIR: dataDir,
        SMTPGATE_INSTANCE: "env.test",
        SMTPGATE_ROLE: "IAM_OWNER_VIEWER",
      },
    });
    assert.equal(created.code, 0, created.stderr);
    const client = clientForInstance(server.port, lastLine(created.stdout), "env.test");
    await client.listSMTPConfigs({});
    await assertCode(client.addSMTPConfig(smtpInput), Code.PermissionDenied);
    await server.stop();
  });
});
