/**
 * A client that gives up on a call stops the work behind it: the cancel
 * reaches the handler through the request's signal on every protocol (for
 * unary gRPC through the transcoded path of src/api/grpc-unary.ts), the
 * SMTP connection a test mail opened is dropped at once, and the call is
 * logged once. (The mailer reports the send it was told to stop as a
 * protocol failure, so the line says FailedPrecondition, on every protocol.)
 */
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { providerInput } from "../helpers/admin-api.js";
import { adminClient, protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** Resolves once `check` holds, polling every 20 ms; rejects after `ms`. */
async function eventually(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("cancelled calls", () => {
  let t: TestServer;
  let silent: Server;
  let silentPort: number;
  const open = new Set<Socket>();
  before(async () => {
    t = await startTestServer();
    // Accepts connections and never greets, so a test mail to it waits
    // until someone gives up.
    silent = createServer((socket) => {
      open.add(socket);
      socket.once("close", () => open.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    silentPort = (silent.address() as { port: number }).port;
  });
  after(async () => {
    open.forEach((socket) => socket.destroy());
    silent.close();
    await t.stop();
  });

  for (const protocol of protocols) {
    test(`a test mail the client cancels over ${protocol} drops its SMTP connection and is logged once`, async () => {
      const admin = adminClient(protocol, t.baseUrl, t.ownerToken);
      const { senderAddress, senderName } = providerInput();
      const request = { senderAddress, senderName, tls: false, host: `127.0.0.1:${silentPort}`, user: "", password: "", receiverAddress: "a@example.test" };
      const logged = t.logLines.length;
      const abort = new AbortController();
      const call = admin.testSMTPConfig(request, { signal: abort.signal });
      await eventually("the SMTP connection", () => open.size === 1);

      abort.abort();
      await assert.rejects(call);
      // Without the cancel, the sender would wait for its 10 s greeting timeout.
      await eventually("the SMTP connection to close", () => open.size === 0, 2000);
      const done = () => t.logLines.slice(logged).filter((line) => line.includes('"rpc.done"') && line.includes('"TestSMTPConfig"'));
      await eventually("the request log line", () => done().length > 0);
      assert.equal(done().length, 1);
      assert.match(done()[0], new RegExp(`"protocol":"${protocol === "connect-json" ? "connect" : protocol}"`));
    });
  }
});
