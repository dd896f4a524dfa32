/**
 * The store contract (contract.ts) on the PostgreSQL engine, on a database
 * of this file's own, emptied before each test; "another store" is a second
 * pool on the same database, as another replica would open it. Then what
 * only a shared database has to prove: replicas claiming at once, replicas
 * migrating at once, the feed across stores, and an unreachable database.
 */
import assert from "node:assert/strict";
import { after, afterEach, beforeEach, describe, test } from "node:test";
import { isDomainError } from "../../src/domain/errors.js";
import { postgresMigrations } from "../../src/store/postgres-migrations.js";
import { openPostgresStore, type PostgresStore } from "../../src/store/postgres-store.js";
import type { Store, StoreChange } from "../../src/store/store.js";
import { createTestDatabase, startPostgresRelay, withAdminClient } from "../helpers/postgres.js";
import { at, commitProvider, describeStoreContract, mail, provider, silentLog, t0, waitFor } from "./contract.js";

const database = await createTestDatabase("contract");
const skip = database.skip;
after(async () => {
  if (database.skip === undefined) await database.drop();
});

function databaseUrl(): string {
  if (database.skip !== undefined) throw new Error(database.skip);
  return database.url;
}

describeStoreContract(
  "PostgreSQL",
  {
    async openEmpty() {
      const store = await openPostgresStore(databaseUrl(), silentLog);
      await emptyTables(store);
      return store;
    },
    openAgain: () => openPostgresStore(databaseUrl(), silentLog),
  },
  { skip },
);

async function emptyTables(store: PostgresStore): Promise<void> {
  const { rows } = await store.pool.query(
    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'",
  );
  await store.pool.query(`TRUNCATE ${rows.map((r) => `"${r.tablename}"`).join(", ")} CASCADE`);
}

