/**
 * Reads the errors nodemailer throws and turns them into SmtpSendError, with a
 * message that says what the server answered. Also recognises the one failure
 * that lets an implicit-TLS attempt fall back to STARTTLS.
 */
import { SmtpSendError, type SmtpFailureReason } from "../domain/mail.js";

/**
 * The fields nodemailer and Node hang on a failure. nodemailer moves a system
 * error's own code (ECONNREFUSED, ERR_SSL_…) to `originalCode` and puts its
 * own (ESOCKET, EDNS, ETLS, EAUTH, …) in `code`.
 */
interface NodemailerFailure {
  readonly message?: string;
  readonly code?: string;
  readonly originalCode?: string;
  readonly response?: string;
  readonly responseCode?: number;
  /** The SMTP command in flight: "CONN", "AUTH …", "MAIL FROM", "RCPT TO", "DATA". */
  readonly command?: string;
  /** CONNECT_TIMEOUT, GREETING_TIMEOUT, UPGRADE_TIMEOUT or SOCKET_TIMEOUT. */
  readonly timeoutType?: string;
  /** Set on OpenSSL errors: the library ("SSL routines") and a short reason. */
  readonly library?: string;
  readonly reason?: string;
  readonly rejectedErrors?: readonly { readonly recipient?: string; readonly response?: string }[];
}

/** What a message about a failure may mention, and what it must not. */
export interface FailureContext {
  /** The configured "host:port", named in messages. */
  readonly server: string;
  /** Cut out of every message, in case a server echoes it back. */
  readonly password: string;
  /** Connection timeout in milliseconds, for timeout messages. */
  readonly connectionTimeoutMs: number;
  /** Idle socket timeout in milliseconds, for timeout messages. */
  readonly socketTimeoutMs: number;
  /** True when this attempt is the STARTTLS fallback after implicit TLS. */
  readonly fellBack: boolean;
}

/**
 * Thrown by our login handler when the server offers neither PLAIN nor LOGIN
 * although a user or password is set. Sending without AUTH would hide a
 * misconfiguration, so the send fails with reason "auth" instead.
 */
export class AuthNotOfferedError extends Error {
  constructor(readonly offered: readonly string[]) {
    super("server offers no AUTH PLAIN or LOGIN");
  }
}

const connectCodes = new Set([
  "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "EHOSTUNREACH",
  "ENETUNREACH", "EHOSTDOWN", "ENOTFOUND", "EAI_AGAIN", "EADDRNOTAVAIL",
]);

// 530 "authentication required", 534 "mechanism too weak", 535 "credentials invalid".
const authReplyCodes = new Set([530, 534, 535]);

/**
 * True when an implicit-TLS attempt failed because the server answered the
 * TLS ClientHello in plaintext (its "220" greeting): OpenSSL then reports
 * "wrong version number", as the first bytes are not a TLS record. Only that
 * failure means "this server does STARTTLS instead"; a certificate problem,
 * a reset or a timeout does not, and must never cause a second attempt.
 */
export function isPlaintextAnswerToTls(err: unknown): boolean {
  const failure = err as NodemailerFailure | undefined;
  return (
    failure?.originalCode === "ERR_SSL_WRONG_VERSION_NUMBER" ||
    failure?.code === "ERR_SSL_WRONG_VERSION_NUMBER" ||
    failure?.reason === "wrong version number"
  );
}

/**
 * Turns a failure of one nodemailer send into an SmtpSendError. The original
 * error becomes the cause, after the password is cut out of its text.
 */
export function toSmtpSendError(err: unknown, context: FailureContext): SmtpSendError {
  const failure: NodemailerFailure = err instanceof Error ? err : { message: String(err) };
  const reason = classifyFailure(failure);
  const message = redact(describeFailure(reason, failure, err, context), context.password);
  scrubCause(err, context.password);
  return new SmtpSendError(reason, message, failure.responseCode || undefined, { cause: err });
}

function classifyFailure(failure: NodemailerFailure): SmtpFailureReason {
  const ownCode = failure.originalCode ?? failure.code ?? "";
  if (failure.code === "ETIMEDOUT" || ownCode === "ETIMEDOUT") return "timeout";
  if (isTlsFailure(failure, ownCode)) return "tls";
  if (isAuthFailure(failure)) return "auth";

  const status = failure.responseCode ?? 0;
  if (status >= 400 && status < 500) return "rejected_temporary";
  if (status >= 500 && status < 600) return "rejected_permanent";

  if (connectCodes.has(ownCode)) return "connect";
  // ECONNECTION: closed early; EDNS: the name lookup itself failed.
  if (failure.code === "ECONNECTION" || failure.code === "EDNS") return "connect";
  return "protocol";
}

function isTlsFailure(failure: NodemailerFailure, ownCode: string): boolean {
  if (failure.code === "ETLS" || failure.library !== undefined) return true;
  // Node's certificate checks report codes like CERT_HAS_EXPIRED, SELF_SIGNED_CERT_IN_CHAIN,
  // UNABLE_TO_VERIFY_LEAF_SIGNATURE and ERR_TLS_CERT_ALTNAME_INVALID; OpenSSL failures
  // during a write surface as EPROTO.
  return /^(ERR_SSL_|ERR_TLS_|ERR_OSSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|EPROTO$)/.test(
    ownCode,
  );
}

function isAuthFailure(failure: NodemailerFailure): boolean {
  if (failure.code === "EAUTH" || failure.code === "ENOAUTH") return true;
  if (authReplyCodes.has(failure.responseCode ?? 0)) return true;
  // 454 is also "TLS not available"; only an answer to AUTH makes it a login failure.
  return failure.responseCode === 454 && (failure.command ?? "").startsWith("AUTH");
}

