/**
 * A replica killed with SIGKILL while it holds claims: its mails stay
 * claimed until the lease it took runs out, then the surviving replica
 * takes them over and delivers them. The killed replica is a child process
 * with a 2.5 s lease; the sink holds every answer back 1.5 s, so the kill
 * lands while its mails are on the wire.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { createTestDatabase, withDatabaseClient } from "../helpers/postgres.js";
import {
  queueMails,
  sentMailIds,
  startReplica,
  startReplicaProcess,
  startTimedSink,
  stopReplicaProcesses,
  waitForMails,
  type TimedSink,
} from "../helpers/replicas.js";
import type { TestServer } from "../helpers/server.js";

const database = await createTestDatabase("lease-takeover");

describe("a replica killed while sending", { skip: database.skip }, () => {
  let survivor: TestServer;
  let sink: TimedSink;
  before(async () => {
    if (database.skip !== undefined) return;
    sink = await startTimedSink({ users: { mailer: "secret" }, delayMs: 1500 });
    // The survivor's own lease is long: the sink is slow, and a lease that
    // ends while a mail still waits for the pooled connection lets the
    // survivor claim its own mail a second time.
    survivor = await startReplica(database.url, { outbox: { pollMs: 100 } });
    await addActiveProvider(survivor, sink.hostPort, { user: "mailer", password: "secret" });
  });
  after(async () => {
    await stopReplicaProcesses();
    await survivor?.stop();
    await sink?.stop();
    if (database.skip === undefined) await database.drop();
  });

  test("its claimed mails are delivered by the other replica once its lease expired", async () => {
    if (database.skip !== undefined) return;
    const doomed = await startReplicaProcess(database.url, { ownerToken: survivor.ownerToken, outbox: { pollMs: 100, leaseMs: 2500 } });
    const ids = await queueMails(notifyClient("grpc", doomed.baseUrl, survivor.ownerToken), "kill", 12);

    const claimsOf = (pid: number) =>
      withDatabaseClient(database.url, async (c) => {
        const { rows } = await c.query(
          "SELECT id, claim_expires_at FROM mails WHERE state = 'sending' AND claimed_by LIKE $1 ORDER BY id",
          [`%-${pid}-%`],
        );
        return rows as { id: string; claim_expires_at: Date }[];
      });
    await eventually(async () => (await claimsOf(doomed.pid)).length > 0, 10_000, "the doomed replica to claim mails");
    // Let its mails reach the sink, whose answer is 1.5 s away.
    await new Promise((resolve) => setTimeout(resolve, 400));
    await doomed.stop("SIGKILL");
    const orphans = await claimsOf(doomed.pid);
    assert.ok(orphans.length > 0);

    const notify = notifyClient("grpc", survivor.baseUrl, survivor.ownerToken);
    await waitForMails(notify, ids, (m) => m.state === MailState.SENT, "every mail to be sent", 20_000);

    const delivered = await withDatabaseClient(database.url, async (c) => {
      const { rows } = await c.query("SELECT id, attempts, sent_at FROM mails WHERE id = ANY($1::text[])", [orphans.map((o) => o.id)]);
      return new Map((rows as { id: string; attempts: number; sent_at: Date }[]).map((r) => [r.id, r]));
    });
    const bySurvivor = sentMailIds(survivor.logLines);
    for (const orphan of orphans) {
      const row = delivered.get(orphan.id)!;
      assert.equal(row.attempts, 2, `attempts of ${orphan.id}`);
      assert.ok(row.sent_at.getTime() >= orphan.claim_expires_at.getTime(), "taken over before the lease expired");
      assert.ok(bySurvivor.includes(orphan.id), `${orphan.id} not sent by the surviving replica`);
    }
  });
});
