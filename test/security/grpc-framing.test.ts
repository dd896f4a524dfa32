/**
 * A unary gRPC or gRPC-web request is exactly one message frame. Bodies
 * that are not (found by the fuzz test: connect answered them with
 * Unimplemented, Internal or ResourceExhausted) are InvalidArgument with
 * REQ-frame01, while well-framed and properly compressed requests still work.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ListSMTPConfigsRequestSchema } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { envelope, rawGrpc, rawGrpcWeb, type RawGrpcAnswer } from "./fixtures.js";

const path = "/zitadel.admin.v1.AdminService/ListSMTPConfigs";
const message = toBinary(ListSMTPConfigsRequestSchema, create(ListSMTPConfigsRequestSchema, { query: { limit: 5 } }));

const malformed: Array<[string, Uint8Array, RegExp]> = [
  ["an empty body", new Uint8Array(0), /the body is empty/],
  ["a body cut inside the frame header", new Uint8Array([0, 0, 0]), /ends inside a frame header/],
  ["a frame shorter than its length says", new Uint8Array([0, 0, 0, 0, 10, 1, 2]), /ends before the message its frame announced/],
  ["two frames", new Uint8Array([...envelope(message), ...envelope(message)]), /takes one message, and more followed/],
  ["a frame marked compressed without grpc-encoding", new Uint8Array([1, 0, 0, 0, 1, 8]), /marked compressed, but the request names no grpc-encoding/],
  ["a trailer frame from the client", new Uint8Array([0x80, 0, 0, 0, 0]), /unknown frame flags 0x80/],
  ["bytes that are not framed at all", new Uint8Array(Buffer.from("hello world")), /unknown frame flags 0x68/],
];

describe("gRPC framing of unary requests", () => {
  let t: TestServer;
  let session: http2.ClientHttp2Session;
  before(async () => {
    t = await startTestServer();
    session = http2.connect(t.baseUrl);
  });
  after(async () => {
    session.close();
    await t.stop();
  });

  const wires: Array<[string, (body: Uint8Array) => Promise<RawGrpcAnswer>]> = [
    ["gRPC", (body) => rawGrpc(session, path, t.ownerToken, body)],
    ["gRPC-web", (body) => rawGrpcWeb(t.baseUrl, path, t.ownerToken, body)],
  ];

  for (const [wire, call] of wires) {
    for (const [what, body, reason] of malformed) {
      test(`${what} is InvalidArgument REQ-frame01 over ${wire}`, async () => {
        const answer = await call(body);
        assert.equal(answer.http, 200);
        assert.equal(answer.grpc, Code.InvalidArgument, answer.message);
        assert.match(answer.message, reason);
        assert.match(answer.message, /\(REQ-frame01\)$/);
      });
    }

    test(`one well-formed frame is answered over ${wire}`, async () => {
      assert.equal((await call(envelope(message))).grpc, 0);
    });
  }

  test("a compressed frame with grpc-encoding gzip is answered over gRPC", async () => {
    const compressed = envelope(gzipSync(message));
    compressed[0] = 1;
    const answer = await rawGrpc(session, path, t.ownerToken, compressed, { "grpc-encoding": "gzip" });
    assert.equal(answer.grpc, 0, answer.message);
  });
});