describe("PostgreSQL shared by replicas", { skip }, () => {
  let stores: PostgresStore[] = [];
  const open = async (url = databaseUrl()) => {
    const store = await openPostgresStore(url, silentLog);
    stores.push(store);
    return store;
  };
  beforeEach(async () => {
    const first = await open();
    await emptyTables(first);
    for (const id of ["inst-a", "inst-b", "inst-c"]) await first.addInstance({ id, domains: [`${id}.test`], createdAt: t0 });
  });
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
  });

  test("two replicas claiming at once never claim the same mail, and share the work", async () => {
    const replicas = [stores[0], await open()];
    // Both pools connected before the race, so the new one does not start
    // behind by a connection handshake while the other drains the queue.
    await Promise.all(replicas.map((r) => r.countMails()));
    const total = 300;
    for (let i = 0; i < total; i++) {
      await replicas[0].enqueueMail(mail(`m${i}`, { instanceId: `inst-${"abc"[i % 3]}`, createdAt: at(i) }));
    }

    const claimedBy = new Map<string, string[]>();
    const worker = async (replica: Store, workerId: string) => {
      for (let idle = 0; idle < 3; ) {
        const mails = await replica.claimMails({ workerId, now: at(total), leaseMs: 60_000, limit: 7, perInstanceLimit: 3, skipInstances: [] });
        idle = mails.length === 0 ? idle + 1 : 0;
        for (const m of mails) {
          claimedBy.set(m.id, [...(claimedBy.get(m.id) ?? []), workerId]);
          assert.equal(await replica.completeMail(m.id, workerId, { kind: "sent", providerId: "p", at: at(total) }, at(total)), true);
        }
      }
    };
    await Promise.all(replicas.flatMap((r, i) => [1, 2, 3].map((n) => worker(r, `replica${i}-worker${n}`))));

    assert.equal(claimedBy.size, total);
    const twice = [...claimedBy].filter(([, by]) => by.length > 1);
    assert.deepEqual(twice, [], "mails claimed more than once");
    const perReplica = [0, 1].map((i) => [...claimedBy.values()].filter(([by]) => by.startsWith(`replica${i}`)).length);
    assert.ok(perReplica.every((n) => n > 0), `work not shared: ${perReplica}`);
    assert.deepEqual(await replicas[1].countMails(), { sent: total });
  });

  test("replicas opening one fresh database at once apply each migration exactly once", async () => {
    const fresh = await createTestDatabase("migrate-race");
    if (fresh.skip !== undefined) throw new Error(fresh.skip);
    const opening = await Promise.allSettled(Array.from({ length: 6 }, () => openPostgresStore(fresh.url, silentLog)));
    const opened = opening.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    try {
      assert.deepEqual(opening.filter((r) => r.status === "rejected"), []);
      const { rows } = await opened[0].pool.query("SELECT version FROM schema_migrations ORDER BY version");
      assert.deepEqual(rows.map((r) => r.version), postgresMigrations.map((_, i) => i + 1));
      await opened[1].addInstance({ id: "i1", domains: ["fresh.test"], createdAt: t0 });
      assert.equal((await opened[5].findInstanceByDomain("fresh.test"))?.id, "i1");
    } finally {
      await Promise.all(opened.map((s) => s.close()));
      await fresh.drop();
    }
  });

  test("a commit on one replica reaches the subscribers of another", async () => {
    const other = await open();
    const heard: StoreChange[] = [];
    other.subscribe((change) => heard.push(change));
    await commitProvider(stores[0], provider("p1"));
    await stores[0].enqueueMail(mail("m1", { instanceId: "inst-b" }));
    await waitFor(() => heard.length >= 2, "two changes on the other replica");
    assert.deepEqual(heard, [
      { instanceId: "inst-a", kind: "providers" },
      { instanceId: "inst-b", kind: "mails" },
    ]);
  });

  test("mails that one replica wakes or releases are announced to the others", async () => {
    const other = await open();
    const heard: StoreChange[] = [];
    other.subscribe((change) => heard.push(change));
    await commitProvider(stores[0], provider("p1", { isActive: true }));
    await stores[0].enqueueMail(mail("m1", { instanceId: "inst-a" }));
    await stores[0].claimMails({ workerId: "w1", now: at(0), leaseMs: 60_000, limit: 5, perInstanceLimit: 5, skipInstances: [] });
    const wait = { kind: "wait", reason: "credentials", lastError: "535", providerId: "p0", providerSequence: 1n } as const;
    await stores[0].completeMail("m1", "w1", wait, at(1));
    await waitFor(() => heard.length >= 2, "the commit and the enqueue");

    heard.length = 0;
    assert.equal(await stores[0].wakeWaitingMails(at(2)), 1);
    await waitFor(() => heard.length >= 1, "the wake to be announced");
    assert.deepEqual(heard, [{ instanceId: "inst-a", kind: "mails" }]);

    heard.length = 0;
    await stores[0].claimMails({ workerId: "w2", now: at(2), leaseMs: 60_000, limit: 5, perInstanceLimit: 5, skipInstances: [] });
    assert.equal(await stores[0].releaseClaims("w2", at(3)), 1);
    await waitFor(() => heard.length >= 1, "the release to be announced");
    assert.deepEqual(heard, [{ instanceId: "inst-a", kind: "mails" }]);
  });

  test("a mail that two replicas wake at once is claimable right after the wake", async () => {
    const [a, b] = [stores[0], await open()];
    await commitProvider(a, provider("p1", { isActive: true }));
    const wait = { kind: "wait", reason: "credentials", lastError: "535", providerId: "p0", providerSequence: 1n } as const;
    let missed = 0;
    for (let i = 0; i < 60; i++) {
      const id = `m${i}`;
      await a.enqueueMail(mail(id, { createdAt: at(i) }));
      await a.claimMails({ workerId: "w", now: at(i), leaseMs: 60_000, limit: 1, perInstanceLimit: 1, skipInstances: [] });
      await a.completeMail(id, "w", wait, at(i));
      // As after a provider change: every replica wakes, and B, which has room, claims at once.
      const claimB = () => b.claimMails({ workerId: "b", now: at(i + 1), leaseMs: 60_000, limit: 5, perInstanceLimit: 5, skipInstances: [] });
      const [, byB] = await Promise.all([
        a.wakeWaitingMails(at(i + 1)),
        b.wakeWaitingMails(at(i + 1)).then(async (woke) => ({ woke, claimed: await claimB() })),
      ]);
      // Had A woken it, A's announcement would make B claim again; had B, nothing would.
      if (byB.claimed.length === 0 && byB.woke === 1) missed += 1;
      if (byB.claimed.length === 0) assert.equal((await claimB()).length, 1);
      await b.completeMail(id, "b", { kind: "sent", providerId: "p1", at: at(i + 1) }, at(i + 1));
    }
    assert.equal(missed, 0, "woken mails the claim skipped");
  });

  test("a replica whose feed connection was cut reconnects, announces a catch-up, and hears commits again", async () => {
    const listener = await open();
    const heard: StoreChange[] = [];
    listener.subscribe((change) => heard.push(change));
    const cut = await withAdminClient((c) =>
      c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN %'", [
        new URL(databaseUrl()).pathname.slice(1),
      ]),
    );
    assert.ok((cut.rowCount ?? 0) >= 1);
    // Committed while the feed may be down: only the catch-up can tell about it.
    await commitProvider(stores[0], provider("p1"));

    await waitFor(() => heard.some((c) => c.instanceId === "*"), "a catch-up change");
    const since = heard.length;
    await commitProvider(stores[0], provider("p2"));
    await waitFor(() => heard.slice(since).some((c) => c.instanceId === "inst-a"), "a commit after the reconnect");
  });

  test("while the database is unreachable every call fails as unavailable; afterwards all works and the feed catches up", async () => {
    const relay = await startPostgresRelay(databaseUrl());
    try {
      const cutOff = await open(relay.url);
      const heard: StoreChange[] = [];
      cutOff.subscribe((change) => heard.push(change));
      relay.cut();

      const calls: [string, () => Promise<unknown>][] = [
        ["findTokenByHash", () => cutOff.findTokenByHash("00")],
        ["readProviders", () => cutOff.readProviders("inst-a")],
        ["commit", () => commitProvider(cutOff, provider("p1"))],
        ["enqueueMail", () => cutOff.enqueueMail(mail("m1"))],
        ["claimMails", () => cutOff.claimMails({ workerId: "w", now: at(0), leaseMs: 1000, limit: 5, perInstanceLimit: 5, skipInstances: [] })],
        ["wakeWaitingMails", () => cutOff.wakeWaitingMails(at(0))],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), (err) => isDomainError(err, "unavailable"), `${name} while unreachable`);
      }

      await commitProvider(stores[0], provider("p1"));
      relay.restore();
      await waitFor(async () => (await cutOff.readProviders("inst-a").catch(() => undefined))?.sequence === 1n, "the store to work again");
      await waitFor(() => heard.some((c) => c.instanceId === "*"), "a catch-up change");
      await cutOff.enqueueMail(mail("m1"));
      assert.equal((await stores[0].findMail("inst-a", "m1"))?.state, "queued");
    } finally {
      await relay.close();
    }
  });

  test("opening a store on an unreachable database fails as unavailable", async () => {
    const relay = await startPostgresRelay(databaseUrl());
    relay.cut();
    try {
      await assert.rejects(openPostgresStore(relay.url, silentLog), (err) => isDomainError(err, "unavailable"));
    } finally {
      await relay.close();
    }
  });
});
