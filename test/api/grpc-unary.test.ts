/**
 * The transcoded unary gRPC path (src/api/grpc-unary.ts) against connect's
 * own gRPC handler: the same request goes through both, and the answers
 * must match byte for byte (status, headers, trailers, body), for success,
 * mapped errors with details, handler headers and trailers, compression,
 * deadlines, cancellation, size limits and broken frames.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { protocolKey } from "../../src/api/context.js";
import { errorMapper } from "../../src/api/error-mapper.js";
import { withCheckedFraming } from "../../src/api/grpc-framing.js";
import { callGrpcUnary, isTranscodableGrpc, type GrpcUnaryOptions } from "../../src/api/grpc-unary.js";
import { withCheckedBody } from "../../src/api/request-body.js";
import { withRequestLimits } from "../../src/api/request-limits.js";
import { DomainError } from "../../src/domain/errors.js";
import {
  AdminService,
  GetSMTPConfigByIdRequestSchema,
} from "../../src/gen/zitadel/admin/v1/admin_pb.js";

const acceptCompression = [compressionGzip, compressionBrotli];
const maxTimeoutMs = 60_000;
const readMaxBytes = 64 * 1024;

/** A log line without its duration, which differs from run to run. */
function lineOf(fields: object): string {
  const { durationMs: _, ...rest } = fields as { durationMs?: number };
  return JSON.stringify(rest);
}

/** Answers by id: each id exercises one way a call can end. */
async function getById(req: { id: string }, ctx: HandlerContext) {
  switch (req.id) {
    case "missing":
      throw new DomainError("not_found", "TEST-nf01", "no such config: a/b, 100%");
    case "marked":
      ctx.responseHeader.set("x-seen", "head");
      ctx.responseTrailer.set("x-trace", "tail");
      break;
    case "slow":
      // Ends only when the deadline passes or the client goes away.
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      throw ConnectError.from(ctx.signal.reason);
  }
  return { smtpConfig: { id: req.id, description: req.id === "big" ? "x".repeat(4096) : "small" } };
}

function createHandlerUnderTest(logged: string[]): UniversalHandler {
  const log = {
    debug: () => {},
    info: (fields: object) => void logged.push(lineOf(fields)),
    warn: (fields: object) => void logged.push(lineOf(fields)),
    error: (fields: object) => void logged.push(lineOf(fields)),
  };
  const router = createConnectRouter({
    readMaxBytes,
    maxTimeoutMs,
    acceptCompression,
    interceptors: [errorMapper(log)],
    requestGate: (ctx) => {
      // As the real gate (auth-gate.ts) names the protocol for the log line.
      if (ctx.values.get(protocolKey) === "") ctx.values.set(protocolKey, ctx.protocolName);
      if (!ctx.requestHeader.has("authorization")) throw new ConnectError("who are you (TEST-auth01)", Code.Unauthenticated);
    },
  });
  router.service(AdminService, { getSMTPConfigById: getById });
  return router.handlers.find((h) => h.method.name === "GetSMTPConfigById")!;
}

interface Call {
  readonly body: Uint8Array[];
  readonly header?: Record<string, string>;
  /** Aborts the request's signal after this many ms. */
  readonly abortAfterMs?: number;
}

