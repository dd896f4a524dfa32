/**
 * The outbox half of the store contract: accepting mails durably and
 * idempotently, claiming them under leases, recording outcomes, waking
 * waiting mails, expiry, counts, and the change feed. Registered by
 * describeStoreContract in contract.ts. Times are passed in explicitly, so
 * nothing here waits for a clock.
 */
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import type { AttemptOutcome, OutboxMail } from "../../src/domain/outbox.js";
import { StoreConflict, type ClaimRequest, type NewMail, type Store } from "../../src/store/store.js";
import { at, commitProvider, event, mail, provider, recordChanges, write, type ContractContext } from "./contract.js";

/** Registers the outbox sections of the contract. */
export function describeOutboxContract(ctx: ContractContext): void {
  describeEnqueue(ctx);
  describeClaims(ctx);
  describeOutcomes(ctx);
  describeWaking(ctx);
  describeExpiryAndCounts(ctx);
  describeFeed(ctx);
}

/** The mail as the store returns it right after accepting `m`. */
function queued(m: NewMail): OutboxMail {
  return {
    ...m,
    to: [...m.to],
    state: "queued",
    attempts: 0,
    lastError: "",
    waitReason: "",
    nextAttemptAt: m.createdAt,
    sentAt: undefined,
    providerId: "",
  };
}

/** A claim by `workerId` at `now` with room for everything. */
function claimAt(now: Date, fields: Partial<ClaimRequest> = {}): ClaimRequest {
  return { workerId: "w1", now, leaseMs: 3_600_000, limit: 100, perInstanceLimit: 100, skipInstances: [], ...fields };
}

async function claimIds(store: Store, request: ClaimRequest): Promise<string[]> {
  return (await store.claimMails(request)).map((m) => m.id);
}

async function enqueueAll(store: Store, mails: NewMail[]): Promise<void> {
  for (const m of mails) await store.enqueueMail(m);
}

const credentialsWait = (providerId: string, providerSequence: bigint): AttemptOutcome => ({
  kind: "wait",
  reason: "credentials",
  lastError: "535 authentication failed",
  providerId,
  providerSequence,
});

const noProviderWait: AttemptOutcome = {
  kind: "wait",
  reason: "no_provider",
  lastError: "no active SMTP provider",
  providerId: "",
  providerSequence: 0n,
};

/** Enqueues `m`, claims it alone and records `outcome` at `m.createdAt`. */
async function settleMail(store: Store, m: NewMail, outcome: AttemptOutcome): Promise<void> {
  await store.enqueueMail(m);
  const [claimed] = await store.claimMails(claimAt(m.createdAt, { limit: 1, workerId: `settle-${m.id}` }));
  assert.equal(claimed?.id, m.id, "settleMail needs its mail to be the only due one");
  assert.equal(await store.completeMail(m.id, `settle-${m.id}`, outcome, m.createdAt), true);
}

