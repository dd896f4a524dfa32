/**
 * Pooled nodemailer transports for the outbox, one per provider, keyed by the
 * provider's id and sequence. When the sequence moves (new password, new
 * settings), the next mail gets a new transport and the old one is closed
 * once its in-flight mails are done, so no mail after a change uses stale
 * credentials and none in flight is cut off.
 */
import nodemailer, { type Transporter } from "nodemailer";
import { DomainError } from "../domain/errors.js";
import type { OutgoingMail, SendResult, SmtpSettings } from "../domain/mail.js";
import { isPlaintextAnswerToTls, toSmtpSendError } from "./smtp-errors.js";
import {
  assertHeadersSafe,
  buildTransportOptions,
  connectionOptions,
  parseHostPort,
  toMailOptions,
  type ConnectionOptions,
  type NodemailerSenderOptions,
  type TlsMode,
} from "./smtp-sender.js";

/** Which provider version a send is for. */
export interface PoolKey {
  readonly providerId: string;
  readonly sequence: bigint;
}

interface Entry {
  readonly sequence: bigint;
  readonly settings: SmtpSettings;
  mode: TlsMode;
  transport: Transporter;
  inFlight: number;
  retired: boolean;
  /** performance.now() of the last send. */
  lastUsed: number;
}

async function deliver(transport: Transporter, mail: OutgoingMail): Promise<SendResult> {
  const info = await transport.sendMail(toMailOptions(mail));
  return { messageId: info.messageId ?? mail.messageId ?? "", response: info.response ?? "" };
}

/** Options of the pool, on top of the sender's connection options. */
export interface TransportPoolOptions extends NodemailerSenderOptions {
  /** Connections per provider; default 2. */
  readonly maxConnections?: number;
}

/** Keeps one pooled transport per provider version. */
export class TransportPool {
  private readonly entries = new Map<string, Entry>();
  /** Retired entries whose last sends are still running; closeAll must reach them too. */
  private readonly draining = new Set<Entry>();
  private readonly connection: ConnectionOptions;
  private readonly maxConnections: number;

  constructor(options: TransportPoolOptions = {}) {
    this.connection = connectionOptions(options);
    this.maxConnections = options.maxConnections ?? 2;
  }

  /** Number of providers with an open transport. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Per provider with an open transport: connections busy sending (the pool
   * opens one per concurrent send, up to maxConnections) and sends waiting
   * for one. Retired transports still finishing their sends are left out.
   */
  usage(): Array<{ providerId: string; busyConnections: number; waitingSends: number }> {
    return [...this.entries].map(([providerId, entry]) => ({
      providerId,
      busyConnections: Math.min(entry.inFlight, this.maxConnections),
      waitingSends: Math.max(0, entry.inFlight - this.maxConnections),
    }));
  }

  /**
   * Sends through the provider's pooled transport, replacing it first when
   * `key.sequence` differs from the one it was built for. Throws DomainError
   * "invalid" for bad headers, "failed_precondition" when the outbound policy
   * refuses the connection, and SmtpSendError for wire failures.
   */
  async send(key: PoolKey, settings: SmtpSettings, mail: OutgoingMail): Promise<SendResult> {
    assertHeadersSafe(mail);
    const entry = this.entryFor(key, settings);
    entry.inFlight++;
    entry.lastUsed = performance.now();
    try {
      return await this.sendOn(entry, mail);
    } finally {
      entry.inFlight--;
      if (entry.retired && entry.inFlight === 0) {
        entry.transport.close();
        this.draining.delete(entry);
      }
    }
  }

  private async sendOn(entry: Entry, mail: OutgoingMail): Promise<SendResult> {
    try {
      return await deliver(entry.transport, mail);
    } catch (err) {
      if (entry.mode !== "implicit" || !isPlaintextAnswerToTls(err)) throw this.toError(err, entry, false);
    }
    // The server greeted in plaintext: nothing was sent. From now on this
    // provider version uses STARTTLS.
    this.rebuild(entry, "starttls");
    try {
      return await deliver(entry.transport, mail);
    } catch (err) {
      throw this.toError(err, entry, true);
    }
  }

  private entryFor(key: PoolKey, settings: SmtpSettings): Entry {
    const current = this.entries.get(key.providerId);
    if (current && current.sequence === key.sequence) return current;
    if (current) this.retire(current);

    const mode: TlsMode = settings.tls ? "implicit" : "plain";
    const entry: Entry = { sequence: key.sequence, settings, mode, transport: this.open(settings, mode), inFlight: 0, retired: false, lastUsed: performance.now() };
    this.entries.set(key.providerId, entry);
    return entry;
  }

  private open(settings: SmtpSettings, mode: TlsMode): Transporter {
    const options = buildTransportOptions(parseHostPort(settings.host), settings, mode, this.connection);
    return nodemailer.createTransport({ ...options, pool: true, maxConnections: this.maxConnections, maxMessages: 100 });
  }

  private rebuild(entry: Entry, mode: TlsMode): void {
    const old = entry.transport;
    entry.mode = mode;
    entry.transport = this.open(entry.settings, mode);
    old.close();
  }

  private retire(entry: Entry): void {
    entry.retired = true;
    if (entry.inFlight === 0) entry.transport.close();
    else this.draining.add(entry);
  }

  private toError(err: unknown, entry: Entry, fellBack: boolean): DomainError {
    // A refusal of the outbound policy (see outbound-guard.ts) passes as it is.
    if (err instanceof DomainError) return err;
    return toSmtpSendError(err, {
      server: entry.settings.host,
      password: entry.settings.password,
      connectionTimeoutMs: this.connection.connectionTimeoutMs,
      socketTimeoutMs: this.connection.socketTimeoutMs,
      fellBack,
    });
  }

  /** Drops the transport of a provider that no longer exists or is inactive. */
  forget(providerId: string): void {
    const entry = this.entries.get(providerId);
    if (!entry) return;
    this.entries.delete(providerId);
    this.retire(entry);
  }

  /** Closes transports of providers not used for `idleMs` (removed, inactive or quiet ones). */
  closeIdle(idleMs: number): void {
    const cutoff = performance.now() - idleMs;
    for (const [providerId, entry] of this.entries) {
      if (entry.inFlight === 0 && entry.lastUsed < cutoff) this.forget(providerId);
    }
  }

  /**
   * Closes every transport, current and retired, including connections in
   * the middle of a send: those sends fail at once. Used on shutdown, after
   * the grace period, so that a server that never answers cannot keep the
   * process alive for its socket timeout.
   */
  closeAll(): void {
    for (const entry of [...this.entries.values(), ...this.draining]) entry.transport.close({ force: true });
    this.entries.clear();
    this.draining.clear();
  }
}
