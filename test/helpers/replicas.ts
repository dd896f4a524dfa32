/**
 * Several smtpgate replicas on one PostgreSQL database, for test/replicas/
 * and bench/postgres.ts: replicas in this process (startTestServer on a
 * shared databaseUrl), replicas as child processes a test can kill, which
 * replica sent which mail (from their logs), and an SMTP sink that records
 * when each login and mail arrived and can hold its answer to DATA back.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import type { Socket } from "node:net";
import { join } from "node:path";
import type { Client } from "@connectrpc/connect";
import { SMTPServer } from "smtp-server";
import type { Mail, NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import type { WorkerOptions } from "../../src/notify/outbox-worker.js";
import { adminTokenFile, type ServerConfig } from "../../src/server.js";
import { childEnv, repoRoot } from "./child-server.js";
import { eventually } from "./notify.js";
import { startTestServer, type TestServer } from "./server.js";

/** The master key every replica of this test process shares, base64. */
export const testMasterKey = randomBytes(32).toString("base64");

/** Outbox tuning a replica may be given. */
export type OutboxSettings = Partial<Omit<WorkerOptions, "workerId">>;

/** What replica-main.ts reads from SMTPGATE_TEST_REPLICA. */
export interface ReplicaSettings {
  readonly databaseUrl: string;
  readonly dataDir: string;
  readonly outbox?: OutboxSettings;
}

/**
 * Starts a replica in this process on `databaseUrl`, with its own data
 * directory. Only the replica that bootstrapped the database has admin.pat;
 * pass that replica's `ownerToken` to the others.
 */
export async function startReplica(
  databaseUrl: string,
  options: { ownerToken?: string; outbox?: ServerConfig["outbox"] } = {},
): Promise<TestServer> {
  const dataDir = prepareDataDir(options.ownerToken);
  return startTestServer({ dataDir, databaseUrl, masterKeyEnv: testMasterKey, outbox: options.outbox });
}

function prepareDataDir(ownerToken: string | undefined): string {
  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-replica-"));
  if (ownerToken) writeFileSync(join(dataDir, adminTokenFile), ownerToken + "\n", { mode: 0o600 });
  return dataDir;
}

/** A replica running as a child process (test/helpers/replica-main.ts). */
export interface ReplicaProcess {
  readonly pid: number;
  readonly port: number;
  readonly baseUrl: string;
  /** Every JSON log line it wrote so far. */
  readonly lines: string[];
  stderr(): string;
  /** True until the process exited. */
  isAlive(): boolean;
  /** Sends `signal` (default SIGTERM) and resolves once it exited. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ReplicaProcess>();

/**
 * Starts a replica process on `databaseUrl` and resolves once it listens.
 * Rejects (and kills it) when it exits first or takes over 20 s.
 */
export function startReplicaProcess(
  databaseUrl: string,
  options: { ownerToken?: string; outbox?: OutboxSettings } = {},
): Promise<ReplicaProcess> {
  const dataDir = prepareDataDir(options.ownerToken);
  const settings: ReplicaSettings = { databaseUrl, dataDir, outbox: options.outbox };
  const child = spawn(process.execPath, [join(repoRoot, "dist", "test", "helpers", "replica-main.js")], {
    cwd: repoRoot,
    env: childEnv({ SMTPGATE_MASTERKEY: testMasterKey, SMTPGATE_TEST_REPLICA: JSON.stringify(settings) }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const errors: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => {
      rmSync(dataDir, { recursive: true, force: true });
      resolve({ code, signal });
    });
  });
  let partial = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const parts = (partial + chunk.toString("utf8")).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts.filter(Boolean));
  });
  child.stderr.on("data", (chunk: Buffer) => errors.push(chunk.toString("utf8")));
  const isAlive = () => child.exitCode === null && child.signalCode === null;

  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      const listening = lines.find((l) => l.includes('"event":"server.listening"'));
      if (!listening && isAlive() && Date.now() - started < 20_000) return;
      clearInterval(poll);
      if (!listening) {
        child.kill("SIGKILL");
        return reject(new Error(`replica process did not start; stderr: ${errors.join("")}`));
      }
      const port = Number((JSON.parse(listening) as { port: number }).port);
      const replica: ReplicaProcess = {
        pid: child.pid!,
        port,
        baseUrl: `http://127.0.0.1:${port}`,
        lines,
        stderr: () => errors.join(""),
        isAlive,
        async stop(signal = "SIGTERM") {
          if (isAlive()) child.kill(signal);
          const result = await exited;
          children.delete(replica);
          return result;
        },
      };
      children.add(replica);
      resolve(replica);
    }, 20);
  });
}

