/**
 * Entry point of one smtpgate replica run as a child process by the replica
 * tests and the PostgreSQL benchmark (see test/helpers/replicas.ts): the
 * real startServer, given outbox settings that `smtpgate serve` does not
 * offer (lease, poll interval, concurrency), so a test can kill a replica
 * and see its claims expire within seconds instead of minutes.
 *
 * Reads SMTPGATE_TEST_REPLICA (JSON: databaseUrl, dataDir, outbox) and
 * SMTPGATE_MASTERKEY; logs JSON lines to stdout like `smtpgate serve`,
 * "server.listening" included; SIGTERM stops it.
 */
import { startServer } from "../../src/server.js";
import type { ReplicaSettings } from "./replicas.js";

const settings = JSON.parse(process.env.SMTPGATE_TEST_REPLICA ?? "{}") as ReplicaSettings;
const server = await startServer({
  host: "127.0.0.1",
  port: 0,
  dataDir: settings.dataDir,
  databaseUrl: settings.databaseUrl,
  logLevel: "info",
  masterKeyEnv: process.env.SMTPGATE_MASTERKEY,
  outbox: settings.outbox,
  // As in test/helpers/server.ts: tests send more than a person would.
  rateLimits: { test_mail: undefined, send_mail: undefined },
});
process.once("SIGTERM", () => {
  void server.close().finally(() => process.exit(0));
});