function describeEnqueue(ctx: ContractContext): void {
  describe("outbox: accepting mails", () => {
    beforeEach(() => ctx.seed());

    test("an enqueued mail is queued and due at its creation, and another store finds it at once", async () => {
      const m = mail("m1");
      assert.deepEqual(await ctx.store.enqueueMail(m), { mail: queued(m), created: true });
      const other = await ctx.openAgain();
      assert.deepEqual(await other.findMail("inst-a", "m1"), queued(m));
      assert.equal(await other.findMail("inst-b", "m1"), undefined);
      assert.equal(await other.findMail("inst-a", "nope"), undefined);
    });

    test("the same idempotency key in one instance returns the first mail and stores nothing; another instance's key is its own", async () => {
      const first = mail("m1", { idempotencyKey: "order-17" });
      await ctx.store.enqueueMail(first);
      const again = await ctx.store.enqueueMail(mail("m2", { idempotencyKey: "order-17", subject: "other" }));
      assert.deepEqual(again, { mail: queued(first), created: false });
      assert.equal(await ctx.store.findMail("inst-a", "m2"), undefined);

      const elsewhere = mail("m3", { idempotencyKey: "order-17", instanceId: "inst-b" });
      assert.deepEqual(await ctx.store.enqueueMail(elsewhere), { mail: queued(elsewhere), created: true });
      assert.deepEqual(await ctx.store.countMails(), { queued: 2 });
    });

    test("mails without an idempotency key are never merged", async () => {
      assert.equal((await ctx.store.enqueueMail(mail("m1"))).created, true);
      assert.equal((await ctx.store.enqueueMail(mail("m2"))).created, true);
      assert.deepEqual(await ctx.store.countMails(), { queued: 2 });
    });

    test("concurrent enqueues with one key through two stores create one mail", async () => {
      const stores = [ctx.store, await ctx.openAgain()];
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => stores[i % 2].enqueueMail(mail(`m${i}`, { idempotencyKey: "race" }))),
      );
      assert.equal(results.filter((r) => r.created).length, 1);
      assert.equal(new Set(results.map((r) => r.mail.id)).size, 1);
      assert.deepEqual(await ctx.store.countMails(), { queued: 1 });
    });
  });
}

function describeClaims(ctx: ContractContext): void {
  describe("outbox: claiming", () => {
    beforeEach(() => ctx.seed());

    test("a claim takes due mails only, oldest first, marks them sending for the worker and counts the attempt", async () => {
      await enqueueAll(ctx.store, [mail("m1"), mail("m0", { createdAt: at(-1000) }), mail("later", { createdAt: at(60_000) })]);
      const claimed = await ctx.store.claimMails(claimAt(at(0)));
      assert.deepEqual(claimed, [
        { ...queued(mail("m0", { createdAt: at(-1000) })), state: "sending", attempts: 1 },
        { ...queued(mail("m1")), state: "sending", attempts: 1 },
      ]);
      assert.equal((await ctx.store.findMail("inst-a", "m1"))?.state, "sending");
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(59_999))), []);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(60_000))), ["later"]);
    });

    test("a claim takes at most limit mails, and at most perInstanceLimit of one instance", async () => {
      for (let i = 0; i < 4; i++) {
        await ctx.store.enqueueMail(mail(`a${i}`, { createdAt: at(i) }));
        await ctx.store.enqueueMail(mail(`b${i}`, { instanceId: "inst-b", createdAt: at(i) }));
      }
      assert.deepEqual((await claimIds(ctx.store, claimAt(at(10), { limit: 3 }))).length, 3);
      const fair = await claimIds(ctx.store, claimAt(at(10), { workerId: "w2", perInstanceLimit: 1 }));
      assert.deepEqual(fair.map((id) => id[0]).sort(), ["a", "b"]);
    });

    test("a backlog in one instance does not hide another instance's due mail from a claim", async () => {
      for (let i = 0; i < 60; i++) await ctx.store.enqueueMail(mail(`a${i}`, { createdAt: at(i) }));
      await ctx.store.enqueueMail(mail("b0", { instanceId: "inst-b", createdAt: at(100) }));
      const ids = await claimIds(ctx.store, claimAt(at(1000), { limit: 4, perInstanceLimit: 2 }));
      assert.deepEqual(ids, ["a0", "a1", "b0"]);
    });

    test("a claim skips the instances it is told to skip", async () => {
      await enqueueAll(ctx.store, [mail("a1"), mail("b1", { instanceId: "inst-b" })]);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(0), { skipInstances: ["inst-a"] })), ["b1"]);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(0), { skipInstances: ["inst-a", "inst-b"] })), []);
    });

    test("a claimed mail is not claimed again before its lease ends; then another worker takes it over and the first one loses it", async () => {
      await ctx.store.enqueueMail(mail("m1"));
      await ctx.store.claimMails(claimAt(at(0), { workerId: "w1", leaseMs: 1000 }));
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(999), { workerId: "w2" })), []);

      const [taken] = await ctx.store.claimMails(claimAt(at(1000), { workerId: "w2" }));
      assert.deepEqual([taken?.id, taken?.attempts], ["m1", 2]);
      const sent: AttemptOutcome = { kind: "sent", providerId: "p1", at: at(1500) };
      assert.equal(await ctx.store.completeMail("m1", "w1", sent, at(1500)), false);
      assert.equal((await ctx.store.findMail("inst-a", "m1"))?.state, "sending");
      assert.equal(await ctx.store.completeMail("m1", "w2", sent, at(1600)), true);
    });

    test("an extended claim holds past its first lease; only the claiming worker's own claims are extended", async () => {
      await enqueueAll(ctx.store, [mail("m1"), mail("m2", { createdAt: at(1) })]);
      await ctx.store.claimMails(claimAt(at(10), { workerId: "w1", leaseMs: 1000, limit: 1 }));
      await ctx.store.claimMails(claimAt(at(10), { workerId: "w2", leaseMs: 1000, limit: 1 }));

      assert.equal(await ctx.store.extendClaims("w1", ["m1", "m2", "unknown"], at(5000)), 1);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(1010), { workerId: "w3" })), ["m2"]);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(4999), { workerId: "w3" })), []);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(5000), { workerId: "w3" })), ["m1"]);
      assert.equal(await ctx.store.extendClaims("w1", ["m1"], at(9000)), 0, "w1 lost m1 and cannot extend it");
    });

    test("a mail waiting for a provider change is never claimed, however late", async () => {
      await settleMail(ctx.store, mail("m1"), credentialsWait("p1", 1n));
      await settleMail(ctx.store, mail("m2", { createdAt: at(1) }), noProviderWait);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(365 * 24 * 3600_000))), []);
    });
  });
}

