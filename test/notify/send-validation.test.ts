import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { NotificationService, type SendMailRequestSchema } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { expectError } from "../helpers/admin-api.js";
import { adminClient, bearer, protocols, type Protocol } from "../helpers/clients.js";
import { notifyClient } from "../helpers/notify.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

type SendMailInput = MessageInitShape<typeof SendMailRequestSchema>;

const valid: SendMailInput = { to: ["someone@example.com"], subject: "hello", textBody: "body" };
const kib = 1024;
const oversized: SendMailInput = { ...valid, textBody: "x".repeat(8 * kib * kib) };

/**
 * A notification client whose connections the test can cut. Over gRPC it has
 * its own HTTP/2 session, so a test that finds a stream left half open after
 * a refusal can still end it, and the suite does not hang on it.
 */
function cuttableClient(protocol: Protocol, baseUrl: string, token: string): { client: Client<typeof NotificationService>; cut(): void } {
  if (protocol !== "grpc") return { client: notifyClient(protocol, baseUrl, token), cut: () => {} };
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager, interceptors: [bearer(token)] });
  return { client: createClient(NotificationService, transport), cut: () => sessionManager.abort() };
}

async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
  return "no error";
}

/** Requests that must be refused, with the text the refusal must contain. */
const invalidRequests: ReadonlyArray<{ what: string; request: SendMailInput; message: RegExp }> = [
  { what: "no recipient", request: { ...valid, to: [] }, message: /to must list 1 to 50 recipients/ },
  {
    what: "51 recipients",
    request: { ...valid, to: Array.from({ length: 51 }, (_, i) => `r${i}@example.com`) },
    message: /to must list 1 to 50 recipients/,
  },
  { what: "an invalid address", request: { ...valid, to: ["ok@example.com", "not an address"] }, message: /to must be a mail address/ },
  { what: "CR/LF in the subject", request: { ...valid, subject: "hi\r\nBcc: victim@example.com" }, message: /subject must not contain line breaks/ },
  { what: "an empty subject", request: { ...valid, subject: "" }, message: /subject must be 1 to 500 characters long/ },
  { what: "both bodies empty", request: { ...valid, textBody: "", htmlBody: "" }, message: /text_body or html_body is required/ },
  {
    what: "bodies over 512 KiB together",
    request: { ...valid, textBody: "t".repeat(300 * kib), htmlBody: "h".repeat(300 * kib) },
    message: /text_body and html_body together must be at most 524288 bytes, got 614400/,
  },
  { what: "a 201-character idempotency key", request: { ...valid, idempotencyKey: "k".repeat(201) }, message: /idempotency_key must be at most 200 characters long/ },
  { what: "an invalid reply_to", request: { ...valid, replyTo: "nobody" }, message: /reply_to must be a mail address/ },
];

describe("SendMail input checks", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ outbox: { pollMs: 50 } });
  });
  after(async () => {
    await t.stop();
  });

  for (const protocol of protocols) {
    for (const { what, request, message } of invalidRequests) {
      test(`a mail with ${what} is InvalidArgument over ${protocol} and nothing is queued`, async () => {
        const counts = await t.server.store.countMails();
        const err = await expectError(notifyClient(protocol, t.baseUrl, t.ownerToken).sendMail(request), Code.InvalidArgument);

        assert.match(err.rawMessage, message);
        assert.deepEqual(await t.server.store.countMails(), counts);
      });
    }

    test(`a request far above 2 MiB is ResourceExhausted over ${protocol}, nothing is queued, and the server keeps serving`, async () => {
      const { client, cut } = cuttableClient(protocol, t.baseUrl, t.ownerToken);
      const counts = await t.server.store.countMails();
      try {
        assert.equal(await codeOf(client.sendMail(oversized)), Code[Code.ResourceExhausted]);
        assert.deepEqual(await t.server.store.countMails(), counts);

        const { created } = await client.sendMail(valid);
        assert.equal(created, true);
        await adminClient(protocol, t.baseUrl).healthz({});
      } finally {
        cut();
      }
    });
  }

  test("a mail of exactly 512 KiB of body is accepted", async () => {
    const { created } = await notifyClient("grpc", t.baseUrl, t.ownerToken).sendMail({ ...valid, textBody: "b".repeat(512 * kib) });
    assert.equal(created, true);
  });

  // The server resets the stream of an early refusal (src/api/node-bridge.ts);
  // without that, the client's half-open request kept shutdown waiting.
  test("a refused oversized gRPC request does not hold up the server's shutdown", async () => {
    const own = await startTestServer();
    const { client, cut } = cuttableClient("grpc", own.baseUrl, own.ownerToken);
    assert.equal(await codeOf(client.sendMail(oversized)), Code[Code.ResourceExhausted]);

    const stopped = own.stop().then(() => "stopped" as const);
    const wait = new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 3000));
    const outcome = await Promise.race([stopped, wait]);
    cut();
    await stopped;
    assert.equal(outcome, "stopped");
  });
});
