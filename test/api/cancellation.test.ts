/**
 * A client that gives up on a call stops the work behind it: the cancel
 * reaches the handler through the request's signal on every protocol (for
 * unary gRPC through the transcoded path of src/api/grpc-unary.ts), the
 * SMTP connection a test mail opened is dropped at once, and the call is
 * logged once. (The mailer reports the send it was told to stop as a
 * protocol failure, so the line says FailedPrecondition, on every protocol.)
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { providerInput } from "../helpers/admin-api.js";
import { adminClient, protocols } from "../helpers/clients.js";
import { eventually } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSilentServer, type SilentServer } from "../helpers/slow-sink.js";

describe("cancelled calls", () => {
  let t: TestServer;
  let silent: SilentServer;
  before(async () => {
    t = await startTestServer();
    // Accepts connections and never greets, so a test mail to it waits
    // until someone gives up.
    silent = await startSilentServer();
  });
  after(async () => {
    await silent.stop();
    await t.stop();
  });

  for (const protocol of protocols) {
    test(`a test mail the client cancels over ${protocol} drops its SMTP connection and is logged once`, async () => {
      const admin = adminClient(protocol, t.baseUrl, t.ownerToken);
      const { senderAddress, senderName } = providerInput();
      const request = { senderAddress, senderName, tls: false, host: silent.hostPort, user: "", password: "", receiverAddress: "a@example.test" };
      const logged = t.logLines.length;
      const abort = new AbortController();
      const call = admin.testSMTPConfig(request, { signal: abort.signal });
      await eventually(() => silent.openConnections() === 1, 5000, "the SMTP connection");

      abort.abort();
      await assert.rejects(call);
      // Without the cancel, the sender would wait for its 10 s greeting timeout.
      await eventually(() => silent.openConnections() === 0, 2000, "the SMTP connection to close");
      const done = () => t.logLines.slice(logged).filter((line) => line.includes('"rpc.done"') && line.includes('"TestSMTPConfig"'));
      await eventually(() => done().length > 0, 5000, "the request log line");
      assert.equal(done().length, 1);
      assert.match(done()[0], new RegExp(`"protocol":"${protocol === "connect-json" ? "connect" : protocol}"`));
    });
  }
});
