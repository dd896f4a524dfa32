/**
 * The outbox on SQLite. Every method runs in one synchronous call, so a
 * claim (select due rows, mark them claimed) is atomic without row locks.
 */
import type Database from "better-sqlite3";
import type { AttemptOutcome, MailState, OutboxMail, WaitReason } from "../domain/outbox.js";
import type { StatementCache } from "./sqlite-statements.js";
import type { ClaimRequest, NewMail } from "./store.js";

interface MailRow {
  id: string;
  instance_id: string;
  idempotency_key: string | null;
  message_id: string;
  recipients: string;
  subject: string;
  text_body: string;
  html_body: string;
  reply_to: string;
  state: MailState;
  attempts: number;
  last_error: string;
  wait_reason: WaitReason;
  next_attempt_at: number;
  provider_id: string;
  created_at: number;
  sent_at: number | null;
}

function mailFromRow(row: MailRow): OutboxMail {
  return {
    id: row.id,
    instanceId: row.instance_id,
    idempotencyKey: row.idempotency_key ?? "",
    messageId: row.message_id,
    to: JSON.parse(row.recipients) as string[],
    subject: row.subject,
    textBody: row.text_body,
    htmlBody: row.html_body,
    replyTo: row.reply_to,
    state: row.state,
    attempts: row.attempts,
    lastError: row.last_error,
    waitReason: row.wait_reason,
    nextAttemptAt: new Date(row.next_attempt_at),
    createdAt: new Date(row.created_at),
    sentAt: row.sent_at === null ? undefined : new Date(row.sent_at),
    providerId: row.provider_id,
  };
}

/** Outbox queries over an open better-sqlite3 database. */
export class SqliteMails {
  /** `statements` prepares each query once (see sqlite-statements.ts). */
  constructor(
    private readonly db: Database.Database,
    private readonly statements: StatementCache,
  ) {}

  /** See MailStore.enqueueMail. */
  enqueue(mail: NewMail): { mail: OutboxMail; created: boolean } {
    return this.db
      .transaction(() => {
        const inserted = this.statements
          .prepare(
            `INSERT INTO mails (id, instance_id, idempotency_key, message_id, recipients, subject, text_body,
               html_body, reply_to, state, next_attempt_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)
             ON CONFLICT (instance_id, idempotency_key) DO NOTHING`,
          )
          .run(
            mail.id, mail.instanceId, mail.idempotencyKey || null, mail.messageId, JSON.stringify(mail.to),
            mail.subject, mail.textBody, mail.htmlBody, mail.replyTo, mail.createdAt.getTime(), mail.createdAt.getTime(),
          );
        if (inserted.changes === 1) return { mail: this.find(mail.instanceId, mail.id)!, created: true };
        const first = this.statements
          .prepare("SELECT * FROM mails WHERE instance_id = ? AND idempotency_key = ?")
          .get(mail.instanceId, mail.idempotencyKey) as MailRow;
        return { mail: mailFromRow(first), created: false };
      })
      .immediate();
  }

  /** See MailStore.findMail. */
  find(instanceId: string, id: string): OutboxMail | undefined {
    const row = this.statements.prepare("SELECT * FROM mails WHERE instance_id = ? AND id = ?").get(instanceId, id) as MailRow | undefined;
    return row && mailFromRow(row);
  }

  /**
   * See MailStore.claimMails. Walks the instances, taking each one's first
   * due mails from the mails_claimable index, so the cost grows with the
   * number of instances and of mails claimed, not with the backlog: mails
   * waiting for a provider, or scheduled later, are never read. The index
   * condition is repeated word for word because SQLite only uses a partial
   * index when the query states its condition. A claimed mail was due when
   * claimed, so "next_attempt_at <= now" holds for expired claims too.
   */
  claim(req: ClaimRequest): OutboxMail[] {
    const now = req.now.getTime();
    const rows = this.statements
      .prepare(
        `UPDATE mails SET state = 'sending', claimed_by = @worker, claim_expires_at = @expires, attempts = attempts + 1
         WHERE id IN (
           SELECT m.id FROM instances i JOIN mails m ON m.rowid IN (
             SELECT c.rowid FROM mails c
             WHERE c.instance_id = i.id AND ((c.state = 'queued' AND c.wait_reason = '') OR c.state = 'sending')
               AND c.next_attempt_at <= @now AND (c.state = 'queued' OR c.claim_expires_at <= @now)
             ORDER BY c.next_attempt_at LIMIT @rank)
           WHERE i.id NOT IN (SELECT value FROM json_each(@skip))
           ORDER BY m.next_attempt_at LIMIT @limit)
         RETURNING *`,
      )
      .all({
        worker: req.workerId,
        expires: now + req.leaseMs,
        now,
        rank: req.perInstanceLimit,
        skip: JSON.stringify(req.skipInstances),
        limit: req.limit,
      }) as MailRow[];
    return rows.map(mailFromRow).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
  }

