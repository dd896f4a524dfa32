/**
 * Per-instance rate limits on the calls that make smtpgate act on the
 * outside world: test mails (each opens a real SMTP session, synchronously)
 * and SendMail (each queues a mail). One token bucket per instance and
 * action; an empty bucket answers resource_exhausted with the time after
 * which one call will pass again.
 *
 * Limits hold per process: with several replicas behind a load balancer an
 * instance gets up to the limit on each of them. That keeps one noisy
 * tenant from starving the others on a replica, which is the point; a
 * global quota would need the shared store and is not built.
 */
import { DomainError } from "./errors.js";

/** One limit: up to `burst` calls at once, refilled at `perSecond` calls per second. */
export interface RateLimit {
  readonly burst: number;
  readonly perSecond: number;
}

/** The calls that are limited. */
export type LimitedAction = "test_mail" | "send_mail";

/** The limit of each action; undefined means unlimited. */
export type RateLimits = Readonly<Record<LimitedAction, RateLimit | undefined>>;

/**
 * Generous defaults: an administrator clicking "test" a few times, or a
 * platform sending a burst of sign-up mails, never notices them.
 * 10 test mails per minute; 100 SendMail calls per second.
 */
export const defaultRateLimits: RateLimits = {
  test_mail: { burst: 10, perSecond: 10 / 60 },
  send_mail: { burst: 100, perSecond: 100 },
};

/** What an exhausted bucket says about itself, in the client's words. */
const describeAction: Readonly<Record<LimitedAction, string>> = {
  test_mail: "test mails",
  send_mail: "mails",
};

/** A call refused by a rate limit; `retryAfterMs` says when one call passes again. */
export class RateLimitedError extends DomainError {
  constructor(readonly retryAfterMs: number, message: string) {
    super("resource_exhausted", "RATE-lim01", message);
  }
}

interface Bucket {
  tokens: number;
  /** Clock reading of the last refill, in ms. */
  refilledAt: number;
}

// Buckets of idle instances are dropped past this many, so a long-running
// process with many instances does not keep one bucket per instance forever.
const maxBuckets = 10_000;

/** Token buckets per instance and action. */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  /** `clock` reads milliseconds from any fixed origin; replaceable in tests. */
  constructor(
    private readonly limits: RateLimits = defaultRateLimits,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /**
   * Spends one call of `action` for `instanceId`. Throws RateLimitedError
   * (kind resource_exhausted) when none is left; the refused call spends nothing.
   */
  take(action: LimitedAction, instanceId: string): void {
    const limit = this.limits[action];
    if (!limit) return;
    const bucket = this.refilled(`${action}/${instanceId}`, limit);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfterMs = Math.ceil(((1 - bucket.tokens) / limit.perSecond) * 1000);
    throw new RateLimitedError(retryAfterMs, refusal(action, limit, retryAfterMs));
  }

  private refilled(key: string, limit: RateLimit): Bucket {
    const now = this.clock();
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= maxBuckets) this.dropFullBuckets(now);
      bucket = { tokens: limit.burst, refilledAt: now };
      this.buckets.set(key, bucket);
      return bucket;
    }
    const earned = ((now - bucket.refilledAt) / 1000) * limit.perSecond;
    bucket.tokens = Math.min(limit.burst, bucket.tokens + earned);
    bucket.refilledAt = now;
    return bucket;
  }

  /** Forgets buckets that would be full by now: forgetting them changes nothing. */
  private dropFullBuckets(now: number): void {
    for (const [key, bucket] of this.buckets) {
      const limit = this.limits[key.slice(0, key.indexOf("/")) as LimitedAction];
      const tokens = limit ? bucket.tokens + ((now - bucket.refilledAt) / 1000) * limit.perSecond : Infinity;
      if (!limit || tokens >= limit.burst) this.buckets.delete(key);
    }
  }
}

function refusal(action: LimitedAction, limit: RateLimit, retryAfterMs: number): string {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return `too many ${describeAction[action]} for this instance (at most ${describeRate(limit)}); retry in ${seconds} s`;
}

/** "10 per minute" below one per second, else "100 per second". */
function describeRate(limit: RateLimit): string {
  if (limit.perSecond < 1) return `${Number((limit.perSecond * 60).toFixed(2))} per minute`;
  return `${Number(limit.perSecond.toFixed(2))} per second`;
}
