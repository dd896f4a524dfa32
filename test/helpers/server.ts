/**
 * Starts a real smtpgate server for a test: a fresh data directory, port 0,
 * logs captured in memory so tests can check them for secrets.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import Database from "better-sqlite3";
import type { Role } from "../../src/domain/access.js";
import { addInstance } from "../../src/domain/instances.js";
import { createToken } from "../../src/domain/tokens.js";
import { adminTokenFile, startServer, type RunningServer, type ServerConfig } from "../../src/server.js";

/** A running server and what a test needs to talk to it. */
export interface TestServer {
  readonly server: RunningServer;
  readonly port: number;
  /** "http://127.0.0.1:<port>" — the bootstrap instance's host. */
  readonly baseUrl: string;
  readonly dataDir: string;
  /** The bootstrap IAM_OWNER token from admin.pat. */
  readonly ownerToken: string;
  /** Every log line written so far, raw. */
  readonly logLines: string[];
  /** A new token of the bootstrap instance (or of the instance owning `domain`). */
  token(roles: Role[], domain?: string): Promise<string>;
  /** Adds an instance for `domains`; returns its id. */
  addInstance(domains: string[]): Promise<string>;
  /** Stops the server; removes the data directory unless `keepData`. */
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

/** Starts a server on a new temp data dir (or `dataDir`), port 0. */
export async function startTestServer(overrides: Partial<ServerConfig> = {}): Promise<TestServer> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), "smtpgate-test-"));
  const logLines: string[] = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  });
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    logLevel: "debug",
    logDestination,
    // No rate limits unless a test asks for them: suites send more test
    // mails from one instance than a person would, and the limits have
    // their own tests (test/security/rate-limit.test.ts).
    rateLimits: { test_mail: undefined, send_mail: undefined },
    ...overrides,
    dataDir,
  });
  const ownerToken = readFileSync(join(dataDir, adminTokenFile), "utf8").trim();
  return {
    server,
    port: server.port,
    baseUrl: `http://127.0.0.1:${server.port}`,
    dataDir,
    ownerToken,
    logLines,
    async token(roles, domain = "127.0.0.1") {
      const instance = await server.store.findInstanceByDomain(domain);
      if (!instance) throw new Error(`no instance for ${domain}`);
      return (await createToken(server.store, { instanceId: instance.id, roles })).token;
    },
    async addInstance(domains) {
      return (await addInstance(server.store, domains)).id;
    },
    async stop(opts) {
      await server.close();
      if (!opts?.keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Drops the event log from the SQLite file of a running server, behind its
 * back, so every write it tries from then on fails in a way no request can
 * cause on purpose: the tests of the Internal row use it. Reads still work.
 */
export function breakEventLog(dataDir: string): void {
  const db = new Database(join(dataDir, "smtpgate.db"));
  try {
    db.exec("DROP TABLE events");
  } finally {
    db.close();
  }
}
