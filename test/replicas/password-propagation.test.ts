/**
 * The promise of smtpgate across replicas: a password saved through one
 * replica is in force for the next mail any other replica sends, and mails
 * that waited on rejected credentials go out as soon as it is saved.
 * Replica A only serves the API (its outbox sends nothing); replica B sends
 * every mail and polls the store only once a minute, so what B does within
 * seconds it does because it heard of A's commit or read the store fresh.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState, type Mail } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient } from "../helpers/clients.js";
import { addActiveProvider, notifyClient } from "../helpers/notify.js";
import { createTestDatabase } from "../helpers/postgres.js";
import { queueMails, sentMailIds, startReplica, startTimedSink, waitForMails, type TimedSink } from "../helpers/replicas.js";
import type { TestServer } from "../helpers/server.js";

const database = await createTestDatabase("propagation");

describe("a password saved through replica A, with replica B sending", { skip: database.skip }, () => {
  let a: TestServer;
  let b: TestServer;
  let sink: TimedSink;
  let providerId: string;
  before(async () => {
    if (database.skip !== undefined) return;
    sink = await startTimedSink({ users: { mailer: "password-1" } });
    a = await startReplica(database.url, { outbox: { concurrency: 0 } });
    b = await startReplica(database.url, { ownerToken: a.ownerToken, outbox: { pollMs: 60_000 } });
    providerId = await addActiveProvider(a, sink.hostPort, { user: "mailer", password: "password-1" });
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await sink?.stop();
    if (database.skip === undefined) await database.drop();
  });

  test("the next mail replica B sends logs in with the new password, on its first attempt", async () => {
    const notify = notifyClient("grpc", b.baseUrl, a.ownerToken);
    const sent = (m: Mail) => m.state === MailState.SENT;
    const [warmUp] = await queueMails(notify, "warm-up", 1);
    await waitForMails(notify, [warmUp], sent, "the warm-up mail");

    // The old password stops working. B's pooled session, logged in with
    // it, stays open: only a fresh login proves B uses the new password.
    sink.users.set("mailer", "password-2");
    const loginsBefore = sink.logins.length;
    await adminClient("grpc", a.baseUrl, a.ownerToken).updateSMTPConfigPassword({ id: providerId, password: "password-2" });
    const [next] = await queueMails(notify, "next", 1);
    const [delivered] = await waitForMails(notify, [next], sent, "the next mail");

    assert.equal(delivered.attempts, 1);
    const logins = sink.logins.slice(loginsBefore);
    assert.ok(logins.length >= 1);
    assert.deepEqual(logins.map((l) => [l.password, l.accepted]), logins.map(() => ["password-2", true]));
    assert.deepEqual(sink.arrivals.filter((m) => m.subject === "next 0").map((m) => m.user), ["mailer"]);
    assert.deepEqual(sentMailIds(b.logLines).slice(-2), [warmUp, next]);
    assert.deepEqual(sentMailIds(a.logLines), []);
  });

  test("mails waiting on rejected credentials at replica B go out as soon as replica A saves the new password", async () => {
    const notify = notifyClient("connect-json", b.baseUrl, a.ownerToken);
    // The provider rotates and ends the sessions logged in with the old password.
    sink.users.set("mailer", "password-3");
    sink.dropConnections();
    const ids = await queueMails(notify, "waiting", 3);
    await waitForMails(notify, ids, (m) => m.state === MailState.QUEUED && m.lastError !== "", "the mails to wait on rejected credentials");

    const saved = Date.now();
    await adminClient("connect-json", a.baseUrl, a.ownerToken).updateSMTPConfigPassword({ id: providerId, password: "password-3" });
    await waitForMails(notify, ids, (m) => m.state === MailState.SENT, "the waiting mails to be sent");

    assert.ok(Date.now() - saved < 5000);
    assert.deepEqual(sink.arrivals.filter((m) => m.subject.startsWith("waiting")).length, 3);
    assert.ok(ids.every((id) => sentMailIds(b.logLines).includes(id)));
  });
});
