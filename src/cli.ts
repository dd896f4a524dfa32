/**
 * The `smtpgate` command: serve, token create, instance add, keys rotate,
 * keys reseal. Exit codes: 0 ok, 1 failure, 2 bad usage.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { isRole, roles, type Role } from "./domain/access.js";
import { DomainError } from "./domain/errors.js";
import { defaultRetryPolicy } from "./domain/outbox.js";
import { addInstance, normalizeDomain } from "./domain/instances.js";
import { resealPasswords, type ResealReport } from "./domain/reseal.js";
import { keyIdOf, SecretBox } from "./domain/secret-box.js";
import { createToken } from "./domain/tokens.js";
import { loadMasterKeys, masterKeyFile, rotateKeyFile } from "./config/master-key.js";
import { parseNetwork } from "./notify/outbound-guard.js";
import {
  databaseUrlSpec,
  dataDirSpec,
  parseDuration,
  parseLogLevel,
  parsePort,
  parseRate,
  readSettings,
  serveSpecs,
  usage,
  UsageError,
  type SettingSpec,
  type Values,
} from "./config/settings.js";
import { createLogger } from "./config/logger.js";
import { pino } from "pino";
import { openDataStore, startServer } from "./server.js";

const mainHelp = `Usage: smtpgate <command> [options]

smtpgate is a multi-tenant notification mail gateway that speaks ZITADEL's
SMTP admin API over Connect, gRPC and gRPC-web on one port.

Commands:
  serve            run the server
  token create     print a new personal access token for an instance
  instance add     add an instance reached under one or more domains
  keys rotate      put a new master key in front of the embedded key file
                   and re-seal every stored password under it
  keys reseal      re-seal every stored password under the first master key
                   (after putting a new key in front of SMTPGATE_MASTERKEY)

Run "smtpgate <command> --help" for a command's options. Every option can
also be set in the environment as SMTPGATE_<OPTION>, e.g. SMTPGATE_DATA_DIR
for --data-dir; a flag wins over its variable.`;

const tokenSpecs: readonly SettingSpec[] = [
  dataDirSpec,
  databaseUrlSpec,
  { flag: "instance", env: "SMTPGATE_INSTANCE", kind: "string", help: "a domain of the instance, e.g. localhost" },
  { flag: "role", env: "SMTPGATE_ROLE", kind: "list", default: "IAM_OWNER", help: `role to grant: ${roles.join(", ")}` },
];

const keySpecs: readonly SettingSpec[] = [dataDirSpec, databaseUrlSpec];

const instanceSpecs: readonly SettingSpec[] = [
  dataDirSpec,
  databaseUrlSpec,
  { flag: "domain", env: "SMTPGATE_DOMAIN", kind: "list", help: "a domain the instance is reached under" },
];

/** Runs the command line `args` (without node and script). Resolves to an exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    return await dispatch(args);
  } catch (err) {
    if (err instanceof UsageError || (err instanceof DomainError && err.kind === "invalid")) {
      process.stderr.write(`smtpgate: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`smtpgate: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

async function dispatch(args: string[]): Promise<number> {
  const [command, sub] = args;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(mainHelp + "\n");
    return command === undefined ? 2 : 0;
  }
  if (command === "serve") return serve(args.slice(1));
  if (command === "token" && sub === "create") return tokenCreate(args.slice(2));
  if (command === "instance" && sub === "add") return instanceAdd(args.slice(2));
  if (command === "keys" && sub === "rotate") return keysRotate(args.slice(2));
  if (command === "keys" && sub === "reseal") return keysReseal(args.slice(2));
  throw new UsageError(`unknown command ${JSON.stringify(args.slice(0, 2).join(" "))}; see smtpgate --help`);
}

async function serve(args: string[]): Promise<number> {
  const v = readSettings(serveSpecs, args, process.env);
  if (v.help) return printHelp("serve", "Runs the server on one port for Connect, gRPC and gRPC-web.", serveSpecs);
  const server = await startServer({
    host: v.host as string,
    port: parsePort(v.port as string),
    dataDir: v["data-dir"] as string,
    databaseUrl: v["database-url"] as string | undefined,
    logLevel: parseLogLevel(v["log-level"] as string),
    masterKeyEnv: process.env.SMTPGATE_MASTERKEY,
    smtpCaFile: v["smtp-ca-file"] as string | undefined,
    smtpOutbound: {
      allowPlaintextAuth: v["smtp-allow-plaintext-auth"] === true,
      denyNetworks: checkedNetworks(v["smtp-deny-network"] as string[]),
    },
    rateLimits: {
      test_mail: rateLimit(parseRate("test-mail-rate", v["test-mail-rate"] as string), 60),
      send_mail: rateLimit(parseRate("send-rate", v["send-rate"] as string), 1),
    },
    corsOrigins: v["cors-origin"] as string[],
    outbox: {
      policy: { ...defaultRetryPolicy, maxAgeMs: parseDuration("mail-max-age", v["mail-max-age"] as string) },
      retentionMs: parseDuration("mail-retention", v["mail-retention"] as string),
    },
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      server.log.info({ event: "server.stopping", signal }, "shutting down");
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  await server.close();
  return 0;
}

async function tokenCreate(args: string[]): Promise<number> {
  const v = readSettings(tokenSpecs, args, process.env);
  if (v.help) return printHelp("token create", "Prints a new token as the last line of stdout.", tokenSpecs);
  const domain = v.instance as string | undefined;
  if (!domain) throw new UsageError("--instance <domain> is required");
  const wanted = v.role as string[];
  const bad = wanted.find((r) => !isRole(r));
  if (bad) throw new UsageError(`unknown role ${JSON.stringify(bad)}; known: ${roles.join(", ")}`);

  const store = await openToolStore(v);
  try {
    const instance = await store.findInstanceByDomain(normalizeDomain(domain));
    if (!instance) throw new UsageError(`no instance has the domain ${JSON.stringify(domain)}`);
    const { token } = await createToken(store, { instanceId: instance.id, roles: wanted as Role[] });
    process.stdout.write(token + "\n");
    return 0;
  } finally {
    await store.close();
  }
}

async function instanceAdd(args: string[]): Promise<number> {
  const v = readSettings(instanceSpecs, args, process.env);
  if (v.help) return printHelp("instance add", "Adds an instance and prints its id.", instanceSpecs);
  const domains = v.domain as string[];
  if (domains.length === 0) throw new UsageError("--domain <domain> is required");
  const store = await openToolStore(v);
  try {
    const instance = await addInstance(store, domains);
    process.stdout.write(`${instance.id}\n`);
    return 0;
  } finally {
    await store.close();
  }
}

/** Throws UsageError naming the first entry of --smtp-deny-network that is not a network. */
function checkedNetworks(networks: string[]): string[] {
  for (const network of networks) {
    try {
      parseNetwork(network);
    } catch (err) {
      throw new UsageError(`--smtp-deny-network: ${(err as Error).message}`);
    }
  }
  return networks;
}

