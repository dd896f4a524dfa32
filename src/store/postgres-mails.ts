/**
 * The outbox on PostgreSQL, shared by every replica. A claim locks due rows
 * with FOR UPDATE SKIP LOCKED, so concurrent replicas never take the same
 * mail and never wait on each other; a claim carries a lease, so the mails
 * of a replica that died are taken over once it expires.
 */
import type pg from "pg";
import type { AttemptOutcome, MailState, OutboxMail } from "../domain/outbox.js";
import { changeChannel } from "./postgres-feed.js";
import type { ClaimRequest, NewMail } from "./store.js";

type Row = Record<string, unknown>;
type Transaction = <T>(fn: (client: pg.PoolClient) => Promise<T>) => Promise<T>;
type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

// Serializes wakes across replicas (see wake); any constant, the same in every replica.
const wakeLockKey = 0x736d7477;

function mailFromRow(r: Row): OutboxMail {
  return {
    id: r.id as string,
    instanceId: r.instance_id as string,
    idempotencyKey: (r.idempotency_key as string | null) ?? "",
    messageId: r.message_id as string,
    to: r.recipients as string[],
    subject: r.subject as string,
    textBody: r.text_body as string,
    htmlBody: r.html_body as string,
    replyTo: r.reply_to as string,
    state: r.state as OutboxMail["state"],
    attempts: r.attempts as number,
    lastError: r.last_error as string,
    waitReason: r.wait_reason as OutboxMail["waitReason"],
    nextAttemptAt: r.next_attempt_at as Date,
    createdAt: r.created_at as Date,
    sentAt: (r.sent_at as Date | null) ?? undefined,
    providerId: r.provider_id as string,
  };
}

/** Outbox queries over a pg pool. */
export class PostgresMails {
  constructor(private readonly transaction: Transaction, private readonly query: Query) {}

  /** See MailStore.enqueueMail. `announce` runs inside the transaction. */
  async enqueue(mail: NewMail, announce: (client: pg.PoolClient) => Promise<void>): Promise<{ mail: OutboxMail; created: boolean }> {
    return this.transaction(async (client) => {
      const { rows } = await client.query(
        `INSERT INTO mails (id, instance_id, idempotency_key, message_id, recipients, subject, text_body, html_body,
           reply_to, state, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10)
         ON CONFLICT (instance_id, idempotency_key) DO NOTHING RETURNING *`,
        [mail.id, mail.instanceId, mail.idempotencyKey || null, mail.messageId, JSON.stringify(mail.to), mail.subject,
          mail.textBody, mail.htmlBody, mail.replyTo, mail.createdAt],
      );
      if (rows[0]) {
        await announce(client);
        return { mail: mailFromRow(rows[0]), created: true };
      }
      const first = await client.query("SELECT * FROM mails WHERE instance_id = $1 AND idempotency_key = $2", [
        mail.instanceId, mail.idempotencyKey,
      ]);
      return { mail: mailFromRow(first.rows[0]), created: false };
    });
  }

  /** See MailStore.findMail. */
  async find(instanceId: string, id: string): Promise<OutboxMail | undefined> {
    const { rows } = await this.query("SELECT * FROM mails WHERE instance_id = $1 AND id = $2", [instanceId, id]);
    return rows[0] && mailFromRow(rows[0]);
  }

