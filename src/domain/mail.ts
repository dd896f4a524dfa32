/**
 * What the domain needs from mail delivery, without knowing how it is done.
 * src/notify implements MailSender with nodemailer.
 */
import { DomainError, type ErrorKind } from "./errors.js";

/** Connection and login settings of one SMTP provider, password in clear. */
export interface SmtpSettings {
  /** "host:port"; IPv6 in brackets, e.g. "[::1]:2525". */
  readonly host: string;
  /** true: implicit TLS, falling back to STARTTLS; false: plain connection. */
  readonly tls: boolean;
  /** "" for no user. */
  readonly user: string;
  /** "" for no password. AUTH is used when user or password is set. */
  readonly password: string;
}

/** One mail to send. Header fields must not contain CR or LF. */
export interface OutgoingMail {
  readonly fromAddress: string;
  readonly fromName: string;
  readonly replyTo?: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly text?: string;
  readonly html?: string;
  /** Message-ID header to use, e.g. "<id@host>"; generated when absent. */
  readonly messageId?: string;
}

/** What the SMTP server said when it accepted a mail. */
export interface SendResult {
  readonly messageId: string;
  /** The server's final reply, e.g. "250 2.0.0 Ok: queued". */
  readonly response: string;
}

/**
 * Why a send failed, coarse enough for a retry policy:
 * - connect: refused, unreachable, DNS failure, closed early
 * - timeout: no answer in time
 * - tls: handshake or certificate failure
 * - auth: credentials rejected (535 and friends)
 * - rejected_temporary: a 4xx reply to the envelope or data
 * - rejected_permanent: a 5xx reply to the envelope or data
 * - protocol: anything else the server or client did wrong
 */
export type SmtpFailureReason =
  | "connect"
  | "timeout"
  | "tls"
  | "auth"
  | "rejected_temporary"
  | "rejected_permanent"
  | "protocol";

const kindByReason: Record<SmtpFailureReason, ErrorKind> = {
  connect: "unavailable",
  timeout: "unavailable",
  tls: "failed_precondition",
  auth: "failed_precondition",
  rejected_temporary: "unavailable",
  rejected_permanent: "failed_precondition",
  protocol: "failed_precondition",
};

/**
 * A failed send. The message says what the server answered, and never holds
 * the password.
 */
export class SmtpSendError extends DomainError {
  constructor(
    readonly reason: SmtpFailureReason,
    message: string,
    readonly responseCode?: number,
    options?: { cause?: unknown },
  ) {
    super(kindByReason[reason], `SMTP-${reason}`, message, options);
  }
}

/** Sends mail through an SMTP provider. */
export interface MailSender {
  /**
   * Sends one mail with the given settings on a fresh connection.
   * Throws SmtpSendError; never retries by itself. `signal` ends the SMTP
   * session early, e.g. when the caller's deadline passed.
   */
  send(settings: SmtpSettings, mail: OutgoingMail, signal?: AbortSignal): Promise<SendResult>;
}
