/**
 * The outbox on PostgreSQL, shared by every replica. A claim locks due rows
 * with FOR UPDATE SKIP LOCKED, so concurrent replicas never take the same
 * mail and never wait on each other; a claim carries a lease, so the mails
 * of a replica that died are taken over once it expires.
 */
import type pg from "pg";
import type { AttemptOutcome, OutboxMail } from "../domain/outbox.js";
import type { ClaimRequest, NewMail } from "./store.js";

type Row = Record<string, unknown>;
type Transaction = <T>(fn: (client: pg.PoolClient) => Promise<T>) => Promise<T>;
type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

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

/** How many candidate rows a claim locks per slot, so per-instance limits can still fill the batch. */
const candidateFactor = 4;

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

  /** See MailStore.claimMails. */
  async claim(req: ClaimRequest): Promise<OutboxMail[]> {
    return this.transaction(async (client) => {
      const { rows } = await client.query(
        `SELECT id, instance_id FROM mails
         WHERE ((state = 'queued' AND wait_reason = '' AND next_attempt_at <= $1)
             OR (state = 'sending' AND claim_expires_at <= $1))
           AND NOT (instance_id = ANY($2::text[]))
         ORDER BY next_attempt_at LIMIT $3
         FOR UPDATE SKIP LOCKED`,
        [req.now, req.skipInstances, req.limit * candidateFactor],
      );
      const chosen = pickFairly(rows as { id: string; instance_id: string }[], req.limit, req.perInstanceLimit);
      if (chosen.length === 0) return [];
      const claimed = await client.query(
        `UPDATE mails SET state = 'sending', claimed_by = $1, claim_expires_at = $2, attempts = attempts + 1
         WHERE id = ANY($3::text[]) RETURNING *`,
        [req.workerId, new Date(req.now.getTime() + req.leaseMs), chosen],
      );
      return claimed.rows.map(mailFromRow).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
    });
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

  /** See MailStore.releaseClaims. */
  async release(workerId: string, now: Date): Promise<number> {
    const { rowCount } = await this.query(
      `UPDATE mails SET state = 'queued', claimed_by = '', attempts = GREATEST(attempts - 1, 0), next_attempt_at = $2
       WHERE state = 'sending' AND ($1 = '*' OR claimed_by = $1)`,
      [workerId, now],
    );
    return rowCount ?? 0;
  }

  /** See MailStore.wakeWaitingMails. */
  async wake(now: Date, instanceId?: string): Promise<number> {
    const { rowCount } = await this.query(
      `UPDATE mails AS m SET wait_reason = '', next_attempt_at = $1
       WHERE m.state = 'queued' AND m.wait_reason <> '' AND ($2::text IS NULL OR m.instance_id = $2)
         AND EXISTS (SELECT 1 FROM smtp_providers p WHERE p.instance_id = m.instance_id AND p.is_active
                     AND (m.wait_reason = 'no_provider' OR p.id <> m.wait_provider_id OR p.sequence <> m.wait_sequence))`,
      [now, instanceId ?? null],
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
  async count(): Promise<Record<string, number>> {
    const { rows } = await this.query("SELECT state, COUNT(*)::int AS n FROM mails GROUP BY state");
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }
}

/** Creation time of the oldest mail per state; see MailStore.oldestMails. */
export async function oldestMails(query: Query): Promise<Record<string, Date>> {
  const { rows } = await query("SELECT state, MIN(created_at) AS at FROM mails GROUP BY state");
  return Object.fromEntries(rows.map((r) => [r.state as string, r.at as Date]));
}

/** Takes up to `limit` ids, at most `perInstance` of any one instance, in order. */
function pickFairly(rows: readonly { id: string; instance_id: string }[], limit: number, perInstance: number): string[] {
  const taken = new Map<string, number>();
  const ids: string[] = [];
  for (const row of rows) {
    if (ids.length >= limit) break;
    const n = taken.get(row.instance_id) ?? 0;
    if (n >= perInstance) continue;
    taken.set(row.instance_id, n + 1);
    ids.push(row.id);
  }
  return ids;
}
