/**
 * Correctness never depends on a notification arriving: a replica whose
 * change feed was down while another replica changed the provider catches
 * up from the store once its feed is back. Replica B logs in as a role of
 * its own, so the test can lock B (and only B) out of the database while
 * replica A commits; B polls once a minute, so delivering within seconds
 * after it is let back in can only come from the catch-up.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient } from "../helpers/clients.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { createTestDatabase, withAdminClient } from "../helpers/postgres.js";
import { queueMails, sentMailIds, startReplica, startTimedSink, waitForMails, type TimedSink } from "../helpers/replicas.js";
import type { TestServer } from "../helpers/server.js";

const database = await createTestDatabase("feed-catch-up");
const role = `smtpgate_t_role_${randomBytes(4).toString("hex")}`;

describe("a replica whose feed was down while the provider changed", { skip: database.skip }, () => {
  let a: TestServer;
  let b: TestServer;
  let sink: TimedSink;
  let providerId: string;
  before(async () => {
    if (database.skip !== undefined) return;
    await withAdminClient((c) => c.query(`CREATE ROLE ${role} LOGIN SUPERUSER`));
    const roleUrl = new URL(database.url);
    roleUrl.username = role;
    sink = await startTimedSink({ users: { mailer: "password-1" } });
    a = await startReplica(database.url, { outbox: { concurrency: 0 } });
    b = await startReplica(roleUrl.toString(), { ownerToken: a.ownerToken, outbox: { pollMs: 60_000 } });
    providerId = await addActiveProvider(a, sink.hostPort, { user: "mailer", password: "password-1" });
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await sink?.stop();
    if (database.skip !== undefined) return;
    await database.drop();
    await withAdminClient((c) => c.query(`DROP ROLE IF EXISTS ${role}`));
  });

  test("sends its waiting mails with the new password right after it reconnects", async () => {
    const notify = notifyClient("grpc", a.baseUrl, a.ownerToken);
    sink.users.set("mailer", "password-2");
    sink.dropConnections();
    const ids = await queueMails(notify, "catch-up", 2);
    await waitForMails(notify, ids, (m) => m.state === MailState.QUEUED && m.lastError !== "", "the mails to wait on rejected credentials");

    await withAdminClient(async (c) => {
      await c.query(`ALTER ROLE ${role} NOLOGIN`);
      await c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [role]);
    });
    await eventually(() => b.logLines.some((l) => l.includes('"event":"store.feed_lost"')), 5000, "replica B to lose its feed");
    await adminClient("grpc", a.baseUrl, a.ownerToken).updateSMTPConfigPassword({ id: providerId, password: "password-2" });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const meanwhile = await waitForMails(notify, ids, () => true, "the mails");
    assert.deepEqual(meanwhile.map((m) => m.state), [MailState.QUEUED, MailState.QUEUED], "sent while B was locked out");

    await withAdminClient((c) => c.query(`ALTER ROLE ${role} LOGIN`));
    await waitForMails(notify, ids, (m) => m.state === MailState.SENT, "the waiting mails to be sent", 10_000);

    assert.ok(b.logLines.some((l) => l.includes('"event":"store.feed_restored"')));
    assert.ok(ids.every((id) => sentMailIds(b.logLines).includes(id)));
    assert.deepEqual(sink.arrivals.filter((m) => m.subject.startsWith("catch-up")).map((m) => m.user), ["mailer", "mailer"]);
  });
});
