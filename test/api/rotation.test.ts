/**
 * Password rotation as an administrator lives it: the SMTP server switches to
 * a new password, test mails fail with a clear answer until the new password
 * is saved, and the very next test mail logs in with it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { expectError, loginsSince, providerInput } from "../helpers/admin-api.js";
import { protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink } from "../helpers/smtp-sink.js";
import { addTenant } from "../helpers/tenants.js";

describe("SMTP password rotation", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  for (const protocol of protocols) {
    test(`a test mail logs in with the password saved last over ${protocol}`, async () => {
      const sink = await startSmtpSink({ users: { rotator: `old-${protocol}` } });
      try {
        const tenant = await addTenant(t, protocol, "rotation");
        const receiverAddress = "rotation@example.com";
        const settings = providerInput({ host: sink.hostPort, user: "rotator" });
        const { id } = await tenant.owner.addSMTPConfig(settings);
        await tenant.owner.updateSMTPConfigPassword({ id, password: `old-${protocol}` });

        await tenant.owner.testSMTPConfigById({ id, receiverAddress });
        assert.deepEqual(loginsSince(sink), [["rotator", `old-${protocol}`, true]]);
        await sink.waitForMessages(1);

        sink.setPassword("rotator", `new-${protocol}`);
        const stale = await expectError(
          tenant.owner.testSMTPConfigById({ id, receiverAddress }),
          Code.FailedPrecondition,
        );
        assert.match(stale.rawMessage, /rejected the credentials: 535 .*Authentication failed/);
        assert.deepEqual(loginsSince(sink, 1), [["rotator", `old-${protocol}`, false]]);

        await tenant.owner.updateSMTPConfigPassword({ id, password: `new-${protocol}` });
        await tenant.owner.testSMTPConfigById({ id, receiverAddress });

        assert.deepEqual(loginsSince(sink), [
          ["rotator", `old-${protocol}`, true],
          ["rotator", `old-${protocol}`, false],
          ["rotator", `new-${protocol}`, true],
        ]);
        const mails = await sink.waitForMessages(2);
        assert.deepEqual(
          mails.map((m) => m.user),
          ["rotator", "rotator"],
        );
      } finally {
        await sink.stop();
      }
    });
  }
});
