/**
 * Mails in the outbox, and the rules that decide what happens after each
 * delivery attempt. Pure: no I/O here; the store keeps mails, the worker in
 * src/notify sends them.
 */
import type { SmtpFailureReason } from "./mail.js";

/** Where a mail is in its life. */
export type MailState = "queued" | "sending" | "sent" | "failed";

/**
 * Why a queued mail is not due on a timer but waits for a provider change:
 * - credentials: the active provider rejected its login;
 * - no_provider: the instance has no active provider.
 * "" when the mail is due at nextAttemptAt.
 */
export type WaitReason = "" | "credentials" | "no_provider";

/** A mail as the outbox keeps it. */
export interface OutboxMail {
  readonly id: string;
  readonly instanceId: string;
  /** "" when the caller gave none. */
  readonly idempotencyKey: string;
  /** Message-ID header, fixed at acceptance so every attempt carries it. */
  readonly messageId: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly textBody: string;
  readonly htmlBody: string;
  readonly replyTo: string;
  readonly state: MailState;
  readonly attempts: number;
  readonly lastError: string;
  readonly waitReason: WaitReason;
  readonly nextAttemptAt: Date;
  readonly createdAt: Date;
  readonly sentAt?: Date;
  /** Provider that delivered it, or that it waits on; "" for none. */
  readonly providerId: string;
}

/** What the worker records after an attempt. */
export type AttemptOutcome =
  | { readonly kind: "sent"; readonly providerId: string; readonly at: Date }
  | { readonly kind: "retry"; readonly lastError: string; readonly at: Date }
  | {
      readonly kind: "wait";
      readonly reason: Exclude<WaitReason, "">;
      readonly lastError: string;
      /** The provider and sequence that failed; a change to either wakes the mail. */
      readonly providerId: string;
      readonly providerSequence: bigint;
    }
  | { readonly kind: "failed"; readonly lastError: string };

/** Retry timing, in milliseconds. */
export interface RetryPolicy {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** A mail older than this fails instead of waiting longer. */
  readonly maxAgeMs: number;
}

/** Defaults: 1 s doubling up to 10 min; give up after 24 h. */
export const defaultRetryPolicy: RetryPolicy = {
  baseDelayMs: 1000,
  maxDelayMs: 10 * 60_000,
  maxAgeMs: 24 * 60 * 60_000,
};

/**
 * Delay before attempt `attempts + 1`: exponential with full jitter, so many
 * mails failing together do not retry together. `random` is in [0, 1).
 */
export function backoffMs(policy: RetryPolicy, attempts: number, random = Math.random()): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempts - 1));
  // Half fixed, half random: never retry immediately, never in lockstep.
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

/**
 * Decides what a failed attempt means for the mail:
 * - rejected for good (5xx) → failed;
 * - credentials rejected → wait for the provider to change;
 * - anything transient (connect, timeout, TLS, 4xx, protocol) → retry later.
 */
export function outcomeOfFailure(
  policy: RetryPolicy,
  mail: Pick<OutboxMail, "attempts">,
  failure: { reason: SmtpFailureReason; message: string },
  provider: { id: string; sequence: bigint },
  now: Date,
): AttemptOutcome {
  if (failure.reason === "rejected_permanent") return { kind: "failed", lastError: failure.message };
  if (failure.reason === "auth") {
    return { kind: "wait", reason: "credentials", lastError: failure.message, providerId: provider.id, providerSequence: provider.sequence };
  }
  const at = new Date(now.getTime() + backoffMs(policy, mail.attempts));
  return { kind: "retry", lastError: failure.message, at };
}
