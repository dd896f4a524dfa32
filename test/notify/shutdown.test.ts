import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSilentServer, type SilentServer } from "../helpers/slow-sink.js";

describe("stopping the server while a mail hangs", () => {
  let t: TestServer;
  let silent: SilentServer;
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => void unhandled.push(reason);
  before(async () => {
    process.on("unhandledRejection", record);
    silent = await startSilentServer();
    t = await startTestServer({ outbox: { pollMs: 50 }, shutdownGraceMs: 300 });
  });
  after(async () => {
    process.off("unhandledRejection", record);
    await silent.stop();
    rmSync(t.dataDir, { recursive: true, force: true });
  });

  test("stop ends within the grace period, drops the hung connection, and leaves the mail queued for the next run", async () => {
    await addActiveProvider(t, silent.hostPort, { user: "", password: "" });
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const { mail } = await notify.sendMail({ to: ["user@example.com"], subject: "hangs", textBody: "x" });
    await eventually(async () => (await notify.getMail({ id: mail!.id })).mail!.state === MailState.SENDING, 5000, "the mail to be in flight");
    await eventually(() => silent.openConnections() >= 1, 5000, "a connection to the silent provider");

    // nodemailer waits 10 s for a greeting; a stop that waited for it would miss this.
    const stopped = t.stop({ keepData: true }).then(() => "stopped" as const);
    const late = new Promise<"still stopping">((resolve) => setTimeout(() => resolve("still stopping"), 5000).unref());
    assert.equal(await Promise.race([stopped, late]), "stopped");
    await eventually(() => silent.openConnections() === 0, 2000, "the hung connection to be closed");

    const store = openSqliteStore(join(t.dataDir, "smtpgate.db"));
    try {
      const instance = await store.findInstanceByDomain("127.0.0.1");
      const stored = await store.findMail(instance!.id, mail!.id);
      assert.equal(stored!.state, "queued");
      assert.equal(stored!.attempts, 0);
    } finally {
      await store.close();
    }
    assert.deepEqual(unhandled, []);
    // The hung attempt ends, and is logged, before the worker reports itself stopped.
    const lines = t.logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const stoppedAt = lines.findIndex((l) => l.event === "outbox.stopped");
    const attemptEndedAt = lines.findIndex((l) => l.mailId === mail!.id && l.event === "mail.retry");
    assert.equal(lines[stoppedAt]?.released, 1);
    assert.ok(attemptEndedAt >= 0 && attemptEndedAt < stoppedAt, "the hung attempt ended after the worker stopped");
    assert.deepEqual(lines.filter((l) => l.level === "error").map((l) => l.event), []);
  });
});