function describeOutcomes(ctx: ContractContext): void {
  describe("outbox: outcomes", () => {
    beforeEach(() => ctx.seed());

    test("sent records the provider and the time, and the mail is claimed no more", async () => {
      await ctx.store.enqueueMail(mail("m1"));
      await ctx.store.claimMails(claimAt(at(0)));
      assert.equal(await ctx.store.completeMail("m1", "w1", { kind: "sent", providerId: "p1", at: at(250) }, at(260)), true);
      assert.deepEqual(await ctx.store.findMail("inst-a", "m1"), {
        ...queued(mail("m1")), state: "sent", attempts: 1, providerId: "p1", sentAt: at(250),
      });
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(10_000_000))), []);
    });

    test("retry queues the mail again with its error, due at the given time", async () => {
      await ctx.store.enqueueMail(mail("m1"));
      await ctx.store.claimMails(claimAt(at(0)));
      await ctx.store.completeMail("m1", "w1", { kind: "retry", lastError: "421 busy", at: at(5000) }, at(10));
      assert.deepEqual(await ctx.store.findMail("inst-a", "m1"), {
        ...queued(mail("m1")), attempts: 1, lastError: "421 busy", nextAttemptAt: at(5000),
      });
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(4999))), []);
      assert.deepEqual((await ctx.store.claimMails(claimAt(at(5000)))).map((m) => [m.id, m.attempts]), [["m1", 2]]);
    });

    test("wait queues the mail with its reason and error; failed is final", async () => {
      await settleMail(ctx.store, mail("m1"), credentialsWait("p1", 3n));
      const waiting = await ctx.store.findMail("inst-a", "m1");
      assert.deepEqual([waiting?.state, waiting?.waitReason, waiting?.lastError], ["queued", "credentials", "535 authentication failed"]);

      await settleMail(ctx.store, mail("m2", { createdAt: at(1) }), { kind: "failed", lastError: "550 no such user" });
      const failed = await ctx.store.findMail("inst-a", "m2");
      assert.deepEqual([failed?.state, failed?.lastError, failed?.attempts], ["failed", "550 no such user", 1]);
      assert.equal(await ctx.store.completeMail("m2", "settle-m2", { kind: "sent", providerId: "p1", at: at(2) }, at(2)), false);
      assert.equal((await ctx.store.findMail("inst-a", "m2"))?.state, "failed");
    });

    test("completing a mail that is not claimed changes nothing", async () => {
      await ctx.store.enqueueMail(mail("m1"));
      assert.equal(await ctx.store.completeMail("m1", "w1", { kind: "sent", providerId: "p1", at: at(1) }, at(1)), false);
      assert.equal(await ctx.store.completeMail("nope", "w1", { kind: "failed", lastError: "x" }, at(1)), false);
      assert.deepEqual(await ctx.store.findMail("inst-a", "m1"), queued(mail("m1")));
    });

    test("releaseClaims puts one worker's mails back, due now and the attempt not counted; '*' releases every worker's", async () => {
      await enqueueAll(ctx.store, [mail("m1"), mail("m2", { createdAt: at(1) }), mail("m3", { createdAt: at(2) })]);
      await ctx.store.claimMails(claimAt(at(5), { workerId: "w1", limit: 1 }));
      await ctx.store.claimMails(claimAt(at(5), { workerId: "w2", limit: 1 }));
      await ctx.store.claimMails(claimAt(at(5), { workerId: "w3", limit: 1 }));

      assert.equal(await ctx.store.releaseClaims("w1", at(100)), 1);
      assert.deepEqual(await ctx.store.findMail("inst-a", "m1"), { ...queued(mail("m1")), nextAttemptAt: at(100) });
      assert.equal((await ctx.store.findMail("inst-a", "m2"))?.state, "sending");
      assert.equal(await ctx.store.releaseClaims("*", at(200)), 2);
      assert.deepEqual(await ctx.store.countMails(), { queued: 3 });
      assert.equal(await ctx.store.completeMail("m2", "w2", { kind: "sent", providerId: "p1", at: at(300) }, at(300)), false);
    });
  });
}

