/**
 * The size and deadline limits of RPC requests, refused with our error
 * shape and in WIRE.md's order of checks.
 *
 * connect-es enforces readMaxBytes and maxTimeoutMs itself, but its
 * refusals pass no interceptor: they carried no ErrorDetail and no stable
 * id, unlike every other error, and a deadline it would not take was
 * refused before the auth gate ran. So the limits are taken over before
 * connect sees the request: a deadline header that is malformed or over
 * the maximum, and a content-length over the limit, are removed, and the
 * body is made to fail with our error when it is first read, which connect
 * does after the gate. While the body streams, a frame announcing more than
 * the limit, or a body growing past it, fails it the same way. connect's
 * own checks stay behind ours and find nothing left to refuse.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, createContextValues, type ConnectError } from "@connectrpc/connect";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { errorWithId } from "./error-mapper.js";
import { logOutcome, type Telemetry } from "./request-log.js";

/** The limits of one call. */
export interface RequestLimits {
  /** Largest request message, bytes. */
  readonly readMaxBytes: number;
  /** Longest deadline a client may ask for, ms. */
  readonly maxTimeoutMs: number;
  readonly telemetry: Telemetry;
}

const frameHeaderBytes = 5;

/**
 * Returns `req` with its deadline header and body checked against `limits`.
 * A refusal is logged once and thrown into the first read of the body.
 * Calls that break no limit by their headers, and whose body length is
 * already bounded by a content-length within the limit, are returned as
 * they are: the common case costs no copy and no extra stream.
 */
export function withRequestLimits(req: UniversalServerRequest, method: DescMethod, limits: RequestLimits): UniversalServerRequest {
  if (!isByteStream(req.body)) return req;
  const isFramed = /^application\/(grpc|connect\+)/i.test(req.header.get("content-type") ?? "") && !isGrpcWebText(req.header);
  const isRefused = isDeadlineRefused(req.header, limits.maxTimeoutMs) || Number(req.header.get("content-length") ?? 0) > limits.readMaxBytes;
  if (!isRefused && !isFramed && req.header.has("content-length")) return req;

  const header = isRefused ? new Headers(req.header) : req.header;
  const refusal = isRefused ? (takeDeadline(header, limits.maxTimeoutMs) ?? takeLength(header, limits.readMaxBytes)) : undefined;
  const values = req.contextValues ?? createContextValues();
  const refuse = (err: ConnectError): never => {
    logOutcome(limits.telemetry, { method, values }, err);
    throw err;
  };
  return { ...req, header, contextValues: values, body: limitedBody(req.body, { refusal, isFramed, limit: limits.readMaxBytes, refuse }) };
}

function isDeadlineRefused(header: Headers, maxTimeoutMs: number): boolean {
  if (!header.has("grpc-timeout") && !header.has("connect-timeout-ms")) return false;
  return (
    parseGrpcTimeout(header.get("grpc-timeout"), maxTimeoutMs).error !== undefined ||
    parseConnectTimeout(header.get("connect-timeout-ms"), maxTimeoutMs).error !== undefined
  );
}

/** Removes the deadline header when connect would refuse it; returns our refusal then. */
function takeDeadline(header: Headers, maxTimeoutMs: number): ConnectError | undefined {
  const values = [header.get("grpc-timeout"), header.get("connect-timeout-ms")];
  const parsed = [parseGrpcTimeout(values[0], maxTimeoutMs), parseConnectTimeout(values[1], maxTimeoutMs)];
  const refused = parsed.find((p) => p.error !== undefined);
  if (refused === undefined) return undefined;
  header.delete("grpc-timeout");
  header.delete("connect-timeout-ms");
  // connect parsed a value it then found too long; a malformed one it did not.
  if (refused.timeoutMs !== undefined) {
    return errorWithId(Code.InvalidArgument, "REQ-deadline01", `the deadline is longer than the ${maxTimeoutMs} ms allowed`);
  }
  const value = (values[parsed.indexOf(refused)] ?? "").slice(0, 40);
  return errorWithId(Code.InvalidArgument, "REQ-deadline02", `the deadline header value ${JSON.stringify(value)} is malformed`);
}

/** Removes a content-length over `limit`, so connect reads on to our refusal; returns it then. */
function takeLength(header: Headers, limit: number): ConnectError | undefined {
  const declared = Number(header.get("content-length") ?? 0);
  if (!(declared > limit)) return undefined;
  header.delete("content-length");
  return tooLarge(declared, limit);
}

function tooLarge(size: number, limit: number): ConnectError {
  return errorWithId(Code.ResourceExhausted, "REQ-size01", `request message of ${size} bytes is larger than the ${limit} bytes allowed`);
}

interface BodyLimits {
  readonly refusal: ConnectError | undefined;
  /** Framed bodies (gRPC, gRPC-web, Connect streams) announce each message's length. */
  readonly isFramed: boolean;
  readonly limit: number;
  readonly refuse: (err: ConnectError) => never;
}

/**
 * Passes the body through, chunk by chunk, unless a limit is broken: then
 * throws before passing on the chunk that breaks it. Only the first frame
 * is checked; connect checks the frames of streams after it.
 */
async function* limitedBody(body: AsyncIterable<Uint8Array>, b: BodyLimits): AsyncIterable<Uint8Array> {
  if (b.refusal) b.refuse(b.refusal);
  let size = 0;
  let head = Buffer.alloc(0);
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (b.isFramed && head.length < frameHeaderBytes) {
      head = Buffer.concat([head, chunk]).subarray(0, frameHeaderBytes);
      if (head.length === frameHeaderBytes && head.readUInt32BE(1) > b.limit) b.refuse(tooLarge(head.readUInt32BE(1), b.limit));
    }
    if (!b.isFramed && size > b.limit) b.refuse(tooLarge(size, b.limit));
    yield chunk;
  }
}

function isGrpcWebText(header: Headers): boolean {
  return /^application\/grpc-web-text/i.test(header.get("content-type") ?? "");
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}