function describeFailure(
  reason: SmtpFailureReason,
  failure: NodemailerFailure,
  err: unknown,
  context: FailureContext,
): string {
  switch (reason) {
    case "timeout":
      return describeTimeout(failure, context);
    case "tls":
      return describeTls(failure, context);
    case "auth":
      return describeAuth(failure, err, context);
    case "connect":
      return describeConnect(failure, context);
    case "rejected_temporary":
    case "rejected_permanent":
      return describeRejection(failure, context);
    case "protocol":
      return `SMTP session with ${context.server} failed: ${failure.response ?? failure.message}`;
  }
}

function describeTimeout(failure: NodemailerFailure, context: FailureContext): string {
  const { server, connectionTimeoutMs, socketTimeoutMs } = context;
  switch (failure.timeoutType) {
    case "CONNECT_TIMEOUT":
      return `connecting to ${server} timed out after ${connectionTimeoutMs} ms`;
    case "GREETING_TIMEOUT":
      return `SMTP server ${server} sent no greeting within ${connectionTimeoutMs} ms`;
    case "UPGRADE_TIMEOUT":
      return `TLS handshake with ${server} timed out after ${connectionTimeoutMs} ms`;
    case "SOCKET_TIMEOUT":
      return `SMTP server ${server} did not answer for ${socketTimeoutMs} ms`;
    default:
      return `connection to ${server} timed out`;
  }
}

function describeTls(failure: NodemailerFailure, context: FailureContext): string {
  const { server, fellBack } = context;
  if (failure.command === "STARTTLS" && failure.response) {
    // We only send STARTTLS after the server greeted a TLS handshake in plaintext.
    const problem = fellBack ? "speaks neither TLS on connect nor STARTTLS" : "refused STARTTLS";
    return `SMTP server ${server} ${problem}: ${failure.response}`;
  }
  // nodemailer wraps STARTTLS handshake errors as "Error initiating TLS - <Node's message>".
  const detail =
    failure.reason ?? (failure.message ?? "").replace(/^Error initiating TLS - /, "").trim();
  return `${fellBack ? "STARTTLS" : "TLS"} handshake with ${server} failed: ${detail}`;
}

function describeAuth(failure: NodemailerFailure, err: unknown, context: FailureContext): string {
  if (err instanceof AuthNotOfferedError) {
    const offered = err.offered.length ? err.offered.join(", ") : "none";
    return (
      `SMTP server ${context.server} offers no AUTH PLAIN or LOGIN (offers: ${offered}), ` +
      "but a user or password is set"
    );
  }
  if (!failure.response) return `login to ${context.server} failed: ${failure.message}`;
  if (!(failure.command ?? "").startsWith("AUTH")) {
    return `SMTP server ${context.server} requires a login: ${failure.response}`;
  }
  return `SMTP server rejected the credentials: ${failure.response}`;
}

function describeConnect(failure: NodemailerFailure, context: FailureContext): string {
  const { server } = context;
  switch (failure.originalCode) {
    case "ECONNREFUSED":
      return `connection refused by ${server}`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `cannot resolve the host of ${server} (${failure.originalCode})`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
      return `${server} is unreachable (${failure.originalCode})`;
    case "ECONNRESET":
    case "EPIPE":
      return `connection to ${server} was reset`;
  }
  if (failure.code === "ECONNECTION") {
    return `SMTP server ${server} closed the connection unexpectedly`;
  }
  return `could not connect to ${server}: ${failure.message}`;
}

function describeRejection(failure: NodemailerFailure, context: FailureContext): string {
  const reply = failure.response ?? "";
  switch (failure.command) {
    case "RCPT TO":
      return `SMTP server rejected ${describeRecipients(failure)}: ${reply}`;
    case "MAIL FROM":
      return `SMTP server rejected the sender: ${reply}`;
    case "DATA":
      return `SMTP server rejected the message: ${reply}`;
    default:
      return `SMTP server ${context.server} refused the session: ${reply}`;
  }
}

function describeRecipients(failure: NodemailerFailure): string {
  const rejected = failure.rejectedErrors ?? [];
  // The reply nodemailer reports is the first temporary one, or else the last one.
  const reported = rejected.find((entry) => entry.response === failure.response);
  if (rejected.length <= 1 && reported?.recipient) return `recipient ${reported.recipient}`;
  const all = rejected.map((entry) => entry.recipient).filter(Boolean);
  return all.length ? `all recipients (${all.join(", ")})` : "the recipients";
}

/**
 * Replaces the password and its base64 forms with "***". Servers seldom echo
 * credentials, but one that does must not put them into our errors or logs.
 */
function redact(text: string, password: string): string {
  if (!password) return text;
  const forms = [password, Buffer.from(password, "utf8").toString("base64")];
  return forms.reduce((result, form) => result.split(form).join("***"), text);
}

function scrubCause(err: unknown, password: string): void {
  if (!password || !(err instanceof Error)) return;
  // The cause goes to the log; the per-recipient errors carry server replies too.
  const rejected = (err as { rejectedErrors?: unknown }).rejectedErrors;
  for (const failure of [err, ...(Array.isArray(rejected) ? rejected : [])]) {
    if (!(failure instanceof Error)) continue;
    failure.message = redact(failure.message, password);
    const withResponse = failure as { response?: unknown };
    if (typeof withResponse.response === "string") {
      withResponse.response = redact(withResponse.response, password);
    }
  }
}
