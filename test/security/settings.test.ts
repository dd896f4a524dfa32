/**
 * The security settings of `smtpgate serve`, as an operator sets them: the
 * flags and their SMTPGATE_* variables reach the running server, and bad
 * values stop it with exit code 2 before anything starts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { expectError, providerInput } from "../helpers/admin-api.js";
import { adminClient, type AdminClient } from "../helpers/clients.js";
import { runCommand, startChildServer, type ChildServer } from "../helpers/child-server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";
import { detailId } from "./fixtures.js";

const dirs: string[] = [];
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "smtpgate-settings-"));
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A child serve on port 0 and an owner client for it. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildServer; admin: AdminClient }> {
  const dir = dataDir();
  const child = await startChildServer(["--port", "0", "--data-dir", dir, ...args], { env });
  const token = readFileSync(join(dir, "admin.pat"), "utf8").trim();
  return { child, admin: adminClient("connect-json", child.baseUrl, token) };
}

function testMail(host: string) {
  const { senderAddress, senderName } = providerInput();
  return { senderAddress, senderName, tls: false, host, user: "", password: "", receiverAddress: "admin@example.test" };
}

describe("bad security settings", () => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ["a --smtp-deny-network that is not a network", ["--smtp-deny-network", "intranet"], {}, /--smtp-deny-network: "intranet" is not a network/],
    ["an SMTPGATE_SMTP_DENY_NETWORK entry with a bad prefix", [], { SMTPGATE_SMTP_DENY_NETWORK: "10.0.0.0/8,10.0.0.0/40" }, /"10\.0\.0\.0\/40" is not a network/],
    ["a --test-mail-rate that is not a number", ["--test-mail-rate", "fast"], {}, /--test-mail-rate must be a number/],
    ["an SMTPGATE_SEND_RATE below zero", [], { SMTPGATE_SEND_RATE: "-1" }, /--send-rate must be a number/],
  ];
  for (const [what, args, env, message] of cases) {
    test(`${what} exits 2 and names it`, async () => {
      const result = await runCommand(["serve", "--port", "0", "--data-dir", dataDir(), ...args], { env });
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
    });
  }

  test("serve --help lists the security settings with their variables", async () => {
    const result = await runCommand(["serve", "--help"]);
    assert.equal(result.code, 0);
    for (const name of ["SMTP_ALLOW_PLAINTEXT_AUTH", "SMTP_DENY_NETWORK", "TEST_MAIL_RATE", "SEND_RATE"]) {
      const flag = name.toLowerCase().replaceAll("_", "-");
      assert.match(result.stdout, new RegExp(`--${flag}[\\s\\S]*env SMTPGATE_${name}`));
    }
  });
});

describe("security settings reach the running server", () => {
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink();
  });
  after(() => sink.stop());

  test("SMTPGATE_SMTP_DENY_NETWORK, comma-separated, refuses the sink's address before connecting", async () => {
    const { child, admin } = await serve([], { SMTPGATE_SMTP_DENY_NETWORK: "192.0.2.0/24, 127.0.0.0/8" });
    try {
      const connections = sink.connectionCount();
      const err = await expectError(admin.testSMTPConfig(testMail(sink.hostPort)), Code.FailedPrecondition);
      assert.equal(detailId(err), "SMTP-deny01");
      assert.equal(sink.connectionCount(), connections);
    } finally {
      await child.stop();
    }
  });

  test("--smtp-allow-plaintext-auth lets a password be saved for tls=false to a remote host; without it, that is refused", async () => {
    const plain = { ...providerInput({ host: "smtp.remote.test:25", tls: false }), password: "remote-secret" };
    const strict = await serve([]);
    try {
      await expectError(strict.admin.addSMTPConfig(plain), Code.InvalidArgument);
    } finally {
      await strict.child.stop();
    }
    const loose = await serve(["--smtp-allow-plaintext-auth"]);
    try {
      assert.ok((await loose.admin.addSMTPConfig(plain)).id);
    } finally {
      await loose.child.stop();
    }
  });

  test("SMTPGATE_TEST_MAIL_RATE=1 allows one test mail per minute", async () => {
    const { child, admin } = await serve([], { SMTPGATE_TEST_MAIL_RATE: "1" });
    try {
      await admin.testSMTPConfig(testMail(sink.hostPort));
      await expectError(admin.testSMTPConfig(testMail(sink.hostPort)), Code.ResourceExhausted);
    } finally {
      await child.stop();
    }
  });
});
