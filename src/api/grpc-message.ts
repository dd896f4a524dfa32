/**
 * The gRPC `grpc-message` field, percent-encoded the way the gRPC spec and
 * grpc-go (and so ZITADEL) write it: only bytes outside printable ASCII,
 * and "%" itself, are escaped.
 *
 * Why this exists: connect-node escapes the message with encodeURIComponent,
 * which also escapes ":", "/", "," and friends. @grpc/grpc-js (under
 * @zitadel/node and most Node gRPC clients) decodes with decodeURI, which
 * leaves exactly those escapes in place, so its users read
 * "No matching permissions found%3A ..." where ZITADEL shows ":". Both
 * decoders read the spec's form correctly, so we rewrite the field into it.
 * gRPC-web carries its trailers in the body and is left alone; its clients
 * decode with decodeURIComponent.
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { RequestHandler } from "./listener.js";

/** Percent-encodes UTF-8 bytes outside 0x20..0x7E, and "%", as in the gRPC spec. */
export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const printable = byte >= 0x20 && byte <= 0x7e && byte !== 0x25;
    out += printable ? String.fromCharCode(byte) : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Re-encodes a value that connect-node encoded with encodeURIComponent. */
function respecGrpcMessage(value: string): string {
  try {
    return encodeGrpcMessage(decodeURIComponent(value));
  } catch {
    // Not a valid escape sequence: pass it through rather than lose it.
    return value;
  }
}

type Headers = http.OutgoingHttpHeaders;
type Response = http.ServerResponse | http2.Http2ServerResponse;

function rewriteHeaders<T>(headers: T): T {
  if (!headers || typeof headers !== "object" || Array.isArray(headers)) return headers;
  const out: Headers = { ...(headers as Headers) };
  for (const name of Object.keys(out)) {
    const value = out[name];
    if (name.toLowerCase() === "grpc-message" && typeof value === "string") out[name] = respecGrpcMessage(value);
  }
  return out as T;
}

function isGrpc(req: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  const type = String(req.headers["content-type"] ?? "").toLowerCase();
  return type.startsWith("application/grpc") && !type.startsWith("application/grpc-web");
}

/**
 * Wraps `handler` so that gRPC responses carry `grpc-message` in the spec's
 * encoding, in headers (trailers-only answers) and in trailers.
 */
export function withSpecGrpcMessage(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    if (isGrpc(req)) patchResponse(res);
    handler(req, res);
  };
}

function patchResponse(res: Response): void {
  const writeHead = res.writeHead.bind(res) as (status: number, ...rest: unknown[]) => Response;
  const addTrailers = res.addTrailers.bind(res) as (headers: Headers) => void;
  // Only connect's own call forms, writeHead(status, headers) and
  // addTrailers(headers), are rewritten; others pass through unchanged.
  (res as { writeHead: unknown }).writeHead = (status: number, ...rest: unknown[]) =>
    writeHead(status, ...(rest.length === 1 ? [rewriteHeaders(rest[0])] : rest));
  (res as { addTrailers: unknown }).addTrailers = (headers: Headers) => addTrailers(rewriteHeaders(headers));
}