/** `count` calls per `seconds`, as a bucket that also bursts to `count`; 0 means no limit. */
function rateLimit(count: number, seconds: number) {
  return count === 0 ? undefined : { burst: Math.max(1, count), perSecond: count / seconds };
}

const rotateSummary = `Puts a newly generated master key in front of <data-dir>/${masterKeyFile}, keeping
the old keys after it so existing values still open, then re-seals every
stored SMTP password under the new key. A running server follows without a
restart. With SMTPGATE_MASTERKEY, put the new key in front yourself
("new,old"), restart every server with it, and run smtpgate keys reseal.`;

async function keysRotate(args: string[]): Promise<number> {
  const v = readSettings(keySpecs, args, process.env);
  if (v.help) return printHelp("keys rotate", rotateSummary, keySpecs);
  if (process.env.SMTPGATE_MASTERKEY?.trim() || v["database-url"]) {
    throw new UsageError(
      "the master keys come from SMTPGATE_MASTERKEY, which this command cannot change: put a new key in front " +
        '("new,old"; make one with `openssl rand -base64 32`), restart every server with it, then run smtpgate keys reseal',
    );
  }
  const dataDir = resolve(v["data-dir"] as string);
  const file = join(dataDir, masterKeyFile);
  if (!existsSync(file)) throw new UsageError(`no key file at ${file}; smtpgate serve creates it on its first start`);
  const keys = rotateKeyFile(dataDir);
  process.stdout.write(`new master key ${keyIdOf(keys[0])} is first in ${file}; ${keys.length - 1} older key(s) kept after it\n`);
  return reseal(v, keys);
}

async function keysReseal(args: string[]): Promise<number> {
  const v = readSettings(keySpecs, args, process.env);
  if (v.help) return printHelp("keys reseal", "Re-seals every stored SMTP password under the first master key.", keySpecs);
  const envValue = process.env.SMTPGATE_MASTERKEY;
  if (v["database-url"] && !envValue?.trim()) throw new UsageError("SMTPGATE_MASTERKEY is required with --database-url");
  return reseal(v, loadMasterKeys(envValue, resolve(v["data-dir"] as string), false));
}

// A server that saved a password under an old key in the moment before it
// saw the new one leaves a value the pass did not see; a few passes catch it.
const maxResealPasses = 3;

/** Re-seals under `keys[0]`, prints what the store holds after it; 1 when some value did not open. */
async function reseal(v: Values, keys: Buffer[]): Promise<number> {
  const secrets = new SecretBox(keys);
  const store = await openToolStore(v);
  try {
    const deps = { store, secrets, now: () => new Date(), log: toolLogger() };
    let report: ResealReport;
    let total = 0;
    let pass = 0;
    do {
      report = await resealPasswords(deps);
      total += report.resealed;
      pass++;
    } while (report.resealed > 0 && hasStragglers(report, secrets.primaryKeyId) && pass < maxResealPasses);
    process.stdout.write(`re-sealed ${total} password(s) under key ${secrets.primaryKeyId}\n`);
    const counts = Object.entries(report.valuesByKeyId).map(([id, n]) => `${id}=${n}`);
    process.stdout.write(`stored passwords by key: ${counts.join(" ") || "none"}\n`);
    if (report.failed.length === 0) return 0;
    const where = report.failed.map((f) => `${f.instanceId}/${f.providerId}`).join(", ");
    process.stderr.write(
      `smtpgate: ${report.failed.length} stored password(s) do not open with the given keys ` +
        `and were left as they are (${where}); save them again\n`,
    );
    return 1;
  } finally {
    await store.close();
  }
}

/** True when values remain under another key than the newest, beyond those that do not open. */
function hasStragglers(report: ResealReport, primaryKeyId: string): boolean {
  const underOthers = Object.entries(report.valuesByKeyId)
    .filter(([id]) => id !== primaryKeyId)
    .reduce((sum, [, n]) => sum + n, 0);
  return underOthers > report.failed.length;
}

/** The store for a one-shot command; its log lines go to stderr, stdout stays the result. */
async function openToolStore(v: Values) {
  return openDataStore(v["data-dir"] as string, v["database-url"] as string | undefined, toolLogger());
}

/** Log lines of one-shot commands go to stderr, warnings and worse only. */
function toolLogger() {
  return createLogger("warn", pino.destination({ fd: 2, sync: true }));
}

function printHelp(command: string, summary: string, specs: readonly SettingSpec[]): number {
  process.stdout.write(usage(command, summary, specs) + "\n");
  return 0;
}
