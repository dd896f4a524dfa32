/**
 * Shortcuts for delivery tests: a provider pointing at a sink, and clients
 * of the notification API.
 */
import { createClient, type Client } from "@connectrpc/connect";
import { NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { adminClient, transportFor, type Protocol } from "./clients.js";
import type { TestServer } from "./server.js";

/** A NotificationService client over `protocol`. */
export function notifyClient(protocol: Protocol, baseUrl: string, token?: string): Client<typeof NotificationService> {
  return createClient(NotificationService, transportFor(protocol, baseUrl, { token }));
}

/**
 * Adds a provider for `hostPort` with `user`/`password` through the admin
 * API and activates it. Returns its id.
 */
export async function addActiveProvider(
  t: TestServer,
  hostPort: string,
  login: { user: string; password: string },
  senderAddress = "noreply@smtpgate.test",
): Promise<string> {
  const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
  const { id } = await admin.addSMTPConfig({ senderAddress, senderName: "smtpgate", host: hostPort, tls: false, ...login });
  await admin.activateSMTPConfig({ id });
  return id;
}

/** Polls `check` every 20 ms until it returns true; rejects after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
