/**
 * PostgreSQL stops and starts again under two running `smtpgate serve`
 * processes. While it is down, calls fail cleanly as Unavailable and both
 * processes live on, even with mails on the wire whose outcome cannot be
 * recorded; once it is back, everything resumes: calls, the outcome of
 * those mails, a password change and the next delivery.
 *
 * This stops the whole local server (pg_ctlcluster), so it holds the test
 * server lock exclusively (see test/helpers/postgres.ts): other PostgreSQL
 * test files, in this run or another, wait instead of failing. It stops
 * and starts in two steps, not with `restart`, to call the replicas while
 * the database is certainly down.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { startChildServer, type ChildServer } from "../helpers/child-server.js";
import { adminClient, type Protocol } from "../helpers/clients.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import {
  adminUrl,
  clearRestartMarker,
  createTestDatabase,
  markRestartInProgress,
  withAdminClient,
} from "../helpers/postgres.js";
import { queueMails, startTimedSink, testMasterKey, waitForMails, type TimedSink } from "../helpers/replicas.js";
import type { TestServer } from "../helpers/server.js";

const run = promisify(execFile);

/** The local cluster behind adminUrl, if this machine manages it with pg_ctlcluster. */
function localCluster(): { version: string; name: string } | undefined {
  const host = new URL(adminUrl).hostname;
  if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host) || !existsSync("/etc/postgresql")) return undefined;
  const version = readdirSync("/etc/postgresql").find((v) => existsSync(join("/etc/postgresql", v, "main")));
  return version ? { version, name: "main" } : undefined;
}

const cluster = localCluster();
const database = cluster
  ? await createTestDatabase("restart", { exclusive: true })
  : { skip: "no local cluster managed by pg_ctlcluster behind the test URL: the restart test cannot stop it" };

async function pgctl(action: "stop" | "start"): Promise<void> {
  const args = ["--skip-systemctl-redirect", cluster!.version, cluster!.name, action];
  await run("pg_ctlcluster", action === "stop" ? [...args, "-m", "fast"] : args, { timeout: 60_000 });
}

async function isPostgresUp(): Promise<boolean> {
  return withAdminClient(async () => true).catch(() => false);
}

/** A running server as the helpers that take a TestServer need it. */
function asTestServer(child: ChildServer, ownerToken: string): TestServer {
  return { baseUrl: child.baseUrl, ownerToken } as TestServer;
}

function codeOf(err: unknown): Code {
  return ConnectError.from(err).code;
}

describe("replicas while PostgreSQL stops and starts", { skip: database.skip }, () => {
  const dirs = [mkdtempSync(join(tmpdir(), "smtpgate-restart-a-")), mkdtempSync(join(tmpdir(), "smtpgate-restart-b-"))];
  const replicas: ChildServer[] = [];
  let sink: TimedSink;
  let token: string;
  let providerId: string;
  before(async () => {
    if (database.skip !== undefined) return;
    sink = await startTimedSink({ users: { mailer: "password-1" } });
    for (const dir of dirs) {
      const args = ["--port", "0", "--data-dir", dir, "--database-url", database.url, "--log-level", "info"];
      replicas.push(await startChildServer(args, { env: { SMTPGATE_MASTERKEY: testMasterKey } }));
    }
    token = readFileSync(join(dirs[0], "admin.pat"), "utf8").trim();
    providerId = await addActiveProvider(asTestServer(replicas[0], token), sink.hostPort, { user: "mailer", password: "password-1" });
  });
  after(async () => {
    // Whatever happened above, leave the server running for everyone else.
    if (!(await isPostgresUp())) await pgctl("start").catch(() => undefined);
    clearRestartMarker();
    await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
    await sink?.stop();
    if (database.skip === undefined) await database.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test("calls answer Unavailable while it is down, no replica dies, and everything resumes when it is back", async () => {
    const [a, b] = replicas;
    const notifyA = notifyClient("grpc", a.baseUrl, token);

    // Two mails on the wire: the sink holds its answer until the database is gone.
    sink.delayMs = 3000;
    const inFlight = await queueMails(notifyClient("grpc", b.baseUrl, token), "in flight", 2);
    await eventually(() => sink.arrivals.filter((m) => m.subject.startsWith("in flight")).length === 2, 10_000, "both mails at the sink");

    markRestartInProgress();
    await pgctl("stop");
    for (const replica of replicas) {
      for (const protocol of ["grpc", "connect-json", "grpc-web"] satisfies Protocol[]) {
        await assert.rejects(adminClient(protocol, replica.baseUrl, token).listSMTPConfigs({}), (err) => codeOf(err) === Code.Unavailable);
      }
      const send = notifyClient("grpc", replica.baseUrl, token).sendMail({ to: ["x@example.com"], subject: "while down", textBody: "x" });
      await assert.rejects(send, (err) => codeOf(err) === Code.Unavailable);
    }
    // The sink answers now; the replica cannot record that the mails went out.
    await eventually(() => sink.arrivals.every((m) => m.answered), 10_000, "the sink to answer");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(replicas.map((r) => r.child.exitCode), [null, null], "a replica exited while the database was down");

    await pgctl("start");
    clearRestartMarker();
    sink.delayMs = 0;
    for (const replica of replicas) {
      await eventually(
        () => adminClient("grpc", replica.baseUrl, token).listSMTPConfigs({}).then(() => true, () => false),
        20_000,
        "calls to succeed again",
      );
    }
    const recorded = await waitForMails(notifyA, inFlight, (m) => m.state === MailState.SENT, "the mails in flight to be recorded as sent", 20_000);
    assert.deepEqual(recorded.map((m) => m.attempts), [1, 1]);

    // A password saved through A after the restart is what B's next mail logs in with.
    sink.users.set("mailer", "password-2");
    const loginsBefore = sink.logins.length;
    await adminClient("grpc", a.baseUrl, token).updateSMTPConfigPassword({ id: providerId, password: "password-2" });
    const next = await queueMails(notifyClient("connect-json", b.baseUrl, token), "after", 1);
    const [delivered] = await waitForMails(notifyA, next, (m) => m.state === MailState.SENT, "the mail after the restart", 10_000);
    assert.equal(delivered.attempts, 1);
    assert.ok(sink.logins.slice(loginsBefore).every((l) => l.password === "password-2" && l.accepted));

    for (const replica of replicas) {
      const events = replica.stdoutLines.map((l) => (JSON.parse(l) as { event?: string }).event);
      assert.ok(events.includes("store.feed_lost") && events.includes("store.feed_restored"), "the feed did not reconnect");
      assert.equal(replica.child.exitCode, null);
    }
  });
});
