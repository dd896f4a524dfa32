/**
 * The embedded storage engine: one SQLite file, opened with better-sqlite3.
 *
 * better-sqlite3 is synchronous; each method does its work inside one call,
 * so a transaction never spans an await. WAL mode lets the `smtpgate token`
 * command write while a server holds the file open.
 */
import Database from "better-sqlite3";
import { EventEmitter } from "node:events";
import type { Instance, Role } from "../domain/access.js";
import { DomainError } from "../domain/errors.js";
import type { AttemptOutcome, MailState, OutboxMail } from "../domain/outbox.js";
import type { SmtpProvider } from "../domain/provider.js";
import { GroupCommit } from "./sqlite-group-commit.js";
import { SqliteMails } from "./sqlite-mails.js";
import { StatementCache } from "./sqlite-statements.js";
import { sqliteMigrations } from "./sqlite-migrations.js";
import {
  StoreConflict,
  type ClaimRequest,
  type NewMail,
  type StoreChange,
  type PageRequest,
  type ProviderPage,
  type ProviderSnapshot,
  type ProviderWrite,
  type Store,
  type StoredEvent,
  type TokenRecord,
} from "./store.js";

interface ProviderRow {
  instance_id: string;
  id: string;
  description: string;
  sender_address: string;
  sender_name: string;
  reply_to_address: string;
  tls: number;
  host: string;
  user: string;
  is_active: number;
  sealed_password: string;
  sequence: number;
  creation_date: number;
  change_date: number;
}

interface EventRow {
  instance_id: string;
  sequence: number;
  object_id: string;
  type: StoredEvent["type"];
  actor: string;
  payload: string;
  created_at: number;
}

function providerFromRow(row: ProviderRow): SmtpProvider {
  return {
    instanceId: row.instance_id,
    id: row.id,
    description: row.description,
    senderAddress: row.sender_address,
    senderName: row.sender_name,
    replyToAddress: row.reply_to_address,
    tls: row.tls === 1,
    host: row.host,
    user: row.user,
    isActive: row.is_active === 1,
    sealedPassword: row.sealed_password,
    sequence: BigInt(row.sequence),
    creationDate: new Date(row.creation_date),
    changeDate: new Date(row.change_date),
  };
}

function providerToRow(p: SmtpProvider): ProviderRow {
  return {
    instance_id: p.instanceId,
    id: p.id,
    description: p.description,
    sender_address: p.senderAddress,
    sender_name: p.senderName,
    reply_to_address: p.replyToAddress,
    tls: p.tls ? 1 : 0,
    host: p.host,
    user: p.user,
    is_active: p.isActive ? 1 : 0,
    sealed_password: p.sealedPassword,
    sequence: Number(p.sequence),
    creation_date: p.creationDate.getTime(),
    change_date: p.changeDate.getTime(),
  };
}

/**
 * Opens (creating if needed) the SQLite file at `path` and migrates it.
 * Throws when the file cannot be opened or a migration fails.
 */
export function openSqliteStore(path: string): SqliteStore {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  // FULL: a write acknowledged to a client survives a power cut, not only a crash.
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  return new SqliteStore(db);
}

function migrate(db: Database.Database): void {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  // IMMEDIATE takes the write lock first, so two processes starting at once
  // cannot both apply the same migration.
  db.transaction(() => {
    const row = db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null };
    for (let version = (row.v ?? 0) + 1; version <= sqliteMigrations.length; version++) {
      db.exec(sqliteMigrations[version - 1]);
      db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(version, Date.now());
    }
  }).immediate();
}

/** The SQLite implementation of Store. */
export class SqliteStore implements Store {
  private readonly mails: SqliteMails;
  // In-process change feed: a second process on the same file is not told,
  // which is why the outbox worker also polls.
  private readonly changes = new EventEmitter();

  // Every query prepares through this cache; see sqlite-statements.ts for why.
  private readonly statements: StatementCache;
  // The writes a request or a delivery waits on share commits; see
  // sqlite-group-commit.ts. Rare writes (instances, tokens, claims) commit alone.
  private readonly writes: GroupCommit;

  constructor(readonly db: Database.Database) {
    this.statements = new StatementCache(db);
    this.writes = new GroupCommit(db);
    this.mails = new SqliteMails(db, this.statements);
    this.changes.setMaxListeners(0);
  }

  private emitChange(change: StoreChange): void {
    this.changes.emit("change", change);
  }

  subscribe(listener: (change: StoreChange) => void): () => void {
    this.changes.on("change", listener);
    return () => this.changes.off("change", listener);
  }

