/**
 * The `smtpgate` command: serve, token create, instance add.
 * Exit codes: 0 ok, 1 failure, 2 bad usage.
 */
import { isRole, roles, type Role } from "./domain/access.js";
import { DomainError } from "./domain/errors.js";
import { addInstance, normalizeDomain } from "./domain/instances.js";
import { createToken } from "./domain/tokens.js";
import {
  databaseUrlSpec,
  dataDirSpec,
  parseLogLevel,
  parsePort,
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

Run "smtpgate <command> --help" for a command's options. Every option can
also be set in the environment as SMTPGATE_<OPTION>, e.g. SMTPGATE_DATA_DIR
for --data-dir; a flag wins over its variable.`;

const tokenSpecs: readonly SettingSpec[] = [
  dataDirSpec,
  databaseUrlSpec,
  { flag: "instance", env: "SMTPGATE_INSTANCE", kind: "string", help: "a domain of the instance, e.g. localhost" },
  { flag: "role", env: "SMTPGATE_ROLE", kind: "list", default: "IAM_OWNER", help: `role to grant: ${roles.join(", ")}` },
];

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
    corsOrigins: v["cors-origin"] as string[],
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

/** The store for a one-shot command; its log lines go to stderr, stdout stays the result. */
async function openToolStore(v: Values) {
  const log = createLogger("warn", pino.destination({ fd: 2, sync: true }));
  return openDataStore(v["data-dir"] as string, v["database-url"] as string | undefined, log);
}

function printHelp(command: string, summary: string, specs: readonly SettingSpec[]): number {
  process.stdout.write(usage(command, summary, specs) + "\n");
  return 0;
}
