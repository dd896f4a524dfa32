/**
 * Prepares what the benchmarks read and write: a fresh smtpgate data
 * directory whose bootstrap instance (hosts 127.0.0.1 and localhost) has one
 * active SMTP config, and the owner token to call it with. Everything goes
 * through smtpgate's public API, so the rows are what production writes.
 */
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminTokenFile } from "../../src/server.js";
import { startChild, type ChildServer, type ServerSpec } from "./servers.js";

/** A data directory with one active SMTP config. */
export interface Fixture {
  readonly dataDir: string;
  /** IAM_OWNER token of the bootstrap instance. */
  readonly token: string;
  /** Id of the active SMTP config. */
  readonly configId: string;
  /** Removes the data directory. */
  remove(): void;
}

/** The settings of the benchmark's SMTP config: sizes like a real one's. */
export const benchSmtpSettings = {
  senderAddress: "noreply@mail.example.com",
  senderName: "Example Notifications",
  replyToAddress: "support@example.com",
  tls: true,
  host: "smtp.mail.example.com:587",
  user: "apikey-0123456789abcdef",
  password: "s3cret-password-0123456789",
  description: "primary provider",
};

/** Keeps connections open across the many calls of seeding. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/**
 * Calls a unary RPC with Connect JSON over HTTP/1.1 under `host` (which
 * selects the instance); throws on a non-200 answer.
 */
export function callJson(port: number, path: string, token: string, body: unknown, host = "127.0.0.1"): Promise<Record<string, unknown>> {
  const payload = JSON.stringify(body);
  const headers = { "content-type": "application/json", authorization: `Bearer ${token}`, host };
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers, agent }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        if (res.statusCode === 200) resolve(JSON.parse(text) as Record<string, unknown>);
        else reject(new Error(`${path} answered ${res.statusCode}: ${text}`));
      });
    });
    req.on("error", reject);
    req.end(payload);
  });
}

/**
 * Creates the data directory, bootstraps it by starting smtpgate once, and
 * adds and activates the config. Leaves the server running and returns it
 * with the fixture, so callers can keep using it or stop it.
 */
export async function createFixture(spec: Partial<Extract<ServerSpec, { kind: "smtpgate" }>> = {}): Promise<{ fixture: Fixture; server: ChildServer }> {
  const dataDir = mkdtempSync(join(tmpdir(), "smtpgate-bench-"));
  const server = await startChild({ kind: "smtpgate", ...spec, dataDir });
  const token = readFileSync(join(dataDir, adminTokenFile), "utf8").trim();
  const admin = "/zitadel.admin.v1.AdminService";
  const added = await callJson(server.ports.main, `${admin}/AddSMTPConfig`, token, benchSmtpSettings);
  const configId = String(added.id);
  await callJson(server.ports.main, `${admin}/ActivateSMTPConfig`, token, { id: configId });
  const fixture = { dataDir, token, configId, remove: () => rmSync(dataDir, { recursive: true, force: true }) };
  return { fixture, server };
}
