/**
 * The shared storage engine: PostgreSQL through `pg`, for any number of
 * replicas on one database. Same contract as the SQLite engine; the database
 * provides what one process cannot: row locks on the instance sequence for
 * writes, SKIP LOCKED for claiming mails, LISTEN/NOTIFY for the change feed.
 */
import { EventEmitter } from "node:events";
import pg from "pg";
import type { Instance, Role } from "../domain/access.js";
import type { Logger } from "../domain/deps.js";
import { DomainError } from "../domain/errors.js";
import type { AttemptOutcome, MailState, OutboxMail } from "../domain/outbox.js";
import type { SmtpProvider } from "../domain/provider.js";
import { PostgresFeed, changeChannel } from "./postgres-feed.js";
import { translatePgError } from "./postgres-errors.js";
import { PostgresMails, oldestMails } from "./postgres-mails.js";
import { postgresMigrations } from "./postgres-migrations.js";
import {
  StoreConflict,
  type ClaimRequest,
  type NewMail,
  type PageRequest,
  type ProviderPage,
  type ProviderSnapshot,
  type ProviderWrite,
  type Store,
  type StoreChange,
  type StoredEvent,
  type TokenRecord,
} from "./store.js";

// Any constant works; it only has to be the same in every replica.
const migrationLockKey = 0x736d7470;

type Row = Record<string, unknown>;

function providerFromRow(r: Row): SmtpProvider {
  return {
    instanceId: r.instance_id as string,
    id: r.id as string,
    description: r.description as string,
    senderAddress: r.sender_address as string,
    senderName: r.sender_name as string,
    replyToAddress: r.reply_to_address as string,
    tls: r.tls as boolean,
    host: r.host as string,
    user: r.user as string,
    isActive: r.is_active as boolean,
    sealedPassword: r.sealed_password as string,
    sequence: BigInt(r.sequence as string),
    creationDate: r.creation_date as Date,
    changeDate: r.change_date as Date,
  };
}

