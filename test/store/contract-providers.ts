/**
 * The provider half of the store contract: instances, tokens, the sequence
 * rules of commit, the one-active rule, reads, events, and concurrent
 * writers. Registered by describeStoreContract in contract.ts.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { beforeEach, describe, test } from "node:test";
import type { Principal } from "../../src/domain/access.js";
import type { DomainDeps } from "../../src/domain/deps.js";
import { DomainError, isDomainError } from "../../src/domain/errors.js";
import type { MailSender } from "../../src/domain/mail.js";
import { activateProvider, addProvider, changeSmtpPassword } from "../../src/domain/provider-commands.js";
import { SecretBox } from "../../src/domain/secret-box.js";
import { StoreConflict, type Store } from "../../src/store/store.js";
import { commitProvider, event, provider, silentLog, t0, write, type ContractContext } from "./contract.js";

/** Registers the provider sections of the contract. */
export function describeProviderContract(ctx: ContractContext): void {
  describeInstances(ctx);
  describeSequences(ctx);
  describeOneActive(ctx);
  describeReads(ctx);
  describeEvents(ctx);
  describeConcurrentWriters(ctx);
}

function describeInstances(ctx: ContractContext): void {
  describe("instances and tokens", () => {
    test("an empty store has no instances; an added one is found by each domain, domains sorted", async () => {
      assert.equal(await ctx.store.countInstances(), 0);
      const instance = { id: "i1", domains: ["b.test", "a.test"], createdAt: t0 };
      await ctx.store.addInstance(instance);

      const expected = { ...instance, domains: ["a.test", "b.test"] };
      assert.deepEqual(await ctx.store.findInstanceByDomain("a.test"), expected);
      assert.deepEqual(await ctx.store.findInstanceByDomain("b.test"), expected);
      assert.equal(await ctx.store.findInstanceByDomain("c.test"), undefined);
      assert.equal(await ctx.store.countInstances(), 1);
    });

    test("an instance with a domain already taken is refused as invalid and nothing of it is stored", async () => {
      await ctx.store.addInstance({ id: "i1", domains: ["a.test"], createdAt: t0 });
      await assert.rejects(
        ctx.store.addInstance({ id: "i2", domains: ["c.test", "a.test"], createdAt: t0 }),
        (err) => isDomainError(err, "invalid"),
      );
      assert.equal(await ctx.store.findInstanceByDomain("c.test"), undefined);
      assert.equal((await ctx.store.findInstanceByDomain("a.test"))?.id, "i1");
      assert.equal(await ctx.store.countInstances(), 1);
    });

    test("a token is found by its hash with its roles, and an unknown hash finds nothing", async () => {
      await ctx.seed();
      const token = { id: "tok-1", instanceId: "inst-a", hash: "ab".repeat(32), roles: ["IAM_OWNER", "NOTIFY_SENDER"] as const, createdAt: t0 };
      await ctx.store.addToken({ ...token, roles: [...token.roles] });
      assert.deepEqual(await ctx.store.findTokenByHash(token.hash), { ...token, roles: [...token.roles] });
      assert.equal(await ctx.store.findTokenByHash("cd".repeat(32)), undefined);
    });
  });
}

