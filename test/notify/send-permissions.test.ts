import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { MailState, NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { expectError } from "../helpers/admin-api.js";
import { adminClient, loopbackLookup, protocols, transportFor } from "../helpers/clients.js";
import { notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const otherDomain = "permissions.notify.test";
const mail = { to: ["someone@example.com"], subject: "hello", textBody: "x" };

describe("who may use the notification API", () => {
  let t: TestServer;
  let sender: string;
  let viewer: string;
  let otherSender: string;
  before(async () => {
    t = await startTestServer({ outbox: { pollMs: 50 } });
    sender = await t.token(["NOTIFY_SENDER"]);
    viewer = await t.token(["IAM_OWNER_VIEWER"]);
    await t.addInstance([otherDomain]);
    otherSender = await t.token(["NOTIFY_SENDER"], otherDomain);
  });
  after(async () => {
    await t.stop();
  });

  for (const protocol of protocols) {
    test(`a NOTIFY_SENDER token can SendMail and GetMail over ${protocol}`, async () => {
      const notify = notifyClient(protocol, t.baseUrl, sender);
      const { mail: queued, created } = await notify.sendMail(mail);
      const { mail: read } = await notify.getMail({ id: queued!.id });

      assert.equal(created, true);
      assert.equal(read!.id, queued!.id);
      assert.equal(read!.state, MailState.QUEUED);
    });

    test(`a NOTIFY_SENDER token is PermissionDenied on GetSMTPConfig and UpdateSMTPConfigPassword over ${protocol}`, async () => {
      const admin = adminClient(protocol, t.baseUrl, sender);
      const read = await expectError(admin.getSMTPConfig({}), Code.PermissionDenied);
      const write = await expectError(admin.updateSMTPConfigPassword({ password: "x" }), Code.PermissionDenied);

      assert.match(read.rawMessage, /iam\.read is required/);
      assert.match(write.rawMessage, /iam\.write is required/);
    });

    test(`an IAM_OWNER_VIEWER token is PermissionDenied on SendMail and GetMail over ${protocol}`, async () => {
      const notify = notifyClient(protocol, t.baseUrl, viewer);
      const countsBefore = await t.server.store.countMails();
      const err = await expectError(notify.sendMail(mail), Code.PermissionDenied);
      await expectError(notify.getMail({ id: "any" }), Code.PermissionDenied);

      assert.match(err.rawMessage, /notify\.send is required/);
      assert.deepEqual(await t.server.store.countMails(), countsBefore);
    });

    test(`a call without a token, or with another instance's token, is Unauthenticated over ${protocol}`, async () => {
      const countsBefore = await t.server.store.countMails();
      await expectError(notifyClient(protocol, t.baseUrl).sendMail(mail), Code.Unauthenticated);
      await expectError(notifyClient(protocol, t.baseUrl).getMail({ id: "any" }), Code.Unauthenticated);
      await expectError(notifyClient(protocol, t.baseUrl, otherSender).sendMail(mail), Code.Unauthenticated);

      assert.deepEqual(await t.server.store.countMails(), countsBefore);
    });

    test(`GetMail of another instance's mail id is NotFound over ${protocol}`, async () => {
      const other = createClient(
        NotificationService,
        transportFor(protocol, `http://${otherDomain}:${t.port}`, { token: otherSender, lookup: loopbackLookup }),
      );
      const { mail: theirs } = await other.sendMail(mail);
      assert.equal((await other.getMail({ id: theirs!.id })).mail!.id, theirs!.id);

      const err = await expectError(notifyClient(protocol, t.baseUrl, t.ownerToken).getMail({ id: theirs!.id }), Code.NotFound);
      assert.match(err.rawMessage, /mail not found/);
    });
  }
});
