import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { MailState, type Mail } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { closedPort } from "../helpers/admin-api.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

/**
 * Listens on `port` and pipes every connection to `target`, so a test can
 * make an SMTP server appear on a port that refused connections before.
 */
async function forward(port: number, target: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return server;
}

const policy = { baseDelayMs: 100, maxDelayMs: 400, maxAgeMs: 60_000 };

describe("delivery while the SMTP server is down", () => {
  let t: TestServer;
  let sink: SmtpSink;
  let forwarder: net.Server | undefined;
  before(async () => {
    sink = await startSmtpSink({ users: { mailer: "secret" } });
    t = await startTestServer({ outbox: { pollMs: 50, policy } });
  });
  after(async () => {
    await t.stop();
    forwarder?.close();
    await sink.stop();
  });

  test("mails are retried with growing delays while the connection is refused, and each arrives exactly once when the server is back", async () => {
    const port = await closedPort();
    const providerId = await addActiveProvider(t, `127.0.0.1:${port}`, { user: "mailer", password: "secret" });
    const notify = notifyClient("grpc", t.baseUrl, t.ownerToken);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      ids.push((await notify.sendMail({ to: [`r${i}@example.com`], subject: `outage ${i}`, textBody: "x" })).mail!.id);
    }
    const read = async (): Promise<Mail[]> => Promise.all(ids.map(async (id) => (await notify.getMail({ id })).mail!));

    let during: Mail[] = [];
    await eventually(async () => {
      during = await read();
      return during.every((m) => m.state === MailState.QUEUED && m.attempts >= 3);
    }, 10_000, "every mail to be retried at least three times");
    for (const mail of during) {
      assert.match(mail.lastError, new RegExp(`connection refused by 127\\.0\\.0\\.1:${port}`));
      // After k attempts the next one is due no earlier than the sum of the
      // shortest delays the policy allows: 50 + 100 + 200 + ... ms.
      const created = timestampMs(mail.createTime!);
      const due = timestampMs(mail.nextAttemptTime!);
      assert.ok(due - created >= shortestWait(mail.attempts), `attempt ${mail.attempts + 1} due after ${due - created} ms`);
    }

    forwarder = await forward(port, sink.port);
    await sink.waitForMessages(ids.length, 5000);
    await eventually(async () => (await read()).every((m) => m.state === MailState.SENT), 5000, "every mail to be SENT");

    const subjects = sink.messages.map((m) => m.headers.subject).sort();
    assert.deepEqual(subjects, ids.map((_, i) => `outage ${i}`));
    for (const mail of await read()) {
      assert.equal(mail.providerId, providerId);
      assert.equal(mail.lastError, "");
    }
  });
});

/** Least total delay before attempt `attempts + 1` under `policy`, ms. */
function shortestWait(attempts: number): number {
  let total = 0;
  for (let k = 1; k <= attempts; k++) total += Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (k - 1)) / 2;
  return total;
}
