/**
 * The storage contract. The domain talks to this interface only; the SQLite
 * engine (sqlite-store.ts) implements it, and a PostgreSQL engine can follow.
 *
 * Writes are an event log plus projections committed in one transaction, with
 * optimistic concurrency on the instance's sequence: a write names the
 * sequence its decision was based on, and fails with StoreConflict when
 * another write got there first. Sequences rise by one per event within an
 * instance, so every write returns a sequence higher than any before it.
 */
import type { Instance, Role } from "../domain/access.js";
import type { AttemptOutcome, MailState, OutboxMail } from "../domain/outbox.js";
import type { SmtpProvider } from "../domain/provider.js";

/** Event types the domain records. */
export type EventType =
  | "smtp.config.added"
  | "smtp.config.changed"
  | "smtp.config.password.changed"
  // The same password sealed again under the newest master key (`smtpgate keys`).
  | "smtp.config.password.resealed"
  | "smtp.config.activated"
  | "smtp.config.deactivated"
  | "smtp.config.removed";

/** An event as the domain proposes it. The payload never holds a secret. */
export interface NewEvent {
  readonly type: EventType;
  /** Id of the object (provider) the event is about. */
  readonly objectId: string;
  readonly payload: Readonly<Record<string, unknown>>;
}

/** An event as stored. */
export interface StoredEvent extends NewEvent {
  readonly instanceId: string;
  readonly sequence: bigint;
  readonly createdAt: Date;
  /** Token id of the principal that caused it. */
  readonly actor: string;
}

/** One atomic write: events plus the projection rows they produce. */
export interface ProviderWrite {
  readonly instanceId: string;
  readonly actor: string;
  /** The instance sequence the decision was based on. */
  readonly expectedSequence: bigint;
  /** Time of all events of this write. */
  readonly createdAt: Date;
  /** Numbered expectedSequence + 1, + 2, ... in order. */
  readonly events: readonly NewEvent[];
  /** Provider rows to insert or replace, already folded by the domain. */
  readonly upserts: readonly SmtpProvider[];
  /** Provider ids to delete. */
  readonly deletes: readonly string[];
}

/** The providers of one instance and the sequence they were read at. */
export interface ProviderSnapshot {
  readonly sequence: bigint;
  readonly providers: readonly SmtpProvider[];
}

/** A page of providers. */
export interface ProviderPage extends ProviderSnapshot {
  readonly total: number;
}

/** How to page a list: creation order, ascending when `asc`. */
export interface PageRequest {
  readonly offset: number;
  readonly limit: number;
  readonly asc: boolean;
}

/** A personal access token as stored: only its hash. */
export interface TokenRecord {
  readonly id: string;
  readonly instanceId: string;
  /** SHA-256 of the token, hex. */
  readonly hash: string;
  readonly roles: readonly Role[];
  readonly createdAt: Date;
}

/** Thrown by `commit` when the instance's sequence moved since the read. */
export class StoreConflict extends Error {
  override readonly name = "StoreConflict";
}

/** A mail to accept into the outbox. */
export type NewMail = Pick<
  OutboxMail,
  "id" | "instanceId" | "idempotencyKey" | "messageId" | "to" | "subject" | "textBody" | "htmlBody" | "replyTo" | "createdAt"
>;

/** How a worker claims due mails. */
export interface ClaimRequest {
  readonly workerId: string;
  readonly now: Date;
  /** How long the claim holds before another worker may take the mail, ms. */
  readonly leaseMs: number;
  readonly limit: number;
  /** Most mails of one instance in one claim, so one instance cannot take every slot. */
  readonly perInstanceLimit: number;
  /** Instances whose mails not to claim now (their concurrency is used up). */
  readonly skipInstances: readonly string[];
}

/** A change worth waking up for. */
export interface StoreChange {
  /** "*" after a gap in the feed: anything may have changed. */
  readonly instanceId: string;
  readonly kind: "providers" | "mails";
}

