/**
 * Two replicas delivering from one outbox under load: every mail is sent
 * exactly once, by exactly one of them, and both take part.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { createTestDatabase } from "../helpers/postgres.js";
import { sentMailIds, startReplica, startTimedSink, type TimedSink } from "../helpers/replicas.js";
import type { TestServer } from "../helpers/server.js";

const database = await createTestDatabase("shared-outbox");

describe("two replicas sharing one outbox", { skip: database.skip }, () => {
  let replicas: TestServer[] = [];
  let sink: TimedSink;
  before(async () => {
    if (database.skip !== undefined) return;
    // A short hold per mail keeps both replicas busy, as real SMTP servers do.
    sink = await startTimedSink({ users: { mailer: "secret" }, delayMs: 20 });
    const first = await startReplica(database.url, { outbox: { pollMs: 100 } });
    replicas = [first, await startReplica(database.url, { ownerToken: first.ownerToken, outbox: { pollMs: 100 } })];
    await addActiveProvider(first, sink.hostPort, { user: "mailer", password: "secret" });
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await sink?.stop();
    if (database.skip === undefined) await database.drop();
  });

  test("under load each mail is sent once, by one replica, and both replicas send", async () => {
    const total = 200;
    const token = replicas[0].ownerToken;
    const clients = replicas.map((r, i) => notifyClient(i === 0 ? "grpc" : "connect-json", r.baseUrl, token));
    const ids: string[] = [];
    for (let batch = 0; batch < total / 25; batch++) {
      const sent = await Promise.all(
        Array.from({ length: 25 }, (_, i) => clients[i % 2].sendMail({ to: [`r${i}@example.com`], subject: `load ${batch}-${i}`, textBody: "x" })),
      );
      ids.push(...sent.map((s) => s.mail!.id));
    }
    await eventually(() => sink.arrivals.length >= total, 30_000, `${total} mails at the sink`);
    // Time for a mail sent twice to show up.
    await new Promise((resolve) => setTimeout(resolve, 500));

    const messageIds = sink.arrivals.map((m) => m.messageId);
    assert.equal(messageIds.length, total);
    assert.equal(new Set(messageIds).size, total);
    const [byA, byB] = replicas.map((r) => sentMailIds(r.logLines));
    assert.deepEqual(byA.filter((id) => byB.includes(id)), [], "mails sent by both replicas");
    assert.deepEqual([...byA, ...byB].sort(), [...ids].sort());
    assert.ok(byA.length > 0 && byB.length > 0, `work not shared: ${byA.length} and ${byB.length}`);
    for (const id of ids.slice(0, 20)) {
      const mail = (await clients[0].getMail({ id })).mail!;
      assert.deepEqual([mail.state, mail.attempts], [MailState.SENT, 1]);
    }
  });
});
