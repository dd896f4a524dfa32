/**
 * Delivers mail over SMTP with nodemailer: one fresh connection per mail,
 * implicit TLS with a fallback to STARTTLS, AUTH PLAIN or LOGIN, and every
 * failure turned into an SmtpSendError. Transport only; no business rules.
 */
import { isIPv6 } from "node:net";
import { hostname } from "node:os";
import { rootCertificates } from "node:tls";
import nodemailer from "nodemailer";
import type { SMTPConnectionCustomAuthContext } from "nodemailer/lib/smtp-connection";
import type { SMTPTransportOptions } from "nodemailer/lib/smtp-transport";
import { DomainError } from "../domain/errors.js";
import type {
  MailSender,
  OutgoingMail,
  SendResult,
  SmtpSettings,
} from "../domain/mail.js";
import { OutboundPolicy } from "./outbound-guard.js";
import { AuthNotOfferedError, isPlaintextAnswerToTls, toSmtpSendError } from "./smtp-errors.js";

/** Certificates in PEM, as node:tls accepts them. */
type Certificates = string | Buffer | Array<string | Buffer>;

/** How NodemailerSender connects; every field has a default. */
export interface NodemailerSenderOptions {
  /** Extra CA certificates (PEM) to trust besides Node's root store. */
  readonly ca?: Certificates;
  /** Time for DNS, connect, greeting and TLS setup together, in ms; default 10000. */
  readonly connectionTimeoutMs?: number;
  /** Longest silence of the server once connected, in ms; default 30000. */
  readonly socketTimeoutMs?: number;
  /** Name the client gives in EHLO; default os.hostname(). */
  readonly name?: string;
  /**
   * Which addresses may be reached, and whether a password may travel
   * unencrypted; default: the safe defaults of OutboundPolicy.
   */
  readonly outbound?: OutboundPolicy;
}

/** An SMTP server address split into its parts; `host` has no brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** How a connection is secured: TLS on connect, STARTTLS, or not at all. */
export type TlsMode = "implicit" | "starttls" | "plain";

/** Connection settings shared by every transport of one sender or pool. */
export interface ConnectionOptions {
  readonly ca: Array<string | Buffer> | undefined;
  readonly connectionTimeoutMs: number;
  readonly socketTimeoutMs: number;
  readonly name: string;
  readonly outbound: OutboundPolicy;
}

/**
 * Resolves sender options to connection settings. `ca` is added to Node's
 * root store: node:tls replaces the store with `ca` when given, and we want
 * both.
 */
export function connectionOptions(options: NodemailerSenderOptions): ConnectionOptions {
  return {
    ca: options.ca === undefined ? undefined : [...rootCertificates, ...[options.ca].flat()],
    connectionTimeoutMs: options.connectionTimeoutMs ?? 10_000,
    socketTimeoutMs: options.socketTimeoutMs ?? 30_000,
    name: options.name ?? hostname(),
    outbound: options.outbound ?? new OutboundPolicy(),
  };
}

/**
 * nodemailer transport options for one provider and TLS mode: certificates
 * verified, AUTH PLAIN or LOGIN whenever a user or password is set, and
 * every connection opened by the outbound policy (see outbound-guard.ts),
 * never by nodemailer's own lookup.
 */
