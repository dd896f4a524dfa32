/**
 * Every setting of the `smtpgate` command: its flag, environment variable,
 * default and meaning, read and checked once at startup. Flags win over
 * environment variables (SMTPGATE_<NAME>, e.g. SMTPGATE_DATA_DIR).
 */
import { parseArgs } from "node:util";

/** One setting of a command. */
export interface SettingSpec {
  readonly flag: string;
  readonly env: string;
  readonly kind: "string" | "list" | "boolean";
  readonly default?: string;
  readonly help: string;
}

/** Thrown for bad command-line input; the CLI prints it and exits with 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Settings shared by all commands. */
export const dataDirSpec: SettingSpec = {
  flag: "data-dir",
  env: "SMTPGATE_DATA_DIR",
  kind: "string",
  default: "./data",
  help: "directory of the embedded SQLite store, master key and bootstrap token",
};

/** Where the store is: PostgreSQL shared by replicas, or SQLite in the data dir. */
export const databaseUrlSpec: SettingSpec = {
  flag: "database-url",
  env: "SMTPGATE_DATABASE_URL",
  kind: "string",
  help: "postgres://user@host:5432/db to share one PostgreSQL database among replicas (needs SMTPGATE_MASTERKEY); embedded SQLite in --data-dir when absent",
};

/** Settings of `smtpgate serve`. */
export const serveSpecs: readonly SettingSpec[] = [
  { flag: "port", env: "SMTPGATE_PORT", kind: "string", default: "8080", help: "TCP port for all protocols (0 picks a free one)" },
  { flag: "host", env: "SMTPGATE_HOST", kind: "string", default: "127.0.0.1", help: "address to listen on" },
  dataDirSpec,
  databaseUrlSpec,
  { flag: "log-level", env: "SMTPGATE_LOG_LEVEL", kind: "string", default: "info", help: "debug, info, warn or error" },
  { flag: "cors-origin", env: "SMTPGATE_CORS_ORIGIN", kind: "list", help: "browser origin allowed to call the API, e.g. https://console.example.com (repeatable; env: comma-separated; none: same origin only)" },
  { flag: "smtp-ca-file", env: "SMTPGATE_SMTP_CA_FILE", kind: "string", help: "PEM bundle of extra CAs trusted for SMTP TLS (system roots stay trusted)" },
  { flag: "smtp-allow-plaintext-auth", env: "SMTPGATE_SMTP_ALLOW_PLAINTEXT_AUTH", kind: "boolean", help: "allow sending SMTP passwords over unencrypted connections (tls=false) to hosts that are not loopback; off by default, and then such settings are refused when saved and when sending" },
  { flag: "smtp-deny-network", env: "SMTPGATE_SMTP_DENY_NETWORK", kind: "list", help: "network (CIDR or address) SMTP hosts may not resolve to, checked on every connection, on top of the always-denied link-local and cloud metadata addresses, e.g. 10.0.0.0/8 (repeatable; env: comma-separated)" },
  { flag: "test-mail-rate", env: "SMTPGATE_TEST_MAIL_RATE", kind: "string", default: "10", help: "test mails per minute per instance, also the burst; 0 for no limit" },
  { flag: "send-rate", env: "SMTPGATE_SEND_RATE", kind: "string", default: "100", help: "SendMail calls per second per instance, also the burst; 0 for no limit" },
  { flag: "mail-max-age", env: "SMTPGATE_MAIL_MAX_AGE", kind: "string", default: "24h", help: "how long a mail may wait for delivery (retrying, or waiting for a provider) before it fails, as a number with s, m, h or d" },
  { flag: "mail-retention", env: "SMTPGATE_MAIL_RETENTION", kind: "string", default: "7d", help: "how long a sent or failed mail is kept, for GetMail and its idempotency key, before it is deleted, as a number with s, m, h or d" },
];

/** Parsed values by flag name. */
export type Values = Record<string, string | string[] | boolean | undefined>;

/**
 * Parses `args` against `specs`, filling gaps from `env` and defaults.
 * Throws UsageError for unknown flags or missing values.
 */
export function readSettings(specs: readonly SettingSpec[], args: string[], env: NodeJS.ProcessEnv): Values {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = { help: { type: "boolean" } };
  for (const s of specs) options[s.flag] = { type: s.kind === "boolean" ? "boolean" : "string", multiple: s.kind === "list" };
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: false, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const values: Values = { help: parsed.values.help as boolean | undefined };
  for (const s of specs) values[s.flag] = (parsed.values[s.flag] as Values[string]) ?? fromEnv(s, env[s.env]);
  return values;
}

function fromEnv(spec: SettingSpec, raw: string | undefined): string | string[] | boolean | undefined {
  if (raw === undefined || raw === "") return spec.kind === "list" ? (spec.default ? [spec.default] : []) : spec.default;
  if (spec.kind === "list") return raw.split(",").map((v) => v.trim()).filter(Boolean);
  if (spec.kind === "boolean") return raw === "true" || raw === "1";
  return raw;
}

/** The --help text of a command. */
export function usage(command: string, summary: string, specs: readonly SettingSpec[]): string {
  const lines = [`Usage: smtpgate ${command} [options]`, "", summary, "", "Options:"];
  for (const s of specs) {
    const value = s.kind === "boolean" ? "" : ` <${s.kind === "list" ? "value, repeatable" : "value"}>`;
    const dflt = s.default ? ` (default: ${s.default})` : "";
    lines.push(`  --${s.flag}${value}`, `      ${s.help}${dflt}; env ${s.env}`);
  }
  lines.push("  --help", "      show this help");
  return lines.join("\n");
}

/** A port number from text. Throws UsageError unless 0..65535. */
export function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new UsageError(`--port must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  return port;
}

/** A log level from text. Throws UsageError for unknown levels. */
export function parseLogLevel(text: string): "debug" | "info" | "warn" | "error" {
  if (text === "debug" || text === "info" || text === "warn" || text === "error") return text;
  throw new UsageError(`--log-level must be debug, info, warn or error, got ${JSON.stringify(text)}`);
}

/** A rate (calls per time unit) from text. Throws UsageError unless a number >= 0. */
export function parseRate(flag: string, text: string): number {
  const rate = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(rate)) {
    throw new UsageError(`--${flag} must be a number of calls, 0 for no limit, got ${JSON.stringify(text)}`);
  }
  return rate;
}

const durationUnits: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration from text such as "90s", "15m", "24h" or "7d", in ms. Throws
 * UsageError, naming `flag`, unless it is a positive whole number with one
 * of those units.
 */
export function parseDuration(flag: string, text: string): number {
  const match = /^(\d+)([smhd])$/.exec(text);
  const ms = match ? Number(match[1]) * durationUnits[match[2]] : 0;
  if (!match || ms <= 0 || !Number.isSafeInteger(ms)) {
    throw new UsageError(`--${flag} must be a positive number followed by s, m, h or d (e.g. 24h), got ${JSON.stringify(text)}`);
  }
  return ms;
}
