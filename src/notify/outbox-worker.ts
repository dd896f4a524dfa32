/**
 * The outbox worker: claims due mails, sends each through its instance's
 * active provider, and records the outcome.
 *
 * Correctness comes from the store: every attempt reads the active provider
 * and its sequence fresh, and ticks wake mails whose provider changed. The
 * timer's ticks wake the mails of every instance; a tick the change feed or
 * a finished attempt asked for wakes only the instances named (see kick),
 * so a save costs a few index reads, not one per instance of the server.
 * The store's change feed only makes ticks happen sooner.
 *
 * A claim is a lease: while an attempt runs, the worker extends the claims
 * it holds every third of a lease, so a slow send (a server that drips its
 * replies, a queue for a pooled connection) is never taken over and sent
 * twice while it is still going. Only a worker that stops extending (its
 * process died, or lost the store for a whole lease) loses its mails.
 *
 * Instances share the worker's slots, each up to perInstance of them. An
 * instance whose last attempt failed in a way worth retrying (its server is
 * down, refuses, or never answers) is held to one mail in flight until one
 * gets through: a few tenants with dead or stalling servers cannot then
 * fill every slot, hour after hour, while other tenants' mail waits.
 */
import type { DomainDeps, Logger } from "../domain/deps.js";
import { DomainError } from "../domain/errors.js";
import { SmtpSendError, type OutgoingMail } from "../domain/mail.js";
import { defaultRetryPolicy, outcomeOfFailure, type AttemptOutcome, type OutboxMail, type RetryPolicy } from "../domain/outbox.js";
import type { SmtpProvider } from "../domain/provider.js";
import type { Store } from "../store/store.js";
import type { TransportPool } from "./transport-pool.js";

/** Tuning of the worker. Every field has a default. */
export interface WorkerOptions {
  /** Names this worker's claims; unique per process. */
  readonly workerId: string;
  /** Mails in flight at once, over all instances; default 32. */
  readonly concurrency?: number;
  /** Mails in flight at once for one instance; default 4. */
  readonly perInstance?: number;
  /** How long a claim holds before another worker may take over unless extended, ms; default 120000. */
  readonly leaseMs?: number;
  /** Time between ticks when nothing wakes the worker, ms; default 1000. */
  readonly pollMs?: number;
  /** How long a sent or failed mail is kept (for GetMail and its idempotency key), ms; default 7 days. */
  readonly retentionMs?: number;
  readonly policy?: RetryPolicy;
}

/** A provider's pooled transport unused this long is closed, ms. */
const idleTransportMs = 60_000;

/** Finished mails deleted per statement, and statements per purge at most (a backlog of old mails shrinks over several). */
const purgeBatch = 1000;
const purgeBatchesPerRun = 10;

/** How long stop waits for attempts to end after closing their connections, ms. */
const settleAfterCloseMs = 1000;

type Deps = Pick<DomainDeps, "store" | "secrets" | "log" | "now"> & {
  readonly pool: TransportPool;
  /** Called after every attempt, e.g. to count outcomes in metrics. */
  readonly onAttempt?: (outcome: AttemptOutcome["kind"], replyClass: string) => void;
};

/** Delivers queued mails until stopped. */
export class OutboxWorker {
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly perInstanceCount = new Map<string, number>();
  /** Instances held to one mail in flight since an attempt of theirs must be retried. */
  private readonly slowInstances = new Set<string>();
  private readonly opts: Required<WorkerOptions>;
  private timer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private ticking: Promise<void> | undefined;
  private tickAgain = false;
  /** Whether the next tick wakes the waiting mails of every instance... */
  private isWakingAll = true;
  /** ...or else of these. */
  private readonly instancesToWake = new Set<string>();
  /** deps.now() of the last purge of finished mails, ms. */
  private lastPurgeAt = 0;
  private stopped = false;

  constructor(private readonly deps: Deps, options: WorkerOptions) {
    this.opts = {
      concurrency: 32,
      perInstance: 4,
      leaseMs: 120_000,
      pollMs: 1000,
      retentionMs: 7 * 24 * 60 * 60_000,
      policy: defaultRetryPolicy,
      ...options,
    };
  }

  private get store(): Store {
    return this.deps.store;
  }

  private get log(): Logger {
    return this.deps.log;
  }