function describeWaking(ctx: ContractContext): void {
  describe("outbox: waking waiting mails", () => {
    beforeEach(() => ctx.seed());

    test("a credentials wait wakes when the active provider's sequence changed, and not before", async () => {
      await commitProvider(ctx.store, provider("p1", { isActive: true }));
      await settleMail(ctx.store, mail("m1"), credentialsWait("p1", 1n));
      assert.equal(await ctx.store.wakeWaitingMails(at(1000)), 0);
      assert.equal((await ctx.store.findMail("inst-a", "m1"))?.waitReason, "credentials");

      await ctx.store.commit(write({
        expectedSequence: 1n,
        events: [event("p1", "smtp.config.password.changed")],
        upserts: [provider("p1", { isActive: true, sequence: 2n, sealedPassword: "v1.new" })],
      }));
      assert.equal(await ctx.store.wakeWaitingMails(at(2000)), 1);
      const woken = await ctx.store.findMail("inst-a", "m1");
      assert.deepEqual([woken?.state, woken?.waitReason, woken?.nextAttemptAt], ["queued", "", at(2000)]);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(2000))), ["m1"]);
    });

    test("a credentials wait wakes when another provider is active, and stays while none is", async () => {
      await commitProvider(ctx.store, provider("p1"));
      await settleMail(ctx.store, mail("m1"), credentialsWait("p1", 5n));
      assert.equal(await ctx.store.wakeWaitingMails(at(1000)), 0, "no active provider: nothing to try");

      await commitProvider(ctx.store, provider("p2", { isActive: true }));
      await settleMail(ctx.store, mail("m2", { createdAt: at(1) }), credentialsWait("p2", 2n));
      await settleMail(ctx.store, mail("m3", { createdAt: at(2) }), credentialsWait("p-old", 2n));
      assert.equal(await ctx.store.wakeWaitingMails(at(3000)), 2);
      assert.deepEqual((await claimIds(ctx.store, claimAt(at(3000)))).sort(), ["m1", "m3"]);
      assert.equal((await ctx.store.findMail("inst-a", "m2"))?.waitReason, "credentials");
    });

    // The engines find these mails as index ranges on either side of the
    // active (provider, sequence), so every side is checked here.
    test("waits on providers or sequences sorting before and after the active one all wake; the wait on it stays", async () => {
      const current = await commitProvider(ctx.store, provider("p5", { isActive: true }));
      const waits: Array<[string, AttemptOutcome]> = [
        ["before-provider", credentialsWait("p1", current)],
        ["after-provider", credentialsWait("p9", current)],
        ["older-sequence", credentialsWait("p5", current - 1n)],
        ["newer-sequence", credentialsWait("p5", current + 1n)],
        ["current", credentialsWait("p5", current)],
      ];
      for (const [i, [id, outcome]] of waits.entries()) await settleMail(ctx.store, mail(id, { createdAt: at(i) }), outcome);

      assert.equal(await ctx.store.wakeWaitingMails(at(1000)), 4);
      assert.deepEqual((await claimIds(ctx.store, claimAt(at(1000)))).sort(), ["after-provider", "before-provider", "newer-sequence", "older-sequence"]);
      assert.equal((await ctx.store.findMail("inst-a", "current"))?.waitReason, "credentials");
    });

    test("a no_provider wait wakes once any provider of its instance is active", async () => {
      await commitProvider(ctx.store, provider("p1"));
      await settleMail(ctx.store, mail("m1"), noProviderWait);
      assert.equal(await ctx.store.wakeWaitingMails(at(1000)), 0);
      await commitProvider(ctx.store, provider("q1", { instanceId: "inst-b", isActive: true }));
      assert.equal(await ctx.store.wakeWaitingMails(at(1000)), 0, "inst-b's provider does not serve inst-a");

      await commitProvider(ctx.store, provider("p2", { isActive: true }));
      assert.equal(await ctx.store.wakeWaitingMails(at(2000)), 1);
      assert.deepEqual(await claimIds(ctx.store, claimAt(at(2000))), ["m1"]);
    });

    test("waking can be limited to one instance", async () => {
      await commitProvider(ctx.store, provider("p1", { isActive: true }));
      await commitProvider(ctx.store, provider("q1", { instanceId: "inst-b", isActive: true }));
      await settleMail(ctx.store, mail("a1"), noProviderWait);
      await settleMail(ctx.store, mail("b1", { instanceId: "inst-b", createdAt: at(1) }), noProviderWait);

      assert.equal(await ctx.store.wakeWaitingMails(at(10), "inst-b"), 1);
      assert.equal((await ctx.store.findMail("inst-a", "a1"))?.waitReason, "no_provider");
      assert.equal(await ctx.store.wakeWaitingMails(at(20)), 1);
    });
  });
}