  async enqueueMail(mail: NewMail): Promise<{ mail: OutboxMail; created: boolean }> {
    const result = await this.writes.run(() => this.mails.enqueue(mail));
    if (result.created) this.emitChange({ instanceId: mail.instanceId, kind: "mails" });
    return result;
  }

  async findMail(instanceId: string, id: string): Promise<OutboxMail | undefined> {
    return this.mails.find(instanceId, id);
  }

  async claimMails(request: ClaimRequest): Promise<OutboxMail[]> {
    return this.mails.claim(request);
  }

  async completeMail(id: string, workerId: string, outcome: AttemptOutcome, now: Date): Promise<boolean> {
    return this.writes.run(() => this.mails.complete(id, workerId, outcome, now));
  }

  async extendClaims(workerId: string, ids: readonly string[], until: Date): Promise<number> {
    return this.mails.extend(workerId, ids, until);
  }

  async releaseClaims(workerId: string, now: Date): Promise<number> {
    return this.mails.release(workerId, now);
  }

  async wakeWaitingMails(now: Date, instanceId?: string): Promise<number> {
    return this.mails.wake(now, instanceId);
  }

  async purgeMails(createdBefore: Date, limit: number): Promise<number> {
    return this.mails.purge(createdBefore, limit);
  }

  async expireMails(createdBefore: Date): Promise<number> {
    return this.mails.expire(createdBefore);
  }

  async countMails(states?: readonly MailState[]): Promise<Record<string, number>> {
    return this.mails.count(states);
  }

  async oldestMails(): Promise<Record<string, Date>> {
    return this.mails.oldest();
  }

  async findInstanceByDomain(domain: string): Promise<Instance | undefined> {
    // One statement, domains included: every request runs it.
    const row = this.statements
      .prepare(
        `SELECT i.id, i.created_at,
           (SELECT json_group_array(o.domain ORDER BY o.domain) FROM instance_domains o WHERE o.instance_id = i.id) AS domains
         FROM instance_domains d JOIN instances i ON i.id = d.instance_id WHERE d.domain = ?`,
      )
      .get(domain) as { id: string; created_at: number; domains: string } | undefined;
    if (!row) return undefined;
    return { id: row.id, domains: JSON.parse(row.domains) as string[], createdAt: new Date(row.created_at) };
  }