  /** Starts ticking on the change feed and on a timer. */
  start(): void {
    this.unsubscribe = this.store.subscribe((change) => this.kick(change.instanceId));
    this.timer = setInterval(() => this.kick(), this.opts.pollMs);
    this.timer.unref();
    this.renewTimer = setInterval(() => void this.extendClaims(), this.opts.leaseMs / 3);
    this.renewTimer.unref();
    this.kick();
  }

  /** Extends the claims of the mails in flight by a lease from now. Never rejects. */
  private async extendClaims(): Promise<void> {
    if (this.inFlight.size === 0) return;
    const until = new Date(this.deps.now().getTime() + this.opts.leaseMs);
    try {
      await this.store.extendClaims(this.opts.workerId, [...this.inFlight.keys()], until);
    } catch (err) {
      // The next round tries again; two missed rounds still leave a third of the lease.
      this.log.warn({ event: "outbox.extend_failed", inFlight: this.inFlight.size, err: (err as Error).message }, "claims not extended");
    }
  }

  /**
   * Runs a tick soon; coalesces with one already running. The tick wakes
   * the waiting mails of `instanceId`, or of every instance when it is
   * absent or "*" (a gap in the change feed).
   */
  kick(instanceId?: string): void {
    if (this.stopped) return;
    if (instanceId === undefined || instanceId === "*") this.isWakingAll = true;
    else this.instancesToWake.add(instanceId);
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = this.tickLoop().finally(() => {
      this.ticking = undefined;
    });
  }

  private async tickLoop(): Promise<void> {
    do {
      this.tickAgain = false;
      try {
        await this.tick();
      } catch (err) {
        this.log.error({ event: "outbox.tick_failed", err: (err as Error).message }, "outbox tick failed");
      }
    } while (this.tickAgain && !this.stopped);
  }

  private async tick(): Promise<void> {
    const now = this.deps.now();
    this.deps.pool.closeIdle(idleTransportMs);
    await this.wake(now);
    const expired = await this.store.expireMails(new Date(now.getTime() - this.opts.policy.maxAgeMs), now);
    if (expired > 0) this.log.warn({ event: "mail.expired", count: expired }, "mails failed after waiting too long");
    await this.purgeFinished(now);

    const free = this.opts.concurrency - this.inFlight.size;
    if (free <= 0 || this.stopped) return;
    const launched = await this.claimWithinLimits(now, free);
    // A full batch means more may be due right away.
    if (launched === free) this.tickAgain = true;
  }

  /**
   * Wakes the waiting mails kick asked for, and takes that request. When a
   * wake fails, the next tick wakes every instance.
   */
  private async wake(now: Date): Promise<void> {
    const isAll = this.isWakingAll;
    const some = [...this.instancesToWake];
    this.isWakingAll = false;
    this.instancesToWake.clear();
    try {
      if (isAll) await this.store.wakeWaitingMails(now);
      else for (const instanceId of some) await this.store.wakeWaitingMails(now, instanceId);
    } catch (err) {
      this.isWakingAll = true;
      throw err;
    }
  }

  /**
   * Deletes finished mails past their retention, at most once a minute (or
   * once per retention, when that is shorter), a bounded number per run so a
   * large backlog of them never holds up a tick for long.
   */
  private async purgeFinished(now: Date): Promise<void> {
    if (now.getTime() - this.lastPurgeAt < Math.min(60_000, this.opts.retentionMs)) return;
    this.lastPurgeAt = now.getTime();
    const before = new Date(now.getTime() - this.opts.retentionMs);
    let purged = 0;
    for (let run = 0; run < purgeBatchesPerRun; run++) {
      const n = await this.store.purgeMails(before, purgeBatch);
      purged += n;
      if (n < purgeBatch) break;
    }
    if (purged > 0) this.log.info({ event: "mail.purged", count: purged }, "finished mails past their retention deleted");
  }

  /**
   * Claims and launches up to `free` due mails, never letting an instance
   * have more than its limit in flight (perInstance, or 1 while slow). A
   * claim applies one per-instance limit to every instance it takes from,
   * so instances are claimed for in rounds by what is left of their limit:
   * the whole of it for instances with nothing in flight, then each smaller
   * remainder, every round skipping the known instances with a different
   * remainder. One claim for all would let an instance with k in flight
   * take perInstance more. Returns how many mails were launched.
   */
  private async claimWithinLimits(now: Date, free: number): Promise<number> {
    let launched = 0;
    for (const budget of this.remainingBudgets()) {
      if (launched >= free || this.stopped) break;
      const skip = this.knownInstances().filter((id) => this.remainingOf(id) !== budget);
      const mails = await this.store.claimMails({
        workerId: this.opts.workerId,
        now,
        leaseMs: this.opts.leaseMs,
        limit: free - launched,
        perInstanceLimit: budget,
        skipInstances: skip,
      });
      for (const mail of mails) this.launch(mail);
      launched += mails.length;
    }
    return launched;
  }