  /** See MailStore.completeMail. */
  complete(id: string, workerId: string, outcome: AttemptOutcome, now: Date): boolean {
    const guard = "WHERE id = @id AND state = 'sending' AND claimed_by = @worker";
    const params = { id, worker: workerId, now: now.getTime() };
    let result;
    switch (outcome.kind) {
      case "sent":
        result = this.statements
          .prepare(`UPDATE mails SET state = 'sent', claimed_by = '', last_error = '', wait_reason = '', provider_id = @provider, sent_at = @at ${guard}`)
          .run({ ...params, provider: outcome.providerId, at: outcome.at.getTime() });
        break;
      case "retry":
        result = this.statements
          .prepare(`UPDATE mails SET state = 'queued', claimed_by = '', last_error = @error, wait_reason = '', next_attempt_at = @at ${guard}`)
          .run({ ...params, error: outcome.lastError, at: outcome.at.getTime() });
        break;
      case "wait":
        result = this.statements
          .prepare(
            `UPDATE mails SET state = 'queued', claimed_by = '', last_error = @error, wait_reason = @reason,
               wait_provider_id = @provider, wait_sequence = @sequence, next_attempt_at = @now ${guard}`,
          )
          .run({ ...params, error: outcome.lastError, reason: outcome.reason, provider: outcome.providerId, sequence: Number(outcome.providerSequence) });
        break;
      case "failed":
        result = this.statements
          .prepare(`UPDATE mails SET state = 'failed', claimed_by = '', last_error = @error, wait_reason = '' ${guard}`)
          .run({ ...params, error: outcome.lastError });
        break;
    }
    return result.changes === 1;
  }

  /** See MailStore.extendClaims. */
  extend(workerId: string, ids: readonly string[], until: Date): number {
    return this.statements
      .prepare(
        `UPDATE mails SET claim_expires_at = @until
         WHERE state = 'sending' AND claimed_by = @worker AND id IN (SELECT value FROM json_each(@ids))`,
      )
      .run({ until: until.getTime(), worker: workerId, ids: JSON.stringify(ids) }).changes;
  }

  /** See MailStore.releaseClaims. */
  release(workerId: string, now: Date): number {
    const who = workerId === "*" ? "" : "AND claimed_by = @worker";
    return this.statements
      .prepare(
        `UPDATE mails SET state = 'queued', claimed_by = '', attempts = MAX(attempts - 1, 0), next_attempt_at = @now
         WHERE state = 'sending' ${who}`,
      )
      .run({ worker: workerId, now: now.getTime() }).changes;
  }

  /**
   * See MailStore.wakeWaitingMails. Driven by the active providers: for each,
   * the instance's waiting mails that recorded another provider or another
   * sequence, read as four ranges of mails_waiting around the current
   * (provider, sequence): spelled out, because SQLite narrows a row-value
   * comparison only by its first column. Mails still waiting on the current
   * provider and sequence, however many, are not read. A no_provider wait
   * records provider "" and sequence 0, which sorts before every provider.
   * One instance's wake reads its active provider by key: a condition such
   * as "@instance = '' OR p.instance_id = @instance" made SQLite read every
   * active provider instead, 270 µs per wake at 1 000 instances.
   */
  wake(now: Date, instanceId?: string): number {
    const ranges = [
      "m.wait_provider_id < p.id",
      "m.wait_provider_id > p.id",
      "m.wait_provider_id = p.id AND m.wait_sequence < p.sequence",
      "m.wait_provider_id = p.id AND m.wait_sequence > p.sequence",
    ];
    const waking = ranges.map(
      (range) =>
        `SELECT m.rowid FROM smtp_providers p JOIN mails m
           ON m.instance_id = p.instance_id AND m.wait_reason <> '' AND ${range}
         WHERE p.is_active = 1 ${instanceId === undefined ? "" : "AND p.instance_id = @instance"}`,
    );
    return this.statements
      .prepare(`UPDATE mails SET wait_reason = '', next_attempt_at = @now WHERE rowid IN (${waking.join(" UNION ALL ")})`)
      .run(instanceId === undefined ? { now: now.getTime() } : { now: now.getTime(), instance: instanceId }).changes;
  }

  /** See MailStore.purgeMails. Two ranges of mails_age, one per finished state. */
  purge(createdBefore: Date, limit: number): number {
    return this.statements
      .prepare(
        `DELETE FROM mails WHERE rowid IN (
           SELECT rowid FROM mails WHERE state = 'sent' AND created_at < @before
           UNION ALL
           SELECT rowid FROM mails WHERE state = 'failed' AND created_at < @before
           LIMIT @limit)`,
      )
      .run({ before: createdBefore.getTime(), limit }).changes;
  }

  /** See MailStore.expireMails. */
  expire(createdBefore: Date): number {
    return this.statements
      .prepare(
        `UPDATE mails SET state = 'failed', wait_reason = '',
           last_error = 'gave up: not delivered within the maximum age' || CASE WHEN last_error = '' THEN '' ELSE '; last error: ' || last_error END
         WHERE state = 'queued' AND created_at < ?`,
      )
      .run(createdBefore.getTime()).changes;
  }

  /** See MailStore.countMails. */
  count(states?: readonly MailState[]): Record<string, number> {
    if (states === undefined) {
      const rows = this.statements.prepare("SELECT state, COUNT(*) AS n FROM mails GROUP BY state").all() as { state: string; n: number }[];
      return Object.fromEntries(rows.map((r) => [r.state, r.n]));
    }
    const counting = this.statements.prepare("SELECT COUNT(*) AS n FROM mails WHERE state = ?");
    const counts = states.map((state) => [state, (counting.get(state) as { n: number }).n] as const);
    return Object.fromEntries(counts.filter(([, n]) => n > 0));
  }

  /** See MailStore.oldestMails. One index lookup per state (mails_age). */
  oldest(): Record<string, Date> {
    const rows = this.statements
      .prepare(
        `SELECT s.state, (SELECT MIN(created_at) FROM mails WHERE state = s.state) AS at
         FROM (SELECT 'queued' AS state UNION ALL SELECT 'sending' UNION ALL SELECT 'sent' UNION ALL SELECT 'failed') s`,
      )
      .all() as { state: string; at: number | null }[];
    return Object.fromEntries(rows.filter((r) => r.at !== null).map((r) => [r.state, new Date(r.at!)]));
  }
}