/** Kills every replica process still running, so `node --test` can exit. */
export async function stopReplicaProcesses(): Promise<void> {
  await Promise.all([...children].map((c) => c.stop("SIGKILL")));
}

/** Ids of the mails a replica logged as sent, from its JSON log lines. */
export function sentMailIds(lines: readonly string[]): string[] {
  return lines
    .filter((l) => l.includes('"event":"mail.sent"'))
    .map((l) => (JSON.parse(l) as { mailId: string }).mailId);
}

/** Queues `count` mails with subjects "<label> <i>" through `notify`; resolves their ids in order. */
export async function queueMails(notify: Client<typeof NotificationService>, label: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { mail } = await notify.sendMail({ to: [`r${i}@example.com`], subject: `${label} ${i}`, textBody: "x" });
    ids.push(mail!.id);
  }
  return ids;
}

/** Polls GetMail until every mail of `ids` passes `check`; rejects after `timeoutMs` naming `what`. */
export async function waitForMails(
  notify: Client<typeof NotificationService>,
  ids: readonly string[],
  check: (mail: Mail) => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<Mail[]> {
  const read = () => Promise.all(ids.map(async (id) => (await notify.getMail({ id })).mail!));
  await eventually(async () => (await read()).every(check), timeoutMs, what);
  return read();
}

/** One mail the sink took in. */
export interface SinkArrival {
  readonly subject: string;
  readonly messageId: string;
  readonly user: string;
  /** performance.now() when its data was in. */
  readonly at: number;
  /** False while the sink holds back its answer. */
  answered: boolean;
}

/** One login attempt. */
export interface SinkLogin {
  readonly username: string;
  readonly password: string;
  readonly accepted: boolean;
  /** performance.now() of the attempt. */
  readonly at: number;
}

/** An SMTP sink that times what it receives. */
export interface TimedSink {
  readonly hostPort: string;
  readonly arrivals: SinkArrival[];
  readonly logins: SinkLogin[];
  /** Accepted passwords by user; change at will. Logins are required. */
  readonly users: Map<string, string>;
  /** How long the answer to each DATA is held back, ms; change at will. */
  delayMs: number;
  /** Cuts every open connection, as a server does that ends old sessions after a password change. */
  dropConnections(): void;
  /** Calls `listener` after each arrival and login; returns an unsubscribe. */
  onEvent(listener: () => void): () => void;
  stop(): Promise<void>;
}

/** Starts a sink on a free loopback port; plain SMTP with AUTH PLAIN/LOGIN. */
export async function startTimedSink(options: { users?: Record<string, string>; delayMs?: number } = {}): Promise<TimedSink> {
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  const sink = {
    arrivals: [] as SinkArrival[],
    logins: [] as SinkLogin[],
    users: new Map(Object.entries(options.users ?? {})),
    delayMs: options.delayMs ?? 0,
  };
  const server = new SMTPServer({
    authMethods: ["PLAIN", "LOGIN"],
    allowInsecureAuth: true,
    disabledCommands: ["STARTTLS"],
    disableReverseLookup: true,
    closeTimeout: 200,
    logger: false,
    onAuth(auth, _session, callback) {
      const accepted = sink.users.get(auth.username ?? "") === auth.password;
      sink.logins.push({ username: auth.username ?? "", password: auth.password ?? "", accepted, at: performance.now() });
      notify();
      if (!accepted) return callback(Object.assign(new Error("5.7.8 Authentication failed"), { responseCode: 535 }));
      callback(null, { user: auth.username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const arrival: SinkArrival = {
          subject: headerOf(raw, "subject"),
          messageId: headerOf(raw, "message-id"),
          user: String(session.user ?? ""),
          at: performance.now(),
          answered: false,
        };
        sink.arrivals.push(arrival);
        notify();
        const answer = () => {
          arrival.answered = true;
          callback(null, "queued");
        };
        if (sink.delayMs > 0) setTimeout(answer, sink.delayMs);
        else answer();
      });
    },
  });
  server.on("error", () => undefined);
  const sockets = new Set<Socket>();
  server.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.server.address() as { port: number };
  return Object.assign(sink, {
    hostPort: `127.0.0.1:${port}`,
    dropConnections: () => sockets.forEach((socket) => socket.destroy()),
    onEvent(listener: () => void) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

function headerOf(raw: string, name: string): string {
  const head = raw.slice(0, Math.max(0, raw.indexOf("\r\n\r\n")));
  const match = new RegExp(`^${name}:\\s*(.*)$`, "im").exec(head);
  return match?.[1].trim() ?? "";
}
