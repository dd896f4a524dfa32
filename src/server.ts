/**
 * Wiring only: store, secrets, mailer, domain, API and the listening port.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { DestinationStream } from "pino";
import { createHandler, servedServiceNames } from "./api/handler.js";
import { HealthMonitor } from "./api/health.js";
import { Metrics } from "./api/metrics.js";
import { listenDual, type ConnectionLimits, type DualServer } from "./api/listener.js";
import { createLogger } from "./config/logger.js";
import { keyFileWatcher, loadMasterKeys, masterKeyFile } from "./config/master-key.js";
import type { DomainDeps, Logger } from "./domain/deps.js";
import { addInstance } from "./domain/instances.js";
import type { MailSender } from "./domain/mail.js";
import { defaultRateLimits, RateLimiter, type RateLimits } from "./domain/rate-limit.js";
import { SecretBox } from "./domain/secret-box.js";
import { createToken } from "./domain/tokens.js";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { OutboxWorker, type WorkerOptions } from "./notify/outbox-worker.js";
import { OutboundPolicy, type OutboundPolicyOptions } from "./notify/outbound-guard.js";
import { NodemailerSender } from "./notify/smtp-sender.js";
import { TransportPool, type TransportPoolOptions } from "./notify/transport-pool.js";
import { DomainError } from "./domain/errors.js";
import { openPostgresStore } from "./store/postgres-store.js";
import { openSqliteStore } from "./store/sqlite-store.js";
import type { Store } from "./store/store.js";

/** Everything `smtpgate serve` needs, already checked. */
export interface ServerConfig {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly dataDir: string;
  /** postgres://... to share one database among replicas; SQLite in dataDir when absent. */
  readonly databaseUrl?: string;
  readonly logLevel: string;
  /** SMTPGATE_MASTERKEY's value, if set. */
  readonly masterKeyEnv?: string;
  /** Extra CA bundle trusted for SMTP TLS, PEM file path. */
  readonly smtpCaFile?: string;
  /**
   * Outbound SMTP policy: plaintext AUTH, denied networks and (for tests) the
   * DNS lookup; safe defaults when absent (see notify/outbound-guard.ts).
   */
  readonly smtpOutbound?: OutboundPolicyOptions;
  /**
   * Per-instance rate limits. An action left out keeps its default (see
   * domain/rate-limit.ts); one set to undefined is not limited.
   */
  readonly rateLimits?: Partial<RateLimits>;
  /** Origins allowed to call from a browser (CORS); none by default. */
  readonly corsOrigins?: readonly string[];
  /** Log destination; stdout when absent (tests pass their own). */
  readonly logDestination?: DestinationStream;
  /** Replaces the nodemailer sender of test mails (benchmarks only). */
  readonly mailer?: MailSender;
  /** How long delivery waits for an SMTP server (tests shorten it); defaults in notify/smtp-sender.ts. */
  readonly smtpTimeouts?: Pick<TransportPoolOptions, "connectionTimeoutMs" | "socketTimeoutMs">;
  /** Outbox worker tuning (retry policy, concurrency, poll interval). */
  readonly outbox?: Partial<Omit<WorkerOptions, "workerId">>;
  /** What one client may hold open on the port; defaults in api/listener.ts. */
  readonly connectionLimits?: Partial<ConnectionLimits>;
  /** How long SIGTERM waits for mails in flight, ms; default 10000. */
  readonly shutdownGraceMs?: number;
}

/** A started server. */
export interface RunningServer {
  readonly port: number;
  readonly log: Logger;
  readonly store: Store;
  /** Stops listening, ends sessions, closes the store. */
  close(): Promise<void>;
}

/** Name of the bootstrap token file in the data directory. */
export const adminTokenFile = "admin.pat";

/** Default domains of the first instance. */
export const bootstrapDomains = ["localhost", "127.0.0.1"];

/**
 * Opens PostgreSQL when `databaseUrl` is given, else the SQLite file in
 * `dataDir` (created with mode 0700 if needed). Throws when unreachable.
 */
export async function openDataStore(dataDir: string, databaseUrl: string | undefined, log: Logger): Promise<Store> {
  if (databaseUrl) return openPostgresStore(databaseUrl, log);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  return openSqliteStore(join(dataDir, "smtpgate.db"));
}

/**
 * The master keys for this configuration. With a shared database every
 * replica must use the same key, so a generated per-directory key is refused.
 */