export function buildTransportOptions(
  target: HostPort,
  settings: SmtpSettings,
  mode: TlsMode,
  connection: ConnectionOptions,
): SMTPTransportOptions {
  const wantsLogin = settings.user !== "" || settings.password !== "";
  return {
    host: target.host,
    port: target.port,
    secure: mode === "implicit",
    requireTLS: mode === "starttls",
    // tls=false means a plain session, even when the server offers STARTTLS.
    ignoreTLS: mode === "plain",
    tls: { ca: connection.ca, rejectUnauthorized: true },
    name: connection.name,
    connectionTimeout: connection.connectionTimeoutMs,
    greetingTimeout: connection.connectionTimeoutMs,
    socketTimeout: connection.socketTimeoutMs,
    logger: false,
    debug: false,
    // forceAuth makes nodemailer call our handler even when the server advertises no
    // AUTH, so that configured credentials are never silently skipped.
    forceAuth: wantsLogin,
    auth: wantsLogin ? { user: settings.user, pass: settings.password, method: loginMethod } : undefined,
    customAuth: wantsLogin ? { [loginMethod]: createLoginHandler(settings.user, settings.password) } : undefined,
    getSocket: connection.outbound.socketFor({
      hostPort: settings.host,
      host: target.host,
      port: target.port,
      mode,
      carriesPassword: settings.password !== "",
      ca: connection.ca,
      timeoutMs: connection.connectionTimeoutMs,
    }),
  };
}

// Our own SASL handler, registered under a name no server uses, so that nodemailer
// always hands the login to it. See createLoginHandler for why.
const loginMethod = "SMTPGATE-PLAIN-OR-LOGIN";

/**
 * Splits "host:port" into its parts; an IPv6 address must be in brackets
 * ("[::1]:25"). Throws DomainError "invalid" (SMTP-host01) when the port is
 * missing or outside 1..65535, or the host is empty or malformed.
 */
export function parseHostPort(hostPort: string): HostPort {
  const separator = hostPort.lastIndexOf(":");
  const portText = separator < 0 ? "" : hostPort.slice(separator + 1);
  if (!portText) throw invalidHost(hostPort, "has no port");
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
  if (port < 1 || port > 65535) throw invalidHost(hostPort, "needs a port from 1 to 65535");

  const hostText = hostPort.slice(0, separator);
  const isBracketed = hostText.startsWith("[") && hostText.endsWith("]");
  const host = isBracketed ? hostText.slice(1, -1) : hostText;
  if (!host) throw invalidHost(hostPort, "has no host");
  if (isBracketed ? !isIPv6(host) : /[\s:[\]]/.test(host)) {
    throw invalidHost(hostPort, "has a malformed host; write an IPv6 address in brackets");
  }
  return { host, port };
}

function invalidHost(hostPort: string, problem: string): DomainError {
  return new DomainError("invalid", "SMTP-host01", `SMTP host "${hostPort}" ${problem}`);
}

/**
 * Sends each mail on its own nodemailer SMTP transport, closed after the
 * send. With tls=true it tries implicit TLS and falls back to STARTTLS only
 * when the server answers the TLS handshake in plaintext.
 */
export class NodemailerSender implements MailSender {
  private readonly connection: ConnectionOptions;

  constructor(options: NodemailerSenderOptions = {}) {
    this.connection = connectionOptions(options);
  }

  /**
   * Sends one mail. Throws DomainError "invalid" for a bad host (SMTP-host01),
   * a header field with CR or LF (SMTP-hdr01) or no recipient (SMTP-rcpt01)
   * before connecting, DomainError "failed_precondition" when the outbound
   * policy refuses the connection (SMTP-deny01, SMTP-plain02), and
   * SmtpSendError for anything that goes wrong on the wire. Never retries,
   * except for the one STARTTLS fallback described on the class.
   */
  async send(settings: SmtpSettings, mail: OutgoingMail, signal?: AbortSignal): Promise<SendResult> {
    assertHeadersSafe(mail);
    const target = parseHostPort(settings.host);
    const mode: TlsMode = settings.tls ? "implicit" : "plain";
    try {
      return await this.sendOnce(target, settings, mail, mode, signal);
    } catch (err) {
      if (mode !== "implicit" || !isPlaintextAnswerToTls(err)) {
        throw this.toSendError(err, settings, false);
      }
    }
    // The server greeted in plaintext, so the handshake never started and nothing
    // was sent: trying again with STARTTLS cannot deliver the mail twice.
    try {
      return await this.sendOnce(target, settings, mail, "starttls", signal);
    } catch (err) {
      throw this.toSendError(err, settings, true);
    }
  }

