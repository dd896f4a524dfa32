/**
 * Every connection to an SMTP server, for test mails and pooled delivery
 * alike, is opened here, under the operator's outbound policy. nodemailer
 * asks for each connection through its `getSocket` hook, and gets a socket
 * that this module connected after four steps:
 *
 * 1. Resolve the host name once, with the policy's lookup.
 * 2. Refuse when any resolved address lies in a denied network (by default
 *    link-local and cloud metadata addresses). Checking what the name
 *    resolves to, at connect time, also refuses a name that points, or is
 *    rebound later, at such an address; checking every address refuses a
 *    name that mixes a harmless address with a denied one.
 * 3. Refuse a plain connection that would carry a password, unless every
 *    address is loopback (an exemption tests can switch off) or the operator
 *    allows plaintext AUTH for the whole server.
 * 4. Connect to the checked address itself, implicit TLS included, and give
 *    TLS the configured name for SNI and the certificate check. nodemailer
 *    receives a connected socket, so nothing looks the name up a second time.
 *
 * Refusals are DomainError "failed_precondition" (SMTP-deny01, SMTP-plain02):
 * the host is well formed, but the server's policy does not let it be
 * reached, or not that way. Connection failures keep the shape nodemailer
 * gives them (code, originalCode, command), so smtp-errors.ts reads them
 * as it reads nodemailer's own.
 */
import { lookup as dnsLookup } from "node:dns";
import { BlockList, connect as netConnect, isIP, type LookupFunction, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { DomainError } from "../domain/errors.js";
import { isLoopbackAddress, type PlaintextAuthPolicy } from "../domain/smtp-policy.js";
import type { TlsMode } from "./smtp-sender.js";

/**
 * Denied whatever the operator configures: link-local networks, where cloud
 * instance metadata (and its credentials) is served, and the metadata
 * addresses that lie outside them (AWS over IPv6, Alibaba Cloud). Private
 * ranges and loopback stay allowed: relays often live there. Operators of
 * multi-tenant deployments add theirs with --smtp-deny-network.
 */
export const defaultDeniedNetworks: readonly string[] = [
  "169.254.0.0/16",
  "fe80::/10",
  "169.254.169.254/32",
  "fd00:ec2::254/128",
  "100.100.100.200/32",
];

/** The operator's outbound rules; every field has a default. */
export interface OutboundPolicyOptions {
  /** Send AUTH over plain connections to any host; default false. */
  readonly allowPlaintextAuth?: boolean;
  /** Exempt loopback addresses from the plaintext-AUTH refusal; default true. */
  readonly plaintextAuthLoopbackExempt?: boolean;
  /** Networks denied on top of the defaults: CIDR ("10.0.0.0/8") or one address. */
  readonly denyNetworks?: readonly string[];
  /** Resolves host names; default dns.lookup. Tests pass their own. */
  readonly lookup?: LookupFunction;
}

/** One network of a deny list. */
export interface Network {
  readonly address: string;
  readonly prefix: number;
  readonly family: "ipv4" | "ipv6";
}

/**
 * Parses "192.0.2.0/24", "2001:db8::/32" or a single address (a /32 or
 * /128). Throws Error naming the text when it is neither.
 */
export function parseNetwork(text: string): Network {
  const [address, prefixText, extra] = text.trim().split("/");
  const version = isIP(address ?? "");
  const bits = version === 6 ? 128 : 32;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : -1;
  if (version === 0 || extra !== undefined || prefix < 0 || prefix > bits) {
    throw new Error(`${JSON.stringify(text)} is not a network: write an address or CIDR, e.g. 10.0.0.0/8 or fd00::/8`);
  }
  return { address, prefix, family: version === 6 ? "ipv6" : "ipv4" };
}

/** Where one transport connects, and what it would carry. */
export interface ConnectTarget {
  /** The configured "host:port", named in messages. */
  readonly hostPort: string;
  /** Host name or address, without brackets. */
  readonly host: string;
  readonly port: number;
  readonly mode: TlsMode;
  /** True when the session would send a password. */
  readonly carriesPassword: boolean;
  /** CA certificates for TLS; undefined for Node's root store. */
  readonly ca: Array<string | Buffer> | undefined;
  /** Time for lookup, connect and (implicit) TLS handshake together, ms. */
  readonly timeoutMs: number;
}

/** What nodemailer's getSocket hook hands back: a connected socket. */
export interface GuardedSocket {
  readonly connection: Socket;
  /** True when TLS is already up (implicit TLS). */
  readonly secured?: boolean;
}

/**
 * nodemailer's getSocket hook. `options` are the transport's, plus
 * `connectStartedAt` (ms since the epoch), which our deadline counts from.
 */
export type GetSocket = (options: object, callback: (err: Error | null, socket?: GuardedSocket) => void) => void;

/** The outbound policy of one server: deny list, plaintext-AUTH rule, lookup. */
export class OutboundPolicy implements PlaintextAuthPolicy {
  readonly allowPlaintextAuth: boolean;
  readonly plaintextAuthLoopbackExempt: boolean;
  private readonly denied = new BlockList();
  private readonly lookup: LookupFunction;

  /** Throws Error when a network of `denyNetworks` does not parse. */
  constructor(options: OutboundPolicyOptions = {}) {
    this.allowPlaintextAuth = options.allowPlaintextAuth ?? false;
    this.plaintextAuthLoopbackExempt = options.plaintextAuthLoopbackExempt ?? true;
    this.lookup = options.lookup ?? (dnsLookup as LookupFunction);
    for (const text of [...defaultDeniedNetworks, ...(options.denyNetworks ?? [])]) {
      const network = parseNetwork(text);
      this.denied.addSubnet(network.address, network.prefix, network.family);
    }
  }

  /** True when `address` lies in a denied network (IPv4-mapped IPv6 included). */
  isDenied(address: string): boolean {
    return this.denied.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
  }

  /** The getSocket hook for one target. */
  socketFor(target: ConnectTarget): GetSocket {
    return (options, callback) => {
      const startedAt = (options as { connectStartedAt?: number }).connectStartedAt ?? Date.now();
      const deadline = startedAt + target.timeoutMs;
      this.open(target, deadline).then(
        (socket) => callback(null, socket),
        (err: Error) => callback(err),
      );
    };
  }

  /**
   * Resolves, checks and connects, by the steps in the module comment.
   * Rejects with DomainError "failed_precondition" for a refusal, or with a
   * connection error shaped like nodemailer's.
   */
  async open(target: ConnectTarget, deadline: number): Promise<GuardedSocket> {
    const addresses = await this.resolve(target, deadline);
    for (const address of addresses) {
      if (this.isDenied(address)) throw deniedError(target, address);
    }
    if (this.refusesPlaintext(target, addresses)) throw plaintextError(target);
    return connectFirst(target, addresses, deadline);
  }

  private refusesPlaintext(target: ConnectTarget, addresses: readonly string[]): boolean {
    if (target.mode !== "plain" || !target.carriesPassword || this.allowPlaintextAuth) return false;
    return !(this.plaintextAuthLoopbackExempt && addresses.every(isLoopbackAddress));
  }

  private resolve(target: ConnectTarget, deadline: number): Promise<string[]> {
    if (isIP(target.host)) return Promise.resolve([target.host]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(timeoutError("CONNECT_TIMEOUT")), Math.max(deadline - Date.now(), 1));
      this.lookup(target.host, { all: true }, (err, found) => {
        clearTimeout(timer);
        const addresses = Array.isArray(found) ? found.map((entry) => entry.address) : [found];
        const failure = err ?? (addresses.length === 0 ? Object.assign(new Error("no address"), { code: "ENOTFOUND" }) : undefined);
        if (failure) reject(nodemailerShaped(failure, "EDNS"));
        else resolve(addresses);
      });
    });
  }
}