  async addInstance(instance: Instance): Promise<void> {
    const insert = this.db.transaction(() => {
      this.statements.prepare("INSERT INTO instances (id, created_at) VALUES (?, ?)").run(instance.id, instance.createdAt.getTime());
      const addDomain = this.statements.prepare("INSERT INTO instance_domains (domain, instance_id) VALUES (?, ?)");
      for (const domain of instance.domains) addDomain.run(domain, instance.id);
    });
    try {
      insert.immediate();
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
        throw new DomainError("invalid", "INSTANCE-dom01", "a domain of the new instance already belongs to an instance");
      }
      throw err;
    }
  }

  async countInstances(): Promise<number> {
    return (this.statements.prepare("SELECT COUNT(*) AS n FROM instances").get() as { n: number }).n;
  }

  async listInstanceIds(): Promise<string[]> {
    const rows = this.statements.prepare("SELECT id FROM instances ORDER BY created_at, id").all() as { id: string }[];
    return rows.map((r) => r.id);
  }

  async addToken(token: TokenRecord): Promise<void> {
    this.statements
      .prepare("INSERT INTO tokens (id, instance_id, hash, roles, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(token.id, token.instanceId, token.hash, JSON.stringify(token.roles), token.createdAt.getTime());
  }

  async findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const row = this.statements.prepare("SELECT * FROM tokens WHERE hash = ?").get(hash) as
      | { id: string; instance_id: string; hash: string; roles: string; created_at: number }
      | undefined;
    if (!row) return undefined;
    return {
      id: row.id,
      instanceId: row.instance_id,
      hash: row.hash,
      roles: JSON.parse(row.roles) as Role[],
      createdAt: new Date(row.created_at),
    };
  }

  async readProviders(instanceId: string): Promise<ProviderSnapshot> {
    // One read transaction, so the sequence matches the rows.
    return this.db.transaction(() => ({
      sequence: this.sequenceOf(instanceId),
      providers: (
        this.statements.prepare("SELECT * FROM smtp_providers WHERE instance_id = ? ORDER BY creation_date, id").all(instanceId) as ProviderRow[]
      ).map(providerFromRow),
    }))();
  }

  private sequenceOf(instanceId: string): bigint {
    const row = this.statements.prepare("SELECT sequence FROM instances WHERE id = ?").get(instanceId) as { sequence: number } | undefined;
    return BigInt(row?.sequence ?? 0);
  }

  async findProvider(instanceId: string, id: string): Promise<SmtpProvider | undefined> {
    const row = this.statements.prepare("SELECT * FROM smtp_providers WHERE instance_id = ? AND id = ?").get(instanceId, id) as ProviderRow | undefined;
    return row && providerFromRow(row);
  }

  async findActiveProvider(instanceId: string): Promise<SmtpProvider | undefined> {
    const row = this.statements.prepare("SELECT * FROM smtp_providers WHERE instance_id = ? AND is_active = 1").get(instanceId) as ProviderRow | undefined;
    return row && providerFromRow(row);
  }

  async listProviders(instanceId: string, page: PageRequest): Promise<ProviderPage> {
    const order = page.asc ? "ASC" : "DESC";
    return this.db.transaction(() => {
      const total = (this.statements.prepare("SELECT COUNT(*) AS n FROM smtp_providers WHERE instance_id = ?").get(instanceId) as { n: number }).n;
      const rows = this.statements
        .prepare(`SELECT * FROM smtp_providers WHERE instance_id = ? ORDER BY creation_date ${order}, id ${order} LIMIT ? OFFSET ?`)
        .all(instanceId, page.limit, page.offset) as ProviderRow[];
      return { total, sequence: this.sequenceOf(instanceId), providers: rows.map(providerFromRow) };
    })();
  }

  async commit(write: ProviderWrite): Promise<void> {
    await this.writes.run(() => this.applyWrite(write));
    this.emitChange({ instanceId: write.instanceId, kind: "providers" });
  }

  private applyWrite(write: ProviderWrite): void {
    const last = write.expectedSequence + BigInt(write.events.length);
    const moved = this.statements
      .prepare("UPDATE instances SET sequence = ? WHERE id = ? AND sequence = ?")
      .run(Number(last), write.instanceId, Number(write.expectedSequence));
    if (moved.changes !== 1) throw new StoreConflict(`instance ${write.instanceId} changed concurrently`);

    const insertEvent = this.statements.prepare(
      "INSERT INTO events (instance_id, sequence, object_id, type, actor, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    write.events.forEach((event, i) => {
      const sequence = Number(write.expectedSequence) + i + 1;
      insertEvent.run(write.instanceId, sequence, event.objectId, event.type, write.actor, JSON.stringify(event.payload), write.createdAt.getTime());
    });

    const remove = this.statements.prepare("DELETE FROM smtp_providers WHERE instance_id = ? AND id = ?");
    for (const id of write.deletes) remove.run(write.instanceId, id);

    // Deactivations first, so the one-active index never sees two at once.
    const upserts = [...write.upserts].sort((a, b) => Number(a.isActive) - Number(b.isActive));
    const upsert = this.statements.prepare(
      // Not INSERT OR REPLACE: that would silently delete a row that clashes
      // on the one-active index instead of failing the write.
      `INSERT INTO smtp_providers VALUES (@instance_id, @id, @description, @sender_address, @sender_name,
        @reply_to_address, @tls, @host, @user, @is_active, @sealed_password, @sequence, @creation_date, @change_date)
       ON CONFLICT (instance_id, id) DO UPDATE SET description = excluded.description,
        sender_address = excluded.sender_address, sender_name = excluded.sender_name,
        reply_to_address = excluded.reply_to_address, tls = excluded.tls, host = excluded.host,
        user = excluded.user, is_active = excluded.is_active, sealed_password = excluded.sealed_password,
        sequence = excluded.sequence, change_date = excluded.change_date`,
    );
    for (const provider of upserts) upsert.run(providerToRow(provider));
  }

  async listEvents(instanceId: string, afterSequence = 0n): Promise<StoredEvent[]> {
    const rows = this.statements
      .prepare("SELECT * FROM events WHERE instance_id = ? AND sequence > ? ORDER BY sequence")
      .all(instanceId, Number(afterSequence)) as EventRow[];
    return rows.map((row) => ({
      instanceId: row.instance_id,
      sequence: BigInt(row.sequence),
      objectId: row.object_id,
      type: row.type,
      actor: row.actor,
      payload: JSON.parse(row.payload) as Record<string, unknown>,
      createdAt: new Date(row.created_at),
    }));
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    // Writes already queued were accepted before the close; commit them.
    this.writes.flush();
    this.db.close();
  }
}
