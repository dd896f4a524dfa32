/**
 * A real SMTP server for tests, built on smtp-server: it listens on a free
 * port, records what clients sent (mails, AUTH attempts, connections) and can
 * refuse logins, recipients or one command on request. Also makes throwaway
 * TLS certificates with the openssl CLI.
 */
import type { Socket } from "node:net";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  SMTPServer,
  type SMTPServerAuthentication,
  type SMTPServerDataStream,
  type SMTPServerOptions,
  type SMTPServerSession,
} from "smtp-server";

/** The SMTP step a one-time failure applies to. */
export type SinkStage = "mail" | "rcpt" | "data";

/** A reply the sink gives once instead of accepting, e.g. 451 at "rcpt". */
export interface SinkFailure {
  readonly stage: SinkStage;
  /** SMTP reply code, e.g. 451 or 552. */
  readonly code: number;
  readonly message: string;
}

/** How the sink behaves; all fields are optional. */
export interface SmtpSinkOptions {
  /** Accepted logins, user to password. Empty or absent: every login fails. */
  readonly users?: Record<string, string>;
  /** Accept mail without a login; default true when no users are given. */
  readonly authOptional?: boolean;
  /** SASL methods to advertise, in order; default LOGIN then PLAIN. [] hides AUTH. */
  readonly authMethods?: ReadonlyArray<"PLAIN" | "LOGIN">;
  /** none: plain only; starttls: plain, upgradable; implicit: TLS from the first byte. */
  readonly tls?: "none" | "starttls" | "implicit";
  /** PEM key for TLS; smtp-server's built-in (expired) pair is used without key and cert. */
  readonly key?: string | Buffer;
  /** PEM certificate for TLS, e.g. from createTestCertificates. */
  readonly cert?: string | Buffer;
  /** Returns a reply text to refuse a recipient with 550, or undefined to accept it. */
  readonly rejectRecipients?: (address: string) => string | undefined;
  /** Refuses one command once, then behaves normally. */
  readonly failNext?: SinkFailure;
  /** Address to listen on; default 127.0.0.1. */
  readonly listenHost?: string;
}

/** One mail the sink accepted. */
export interface ReceivedMail {
  readonly from: string;
  readonly to: readonly string[];
  /** The message as sent, headers and body, CRLF line ends. */
  readonly raw: string;
  /** Header fields by lowercase name, unfolded; the first one wins. */
  readonly headers: Readonly<Record<string, string>>;
  /** The logged-in user, if any. */
  readonly user?: string;
  /** True when the session was encrypted (implicit TLS or after STARTTLS). */
  readonly secure: boolean;
}

/** One AUTH exchange the sink completed, successful or not. */
export interface AuthAttempt {
  readonly method: string;
  readonly username: string;
  readonly password: string;
  readonly accepted: boolean;
  readonly secure: boolean;
}

/** A running sink. Call stop() when done so the test process can exit. */
export interface SmtpSink {
  readonly port: number;
  /** "127.0.0.1:PORT", or "[::1]:PORT" when listening on ::1. */
  readonly hostPort: string;
  readonly messages: ReceivedMail[];
  readonly authAttempts: AuthAttempt[];
  /** Number of TCP connections accepted so far. */
  readonly connectionCount: () => number;
  /** Errors the server reported, such as a client aborting the TLS handshake. */
  readonly errors: Error[];
  /** Resolves once `count` mails arrived; rejects after `timeoutMs` (default 2000). */
  waitForMessages(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  /** Adds or changes an accepted login. */
  setPassword(user: string, password: string): void;
  /** Refuses one command once, like the failNext option. */
  failNext(failure: SinkFailure): void;
  /** Cuts every open connection, as a server does that ends old sessions. */
  dropConnections(): void;
  /** Closes the listener and every open connection. */
  stop(): Promise<void>;
}

/** Starts a sink on a free port. Rejects when it cannot listen (e.g. no IPv6). */
export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const users = new Map(Object.entries(options.users ?? {}));
  const state = { connections: 0, failure: options.failNext };
  const messages: ReceivedMail[] = [];
  const authAttempts: AuthAttempt[] = [];
  const errors: Error[] = [];
  const waiters = new Set<() => void>();

  const takeFailure = (stage: SinkStage): Error | undefined => {
    if (state.failure?.stage !== stage) return undefined;
    const failure = state.failure;
    state.failure = undefined;
    return replyError(failure.code, failure.message);
  };

