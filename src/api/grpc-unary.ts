/**
 * Unary gRPC calls answered through the Connect protocol of the same
 * universal handler: the request's one message frame is unwrapped into a
 * Connect unary request (application/proto), and the Connect answer is
 * wrapped back into a gRPC frame and trailers.
 *
 * Why: connect-es serves gRPC with its streaming machinery even for unary
 * methods: a chain of async iterables (split, decompress, parse, invoke,
 * serialize, compress, join, catch) per call, each a generator with its own
 * promises. Profiled under load (bench/grpc-vs-grpcjs.ts), that chain was
 * most of connect's share of the CPU per call. Its Connect unary handler
 * reads one message, calls the method and returns one message. Both run the
 * same request gate, interceptors, error mapper and service implementation,
 * registered once on the router, so going through the Connect handler
 * changes how the bytes are carried, not what the call does. The REST
 * binding rides on the same handlers the same way (rest/transcoder.ts).
 *
 * What stays identical on the wire, and how: the frame checks of
 * grpc-framing.ts, the limits of request-limits.ts and the message check of
 * request-body.ts run on the body as before, with the same errors and log
 * lines; the announced message length becomes the Connect request's
 * content-length, so an oversized message is refused from its frame header,
 * before it is read; grpc-timeout becomes connect-timeout-ms; the response
 * compression is negotiated from grpc-accept-encoding by connect's own
 * function and named in grpc-encoding as the gRPC handler does; an error's
 * code, message and details go into the trailers through connect's own
 * setTrailerStatus. The request log names the protocol "grpc".
 *
 * Left to connect's gRPC handler, because carrying them over would copy
 * more of its rules than it saves: requests over HTTP/1.1, JSON messages
 * (application/grpc+json), compressed requests (grpc-encoding or
 * content-encoding), and a grpc-timeout connect would refuse.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import {
  compressionNegotiate,
  type Compression,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { contentTypeProto, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { protocolKey } from "./context.js";
import { withCheckedFraming } from "./grpc-framing.js";
import { withCheckedBody } from "./request-body.js";
import { withRequestLimits } from "./request-limits.js";
import type { Telemetry } from "./request-log.js";

/** What a transcoded call needs besides the request. */
export interface GrpcUnaryOptions {
  /** The compressions the router accepts, in its order of preference. */
  readonly acceptCompression: readonly Compression[];
  /** The router's longest deadline, in ms. */
  readonly maxTimeoutMs: number;
  /** The router's largest request message for a method, in bytes. */
  readonly readMaxBytesOf: (method: DescMethod) => number;
  readonly telemetry: Telemetry;
}

const frameHeaderBytes = 5;
const compressedFlag = 0b1;

/** True when `req` is a unary gRPC call that callGrpcUnary can carry. */
export function isTranscodableGrpc(req: UniversalServerRequest, method: DescMethod, maxTimeoutMs: number): boolean {
  if (method.methodKind !== "unary" || req.method !== "POST" || req.httpVersion !== "2.0") return false;
  const type = req.header.get("content-type")?.toLowerCase();
  if (type !== "application/grpc" && type !== "application/grpc+proto") return false;
  const encoding = req.header.get("grpc-encoding");
  if ((encoding !== null && encoding !== "identity") || req.header.has("content-encoding")) return false;
  return parseTimeout(req.header.get("grpc-timeout"), maxTimeoutMs).error === undefined;
}

/**
 * Runs the unary gRPC call `req` (isTranscodableGrpc must hold) through
 * `handler`'s Connect protocol and returns the answer in gRPC's form. Never
 * throws for a refused call: refusals become grpc-status trailers.
 */
export async function callGrpcUnary(
  handler: UniversalHandler,
  req: UniversalServerRequest,
  options: GrpcUnaryOptions,
): Promise<UniversalServerResponse> {
  const negotiated = compressionNegotiate(options.acceptCompression as Compression[], null, req.header.get("grpc-accept-encoding"), "grpc-accept-encoding");
  const { peeked, rest, whole } = await peekFrame(req.body as AsyncIterable<Uint8Array>);
  const values = req.contextValues ?? createContextValues();
  values.set(protocolKey, "grpc");
  const header = connectHeader(req.header, announcedLength(peeked), negotiated.response, options.maxTimeoutMs);
  let body: AsyncIterable<Uint8Array>;
  if (whole) {
    // One plain frame and nothing after it: the frame checks have nothing
    // to refuse, so the message goes on as it is.
    body = oneChunk(whole.subarray(frameHeaderBytes));
  } else {
    // Frames are checked on the gRPC body, before the message check, as in serveRpc.
    const framed = withCheckedFraming({ ...req, contextValues: values, body: resumed(peeked, rest) }, handler.method, options.telemetry);
    body = withoutFrameHeader(framed.body as AsyncIterable<Uint8Array>);
  }
  const connectReq: UniversalServerRequest = { ...req, contextValues: values, header, body };
  const limits = { readMaxBytes: options.readMaxBytesOf(handler.method), maxTimeoutMs: options.maxTimeoutMs, telemetry: options.telemetry };
  const answer = await handler(withCheckedBody(withRequestLimits(connectReq, handler.method, limits), handler.method, options.telemetry));
  return grpcAnswer(answer, negotiated.response);
}