  /**
   * See MailStore.claimMails. Walks the instances, taking each one's first
   * due mails from the mails_claimable index (a LATERAL subquery per
   * instance), so one instance's backlog cannot fill the candidate rows and
   * hide other instances' due mails, and the cost grows with the instances
   * and the mails claimed, not with the backlog. A claimed mail was due when
   * claimed, so "next_attempt_at <= now" holds for expired claims too.
   *
   * Replicas claiming at once see the same candidates, and skip the rows
   * another one has locked. So each instance offers twice its share, up to
   * twice the limit is locked, and the per-instance cap is applied to the
   * rows this claim did lock: a replica that lost the race for the first
   * rows takes the next ones instead of coming back empty. The due test is
   * repeated on the locked rows: a row another replica claimed since this
   * statement's snapshot is re-checked in its new version, fails, and is
   * skipped. Locked rows not claimed are unlocked when the statement ends.
   */
  async claim(req: ClaimRequest): Promise<OutboxMail[]> {
    const { rows } = await this.query(
      `WITH candidates AS (
         SELECT c.id, c.next_attempt_at
         FROM instances i CROSS JOIN LATERAL (
           SELECT id, next_attempt_at FROM mails
           WHERE instance_id = i.id AND ((state = 'queued' AND wait_reason = '') OR state = 'sending')
             AND next_attempt_at <= $1 AND (state = 'queued' OR claim_expires_at <= $1)
           ORDER BY next_attempt_at, id
           LIMIT 2 * $3) c
         WHERE NOT (i.id = ANY($2::text[]))
       ), locked AS (
         SELECT m.id, m.instance_id, m.next_attempt_at FROM mails m JOIN candidates r ON r.id = m.id
         WHERE ${dueCondition("m")}
         ORDER BY m.next_attempt_at, m.id
         LIMIT 2 * $4
         FOR UPDATE OF m SKIP LOCKED
       ), picked AS (
         SELECT id FROM (
           SELECT id, next_attempt_at, row_number() OVER (PARTITION BY instance_id ORDER BY next_attempt_at, id) AS rank
           FROM locked) ranked
         WHERE rank <= $3
         ORDER BY next_attempt_at, id
         LIMIT $4
       )
       UPDATE mails SET state = 'sending', claimed_by = $5, claim_expires_at = $6, attempts = mails.attempts + 1
       FROM picked WHERE mails.id = picked.id
       RETURNING mails.*`,
      [req.now, req.skipInstances, req.perInstanceLimit, req.limit, req.workerId, new Date(req.now.getTime() + req.leaseMs)],
    );
    return rows.map(mailFromRow).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
  }

  /** See MailStore.completeMail. */
  async complete(id: string, workerId: string, outcome: AttemptOutcome, now: Date): Promise<boolean> {
    const guard = "WHERE id = $1 AND state = 'sending' AND claimed_by = $2";
    let result: pg.QueryResult;
    switch (outcome.kind) {
      case "sent":
        result = await this.query(
          `UPDATE mails SET state = 'sent', claimed_by = '', last_error = '', wait_reason = '', provider_id = $3, sent_at = $4 ${guard}`,
          [id, workerId, outcome.providerId, outcome.at],
        );
        break;
      case "retry":
        result = await this.query(
          `UPDATE mails SET state = 'queued', claimed_by = '', last_error = $3, wait_reason = '', next_attempt_at = $4 ${guard}`,
          [id, workerId, outcome.lastError, outcome.at],
        );
        break;
      case "wait":
        result = await this.query(
          `UPDATE mails SET state = 'queued', claimed_by = '', last_error = $3, wait_reason = $4, wait_provider_id = $5,
             wait_sequence = $6, next_attempt_at = $7 ${guard}`,
          [id, workerId, outcome.lastError, outcome.reason, outcome.providerId, String(outcome.providerSequence), now],
        );
        break;
      case "failed":
        result = await this.query(`UPDATE mails SET state = 'failed', claimed_by = '', last_error = $3, wait_reason = '' ${guard}`, [
          id, workerId, outcome.lastError,
        ]);
        break;
    }
    return result.rowCount === 1;
  }

  /** See MailStore.extendClaims. */
  async extend(workerId: string, ids: readonly string[], until: Date): Promise<number> {
    const { rowCount } = await this.query(
      "UPDATE mails SET claim_expires_at = $3 WHERE state = 'sending' AND claimed_by = $1 AND id = ANY($2::text[])",
      [workerId, ids, until],
    );
    return rowCount ?? 0;
  }

  /** See MailStore.releaseClaims. Announces the released mails to every replica. */
  async release(workerId: string, now: Date): Promise<number> {
    return this.countAnnounced(
      this.query,
      `UPDATE mails SET state = 'queued', claimed_by = '', attempts = GREATEST(attempts - 1, 0), next_attempt_at = $2
       WHERE state = 'sending' AND ($1 = '*' OR claimed_by = $1)
       RETURNING instance_id`,
      [workerId, now],
    );
  }