  /** The distinct amounts left of the per-instance limits, largest (an idle instance's) first. */
  private remainingBudgets(): number[] {
    const left = this.knownInstances().map((id) => this.remainingOf(id)).filter((r) => r > 0);
    return [...new Set([this.opts.perInstance, ...left])].sort((x, y) => y - x);
  }

  /** Instances whose limit or count differs from an idle one's. */
  private knownInstances(): string[] {
    return [...new Set([...this.perInstanceCount.keys(), ...this.slowInstances])];
  }

  /** How many more mails of `instanceId` may go in flight now. */
  private remainingOf(instanceId: string): number {
    const limit = this.slowInstances.has(instanceId) ? 1 : this.opts.perInstance;
    return limit - (this.perInstanceCount.get(instanceId) ?? 0);
  }

  /**
   * Holds an instance to one mail in flight after a failure worth retrying,
   * and frees it after any other outcome.
   */
  private noteOutcome(mail: OutboxMail, outcome: AttemptOutcome): void {
    const fields = { instanceId: mail.instanceId };
    const wasSlow = this.slowInstances.has(mail.instanceId);
    if (outcome.kind === "retry" && !wasSlow) {
      this.slowInstances.add(mail.instanceId);
      this.log.info({ event: "outbox.instance_slowed", ...fields }, "instance held to one mail in flight until one gets through");
    } else if (outcome.kind !== "retry" && wasSlow) {
      this.slowInstances.delete(mail.instanceId);
      this.log.info({ event: "outbox.instance_resumed", ...fields }, "instance back to its full share of mails in flight");
    }
  }

  private launch(mail: OutboxMail): void {
    this.perInstanceCount.set(mail.instanceId, (this.perInstanceCount.get(mail.instanceId) ?? 0) + 1);
    const run = this.attempt(mail).finally(() => {
      this.inFlight.delete(mail.id);
      const left = (this.perInstanceCount.get(mail.instanceId) ?? 1) - 1;
      if (left === 0) this.perInstanceCount.delete(mail.instanceId);
      else this.perInstanceCount.set(mail.instanceId, left);
      // Its password may have changed while it was sent: wake its instance.
      this.kick(mail.instanceId);
    });
    this.inFlight.set(mail.id, run);
  }

  private async attempt(mail: OutboxMail): Promise<void> {
    const started = performance.now();
    let outcome: AttemptOutcome;
    let replyClass = "none";
    try {
      outcome = await this.sendOnce(mail, (code) => (replyClass = code === undefined ? "none" : `${Math.floor(code / 100)}xx`));
    } catch (err) {
      // Not a send failure we understand (e.g. the store failed): retry later.
      this.log.error({ event: "mail.attempt_error", mailId: mail.id, err: (err as Error).message }, "mail attempt failed unexpectedly");
      outcome = { kind: "retry", lastError: "internal error", at: new Date(this.deps.now().getTime() + this.opts.policy.baseDelayMs) };
    }
    const held = await this.record(mail, outcome);
    this.noteOutcome(mail, outcome);
    this.logOutcome(mail, outcome, held, performance.now() - started);
    this.deps.onAttempt?.(outcome.kind, outcome.kind === "sent" ? "2xx" : replyClass);
  }