function frame(message: Uint8Array, flags = 0): Uint8Array {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function requestFor(id: string): Uint8Array {
  return frame(toBinary(GetSMTPConfigByIdRequestSchema, create(GetSMTPConfigByIdRequestSchema, { id })));
}

function universalRequest(call: Call): UniversalServerRequest {
  const controller = new AbortController();
  if (call.abortAfterMs !== undefined) setTimeout(() => controller.abort(new ConnectError("gone", Code.Canceled)), call.abortAfterMs);
  return {
    httpVersion: "2.0",
    method: "POST",
    url: "http://127.0.0.1/zitadel.admin.v1.AdminService/GetSMTPConfigById",
    header: new Headers({ "content-type": "application/grpc+proto", te: "trailers", authorization: "Bearer t", ...call.header }),
    body: (async function* () {
      for (const chunk of call.body) yield chunk;
    })(),
    signal: controller.signal,
  };
}

interface Seen {
  readonly status: number;
  readonly header: [string, string][];
  readonly trailer: [string, string][];
  readonly body: string;
  readonly logged: string[];
}

async function seen(answer: Promise<UniversalServerResponse>, logged: string[]): Promise<Seen> {
  const res = await answer;
  const chunks: Uint8Array[] = [];
  if (res.body) for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return {
    status: res.status,
    header: [...(res.header ?? new Headers())].sort(),
    trailer: [...(res.trailer ?? new Headers())].sort(),
    body: Buffer.concat(chunks).toString("hex"),
    logged,
  };
}

/** The call's answer through connect's gRPC handler, then through the transcoded path. */
async function bothWays(call: Call): Promise<{ connect: Seen; transcoded: Seen }> {
  const connectLog: string[] = [];
  const connectHandler = createHandlerUnderTest(connectLog);
  const telemetryOf = (logged: string[]) => ({ log: { debug() {}, info() {}, error() {}, warn: (f: object) => void logged.push(lineOf(f)) } });
  const req = universalRequest(call);
  // Wrapped as serveRpc in handler.ts wraps it.
  const limits = { readMaxBytes, maxTimeoutMs, telemetry: telemetryOf(connectLog) };
  const framed = withCheckedFraming(withCheckedBody(req, connectHandler.method, telemetryOf(connectLog)), connectHandler.method, telemetryOf(connectLog));
  const checked = withRequestLimits(framed, connectHandler.method, limits);
  const connect = await seen(connectHandler(checked), connectLog);

  const transcodedLog: string[] = [];
  const handler = createHandlerUnderTest(transcodedLog);
  const options: GrpcUnaryOptions = { acceptCompression, maxTimeoutMs, readMaxBytesOf: () => readMaxBytes, telemetry: telemetryOf(transcodedLog) };
  const again = universalRequest(call);
  assert.ok(isTranscodableGrpc(again, handler.method, maxTimeoutMs), "the call takes the transcoded path");
  const transcoded = await seen(callGrpcUnary(handler, again, options), transcodedLog);
  return { connect, transcoded };
}

describe("a unary gRPC call through the Connect protocol answers as connect's gRPC handler does", () => {
  const cases: [string, Call][] = [
    ["a successful call", { body: [requestFor("123")] }],
    ["a call whose frame arrives in pieces", { body: (() => { const b = requestFor("123"); return [b.subarray(0, 2), b.subarray(2, 6), b.subarray(6)]; })() }],
    ["a mapped domain error with its ErrorDetail", { body: [requestFor("missing")] }],
    ["a refusal by the request gate", { body: [requestFor("123")], header: { authorization: "" } }],
    ["a handler that sets a response header and trailer", { body: [requestFor("marked")] }],
    ["a large answer to a client accepting gzip", { body: [requestFor("big")], header: { "grpc-accept-encoding": "identity,deflate,gzip" } }],
    ["a small answer to a client accepting gzip", { body: [requestFor("123")], header: { "grpc-accept-encoding": "gzip" } }],
    ["a call whose deadline passes", { body: [requestFor("slow")], header: { "grpc-timeout": "30m" } }],
    ["a call the client cancels", { body: [requestFor("slow")], abortAfterMs: 30 }],
    ["a message over readMaxBytes, refused from its frame header", { body: [Buffer.from([0, 0, 0x50, 0, 0]), Buffer.alloc(16)] }],
    ["an empty body", { body: [] }],
    ["a body that ends inside the frame header", { body: [Buffer.from([0, 0])] }],
    ["a body that ends before its message", { body: [Buffer.from([0, 0, 0, 0, 9, 1])] }],
    ["two frames", { body: [requestFor("123"), requestFor("123")] }],
    ["a whole frame and one more byte in one chunk", { body: [Buffer.concat([requestFor("123"), Buffer.from([0])])] }],
    ["a frame that arrives whole before the end of the body", { body: [requestFor("123"), new Uint8Array(0)] }],
    ["a frame marked compressed without grpc-encoding", { body: [frame(new Uint8Array(0), 1)] }],
    ["a message that is not protobuf", { body: [frame(Buffer.from([0x0a, 0x09, 0x31]))] }],
  ];
  for (const [name, call] of cases) {
    test(`${name}: same status, headers, trailers, body and log lines`, async () => {
      const { connect, transcoded } = await bothWays(call);
      assert.deepEqual(transcoded, connect);
    });
  }
});

describe("unary gRPC calls the transcoded path leaves to connect's gRPC handler", () => {
  const handler = createHandlerUnderTest([]);
  const cases: [string, Record<string, string>][] = [
    ["JSON messages", { "content-type": "application/grpc+json" }],
    ["compressed requests", { "grpc-encoding": "gzip" }],
    ["a content-encoding", { "content-encoding": "gzip" }],
    ["a malformed grpc-timeout", { "grpc-timeout": "soon" }],
    ["a grpc-timeout above the longest deadline", { "grpc-timeout": "2H" }],
  ];
  for (const [name, header] of cases) {
    test(`${name} are not transcoded`, () => {
      assert.equal(isTranscodableGrpc(universalRequest({ body: [], header }), handler.method, maxTimeoutMs), false);
    });
  }

  test("HTTP/1.1 requests are not transcoded", () => {
    const req = { ...universalRequest({ body: [] }), httpVersion: "1.1" };
    assert.equal(isTranscodableGrpc(req, handler.method, maxTimeoutMs), false);
  });
});
