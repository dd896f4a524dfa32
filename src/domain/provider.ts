/**
 * The SMTP provider as the domain sees it: what an instance administrator
 * configures, plus the metadata that object details on the wire come from.
 */

/** One SMTP provider of an instance, as stored in the projection. */
export interface SmtpProvider {
  readonly instanceId: string;
  readonly id: string;
  readonly description: string;
  readonly senderAddress: string;
  readonly senderName: string;
  readonly replyToAddress: string;
  /** true: implicit TLS, falling back to STARTTLS; false: plain connection. */
  readonly tls: boolean;
  /** "host:port", IPv6 in brackets. */
  readonly host: string;
  readonly user: string;
  readonly isActive: boolean;
  /**
   * The password sealed by a SecretBox, bound to instance and provider id;
   * "" when no password is set. Only src/notify opens it, at send time.
   */
  readonly sealedPassword: string;
  /** Sequence of the newest event folded into this provider. */
  readonly sequence: bigint;
  readonly creationDate: Date;
  readonly changeDate: Date;
}

/** The settings an administrator may change with one update. */
export type ProviderSettings = Pick<
  SmtpProvider,
  | "description"
  | "senderAddress"
  | "senderName"
  | "replyToAddress"
  | "tls"
  | "host"
  | "user"
>;

/** Names of the settings, in a fixed order, for diffs and event payloads. */
export const settingNames = [
  "description",
  "senderAddress",
  "senderName",
  "replyToAddress",
  "tls",
  "host",
  "user",
] as const satisfies readonly (keyof ProviderSettings)[];