function describeSequences(ctx: ContractContext): void {
  describe("commit and the instance sequence", () => {
    beforeEach(() => ctx.seed());

    test("a fresh or unknown instance reads as sequence 0 with no providers", async () => {
      assert.deepEqual(await ctx.store.readProviders("inst-a"), { sequence: 0n, providers: [] });
      assert.deepEqual(await ctx.store.readProviders("no-such-instance"), { sequence: 0n, providers: [] });
    });

    test("a commit numbers its events from expectedSequence + 1 and moves the instance's sequence", async () => {
      const events = [event("p1"), event("p1", "smtp.config.activated")];
      await ctx.store.commit(write({ expectedSequence: 0n, events, upserts: [provider("p1", { sequence: 2n })] }));
      const snapshot = await ctx.store.readProviders("inst-a");
      assert.equal(snapshot.sequence, 2n);
      assert.deepEqual(snapshot.providers, [provider("p1", { sequence: 2n })]);
      assert.deepEqual((await ctx.store.listEvents("inst-a")).map((e) => e.sequence), [1n, 2n]);
    });

    test("a stale expectedSequence throws StoreConflict and writes nothing", async () => {
      await commitProvider(ctx.store, provider("p1"));
      const events = [event("p2"), event("p1", "smtp.config.removed")];
      const stale = write({ expectedSequence: 0n, events, upserts: [provider("p2")], deletes: ["p1"] });
      await assert.rejects(ctx.store.commit(stale), StoreConflict);

      const snapshot = await ctx.store.readProviders("inst-a");
      assert.equal(snapshot.sequence, 1n);
      assert.deepEqual(snapshot.providers.map((p) => p.id), ["p1"]);
      assert.deepEqual((await ctx.store.listEvents("inst-a")).map((e) => [e.sequence, e.objectId]), [[1n, "p1"]]);
    });

    test("an expectedSequence ahead of the instance, or an unknown instance, is a conflict too", async () => {
      await assert.rejects(ctx.store.commit(write({ expectedSequence: 5n, events: [event("p1")], upserts: [provider("p1")] })), StoreConflict);
      const elsewhere = write({ instanceId: "no-such-instance", expectedSequence: 0n, events: [event("p1")] });
      await assert.rejects(ctx.store.commit(elsewhere), StoreConflict);
      assert.deepEqual(await ctx.store.readProviders("inst-a"), { sequence: 0n, providers: [] });
      assert.deepEqual(await ctx.store.listEvents("no-such-instance"), []);
    });

    test("of many writers that read the same sequence, exactly one commits", async () => {
      const other = await ctx.openAgain();
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => {
          const id = `x${i}`;
          return (i % 2 ? other : ctx.store).commit(write({ expectedSequence: 0n, events: [event(id)], upserts: [provider(id)] }));
        }),
      );
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof StoreConflict, String(r.reason));
      const snapshot = await ctx.store.readProviders("inst-a");
      assert.equal(snapshot.sequence, 1n);
      assert.equal(snapshot.providers.length, 1);
      assert.equal((await ctx.store.listEvents("inst-a")).length, 1);
    });

    test("instances have their own sequences", async () => {
      await commitProvider(ctx.store, provider("p1"));
      await commitProvider(ctx.store, provider("p2"));
      assert.equal(await commitProvider(ctx.store, provider("q1", { instanceId: "inst-b" })), 1n);
      assert.equal((await ctx.store.readProviders("inst-a")).sequence, 2n);
      assert.deepEqual((await ctx.store.listEvents("inst-b")).map((e) => e.objectId), ["q1"]);
    });

    test("every snapshot read while another store writes has a sequence that matches its rows", async () => {
      const writer = await ctx.openAgain();
      let done = false;
      const writes = (async () => {
        try {
          for (let s = 0n; s < 40n; s++) {
            const upserts = [provider("p1", { sequence: s + 1n })];
            await writer.commit(write({ expectedSequence: s, events: [event("p1", "smtp.config.changed")], upserts }));
          }
        } finally {
          done = true;
        }
      })();
      let reads = 0;
      while (!done) {
        const [snapshot, page] = await Promise.all([
          ctx.store.readProviders("inst-a"),
          ctx.store.listProviders("inst-a", { offset: 0, limit: 10, asc: true }),
        ]);
        // Each write sets p1's sequence to the instance's new sequence.
        for (const s of [snapshot, page]) assert.equal(s.providers[0]?.sequence ?? 0n, s.sequence);
        reads += 1;
        // Lets timers and I/O run even when the engine answers synchronously.
        await new Promise((resolve) => setImmediate(resolve));
      }
      await writes;
      assert.ok(reads > 0);
      assert.equal((await ctx.store.readProviders("inst-a")).sequence, 40n);
    });
  });
}

function describeOneActive(ctx: ContractContext): void {
  describe("one active provider per instance", () => {
    beforeEach(() => ctx.seed());

    test("a second active row in one instance is refused and nothing is deleted or written", async () => {
      await commitProvider(ctx.store, provider("p1", { isActive: true }));
      await commitProvider(ctx.store, provider("p2"));
      const before = await ctx.store.readProviders("inst-a");
      const eventsBefore = await ctx.store.listEvents("inst-a");

      // A brand-new active row, and an existing row turned active, each beside p1.
      for (const upsert of [provider("p3", { isActive: true }), provider("p2", { isActive: true, description: "changed" })]) {
        const attempt = write({ expectedSequence: before.sequence, events: [event(upsert.id, "smtp.config.activated")], upserts: [upsert] });
        await assert.rejects(ctx.store.commit(attempt));
      }

      assert.deepEqual(await ctx.store.readProviders("inst-a"), before);
      assert.deepEqual(await ctx.store.listEvents("inst-a"), eventsBefore);
      assert.equal((await ctx.store.findActiveProvider("inst-a"))?.id, "p1");
    });

    test("deactivating one and activating another in one write succeeds, whatever the upsert order", async () => {
      await commitProvider(ctx.store, provider("p1", { isActive: true }));
      await commitProvider(ctx.store, provider("p2"));
      await ctx.store.commit(
        write({
          expectedSequence: 2n,
          events: [event("p2", "smtp.config.activated"), event("p1", "smtp.config.deactivated")],
          upserts: [provider("p2", { isActive: true, sequence: 3n }), provider("p1", { isActive: false, sequence: 4n })],
        }),
      );
      assert.equal((await ctx.store.findActiveProvider("inst-a"))?.id, "p2");
      assert.equal((await ctx.store.findProvider("inst-a", "p1"))?.isActive, false);
    });

    test("two instances may each have an active provider", async () => {
      await commitProvider(ctx.store, provider("p1", { isActive: true }));
      await commitProvider(ctx.store, provider("q1", { instanceId: "inst-b", isActive: true }));
      assert.equal((await ctx.store.findActiveProvider("inst-a"))?.id, "p1");
      assert.equal((await ctx.store.findActiveProvider("inst-b"))?.id, "q1");
    });
  });
}

