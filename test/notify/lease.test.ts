/**
 * Claims as leases (src/notify/outbox-worker.ts): a send that outlasts one
 * lease keeps its claim, because the worker extends it while the send runs,
 * so the mail is not claimed again and sent a second time meanwhile.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MailState } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { addActiveProvider, eventually, notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSlowSink, type SlowSink } from "../helpers/slow-sink.js";

const leaseMs = 300;

describe("a send slower than the claim's lease", () => {
  let t: TestServer;
  let sink: SlowSink;
  before(async () => {
    // The DATA reply comes after more than six leases.
    sink = await startSlowSink(() => 7 * leaseMs);
    t = await startTestServer({ outbox: { leaseMs, pollMs: 50 } });
    await addActiveProvider(t, sink.hostPort, { user: "", password: "" });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  test("is attempted once and arrives once, while the worker polls many times during it", async () => {
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    const { mail } = await notify.sendMail({ to: ["user@example.com"], subject: "slow", textBody: "x" });

    await eventually(async () => (await notify.getMail({ id: mail!.id })).mail?.state === MailState.SENT, 10_000, "the mail sent");
    const sent = (await notify.getMail({ id: mail!.id })).mail!;
    assert.equal(sent.attempts, 1);
    assert.deepEqual(
      sink.arrivals.filter((a) => a.subject === "slow").map((a) => a.messageId),
      [sent.messageId],
    );
  });
});
