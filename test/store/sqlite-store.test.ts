/**
 * The storage contract (src/store/store.ts) as the SQLite engine keeps it,
 * on a real SQLite file in a temp directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import type { SmtpProvider } from "../../src/domain/provider.js";
import { sqliteMigrations } from "../../src/store/sqlite-migrations.js";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite-store.js";
import { StoreConflict } from "../../src/store/store.js";
import { commitProvider, event, provider, t0, write } from "./contract.js";

let dir: string;
let path: string;
let store: SqliteStore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "smtpgate-store-"));
  path = join(dir, "smtpgate.db");
  store = openSqliteStore(path);
  for (const id of ["inst-a", "inst-b"]) {
    await store.addInstance({ id, domains: [`${id}.test`], createdAt: t0 });
  }
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Commits an added provider as the next event of its instance; returns the new sequence. */
const addProvider = (p: SmtpProvider) => commitProvider(store, p);

describe("sequence compare-and-set", () => {
  test("a fresh instance is at sequence 0 with no providers", async () => {
    assert.deepEqual(await store.readProviders("inst-a"), { sequence: 0n, providers: [] });
  });

  test("a commit numbers its events from expectedSequence + 1 and moves the instance's sequence", async () => {
    await store.commit(
      write({
        expectedSequence: 0n,
        events: [event("p1"), event("p1", "smtp.config.activated")],
        upserts: [provider("p1", { sequence: 2n })],
      }),
    );
    const snapshot = await store.readProviders("inst-a");
    assert.equal(snapshot.sequence, 2n);
    assert.deepEqual(snapshot.providers, [provider("p1", { sequence: 2n })]);
    assert.deepEqual(
      (await store.listEvents("inst-a")).map((e) => e.sequence),
      [1n, 2n],
    );
  });

  test("a stale expectedSequence throws StoreConflict and writes nothing", async () => {
    await addProvider(provider("p1"));
    const stale = write({
      expectedSequence: 0n,
      events: [event("p2"), event("p1", "smtp.config.removed")],
      upserts: [provider("p2")],
      deletes: ["p1"],
    });
    await assert.rejects(store.commit(stale), StoreConflict);

    const snapshot = await store.readProviders("inst-a");
    assert.equal(snapshot.sequence, 1n);
    assert.deepEqual(
      snapshot.providers.map((p) => p.id),
      ["p1"],
    );
    assert.deepEqual(
      (await store.listEvents("inst-a")).map((e) => [e.sequence, e.objectId]),
      [[1n, "p1"]],
    );
  });

  test("an expectedSequence ahead of the instance is a conflict too", async () => {
    await assert.rejects(
      store.commit(
        write({ expectedSequence: 5n, events: [event("p1")], upserts: [provider("p1")] }),
      ),
      StoreConflict,
    );
    assert.deepEqual(await store.readProviders("inst-a"), { sequence: 0n, providers: [] });
  });

  test("of two writers that read the same sequence, exactly one commits", async () => {
    const read = (await store.readProviders("inst-a")).sequence;
    const results = await Promise.allSettled([
      store.commit(
        write({ expectedSequence: read, events: [event("x")], upserts: [provider("x")] }),
      ),
      store.commit(
        write({ expectedSequence: read, events: [event("y")], upserts: [provider("y")] }),
      ),
    ]);
    assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
    const failure = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert.ok(failure.reason instanceof StoreConflict);
    assert.equal((await store.readProviders("inst-a")).providers.length, 1);
  });

  test("instances have their own sequences", async () => {
    await addProvider(provider("p1"));
    await addProvider(provider("p2"));
    assert.equal(await addProvider(provider("q1", { instanceId: "inst-b" })), 1n);
    assert.equal((await store.readProviders("inst-a")).sequence, 2n);
    assert.deepEqual(
      (await store.listEvents("inst-b")).map((e) => e.objectId),
      ["q1"],
    );
  });
});

describe("one active provider per instance", () => {
  test("a second active row in one instance is refused and nothing is deleted or written", async () => {
    await addProvider(provider("p1", { isActive: true }));
    await addProvider(provider("p2"));
    const before = await store.readProviders("inst-a");
    const eventsBefore = await store.listEvents("inst-a");

    // A brand-new active row, and an existing row turned active, each beside p1.
    for (const upsert of [
      provider("p3", { isActive: true }),
      provider("p2", { isActive: true, description: "changed" }),
    ]) {
      await assert.rejects(
        store.commit(
          write({
            expectedSequence: before.sequence,
            events: [event(upsert.id, "smtp.config.activated")],
            upserts: [upsert],
          }),
        ),
      );
    }

    assert.deepEqual(await store.readProviders("inst-a"), before);
    assert.deepEqual(await store.listEvents("inst-a"), eventsBefore);
    assert.equal((await store.findActiveProvider("inst-a"))?.id, "p1");
  });

  test("deactivating one and activating another in one write succeeds, whatever the upsert order", async () => {
    await addProvider(provider("p1", { isActive: true }));
    await addProvider(provider("p2"));
    await store.commit(
      write({
        expectedSequence: 2n,
        events: [event("p2", "smtp.config.activated"), event("p1", "smtp.config.deactivated")],
        upserts: [
          provider("p2", { isActive: true, sequence: 3n }),
          provider("p1", { isActive: false, sequence: 4n }),
        ],
      }),
    );
    assert.equal((await store.findActiveProvider("inst-a"))?.id, "p2");
    assert.equal((await store.findProvider("inst-a", "p1"))?.isActive, false);
  });

  test("two instances may each have an active provider", async () => {
    await addProvider(provider("p1", { isActive: true }));
    await addProvider(provider("q1", { instanceId: "inst-b", isActive: true }));
    assert.equal((await store.findActiveProvider("inst-a"))?.id, "p1");
    assert.equal((await store.findActiveProvider("inst-b"))?.id, "q1");
  });
});