  const server = new SMTPServer({
    ...tlsOptions(options),
    ...authSettings(options, users.size),
    disableReverseLookup: true,
    closeTimeout: 200,
    logger: false,
    onAuth(auth, session, callback) {
      const accepted = isAccepted(users, auth);
      authAttempts.push(toAttempt(auth, accepted, session));
      if (!accepted) return callback(replyError(535, "5.7.8 Authentication failed"));
      callback(null, { user: auth.username });
    },
    onMailFrom(_address, _session, callback) {
      callback(takeFailure("mail"));
    },
    onRcptTo(address, _session, callback) {
      const refusal = options.rejectRecipients?.(address.address);
      callback(takeFailure("rcpt") ?? (refusal ? replyError(550, refusal) : undefined));
    },
    onData(stream, session, callback) {
      readStream(stream).then(
        (raw) => {
          const failure = takeFailure("data");
          if (failure) return callback(failure);
          messages.push(toReceivedMail(raw, session));
          waiters.forEach((wake) => wake());
          callback(null, `Ok: queued as ${messages.length}`);
        },
        (err: Error) => callback(err),
      );
    },
  });
  server.on("error", (err) => errors.push(err));
  // Counted at the TCP level: smtp-server's onConnect runs only after a TLS handshake
  // succeeded, or not at all when the client leaves before the greeting.
  const sockets = new Set<Socket>();
  server.server.on("connection", (socket: Socket) => {
    state.connections += 1;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  const port = await listen(server, options.listenHost ?? "127.0.0.1");
  const host = options.listenHost ?? "127.0.0.1";
  return {
    port,
    hostPort: host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`,
    messages,
    authAttempts,
    errors,
    connectionCount: () => state.connections,
    waitForMessages: (count, timeoutMs = 2000) =>
      waitFor(() => messages.length >= count, waiters, timeoutMs).then(() => messages),
    setPassword: (user, password) => void users.set(user, password),
    failNext: (failure) => void (state.failure = failure),
    dropConnections: () => sockets.forEach((socket) => socket.destroy()),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function tlsOptions(options: SmtpSinkOptions): SMTPServerOptions {
  const mode = options.tls ?? "none";
  const keyPair = options.key && options.cert ? { key: options.key, cert: options.cert } : {};
  if (mode === "implicit") return { secure: true, ...keyPair };
  // For "none", authSettings disables STARTTLS along with its other commands.
  return mode === "starttls" ? { secure: false, ...keyPair } : { secure: false };
}

function authSettings(options: SmtpSinkOptions, userCount: number): SMTPServerOptions {
  const methods = options.authMethods ?? ["LOGIN", "PLAIN"];
  const hidesAuth = methods.length === 0;
  const disabled = (options.tls ?? "none") === "none" ? ["STARTTLS"] : [];
  return {
    // smtp-server falls back to LOGIN and PLAIN for an empty list, so [] disables AUTH.
    authMethods: hidesAuth ? ["PLAIN"] : [...methods],
    disabledCommands: hidesAuth ? [...disabled, "AUTH"] : disabled,
    authOptional: options.authOptional ?? (hidesAuth || userCount === 0),
    // Without TLS the sink would otherwise hide AUTH, and tests of plain logins need it.
    allowInsecureAuth: (options.tls ?? "none") === "none",
  };
}

function isAccepted(users: Map<string, string>, auth: SMTPServerAuthentication): boolean {
  const expected = users.get(auth.username ?? "");
  return expected !== undefined && expected === auth.password;
}

function toAttempt(
  auth: SMTPServerAuthentication,
  accepted: boolean,
  session: SMTPServerSession,
): AuthAttempt {
  return {
    method: auth.method,
    username: auth.username ?? "",
    password: auth.password ?? "",
    accepted,
    secure: session.secure,
  };
}

function replyError(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

async function readStream(stream: SMTPServerDataStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function toReceivedMail(raw: string, session: SMTPServerSession): ReceivedMail {
  const { mailFrom, rcptTo } = session.envelope;
  return {
    from: mailFrom ? mailFrom.address : "",
    to: rcptTo.map((recipient) => recipient.address),
    raw,
    headers: parseHeaders(raw),
    user: session.user as string | undefined,
    secure: session.secure,
  };
}

function parseHeaders(raw: string): Record<string, string> {
  const end = raw.indexOf("\r\n\r\n");
  const block = (end < 0 ? raw : raw.slice(0, end)).replace(/\r\n[ \t]+/g, " ");
  const headers: Record<string, string> = {};
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    if (colon > 0 && !(name in headers)) headers[name] = line.slice(colon + 1).trim();
  }
  return headers;
}

function listen(server: SMTPServer, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(0, host, () => {
      server.server.off("error", reject);
      const address = server.server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
}

function waitFor(
  isDone: () => boolean,
  waiters: Set<() => void>,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (isDone()) return resolve();
    const wake = () => {
      if (!isDone()) return;
      cleanUp();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanUp();
      reject(new Error(`sink: not enough mail within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanUp = () => {
      clearTimeout(timer);
      waiters.delete(wake);
    };
    waiters.add(wake);
  });
}

/** A throwaway CA and a server certificate it signed, all PEM. */
export interface TestCertificates {
  /** The CA certificate, to trust in the client. */
  readonly ca: string;
  /** Server key and certificate, valid for localhost, 127.0.0.1 and ::1. */
  readonly key: string;
  readonly cert: string;
}

const run = promisify(execFile);

/**
 * Creates a CA and a server certificate valid for one day with the openssl
 * CLI, in a temp directory that is removed afterwards; keys stay in memory
 * only. Rejects when openssl is missing.
 */
export async function createTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), "smtpgate-certs-"));
  const path = (name: string) => join(dir, name);
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  try {
    await run("openssl", [
      "req", "-x509", ...newKey, "-keyout", path("ca.key"), "-out", path("ca.crt"),
      "-days", "1", "-subj", "/CN=smtpgate test CA",
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    await run("openssl", [
      "req", ...newKey, "-keyout", path("server.key"), "-out", path("server.csr"),
      "-subj", "/CN=localhost",
    ]);
    await writeFile(path("server.ext"), serverExtensions);
    await run("openssl", [
      "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
      "-set_serial", `0x${Date.now().toString(16)}`, "-days", "1",
      "-extfile", path("server.ext"), "-out", path("server.crt"),
    ]);
    const [ca, key, cert] = await Promise.all(
      ["ca.crt", "server.key", "server.crt"].map((name) => readFile(path(name), "utf8")),
    );
    return { ca, key, cert };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const serverExtensions = [
  "basicConstraints=CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=serverAuth",
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
  "",
].join("\n");