/** The request header as Connect's unary protocol names the same things. */
function connectHeader(grpc: Headers, length: number | undefined, response: Compression | null, maxTimeoutMs: number): Headers {
  const header = new Headers();
  grpc.forEach((value, name) => {
    if (!name.startsWith("grpc-") && !name.startsWith("connect-") && name !== "accept-encoding") header.append(name, value);
  });
  header.set("content-type", "application/proto");
  if (length === undefined) header.delete("content-length");
  else header.set("content-length", String(length));
  // parseTimeout accepted it in isTranscodableGrpc; Connect counts whole ms,
  // so a deadline under one ms rounds up to one, as a timer would anyway.
  const { timeoutMs } = parseTimeout(grpc.get("grpc-timeout"), maxTimeoutMs);
  if (timeoutMs !== undefined) header.set("connect-timeout-ms", String(Math.ceil(timeoutMs)));
  if (response) header.set("accept-encoding", response.name);
  return header;
}

/** Converts a Connect unary answer into a gRPC answer: one frame, then trailers. */
async function grpcAnswer(answer: UniversalServerResponse, compression: Compression | null): Promise<UniversalServerResponse> {
  const body = await collect(answer.body);
  const header = new Headers({ "content-type": contentTypeProto });
  if (compression) header.set("grpc-encoding", compression.name);
  const trailer = new Headers();
  answer.header?.forEach((value, name) => {
    if (name.startsWith("trailer-")) trailer.append(name.slice("trailer-".length), value);
    else if (!isConnectProtocolHeader(name)) header.append(name, value);
  });
  if (answer.status !== 200) {
    setTrailerStatus(trailer, errorOf(body));
    return { status: 200, header, trailer };
  }
  setTrailerStatus(trailer, undefined);
  const isCompressed = answer.header?.has("content-encoding") === true;
  return { status: 200, header, body: oneChunk(frame(body, isCompressed)), trailer };
}

/** The error a Connect unary error body describes. */
function errorOf(body: Uint8Array): ConnectError {
  // Connect wrote this body itself, so the fallback is for a bug of ours.
  const fallback = new ConnectError("internal error", Code.Internal);
  try {
    return errorFromJsonBytes(body, undefined, fallback);
  } catch {
    return fallback;
  }
}

function isConnectProtocolHeader(name: string): boolean {
  return name === "content-type" || name === "content-length" || name === "content-encoding" || name === "accept-encoding";
}

function frame(message: Uint8Array, isCompressed: boolean): Uint8Array {
  const out = Buffer.allocUnsafe(frameHeaderBytes + message.byteLength);
  out[0] = isCompressed ? compressedFlag : 0;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, frameHeaderBytes);
  return out;
}

/** What peekFrame read: the chunks so far, and the body whole when that was all. */
interface Peeked {
  readonly peeked: Uint8Array[];
  readonly rest: AsyncIterator<Uint8Array>;
  /** The whole body, when it is one plain frame, complete, and the body ended there. */
  readonly whole?: Buffer;
}

/**
 * Reads until the first frame header is in, or the body ends. When the
 * chunks read hold exactly one whole uncompressed frame, reads on to see
 * whether the body ends there. The bytes read are handed on otherwise, so
 * the frame checks see the body whole.
 *
 * Why look for the end: a unary message is small and usually arrives in one
 * chunk, and a body known whole skips three streaming layers per call. It
 * only waits for what the frame header announced to be already in, so no
 * more is buffered than before; the request gate still runs before the
 * message is checked or parsed.
 */
async function peekFrame(body: AsyncIterable<Uint8Array>): Promise<Peeked> {
  const rest = body[Symbol.asyncIterator]();
  const peeked: Uint8Array[] = [];
  let size = 0;
  while (size < frameHeaderBytes) {
    const next = await rest.next();
    if (next.done === true) return { peeked, rest };
    peeked.push(next.value);
    size += next.value.byteLength;
  }
  const length = announcedLength(peeked);
  if (length === undefined || size !== frameHeaderBytes + length) return { peeked, rest };
  const next = await rest.next();
  if (next.done !== true) return { peeked: [...peeked, next.value], rest };
  return { peeked, rest, whole: Buffer.concat(peeked) };
}

/** The message length the first frame announces, if the frame header is whole and plain. */
function announcedLength(peeked: Uint8Array[]): number | undefined {
  const head = Buffer.concat(peeked).subarray(0, frameHeaderBytes);
  if (head.length < frameHeaderBytes || head[0] !== 0) return undefined;
  return head.readUInt32BE(1);
}

async function* resumed(peeked: Uint8Array[], rest: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  yield* peeked;
  for (let next = await rest.next(); next.done !== true; next = await rest.next()) yield next.value;
}

/**
 * The message bytes of a body the frame checks passed: one frame, so
 * everything after its first five bytes.
 */
async function* withoutFrameHeader(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let skip = frameHeaderBytes;
  for await (const chunk of body) {
    const taken = Math.min(skip, chunk.byteLength);
    skip -= taken;
    if (taken < chunk.byteLength) yield chunk.subarray(taken);
  }
}

async function collect(body: AsyncIterable<Uint8Array> | undefined): Promise<Uint8Array> {
  if (body === undefined) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