  /**
   * Records an attempt's outcome; false when the claim was lost. While the
   * store is unavailable (a database restart) it tries again, for as long
   * as the claim holds: giving up means the mail goes out once more after
   * its lease. Never rejects: a rejection here would go unhandled and end
   * the process.
   */
  private async record(mail: OutboxMail, outcome: AttemptOutcome): Promise<boolean> {
    const deadline = performance.now() + this.opts.leaseMs;
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2000)) {
      try {
        return await this.store.completeMail(mail.id, this.opts.workerId, outcome, this.deps.now());
      } catch (err) {
        const retryable = err instanceof DomainError && err.kind === "unavailable" && !this.stopped;
        if (!retryable || performance.now() + delayMs > deadline) {
          this.log.error(
            { event: "mail.outcome_unrecorded", mailId: mail.id, outcome: outcome.kind, err: (err as Error).message },
            "attempt outcome not recorded; the mail is tried again when its claim expires",
          );
          return false;
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  private async sendOnce(mail: OutboxMail, onReply: (code: number | undefined) => void): Promise<AttemptOutcome> {
    const provider = await this.store.findActiveProvider(mail.instanceId);
    if (!provider) {
      return { kind: "wait", reason: "no_provider", lastError: "no active SMTP provider", providerId: "", providerSequence: 0n };
    }
    let password: string;
    try {
      password = this.deps.secrets.open(provider.sealedPassword, { instanceId: provider.instanceId, providerId: provider.id });
    } catch {
      // Fail closed: send nothing; saving a new password wakes the mail.
      return waitOn(provider, "the stored SMTP password cannot be opened; save it again");
    }
    const settings = { host: provider.host, tls: provider.tls, user: provider.user, password };
    try {
      await this.deps.pool.send({ providerId: provider.id, sequence: provider.sequence }, settings, toOutgoing(mail, provider));
      return { kind: "sent", providerId: provider.id, at: this.deps.now() };
    } catch (err) {
      onReply(err instanceof SmtpSendError ? err.responseCode : undefined);
      return this.outcomeOf(err, mail, provider);
    }
  }

  private outcomeOf(err: unknown, mail: OutboxMail, provider: SmtpProvider): AttemptOutcome {
    if (err instanceof SmtpSendError) {
      return outcomeOfFailure(this.opts.policy, mail, { reason: err.reason, message: err.message }, provider, this.deps.now());
    }
    if (err instanceof DomainError && (err.kind === "invalid" || err.kind === "failed_precondition")) {
      // The provider's settings cannot make a valid mail (e.g. a bad host),
      // or the outbound policy refuses where they point (a denied address, a
      // password over a plain connection); a settings change wakes it.
      return waitOn(provider, err.message);
    }
    throw err;
  }

  private logOutcome(mail: OutboxMail, outcome: AttemptOutcome, held: boolean, ms: number): void {
    const fields = {
      event: `mail.${outcome.kind}`,
      mailId: mail.id,
      instanceId: mail.instanceId,
      attempt: mail.attempts,
      durationMs: Math.round(ms),
      claimLost: held ? undefined : true,
      error: outcome.kind === "sent" ? undefined : outcome.lastError,
    };
    if (outcome.kind === "sent") this.log.info(fields, "mail sent");
    else if (outcome.kind === "failed") this.log.warn(fields, "mail failed for good");
    else this.log.warn(fields, outcome.kind === "wait" ? "mail waits for a provider change" : "mail will be retried");
  }

  /**
   * Stops claiming, waits up to `graceMs` for mails in flight, puts the
   * rest back in the queue, and closes the pool.
   */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    clearInterval(this.timer);
    await this.ticking;
    const grace = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.allSettled(this.inFlight.values()), grace]);
    clearInterval(this.renewTimer);
    // If the store is gone, the claims simply expire and another worker (or
    // the next start) takes the mails over.
    const released = await this.store.releaseClaims(this.opts.workerId, this.deps.now()).catch((err: Error) => {
      this.log.warn({ event: "outbox.release_failed", err: err.message }, "claims not released; they will expire");
      return 0;
    });
    this.deps.pool.closeAll();
    // The forced close fails the sends still hanging at once; let those
    // attempts end while the store is open. Their claims were released, so
    // they record nothing.
    const settled = new Promise((resolve) => setTimeout(resolve, settleAfterCloseMs).unref());
    await Promise.race([Promise.allSettled(this.inFlight.values()), settled]);
    this.log.info({ event: "outbox.stopped", released }, "outbox worker stopped");
  }
}

function waitOn(provider: SmtpProvider, lastError: string): AttemptOutcome {
  return { kind: "wait", reason: "credentials", lastError, providerId: provider.id, providerSequence: provider.sequence };
}

function toOutgoing(mail: OutboxMail, provider: SmtpProvider): OutgoingMail {
  return {
    fromAddress: provider.senderAddress,
    fromName: provider.senderName,
    replyTo: mail.replyTo || provider.replyToAddress || undefined,
    to: mail.to,
    subject: mail.subject,
    text: mail.textBody || undefined,
    html: mail.htmlBody || undefined,
    messageId: mail.messageId,
  };
}