function deniedError(target: ConnectTarget, address: string): DomainError {
  return new DomainError(
    "failed_precondition",
    "SMTP-deny01",
    `SMTP host ${target.hostPort} resolves to ${address}, an address this server does not connect to`,
  );
}

function plaintextError(target: ConnectTarget): DomainError {
  return new DomainError(
    "failed_precondition",
    "SMTP-plain02",
    `the password is not sent unencrypted to ${target.hostPort}; set tls to true`,
  );
}

/** Tries the addresses in order, each with an equal share of the time left. */
async function connectFirst(
  target: ConnectTarget,
  addresses: readonly string[],
  deadline: number,
): Promise<GuardedSocket> {
  let lastError: Error | undefined;
  for (const [index, address] of addresses.entries()) {
    const share = (deadline - Date.now()) / (addresses.length - index);
    try {
      return await connectOnce(target, address, Date.now() + Math.max(share, 1));
    } catch (err) {
      lastError = err as Error;
    }
  }
  throw lastError ?? timeoutError("CONNECT_TIMEOUT");
}

function connectOnce(target: ConnectTarget, address: string, deadline: number): Promise<GuardedSocket> {
  const implicit = target.mode === "implicit";
  // The configured name, not the address, is what the certificate must
  // name; an IP literal is checked against the certificate's IP entries.
  const servername = isIP(target.host) ? undefined : target.host;
  const socket: Socket = implicit
    ? tlsConnect({ host: address, port: target.port, servername, ca: target.ca, rejectUnauthorized: true })
    : netConnect({ host: address, port: target.port });
  return new Promise((resolve, reject) => {
    let connected = false;
    const onConnect = () => (connected = true);
    const settle = (err: Error | undefined) => {
      clearTimeout(timer);
      socket.off("connect", onConnect).off("error", onError).off(implicit ? "secureConnect" : "connect", onReady);
      if (!err) return resolve({ connection: socket, secured: implicit || undefined });
      socket.destroy();
      reject(err);
    };
    const onError = (err: Error) => settle(nodemailerShaped(err, "ESOCKET"));
    const onReady = () => settle(undefined);
    const onTimeout = () => settle(timeoutError(connected && implicit ? "UPGRADE_TIMEOUT" : "CONNECT_TIMEOUT"));
    const timer = setTimeout(onTimeout, Math.max(deadline - Date.now(), 1));
    socket.on("connect", onConnect).once("error", onError).once(implicit ? "secureConnect" : "connect", onReady);
  });
}

/** Gives a Node error nodemailer's shape: its own code moves to originalCode. */
function nodemailerShaped(err: Error, code: string): Error {
  const shaped = err as Error & { code?: string; originalCode?: string; command?: string };
  if (shaped.code && shaped.code !== code && !shaped.originalCode) shaped.originalCode = shaped.code;
  shaped.code = code;
  shaped.command = "CONN";
  return shaped;
}

function timeoutError(timeoutType: "CONNECT_TIMEOUT" | "UPGRADE_TIMEOUT"): Error {
  const text = timeoutType === "CONNECT_TIMEOUT" ? "Connection timeout" : "TLS handshake timed out";
  return Object.assign(new Error(text), {
    code: "ETIMEDOUT",
    timeoutType,
    command: "CONN",
  });
}