/** The outbox part of the store. */
export interface MailStore {
  /**
   * Commits a mail, durably, before resolving. With an idempotency key that
   * the instance used before, stores nothing and returns the first mail.
   */
  enqueueMail(mail: NewMail): Promise<{ mail: OutboxMail; created: boolean }>;
  /** One mail, if it exists in this instance. */
  findMail(instanceId: string, id: string): Promise<OutboxMail | undefined>;
  /**
   * Claims due mails for one worker: queued ones whose time has come, and
   * sending ones whose claim expired (their worker died). Each claim counts
   * as an attempt. Oldest due first.
   */
  claimMails(request: ClaimRequest): Promise<OutboxMail[]>;
  /**
   * Records an attempt's outcome. Resolves false, changing nothing, when the
   * worker no longer holds the claim.
   */
  completeMail(id: string, workerId: string, outcome: AttemptOutcome, now: Date): Promise<boolean>;
  /**
   * Moves the claim of each of `ids` that `workerId` still holds to expire
   * at `until`, so a send that takes longer than one lease is not taken over
   * while it runs. Returns how many claims were extended.
   */
  extendClaims(workerId: string, ids: readonly string[], until: Date): Promise<number>;
  /** Puts claimed mails of a worker back in the queue, due now, the attempt not counted. */
  releaseClaims(workerId: string | "*", now: Date): Promise<number>;
  /**
   * Makes waiting mails due when what they wait on changed: the active
   * provider is another one or has a newer sequence (credentials), or an
   * active provider exists (no_provider). Returns how many woke.
   */
  wakeWaitingMails(now: Date, instanceId?: string): Promise<number>;
  /** Fails queued mails created before `createdBefore`. Returns how many. */
  expireMails(createdBefore: Date, now: Date): Promise<number>;
  /**
   * Deletes up to `limit` finished mails (sent or failed) created before
   * `createdBefore`, bodies, status and idempotency key with them. Returns
   * how many.
   */
  purgeMails(createdBefore: Date, limit: number): Promise<number>;
  /**
   * Mail counts by state, of every state or only of `states`; states
   * without mails are left out. Counting only the unfinished states reads
   * only their rows (an index range per state), not the retained history.
   */
  countMails(states?: readonly MailState[]): Promise<Record<string, number>>;
  /** Creation time of the oldest mail in each state that has mails. */
  oldestMails(): Promise<Record<string, Date>>;
  /** Calls `listener` after commits that change providers or mails; returns an unsubscribe. */
  subscribe(listener: (change: StoreChange) => void): () => void;
}

/** What every storage engine provides. All methods may reject on I/O errors. */
export interface Store extends MailStore {
  /** The instance that owns `domain` (lowercase, no port), if any. */
  findInstanceByDomain(domain: string): Promise<Instance | undefined>;
  /** Adds an instance. Throws DomainError "invalid" when a domain is taken. */
  addInstance(instance: Instance): Promise<void>;
  /** Number of instances; 0 means a fresh store. */
  countInstances(): Promise<number>;
  /** Ids of every instance, oldest first (for store-wide passes such as re-sealing). */
  listInstanceIds(): Promise<string[]>;

  /** Stores a token record (the hash, never the token). */
  addToken(token: TokenRecord): Promise<void>;
  /** The token whose SHA-256 hex is `hash`, if any. */
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;

  /** All providers of an instance and the instance's current sequence. */
  readProviders(instanceId: string): Promise<ProviderSnapshot>;
  /** One provider, if it exists in this instance. */
  findProvider(instanceId: string, id: string): Promise<SmtpProvider | undefined>;
  /** The instance's active provider, if any. */
  findActiveProvider(instanceId: string): Promise<SmtpProvider | undefined>;
  /** One page of providers, with the total count. */
  listProviders(instanceId: string, page: PageRequest): Promise<ProviderPage>;

  /** Commits events and projection atomically. Throws StoreConflict. */
  commit(write: ProviderWrite): Promise<void>;
  /** Events of an instance after `afterSequence`, oldest first. */
  listEvents(instanceId: string, afterSequence?: bigint): Promise<StoredEvent[]>;

  /** Releases the connection. */
  close(): Promise<void>;
}
