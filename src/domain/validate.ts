/**
 * Input rules for SMTP provider settings: ZITADEL's length limits, plus the
 * checks that keep header injection and unusable hosts out of the store.
 * Every function throws DomainError "invalid" with a message naming the field.
 */
import { isIP } from "node:net";
import { DomainError } from "./errors.js";

/** Inclusive length bounds of a field, in UTF-16 code units like ZITADEL. */
export interface Limit {
  readonly min: number;
  readonly max: number;
}

/** The limits of WIRE.md, and ours where ZITADEL sets none. */
export const limits = {
  senderAddress: { min: 1, max: 200 },
  senderName: { min: 1, max: 200 },
  host: { min: 1, max: 500 },
  replyToAddress: { min: 0, max: 200 },
  description: { min: 0, max: 200 },
  // Not limited by ZITADEL; bounded here so a request cannot store megabytes.
  user: { min: 0, max: 500 },
  password: { min: 0, max: 1000 },
  id: { min: 1, max: 100 },
  stateChangeId: { min: 1, max: 200 },
  receiverAddress: { min: 1, max: 200 },
} as const satisfies Record<string, Limit>;

function invalid(id: string, message: string): DomainError {
  return new DomainError("invalid", id, message);
}

/** Throws unless `value`'s length is within `limit`. */
export function checkLength(field: string, value: string, limit: Limit): void {
  if (value.length < limit.min || value.length > limit.max) {
    const range = limit.min === 0 ? `at most ${limit.max}` : `${limit.min} to ${limit.max}`;
    throw invalid("SMTP-len01", `${field} must be ${range} characters long`);
  }
}

/** Throws when `value` holds a CR, LF or NUL, which would split a mail header. */
export function checkHeaderSafe(field: string, value: string): void {
  if (/[\r\n\0]/.test(value)) {
    throw invalid("SMTP-hdr01", `${field} must not contain line breaks`);
  }
}

// Deliberately simple: one "@", no spaces or angle brackets. The SMTP server
// has the last word; this only rejects what cannot be an address at all.
const addressPattern = /^[^\s@<>(),;:"\\]+@[^\s@<>(),;:"\\]+$/;

/** Throws unless `value` looks like a mail address. */
export function checkAddress(field: string, value: string): void {
  checkHeaderSafe(field, value);
  if (!addressPattern.test(value)) {
    throw invalid("SMTP-addr01", `${field} must be a mail address like name@example.com`);
  }
}

/**
 * Throws unless `value` is "host:port": a DNS name or IPv4 address, or an
 * IPv6 address in brackets, and a port from 1 to 65535.
 */
export function checkHostPort(field: string, value: string): void {
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : 0;
  if (!match || port < 1 || port > 65535) {
    throw invalid("SMTP-host01", `${field} must be host:port, e.g. smtp.example.com:587 or [2001:db8::1]:2525`);
  }
  const host = match[1];
  const ok = host.startsWith("[")
    ? isIP(host.slice(1, -1)) === 6
    : /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(host);
  if (!ok) {
    throw invalid("SMTP-host02", `${field} has an invalid host name or address`);
  }
}
