/**
 * Group commit for the SQLite engine: writes that arrive in the same turn of
 * the event loop share one transaction, and so one fsync.
 *
 * With synchronous=FULL every COMMIT waits for the disk (about 5 ms on the
 * machine of bench/RESULTS.md), and better-sqlite3 waits on the event loop,
 * so one commit per write caps the server at ~200 writes/s however many
 * clients wait. Here each write is queued, and the queue is applied on the
 * next setImmediate inside one BEGIN IMMEDIATE ... COMMIT: while one batch
 * waits for the disk, the requests arriving meanwhile queue up for the next.
 *
 * The guarantees of one-transaction-per-write are kept:
 * - Each write runs in its own SAVEPOINT, so it is atomic on its own: a write
 *   that throws (a StoreConflict, a constraint) is rolled back alone and only
 *   its caller sees the error; the rest of the batch commits.
 * - No caller hears of success before the COMMIT has returned, so every
 *   acknowledged write is as durable as before.
 * - If the COMMIT itself fails, or SQLite abandons the transaction (disk
 *   full, I/O error), every caller of the batch gets that error and nothing
 *   of the batch is stored.
 * - Writes apply in the order they were queued. Reads never see a batch half
 *   done: a batch runs in one synchronous call.
 */
import type Database from "better-sqlite3";

interface Queued {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

type Outcome = { readonly isOk: true; readonly value: unknown } | { readonly isOk: false; readonly error: unknown };

/** Queues writes on one database and commits them in batches. */
export class GroupCommit {
  private queue: Queued[] = [];

  constructor(private readonly db: Database.Database) {}

  /**
   * Runs `work` (synchronous better-sqlite3 calls) in the next batch and
   * resolves to its result once the batch is committed. Rejects with what
   * `work` threw, or with the batch's commit failure.
   */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Commits the queued writes now, e.g. before the database closes. */
  flush(): void {
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    const outcomes: Outcome[] = [];
    try {
      this.db.transaction(() => {
        for (const item of batch) outcomes.push(this.attempt(item.work));
      }).immediate();
    } catch (err) {
      for (const item of batch) item.reject(err);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i];
      if (outcome.isOk) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  /** One write in its own savepoint (better-sqlite3 nests transactions that way). */
  private attempt(work: () => unknown): Outcome {
    try {
      return { isOk: true, value: this.db.transaction(work)() };
    } catch (error) {
      // SQLite rolls the whole transaction back on some errors; then the
      // writes before this one are gone too, so the batch must fail.
      if (!this.db.inTransaction) throw error;
      return { isOk: false, error };
    }
  }
}