  private async sendOnce(
    target: HostPort,
    settings: SmtpSettings,
    mail: OutgoingMail,
    mode: TlsMode,
    signal: AbortSignal | undefined,
  ): Promise<SendResult> {
    const transport = nodemailer.createTransport(this.transportOptions(target, settings, mode));
    try {
      // nodemailer reads `signal` from the message options; its types do not list it.
      const info = await transport.sendMail({ ...toMailOptions(mail), signal } as ReturnType<typeof toMailOptions>);
      // Known gap: when the server refuses some but not all recipients, nodemailer
      // delivers to the others and succeeds, and SendResult has no field for the
      // refused ones, so they go unreported. Notifications have one recipient, so
      // this is rare; a `rejected` list in SendResult would close it.
      return { messageId: info.messageId, response: info.response };
    } finally {
      transport.close();
    }
  }

  private transportOptions(
    target: HostPort,
    settings: SmtpSettings,
    mode: TlsMode,
  ): SMTPTransportOptions {
    return buildTransportOptions(target, settings, mode, this.connection);
  }

  private toSendError(err: unknown, settings: SmtpSettings, fellBack: boolean): DomainError {
    // A refusal of the outbound policy is already ours, and already clear.
    if (err instanceof DomainError) return err;
    return toSmtpSendError(err, {
      server: settings.host,
      password: settings.password,
      connectionTimeoutMs: this.connection.connectionTimeoutMs,
      socketTimeoutMs: this.connection.socketTimeoutMs,
      fellBack,
    });
  }
}

/**
 * Logs in with PLAIN when the server offers it, else LOGIN. nodemailer 10
 * prefers PLAIN over LOGIN by itself, but its built-in handlers refuse to run
 * with an empty user or password, and the contract is to log in whenever
 * either is set (a user with no password is a valid relay setup).
 */
function createLoginHandler(user: string, password: string) {
  return async (context: SMTPConnectionCustomAuthContext): Promise<void> => {
    const offered = context.authMethods.map((method) => method.toUpperCase());
    if (offered.includes("PLAIN")) {
      // RFC 4616: empty authorization identity, then user and password.
      await expectReply(context, `AUTH PLAIN ${base64(`\0${user}\0${password}`)}`, 235);
      return;
    }
    if (!offered.includes("LOGIN")) throw new AuthNotOfferedError(offered);

    await expectReply(context, "AUTH LOGIN", 334);
    await expectReply(context, base64(user), 334);
    await expectReply(context, base64(password), 235);
  };
}

async function expectReply(
  context: SMTPConnectionCustomAuthContext,
  command: string,
  status: number,
): Promise<void> {
  const reply = await context.sendCommand(command);
  // nodemailer attaches the server's last reply to this error, never the command.
  if (reply.status !== status) throw new Error(`expected ${status}`);
}

function base64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

const headerFields = ["fromAddress", "fromName", "replyTo", "subject", "messageId"] as const;

/** Throws DomainError "invalid" for CR/LF in a header field or no recipient. */
export function assertHeadersSafe(mail: OutgoingMail): void {
  for (const field of headerFields) {
    if (/[\r\n]/.test(mail[field] ?? "")) throw headerError(field);
  }
  if (mail.to.some((address) => /[\r\n]/.test(address))) throw headerError("to");
  if (mail.to.length === 0) {
    throw new DomainError("invalid", "SMTP-rcpt01", "the mail has no recipient");
  }
}

function headerError(field: string): DomainError {
  // The value stays out of the message: it is the caller's input and may be long.
  return new DomainError("invalid", "SMTP-hdr01", `mail header field ${field} contains CR or LF`);
}

/** nodemailer message options for a mail. */
export function toMailOptions(mail: OutgoingMail) {
  return {
    from: { name: mail.fromName, address: mail.fromAddress },
    to: [...mail.to],
    replyTo: mail.replyTo || undefined,
    subject: mail.subject,
    text: mail.text,
    html: mail.html,
    messageId: mail.messageId,
  };
}