function describeReads(ctx: ContractContext): void {
  describe("reading providers", () => {
    beforeEach(() => ctx.seed());

    test("findProvider and findActiveProvider are scoped to the instance", async () => {
      await commitProvider(ctx.store, provider("p1", { isActive: true }));
      assert.equal((await ctx.store.findProvider("inst-a", "p1"))?.id, "p1");
      assert.equal(await ctx.store.findProvider("inst-b", "p1"), undefined);
      assert.equal(await ctx.store.findActiveProvider("inst-b"), undefined);
    });

    test("a provider round-trips every field, dates to the millisecond and sequences as bigint", async () => {
      const p = provider("p1", {
        tls: false,
        replyToAddress: "reply@example.test",
        isActive: true,
        host: "[::1]:2525",
        user: "üser",
        creationDate: new Date("2024-01-02T03:04:05.678Z"),
        changeDate: new Date("2024-06-07T08:09:10.111Z"),
      });
      await commitProvider(ctx.store, p);
      assert.deepEqual(await ctx.store.findProvider("inst-a", "p1"), { ...p, sequence: 1n });
      assert.deepEqual(await ctx.store.findActiveProvider("inst-a"), { ...p, sequence: 1n });
    });

    test("listProviders pages in creation order, ties by id, ascending or descending, with total and sequence", async () => {
      for (let i = 1; i <= 5; i++) await commitProvider(ctx.store, provider(`p${i}`, { creationDate: new Date(t0.getTime() + i * 1000) }));
      await commitProvider(ctx.store, provider("p0b", { creationDate: t0 }));
      await commitProvider(ctx.store, provider("p0a", { creationDate: t0 }));

      const asc = await ctx.store.listProviders("inst-a", { offset: 0, limit: 3, asc: true });
      assert.deepEqual(asc.providers.map((p) => p.id), ["p0a", "p0b", "p1"]);
      assert.equal(asc.total, 7);
      assert.equal(asc.sequence, 7n);
      const desc = await ctx.store.listProviders("inst-a", { offset: 1, limit: 2, asc: false });
      assert.deepEqual(desc.providers.map((p) => p.id), ["p4", "p3"]);
      const beyond = await ctx.store.listProviders("inst-a", { offset: 10, limit: 5, asc: true });
      assert.deepEqual(beyond, { total: 7, sequence: 7n, providers: [] });
    });

    test("listProviders of an instance without providers is empty at sequence 0", async () => {
      assert.deepEqual(await ctx.store.listProviders("inst-b", { offset: 0, limit: 10, asc: true }), { total: 0, sequence: 0n, providers: [] });
    });

    test("a commit that deletes a provider removes its row and keeps its events", async () => {
      await commitProvider(ctx.store, provider("p1"));
      await ctx.store.commit(write({ expectedSequence: 1n, events: [event("p1", "smtp.config.removed")], deletes: ["p1"] }));
      assert.equal(await ctx.store.findProvider("inst-a", "p1"), undefined);
      assert.deepEqual((await ctx.store.listEvents("inst-a")).map((e) => e.type), ["smtp.config.added", "smtp.config.removed"]);
    });
  });
}

function describeEvents(ctx: ContractContext): void {
  describe("events", () => {
    beforeEach(() => ctx.seed());

    test("are listed oldest first with every field, and after a given sequence", async () => {
      const later = new Date(t0.getTime() + 60_000);
      await commitProvider(ctx.store, provider("p1"));
      const nested = { type: "smtp.config.changed" as const, objectId: "p2", payload: { host: "h:25", tls: false, list: [1, "two", null] } };
      await ctx.store.commit({
        ...write({ expectedSequence: 1n, events: [event("p2"), nested] }),
        actor: "token-2",
        createdAt: later,
        upserts: [provider("p2", { sequence: 3n })],
      });

      const events = await ctx.store.listEvents("inst-a");
      assert.deepEqual(events.map((e) => [e.sequence, e.objectId, e.type]), [
        [1n, "p1", "smtp.config.added"],
        [2n, "p2", "smtp.config.added"],
        [3n, "p2", "smtp.config.changed"],
      ]);
      assert.deepEqual(events[2], { instanceId: "inst-a", sequence: 3n, actor: "token-2", createdAt: later, ...nested });
      assert.deepEqual((await ctx.store.listEvents("inst-a", 1n)).map((e) => e.sequence), [2n, 3n]);
      assert.deepEqual(await ctx.store.listEvents("inst-b"), []);
    });
  });
}