function describeExpiryAndCounts(ctx: ContractContext): void {
  describe("outbox: expiry and counts", () => {
    beforeEach(() => ctx.seed());

    test("expireMails fails queued and waiting mails created before the cutoff, keeping their last error, and nothing else", async () => {
      const old = at(-10_000);
      await settleMail(ctx.store, mail("sent", { createdAt: old }), { kind: "sent", providerId: "p1", at: old });
      await settleMail(ctx.store, mail("waiting", { createdAt: old }), credentialsWait("p1", 1n));
      await ctx.store.enqueueMail(mail("sending", { createdAt: old }));
      await ctx.store.claimMails(claimAt(old, { workerId: "w9" }));
      await enqueueAll(ctx.store, [mail("old", { createdAt: old }), mail("new", { createdAt: at(0) })]);

      assert.equal(await ctx.store.expireMails(at(-5000), at(0)), 2);
      const state = async (id: string) => {
        const m = await ctx.store.findMail("inst-a", id);
        return [m?.state, m?.lastError, m?.waitReason];
      };
      const gaveUp = "gave up: not delivered within the maximum age";
      assert.deepEqual(await state("old"), ["failed", gaveUp, ""]);
      assert.deepEqual(await state("waiting"), ["failed", `${gaveUp}; last error: 535 authentication failed`, ""]);
      assert.deepEqual(await state("sending"), ["sending", "", ""]);
      assert.deepEqual(await state("sent"), ["sent", "", ""]);
      assert.deepEqual(await state("new"), ["queued", "", ""]);
      assert.deepEqual(await ctx.store.countMails(), { failed: 2, sending: 1, sent: 1, queued: 1 });
      assert.deepEqual(await ctx.store.countMails(["queued", "sending"]), { sending: 1, queued: 1 });
      assert.deepEqual(await ctx.store.countMails(["sent", "queued"]), { sent: 1, queued: 1 });
    });

    test("purgeMails deletes sent and failed mails created before the cutoff, at most limit, and frees their idempotency keys", async () => {
      const old = at(-10_000);
      const sent: AttemptOutcome = { kind: "sent", providerId: "p1", at: old };
      const failed: AttemptOutcome = { kind: "failed", lastError: "550 no such user" };
      for (const [i, id] of ["sent-1", "sent-2", "sent-3"].entries()) {
        await settleMail(ctx.store, mail(id, { createdAt: at(-10_000 + i), idempotencyKey: id }), sent);
      }
      await settleMail(ctx.store, mail("failed", { createdAt: at(-9_000) }), failed);
      await settleMail(ctx.store, mail("waiting", { createdAt: at(-8_000) }), credentialsWait("p1", 1n));
      await settleMail(ctx.store, mail("sent-new", { createdAt: at(0) }), { kind: "sent", providerId: "p1", at: at(0) });
      await ctx.store.enqueueMail(mail("queued", { createdAt: old }));

      assert.equal(await ctx.store.purgeMails(at(-5000), 3), 3);
      assert.equal(await ctx.store.purgeMails(at(-5000), 3), 1);
      assert.equal(await ctx.store.purgeMails(at(-5000), 3), 0);
      for (const id of ["sent-1", "sent-2", "sent-3", "failed"]) assert.equal(await ctx.store.findMail("inst-a", id), undefined, id);
      assert.deepEqual(await ctx.store.countMails(), { queued: 2, sent: 1 });

      const again = await ctx.store.enqueueMail(mail("sent-1-again", { createdAt: at(1), idempotencyKey: "sent-1" }));
      assert.deepEqual([again.created, again.mail.id], [true, "sent-1-again"]);
    });

    test("countMails of an empty outbox is empty", async () => {
      assert.deepEqual(await ctx.store.countMails(), {});
    });
  });
}

function describeFeed(ctx: ContractContext): void {
  describe("change feed", () => {
    beforeEach(() => ctx.seed());

    test("subscribers hear of each commit and each new mail, in order, and of nothing that changed nothing", async () => {
      const feed = recordChanges(ctx.store);
      await commitProvider(ctx.store, provider("p1"));
      await ctx.store.enqueueMail(mail("m1", { idempotencyKey: "k" }));
      await ctx.store.enqueueMail(mail("m2", { idempotencyKey: "k" }));
      await assert.rejects(ctx.store.commit(write({ expectedSequence: 0n, events: [event("p9")] })), StoreConflict);

      assert.deepEqual(await feed.settle(), [
        { instanceId: "inst-a", kind: "providers" },
        { instanceId: "inst-a", kind: "mails" },
      ]);
      feed.stop();
    });

    test("a listener that unsubscribed hears nothing more", async () => {
      const gone = recordChanges(ctx.store);
      const staying = recordChanges(ctx.store);
      gone.stop();
      await commitProvider(ctx.store, provider("p1"));
      assert.deepEqual(await staying.settle(), [{ instanceId: "inst-a", kind: "providers" }]);
      assert.deepEqual(gone.recorded(), []);
      staying.stop();
    });
  });
}
