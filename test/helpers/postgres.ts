/**
 * PostgreSQL for tests: a fresh, uniquely named database per test file,
 * created through the `postgres` maintenance database and dropped at the end.
 *
 * Where PostgreSQL cannot be reached, createTestDatabase answers a skip
 * reason so `npm test` passes on a machine without it, unless
 * SMTPGATE_REQUIRE_POSTGRES=1 (set by .ci/run), which turns that into a
 * failure. The server is SMTPGATE_TEST_POSTGRES_URL, by default the local
 * one with trust auth.
 *
 * One test file (test/replicas/postgres-restart.test.ts) stops and starts
 * the whole server. So that it cannot pull the server from under another
 * file, every file holds a shared advisory lock while its databases exist,
 * and the restart test takes the same lock exclusively; while the server
 * is stopped on purpose, a marker file tells other files to wait for it
 * instead of skipping.
 */
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";

/** The maintenance database the helper creates and drops databases through. */
export const adminUrl = process.env.SMTPGATE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** True when a missing PostgreSQL must fail the suites instead of skipping them. */
export const isPostgresRequired = process.env.SMTPGATE_REQUIRE_POSTGRES === "1";

/** A database of one test file. */
export interface TestDatabase {
  readonly skip?: undefined;
  readonly name: string;
  /** postgres://... of the new database. */
  readonly url: string;
  /** Drops the database, ending whatever is still connected to it. */
  drop(): Promise<void>;
}

/** Why the PostgreSQL suites do not run here. */
export interface PostgresSkip {
  readonly skip: string;
}

// Any constant works; every test process must use the same one.
const serverLockKey = 0x73677400;
// Databases this old are leftovers of killed runs; milliseconds.
const staleAfterMs = 2 * 60 * 60_000;
const namePrefix = "smtpgate_t_";

/** Written while a test keeps the server stopped on purpose; holds the time it was written. */
export const restartMarkerFile = join(tmpdir(), "smtpgate-test-postgres-restart");
// How long another file waits for a server that is being restarted; ms.
const restartWaitMs = 90_000;

/**
 * Creates a fresh database named after `label`. Resolves a skip reason when
 * PostgreSQL is unreachable; rejects instead when SMTPGATE_REQUIRE_POSTGRES=1.
 * With `exclusive`, waits until no other test process uses the server, and
 * keeps it that way until drop().
 */
export async function createTestDatabase(
  label: string,
  options: { exclusive?: boolean } = {},
): Promise<TestDatabase | PostgresSkip> {
  try {
    await holdServerLock(options.exclusive ?? false);
  } catch (err) {
    const reason = `PostgreSQL is not reachable at ${redact(adminUrl)} (${describeError(err)}); start it or set SMTPGATE_TEST_POSTGRES_URL`;
    if (isPostgresRequired) throw new Error(`SMTPGATE_REQUIRE_POSTGRES=1, but ${reason}`, { cause: err });
    return { skip: `${reason} (SMTPGATE_REQUIRE_POSTGRES=1 makes this a failure)` };
  }
  try {
    const name = await createDatabase(label);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    let dropped = false;
    return {
      name,
      url: url.toString(),
      async drop() {
        if (dropped) return;
        dropped = true;
        try {
          await withAdminClient((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
        } finally {
          await releaseServerLock();
        }
      },
    };
  } catch (err) {
    await releaseServerLock();
    throw err;
  }
}

async function createDatabase(label: string): Promise<string> {
  const safe = label.toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 24);
  const name = `${namePrefix}${Math.floor(Date.now() / 1000)}_${safe}_${randomBytes(4).toString("hex")}`;
  await withAdminClient(async (c) => {
    await dropStaleDatabases(c);
    // template0: nobody is ever connected to it, so parallel creates cannot clash on it.
    await c.query(`CREATE DATABASE ${name} TEMPLATE template0`);
  });
  return name;
}

async function dropStaleDatabases(c: pg.Client): Promise<void> {
  const { rows } = await c.query("SELECT datname FROM pg_database WHERE datname LIKE $1", [`${namePrefix}%`]);
  for (const { datname } of rows as { datname: string }[]) {
    const createdSeconds = Number(datname.slice(namePrefix.length).split("_")[0]);
    if (Number.isFinite(createdSeconds) && Date.now() - createdSeconds * 1000 > staleAfterMs) {
      await c.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`).catch(() => undefined);
    }
  }
}

/** Runs `fn` on a short-lived connection to the maintenance database. */
export function withAdminClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  return withDatabaseClient(adminUrl, fn);
}

// The lock is per process: a file that creates two databases must not queue
// a second shared request behind a waiting exclusive one (that would hang).
let lock: { client: pg.Client; users: number } | undefined;
let locking: Promise<void> | undefined;

async function holdServerLock(exclusive: boolean): Promise<void> {
  while (locking) await locking.catch(() => undefined);
  if (lock) {
    lock.users += 1;
    return;
  }
  locking = takeLock(exclusive);
  try {
    await locking;
  } finally {
    locking = undefined;
  }
}

async function takeLock(exclusive: boolean): Promise<void> {
  for (;;) {
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
    // The session may die while we hold the lock (a restart by this very
    // process); the lock then is gone anyway, so only keep the process alive.
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query(exclusive ? "SELECT pg_advisory_lock($1)" : "SELECT pg_advisory_lock_shared($1)", [serverLockKey]);
      lock = { client, users: 1 };
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      // The marker's age bounds the wait, should its writer have died.
      if (!isRestartInProgress()) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function releaseServerLock(): Promise<void> {
  if (!lock) return;
  lock.users -= 1;
  if (lock.users > 0) return;
  const { client } = lock;
  lock = undefined;
  await client.end().catch(() => undefined);
}

function isRestartInProgress(): boolean {
  if (!existsSync(restartMarkerFile)) return false;
  try {
    const since = Number(readFileSync(restartMarkerFile, "utf8")) || statSync(restartMarkerFile).mtimeMs;
    return Date.now() - since < restartWaitMs;
  } catch {
    return false;
  }
}

/** Marks the server as stopped on purpose, so other test files wait for it. */
export function markRestartInProgress(): void {
  writeFileSync(restartMarkerFile, String(Date.now()));
}

/** Removes the marker of markRestartInProgress. */
export function clearRestartMarker(): void {
  rmSync(restartMarkerFile, { force: true });
}

function describeError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return [e?.code, e?.message].filter(Boolean).join(": ") || String(err);
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

/**
 * A TCP relay in front of PostgreSQL, so a test can make the database
 * unreachable for one store without touching the server: `cut()` ends every
 * relayed connection and refuses new ones until `restore()`.
 */
export interface PostgresRelay {
  /** `databaseUrl` with host and port of the relay. */
  readonly url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a relay on a free loopback port in front of `databaseUrl`'s server. */
export async function startPostgresRelay(databaseUrl: string): Promise<PostgresRelay> {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  let isCut = false;
  const server: Server = createServer((inbound) => {
    if (isCut) return void inbound.destroy();
    const outbound = connect(Number(target.port || 5432), target.hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.once("close", () => {
        sockets.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as { port: number }).port);
  return {
    url: url.toString(),
    cut() {
      isCut = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      isCut = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Runs `fn` on a short-lived connection to the database at `url`. */
export async function withDatabaseClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
