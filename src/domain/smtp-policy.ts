/**
 * Where a stored SMTP password may go. Two rules, checked when settings are
 * saved or typed for a test mail, and again by src/notify when it connects:
 *
 * - No password in the clear: with tls=false the password is only sent to a
 *   loopback host (traffic that never leaves the machine), unless the
 *   operator allows plaintext AUTH for the whole server. Only a password
 *   counts: a user name alone carries no secret, and a relay that wants a
 *   user without a password keeps working.
 * - No redirection: a stored password is only reused with the host and user
 *   it was entered for. Changing either needs the password again, so an
 *   administrator (or a stolen admin token) cannot point the provider at a
 *   server of their own and collect the password. The user counts too: the
 *   password was entered as part of a login, and sending it under another
 *   name is a login nobody entered, also on the same host. TestSMTPConfig
 *   applies the same rule when it reuses a stored password.
 */
import { BlockList, isIP } from "node:net";
import { DomainError } from "./errors.js";

/** The operator's rule for AUTH over unencrypted connections. */
export interface PlaintextAuthPolicy {
  /** Send AUTH over plain connections to any host; default false. */
  readonly allowPlaintextAuth: boolean;
  /**
   * Whether loopback hosts are exempt from the refusal; default true. Tests
   * switch it off to watch the refusal against a sink on 127.0.0.1.
   */
  readonly plaintextAuthLoopbackExempt: boolean;
}

/** Safe by default: no plaintext AUTH, except to loopback. */
export const defaultPlaintextAuthPolicy: PlaintextAuthPolicy = {
  allowPlaintextAuth: false,
  plaintextAuthLoopbackExempt: true,
};

const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("::1", "ipv6");

/** True for an address in 127.0.0.0/8 or ::1 (also IPv4-mapped, ::ffff:127.0.0.1). */
export function isLoopbackAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return loopback.check(address, family === 6 ? "ipv6" : "ipv4");
}

/**
 * True when the host of "host:port" is a loopback address, or "localhost"
 * or a name under ".localhost", which RFC 6761 reserves for loopback.
 */
export function isLoopbackHost(hostPort: string): boolean {
  const host = hostOf(hostPort).toLowerCase().replace(/\.$/, "");
  return host === "localhost" || host.endsWith(".localhost") || isLoopbackAddress(host);
}

/** The host of "host:port" without brackets; the input is already validated. */
function hostOf(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(1, hostPort.indexOf("]"));
  const colon = hostPort.lastIndexOf(":");
  return colon < 0 ? hostPort : hostPort.slice(0, colon);
}

/** What a save or a test would send where. */
export interface Destination {
  /** "host:port". */
  readonly host: string;
  readonly tls: boolean;
  /** True when a password, typed or stored, would be sent. */
  readonly hasPassword: boolean;
}

/**
 * Throws DomainError "invalid" (SMTP-plain01) when `to` would send a
 * password over an unencrypted connection that `policy` does not allow.
 */
export function checkPlaintextAuth(policy: PlaintextAuthPolicy, to: Destination): void {
  if (to.tls || !to.hasPassword || policy.allowPlaintextAuth) return;
  if (policy.plaintextAuthLoopbackExempt && isLoopbackHost(to.host)) return;
  throw new DomainError(
    "invalid",
    "SMTP-plain01",
    "with tls false the password would be sent unencrypted; " +
      "set tls to true, or leave the password empty for a relay without login",
  );
}

/**
 * Throws DomainError "invalid" (SMTP-upd01) when a stored password would be
 * kept while the host or user changes. `stored` is the saved login,
 * `next` the one the update asks for.
 */
export function checkPasswordStaysWithLogin(
  stored: { readonly host: string; readonly user: string; readonly sealedPassword: string },
  next: { readonly host: string; readonly user: string },
): void {
  if (stored.sealedPassword === "") return;
  if (stored.host === next.host && stored.user === next.user) return;
  const changed = stored.host !== next.host ? "host" : "user";
  throw new DomainError(
    "invalid",
    "SMTP-upd01",
    `changing the ${changed} needs the password again: a stored password is only sent to the host and user it was entered for`,
  );
}