function describeConcurrentWriters(ctx: ContractContext): void {
  describe("concurrent writers through the domain", () => {
    beforeEach(() => ctx.seed());

    test("parallel password changes from two stores all succeed, retrying if told to, gap-free and without lost updates", async () => {
      const secrets = new SecretBox([randomBytes(32)]);
      const stores = [ctx.store, await ctx.openAgain()];
      const { id } = await addProvider(depsOf(stores[0], secrets), owner, providerInput);
      const stopWatching = watchSequence(ctx.store);

      const writers = 16;
      const results = await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          retryWhileUnavailable(() => changeSmtpPassword(depsOf(stores[i % 2], secrets), owner, { id, password: `password-${i}` })),
        ),
      );
      const sequences = results.map((r) => r.value.sequence).sort((a, b) => Number(a - b));
      const seen = await stopWatching();

      assert.deepEqual(sequences, Array.from({ length: writers }, (_, i) => BigInt(i + 2)));
      const events = await ctx.store.listEvents("inst-a");
      assert.deepEqual(events.map((e) => e.sequence), Array.from({ length: writers + 1 }, (_, i) => BigInt(i + 1)));
      const final = (await ctx.store.readProviders("inst-a")).providers[0];
      assert.equal(final.sequence, BigInt(writers + 1));
      // The last commit wins: the stored password is the one of the writer that got the highest sequence.
      const last = results.findIndex((r) => r.value.sequence === BigInt(writers + 1));
      assert.equal(secrets.open(final.sealedPassword, { instanceId: "inst-a", providerId: id }), `password-${last}`);
      assert.deepEqual(seen, [...seen].sort((a, b) => Number(a - b)), "a reader saw the sequence go backwards");
    });

    test("parallel activations keep one active provider and record every activation and deactivation", async () => {
      const secrets = new SecretBox([randomBytes(32)]);
      const stores = [ctx.store, await ctx.openAgain()];
      const ids = await Promise.all(
        Array.from({ length: 6 }, (_, i) => retryWhileUnavailable(() => addProvider(depsOf(stores[i % 2], secrets), owner, providerInput))),
      );
      await Promise.all(
        ids.map(({ value }, i) => retryWhileUnavailable(() => activateProvider(depsOf(stores[i % 2], secrets), owner, value.id))),
      );

      const snapshot = await ctx.store.readProviders("inst-a");
      assert.equal(snapshot.providers.filter((p) => p.isActive).length, 1);
      const events = await ctx.store.listEvents("inst-a");
      assert.deepEqual(events.map((e) => e.sequence), events.map((_, i) => BigInt(i + 1)));
      const count = (type: string) => events.filter((e) => e.type === type).length;
      assert.deepEqual([count("smtp.config.added"), count("smtp.config.activated"), count("smtp.config.deactivated")], [6, 6, 5]);
      assert.equal(snapshot.sequence, 17n);
    });
  });
}

const owner: Principal = { tokenId: "token-1", instanceId: "inst-a", roles: ["IAM_OWNER"] };

const providerInput = {
  description: "relay",
  senderAddress: "noreply@example.test",
  senderName: "smtpgate",
  replyToAddress: "",
  tls: true,
  host: "smtp.example.test:465",
  user: "mailer",
  password: "first",
};

const unusedMailer: MailSender = {
  send() {
    throw new Error("the store contract sends no mail");
  },
};

function depsOf(store: Store, secrets: SecretBox): DomainDeps {
  return { store, secrets, mailer: unusedMailer, log: silentLog, now: () => new Date() };
}

/**
 * Runs `fn` until it does not fail with "unavailable", as a client retries
 * an Unavailable answer; resolves its value and how many retries it took.
 */
async function retryWhileUnavailable<T>(fn: () => Promise<T>): Promise<{ value: T; retries: number }> {
  for (let retries = 0; ; retries++) {
    try {
      return { value: await fn(), retries };
    } catch (err) {
      if (!(err instanceof DomainError && err.kind === "unavailable") || retries >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
    }
  }
}

/** Reads inst-a's sequence in a loop until stopped; resolves every value seen, in order. */
function watchSequence(store: Store): () => Promise<bigint[]> {
  const seen: bigint[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      seen.push((await store.readProviders("inst-a")).sequence);
      // Lets timers and I/O run even when the engine answers synchronously.
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return seen;
  };
}