/** Connects, migrates and starts the change feed. Throws when unreachable. */
export async function openPostgresStore(connectionString: string, log: Logger): Promise<PostgresStore> {
  const pool = new pg.Pool({ connectionString, max: 10, connectionTimeoutMillis: 5000 });
  // An idle client losing its connection must not crash the process.
  pool.on("error", (err) => log.warn({ event: "store.idle_client_error", err: err.message }, "idle database connection failed"));
  const store = new PostgresStore(pool, connectionString, log);
  try {
    await store.migrate();
    await store.startFeed();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** The PostgreSQL implementation of Store. */
export class PostgresStore implements Store {
  private readonly mails: PostgresMails;
  private readonly changes = new EventEmitter();
  private readonly feed: PostgresFeed;

  constructor(readonly pool: pg.Pool, connectionString: string, log: Logger) {
    this.mails = new PostgresMails((fn) => this.transaction(fn), (text, values) => this.query(text, values));
    this.changes.setMaxListeners(0);
    this.feed = new PostgresFeed(
      connectionString,
      (change) => this.changes.emit("change", change === "catch_up" ? { instanceId: "*", kind: "providers" } : change),
      log,
    );
  }

  /** Applies missing migrations, one replica at a time. */
  async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [migrationLockKey]);
      await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)");
      const { rows } = await client.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations");
      for (let version = Number(rows[0].v) + 1; version <= postgresMigrations.length; version++) {
        await client.query(postgresMigrations[version - 1]);
        await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", [version]);
      }
    });
  }

  /** Starts listening for other replicas' commits. */
  async startFeed(): Promise<void> {
    await this.feed.start();
  }

  private async query(text: string, values?: unknown[]): Promise<pg.QueryResult> {
    try {
      return await this.pool.query(text, values);
    } catch (err) {
      translatePgError(err);
    }
  }

  private async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      translatePgError(err);
    }
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      if (err instanceof StoreConflict || err instanceof DomainError) throw err;
      translatePgError(err);
    } finally {
      client.release();
    }
  }

  subscribe(listener: (change: StoreChange) => void): () => void {
    this.changes.on("change", listener);
    return () => this.changes.off("change", listener);
  }

  async findInstanceByDomain(domain: string): Promise<Instance | undefined> {
    const { rows } = await this.query(
      `SELECT i.id, i.created_at, ARRAY(SELECT domain FROM instance_domains WHERE instance_id = i.id ORDER BY domain) AS domains
       FROM instance_domains d JOIN instances i ON i.id = d.instance_id WHERE d.domain = $1`,
      [domain],
    );
    const row = rows[0];
    return row && { id: row.id, domains: row.domains, createdAt: row.created_at };
  }

  async addInstance(instance: Instance): Promise<void> {
    try {
      await this.transaction(async (client) => {
        await client.query("INSERT INTO instances (id, created_at) VALUES ($1, $2)", [instance.id, instance.createdAt]);
        for (const domain of instance.domains) {
          await client.query("INSERT INTO instance_domains (domain, instance_id) VALUES ($1, $2)", [domain, instance.id]);
        }
      });
    } catch (err) {
      if ((err as { code?: string }).code === "23505") {
        throw new DomainError("invalid", "INSTANCE-dom01", "a domain of the new instance already belongs to an instance");
      }
      throw err;
    }
  }

  async countInstances(): Promise<number> {
    const { rows } = await this.query("SELECT COUNT(*)::int AS n FROM instances");
    return rows[0].n;
  }

  async listInstanceIds(): Promise<string[]> {
    const { rows } = await this.query("SELECT id FROM instances ORDER BY created_at, id");
    return rows.map((r: { id: string }) => r.id);
  }

  async addToken(token: TokenRecord): Promise<void> {
    await this.query("INSERT INTO tokens (id, instance_id, hash, roles, created_at) VALUES ($1, $2, $3, $4, $5)", [
      token.id, token.instanceId, token.hash, JSON.stringify(token.roles), token.createdAt,
    ]);
  }

  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const { rows } = await this.query("SELECT * FROM tokens WHERE hash = $1", [hash]);
    const row = rows[0];
    return row && { id: row.id, instanceId: row.instance_id, hash: row.hash, roles: row.roles as Role[], createdAt: row.created_at };
  }

  async readProviders(instanceId: string): Promise<ProviderSnapshot> {
    // One statement, one snapshot: the sequence matches the rows.
    const { rows } = await this.query(
      `SELECT (SELECT sequence FROM instances WHERE id = $1) AS instance_sequence, p.*
       FROM (SELECT 1) AS one LEFT JOIN smtp_providers p ON p.instance_id = $1
       ORDER BY p.creation_date, p.id`,
      [instanceId],
    );
    const sequence = BigInt((rows[0]?.instance_sequence as string | null) ?? 0);
    return { sequence, providers: rows.filter((r) => r.id !== null).map(providerFromRow) };
  }

  async findProvider(instanceId: string, id: string): Promise<SmtpProvider | undefined> {
    const { rows } = await this.query("SELECT * FROM smtp_providers WHERE instance_id = $1 AND id = $2", [instanceId, id]);
    return rows[0] && providerFromRow(rows[0]);
  }

  async findActiveProvider(instanceId: string): Promise<SmtpProvider | undefined> {
    const { rows } = await this.query("SELECT * FROM smtp_providers WHERE instance_id = $1 AND is_active", [instanceId]);
    return rows[0] && providerFromRow(rows[0]);
  }

  async listProviders(instanceId: string, page: PageRequest): Promise<ProviderPage> {
    const order = page.asc ? "ASC" : "DESC";
    const { rows } = await this.query(
      `SELECT (SELECT sequence FROM instances WHERE id = $1) AS instance_sequence,
              (SELECT COUNT(*) FROM smtp_providers WHERE instance_id = $1)::int AS total, p.*
       FROM (SELECT 1) AS one LEFT JOIN LATERAL (
         SELECT * FROM smtp_providers WHERE instance_id = $1 ORDER BY creation_date ${order}, id ${order} LIMIT $2 OFFSET $3
       ) p ON true`,
      [instanceId, page.limit, page.offset],
    );
    return {
      total: rows[0]?.total ?? 0,
      sequence: BigInt((rows[0]?.instance_sequence as string | null) ?? 0),
      providers: rows.filter((r) => r.id !== null).map(providerFromRow),
    };
  }

  async commit(write: ProviderWrite): Promise<void> {
    await this.transaction(async (client) => {
      const last = write.expectedSequence + BigInt(write.events.length);
      // The row lock taken here serializes writers of one instance; a
      // writer that read an older sequence matches no row and retries.
      const moved = await client.query("UPDATE instances SET sequence = $1 WHERE id = $2 AND sequence = $3", [
        String(last), write.instanceId, String(write.expectedSequence),
      ]);
      if (moved.rowCount !== 1) throw new StoreConflict(`instance ${write.instanceId} changed concurrently`);
      await this.insertEvents(client, write);
      for (const id of write.deletes) {
        await client.query("DELETE FROM smtp_providers WHERE instance_id = $1 AND id = $2", [write.instanceId, id]);
      }
      // Deactivations first, so the one-active index never sees two at once.
      for (const p of [...write.upserts].sort((a, b) => Number(a.isActive) - Number(b.isActive))) {
        await upsertProvider(client, p);
      }
      await notify(client, { instanceId: write.instanceId, kind: "providers" });
    });
  }

  private async insertEvents(client: pg.PoolClient, write: ProviderWrite): Promise<void> {
    for (const [i, event] of write.events.entries()) {
      await client.query(
        "INSERT INTO events (instance_id, sequence, object_id, type, actor, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [write.instanceId, String(write.expectedSequence + BigInt(i + 1)), event.objectId, event.type, write.actor, JSON.stringify(event.payload), write.createdAt],
      );
    }
  }

  async listEvents(instanceId: string, afterSequence = 0n): Promise<StoredEvent[]> {
    const { rows } = await this.query("SELECT * FROM events WHERE instance_id = $1 AND sequence > $2 ORDER BY sequence", [
      instanceId, String(afterSequence),
    ]);
    return rows.map((r) => ({
      instanceId: r.instance_id,
      sequence: BigInt(r.sequence),
      objectId: r.object_id,
      type: r.type,
      actor: r.actor,
      payload: r.payload,
      createdAt: r.created_at,
    }));
  }

  async enqueueMail(mail: NewMail): Promise<{ mail: OutboxMail; created: boolean }> {
    return this.mails.enqueue(mail, (client) => notify(client, { instanceId: mail.instanceId, kind: "mails" }));
  }

  findMail(instanceId: string, id: string): Promise<OutboxMail | undefined> {
    return this.mails.find(instanceId, id);
  }

  claimMails(request: ClaimRequest): Promise<OutboxMail[]> {
    return this.mails.claim(request);
  }

  completeMail(id: string, workerId: string, outcome: AttemptOutcome, now: Date): Promise<boolean> {
    return this.mails.complete(id, workerId, outcome, now);
  }

  extendClaims(workerId: string, ids: readonly string[], until: Date): Promise<number> {
    return this.mails.extend(workerId, ids, until);
  }

  releaseClaims(workerId: string, now: Date): Promise<number> {
    return this.mails.release(workerId, now);
  }

  wakeWaitingMails(now: Date, instanceId?: string): Promise<number> {
    return this.mails.wake(now, instanceId);
  }

  purgeMails(createdBefore: Date, limit: number): Promise<number> {
    return this.mails.purge(createdBefore, limit);
  }

  expireMails(createdBefore: Date): Promise<number> {
    return this.mails.expire(createdBefore);
  }

  countMails(states?: readonly MailState[]): Promise<Record<string, number>> {
    return this.mails.count(states);
  }

  oldestMails(): Promise<Record<string, Date>> {
    return oldestMails((text, values) => this.query(text, values));
  }

  async close(): Promise<void> {
    await this.feed.close();
    await this.pool.end().catch(() => undefined);
  }
}

async function notify(client: pg.PoolClient, change: StoreChange): Promise<void> {
  // Inside the transaction: delivered to listeners only if it commits.
  await client.query("SELECT pg_notify($1, $2)", [changeChannel, JSON.stringify(change)]);
}

async function upsertProvider(client: pg.PoolClient, p: SmtpProvider): Promise<void> {
  await client.query(
    `INSERT INTO smtp_providers (instance_id, id, description, sender_address, sender_name, reply_to_address, tls, host,
       "user", is_active, sealed_password, sequence, creation_date, change_date)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ON CONFLICT (instance_id, id) DO UPDATE SET description = excluded.description,
       sender_address = excluded.sender_address, sender_name = excluded.sender_name,
       reply_to_address = excluded.reply_to_address, tls = excluded.tls, host = excluded.host,
       "user" = excluded."user", is_active = excluded.is_active, sealed_password = excluded.sealed_password,
       sequence = excluded.sequence, change_date = excluded.change_date`,
    [p.instanceId, p.id, p.description, p.senderAddress, p.senderName, p.replyToAddress, p.tls, p.host, p.user,
      p.isActive, p.sealedPassword, String(p.sequence), p.creationDate, p.changeDate],
  );
}