describe("reads", () => {
  test("findProvider is scoped to the instance", async () => {
    await addProvider(provider("p1"));
    assert.equal((await store.findProvider("inst-a", "p1"))?.id, "p1");
    assert.equal(await store.findProvider("inst-b", "p1"), undefined);
  });

  test("a provider round-trips every field, including dates to the millisecond and bigint sequences", async () => {
    const p = provider("p1", {
      tls: false,
      replyToAddress: "reply@example.test",
      isActive: true,
      creationDate: new Date("2024-01-02T03:04:05.678Z"),
      changeDate: new Date("2024-06-07T08:09:10.111Z"),
    });
    await addProvider(p);
    assert.deepEqual(await store.findProvider("inst-a", "p1"), { ...p, sequence: 1n });
  });

  test("listProviders pages in creation order, ascending or descending, with the total", async () => {
    for (let i = 1; i <= 5; i++)
      await addProvider(provider(`p${i}`, { creationDate: new Date(t0.getTime() + i * 1000) }));
    const asc = await store.listProviders("inst-a", { offset: 1, limit: 2, asc: true });
    assert.deepEqual(
      asc.providers.map((p) => p.id),
      ["p2", "p3"],
    );
    assert.equal(asc.total, 5);
    assert.equal(asc.sequence, 5n);
    const desc = await store.listProviders("inst-a", { offset: 0, limit: 2, asc: false });
    assert.deepEqual(
      desc.providers.map((p) => p.id),
      ["p5", "p4"],
    );
  });

  test("a commit that deletes a provider removes its row and keeps its events", async () => {
    await addProvider(provider("p1"));
    await store.commit(
      write({
        expectedSequence: 1n,
        events: [event("p1", "smtp.config.removed")],
        deletes: ["p1"],
      }),
    );
    assert.equal(await store.findProvider("inst-a", "p1"), undefined);
    assert.deepEqual(
      (await store.listEvents("inst-a")).map((e) => e.type),
      ["smtp.config.added", "smtp.config.removed"],
    );
  });
});

describe("events", () => {
  test("are listed oldest first with every field, and after a given sequence", async () => {
    const later = new Date(t0.getTime() + 60_000);
    await addProvider(provider("p1"));
    await store.commit({
      ...write({
        expectedSequence: 1n,
        events: [event("p2"), event("p2", "smtp.config.activated")],
      }),
      actor: "token-2",
      createdAt: later,
      upserts: [provider("p2", { isActive: true, sequence: 3n })],
    });
    await store.commit(
      write({
        expectedSequence: 3n,
        events: [event("p1", "smtp.config.password.changed")],
        upserts: [provider("p1", { sequence: 4n })],
      }),
    );

    const events = await store.listEvents("inst-a");
    assert.deepEqual(
      events.map((e) => [e.sequence, e.objectId, e.type]),
      [
        [1n, "p1", "smtp.config.added"],
        [2n, "p2", "smtp.config.added"],
        [3n, "p2", "smtp.config.activated"],
        [4n, "p1", "smtp.config.password.changed"],
      ],
    );
    assert.deepEqual(events[1], {
      instanceId: "inst-a",
      sequence: 2n,
      objectId: "p2",
      type: "smtp.config.added",
      actor: "token-2",
      payload: { note: "smtp.config.added of p2" },
      createdAt: later,
    });
    assert.deepEqual(
      (await store.listEvents("inst-a", 2n)).map((e) => e.sequence),
      [3n, 4n],
    );
    assert.deepEqual(await store.listEvents("inst-b"), []);
  });
});

describe("migrations", () => {
  test("opening the same file again applies nothing twice and keeps the data", async () => {
    await addProvider(provider("p1", { isActive: true }));
    await store.close();
    store = openSqliteStore(path);
    const again = openSqliteStore(path);
    try {
      const versions = again.db
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .all() as { version: number }[];
      assert.deepEqual(
        versions.map((v) => v.version),
        sqliteMigrations.map((_, i) => i + 1),
      );
      assert.equal((await again.findActiveProvider("inst-a"))?.id, "p1");
      assert.equal(await again.countInstances(), 2);
    } finally {
      await again.close();
    }
    assert.equal((await store.readProviders("inst-a")).sequence, 1n);
  });

  test("a store opened on a new file starts empty at the latest schema version", async () => {
    const fresh = openSqliteStore(join(dir, "fresh.db"));
    try {
      assert.equal(await fresh.countInstances(), 0);
      const { v } = fresh.db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as {
        v: number;
      };
      assert.equal(v, sqliteMigrations.length);
    } finally {
      await fresh.close();
    }
  });
});
