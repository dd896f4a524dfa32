/**
 * What the domain's commands and queries are given to work with. Built once
 * in src/server.ts; tests build their own with real components.
 */
import type { Store } from "../store/store.js";
import type { MailSender } from "./mail.js";
import type { RateLimiter } from "./rate-limit.js";
import type { SecretBox } from "./secret-box.js";
import type { PlaintextAuthPolicy } from "./smtp-policy.js";

/** Minimal structured logger; pino satisfies it. */
export interface Logger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** Dependencies of domain functions. */
export interface DomainDeps {
  readonly store: Store;
  readonly secrets: SecretBox;
  readonly mailer: MailSender;
  readonly log: Logger;
  /** Current time; replaceable in tests. */
  readonly now: () => Date;
  /** Where passwords may be sent unencrypted; defaultPlaintextAuthPolicy when absent. */
  readonly smtpPolicy?: PlaintextAuthPolicy;
  /** Per-instance limits on test mails and sends; unlimited when absent. */
  readonly limits?: RateLimiter;
}

/** Metadata of a stored object, from its events (ZITADEL's ObjectDetails). */
export interface ObjectDetails {
  readonly sequence: bigint;
  readonly creationDate: Date;
  readonly changeDate: Date;
  /** The owning instance's id. */
  readonly resourceOwner: string;
}