  /**
   * See MailStore.wakeWaitingMails. Announces the woken mails to every
   * replica: the replica that wakes them may have no room to send them, and
   * without the announcement they would wait for some replica's next poll.
   *
   * Replicas wake one at a time. Every replica wakes after a provider
   * change, all at once; without the lock, a replica whose wake lost the
   * race still locks the rows the winner just woke (PostgreSQL locks a row
   * it re-checks), and the winner's claim right after, which skips locked
   * rows, missed its own woken mails until the next poll. Under the lock,
   * each wake sees what the one before it did, and touches nothing twice.
   *
   * Driven by the active providers: for each, the instance's waiting mails
   * that recorded another provider or sequence, read as the two ranges of
   * mails_waiting on either side of the current (provider, sequence). Mails
   * still waiting on the current ones, however many, are not read. A
   * no_provider wait records provider "" and sequence 0, which sorts before
   * every provider.
   */
  async wake(now: Date, instanceId?: string): Promise<number> {
    return this.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [wakeLockKey]);
      return this.countAnnounced(
        (text, values) => client.query(text, values),
        `UPDATE mails SET wait_reason = '', next_attempt_at = $1
         WHERE id IN (${waitingBeside("<", instanceId !== undefined)} UNION ALL ${waitingBeside(">", instanceId !== undefined)})
         RETURNING instance_id`,
        instanceId === undefined ? [now] : [now, instanceId],
      );
    });
  }

  /**
   * Runs `update` (which returns instance_id per changed row) and, in the
   * same statement, so only on commit, notifies a "mails" change for each
   * instance it touched. Resolves how many rows changed.
   */
  private async countAnnounced(run: Query, update: string, values: unknown[]): Promise<number> {
    const channel = `$${values.length + 1}`;
    const { rows } = await run(
      `WITH changed AS (${update}),
            touched AS (SELECT instance_id, COUNT(*)::int AS n FROM changed GROUP BY instance_id)
       SELECT n, pg_notify(${channel}, json_build_object('instanceId', instance_id, 'kind', 'mails')::text) FROM touched`,
      [...values, changeChannel],
    );
    return rows.reduce((sum, r) => sum + (r.n as number), 0);
  }

  /** See MailStore.purgeMails. Ranges of mails_age; rows another statement holds are left for next time. */
  async purge(createdBefore: Date, limit: number): Promise<number> {
    const { rowCount } = await this.query(
      `DELETE FROM mails WHERE id IN (
         SELECT id FROM mails WHERE state IN ('sent', 'failed') AND created_at < $1
         LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [createdBefore, limit],
    );
    return rowCount ?? 0;
  }

  /** See MailStore.expireMails. */
  async expire(createdBefore: Date): Promise<number> {
    const { rowCount } = await this.query(
      `UPDATE mails SET state = 'failed', wait_reason = '',
         last_error = 'gave up: not delivered within the maximum age' || CASE WHEN last_error = '' THEN '' ELSE '; last error: ' || last_error END
       WHERE state = 'queued' AND created_at < $1`,
      [createdBefore],
    );
    return rowCount ?? 0;
  }

  /** See MailStore.countMails. */
  async count(states?: readonly MailState[]): Promise<Record<string, number>> {
    const { rows } =
      states === undefined
        ? await this.query("SELECT state, COUNT(*)::int AS n FROM mails GROUP BY state")
        : await this.query("SELECT state, COUNT(*)::int AS n FROM mails WHERE state = ANY($1::text[]) GROUP BY state", [states]);
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }
}

/** Creation time of the oldest mail per state; see MailStore.oldestMails. */
export async function oldestMails(query: Query): Promise<Record<string, Date>> {
  // One index lookup per state (mails_age), where GROUP BY reads every mail.
  const { rows } = await query(
    `SELECT s.state, (SELECT MIN(created_at) FROM mails WHERE state = s.state) AS at
     FROM (VALUES ('queued'), ('sending'), ('sent'), ('failed')) AS s (state)`,
  );
  return Object.fromEntries(rows.filter((r) => r.at !== null).map((r) => [r.state as string, r.at as Date]));
}

/**
 * The ids of the mails waiting on an active provider (of instance $2, or of
 * every instance when $2 is null) whose recorded (provider, sequence) sorts
 * `op` the provider's current one.
 */
/** Waiting mails on one side of their instance's active (provider, sequence); of instance $2 alone when `isOneInstance`. */
function waitingBeside(op: "<" | ">", isOneInstance: boolean): string {
  return `SELECT m.id FROM smtp_providers p JOIN mails m
            ON m.instance_id = p.instance_id AND m.wait_reason <> ''
           AND (m.wait_provider_id, m.wait_sequence) ${op} (p.id, p.sequence)
          WHERE p.is_active ${isOneInstance ? "AND p.instance_id = $2" : ""}`;
}

/** Whether a row of `table` may be claimed at $1: queued and due, or claimed under an expired lease. */
function dueCondition(table: string): string {
  return `((${table}.state = 'queued' AND ${table}.wait_reason = '' AND ${table}.next_attempt_at <= $1)
           OR (${table}.state = 'sending' AND ${table}.claim_expires_at <= $1))`;
}