export function masterKeysFor(config: Pick<ServerConfig, "masterKeyEnv" | "databaseUrl">, dataDir: string): Buffer[] {
  if (config.databaseUrl && !config.masterKeyEnv) {
    throw new Error("SMTPGATE_MASTERKEY is required with --database-url: all replicas must seal and open passwords with the same key");
  }
  return loadMasterKeys(config.masterKeyEnv, dataDir, true);
}

/**
 * How a running server re-reads the embedded key file, so it follows
 * `smtpgate keys rotate` without a restart; undefined with
 * SMTPGATE_MASTERKEY, which a running process cannot see change.
 */
function keyFileReloader(config: Pick<ServerConfig, "masterKeyEnv">, dataDir: string): (() => Buffer[] | undefined) | undefined {
  if (config.masterKeyEnv && config.masterKeyEnv.trim() !== "") return undefined;
  return keyFileWatcher(join(dataDir, masterKeyFile));
}

/**
 * Starts smtpgate: opens the store, bootstraps the first instance on an empty
 * store, and listens. Throws when the port is taken or the store cannot open.
 */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log = createLogger(config.logLevel, config.logDestination);
  const dataDir = resolve(config.dataDir);
  const outbound = new OutboundPolicy(config.smtpOutbound);
  // The server keeps its key file (embedded mode) and admin.pat here.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secrets = new SecretBox(masterKeysFor(config, dataDir), { reload: keyFileReloader(config, dataDir) });
  const store = await openDataStore(dataDir, config.databaseUrl, log);
  const ca = config.smtpCaFile ? readFileSync(config.smtpCaFile) : undefined;
  const deps: DomainDeps = {
    store,
    secrets,
    mailer: config.mailer ?? new NodemailerSender({ ca, outbound }),
    log,
    now: () => new Date(),
    smtpPolicy: outbound,
    limits: new RateLimiter({ ...defaultRateLimits, ...config.rateLimits }),
  };
  await bootstrap(store, dataDir, log);

  // The embedded store has one server per data directory, so claims left by
  // a previous run (killed mid-send) are released at once instead of waiting
  // for their lease: those mails are sent again, with the same Message-ID.
  // A shared database waits for leases instead: other replicas may be alive.
  if (!config.databaseUrl) {
    const released = await store.releaseClaims("*", new Date());
    if (released > 0) log.warn({ event: "outbox.recovered", released }, "mails claimed by a previous run are queued again");
  }
  const pool = new TransportPool({ ca, outbound, ...config.smtpTimeouts });
  const metrics = new Metrics(store, pool);
  const worker = new OutboxWorker(
    { store, secrets, log, now: deps.now, pool, onAttempt: (outcome, replyClass) => metrics.recordAttempt({ outcome, replyClass }) },
    { ...config.outbox, workerId: `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}` },
  );

  const health = new HealthMonitor(store, new Set(servedServiceNames));
  let server: DualServer;
  try {
    const handler = createHandler(deps, { corsOrigins: config.corsOrigins, health, metrics });
    server = await listenDual(handler, { host: config.host, port: config.port, limits: config.connectionLimits });
  } catch (err) {
    await store.close();
    throw err;
  }
  worker.start();
  const port = (server.tcp.address() as { port: number }).port;
  log.info({ event: "server.listening", host: config.host, port, dataDir, keyId: secrets.primaryKeyId }, "smtpgate listening");

  return {
    port,
    log,
    store,
    async close() {
      // Probes see NOT_SERVING first, so balancers stop sending new work.
      health.drain();
      await server.close(config.shutdownGraceMs ?? 10_000);
      await worker.stop(config.shutdownGraceMs ?? 10_000);
      await store.close();
      log.info({ event: "server.stopped" }, "smtpgate stopped");
      log.flush?.();
    },
  };
}

/** On an empty store: the first instance and its owner token in admin.pat. */
async function bootstrap(store: Store, dataDir: string, log: Logger): Promise<void> {
  if ((await store.countInstances()) > 0) return;
  let instance;
  try {
    instance = await addInstance(store, bootstrapDomains);
  } catch (err) {
    // Another replica bootstrapped the shared database a moment before us.
    if (err instanceof DomainError && err.id === "INSTANCE-dom01") return;
    throw err;
  }
  const { id, token } = await createToken(store, { instanceId: instance.id, roles: ["IAM_OWNER"] });
  const file = join(dataDir, adminTokenFile);
  writeFileSync(file, token + "\n", { mode: 0o600 });
  chmodSync(file, 0o600);
  log.info(
    { event: "instance.bootstrapped", instanceId: instance.id, domains: instance.domains, tokenId: id, tokenFile: file },
    "first instance created; its IAM_OWNER token is in the token file",
  );
}
