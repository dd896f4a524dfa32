/**
 * CORS for browser apps on other origins (connect-web, gRPC-web). Only the
 * origins the operator lists are allowed; with none listed, browsers may call
 * only from the same origin.
 */
import type http from "node:http";
import type http2 from "node:http2";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Request headers Connect, gRPC-web and the REST binding use. */
export const allowedHeaders = [
  "authorization",
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "connect-accept-encoding",
  "connect-content-encoding",
  "grpc-timeout",
  "grpc-accept-encoding",
  "grpc-encoding",
  "x-grpc-web",
  "x-user-agent",
];

/** Response headers a browser client must be able to read. */
export const exposedHeaders = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "grpc-encoding",
  "grpc-accept-encoding",
  "connect-content-encoding",
  "connect-accept-encoding",
  "content-encoding",
];

const allowedMethods = ["GET", "POST", "PUT", "DELETE"];

/** How long a browser may cache a preflight answer, in seconds. */
const preflightMaxAgeSeconds = 7200;

/**
 * Adds CORS headers for an allowed Origin. Answers a preflight itself and
 * returns true then; returns false when the request should go on.
 */
export function applyCors(allowedOrigins: ReadonlySet<string>, req: NodeRequest, res: NodeResponse): boolean {
  const origin = req.headers.origin;
  const isPreflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
  if (typeof origin !== "string" || !(allowedOrigins.has(origin) || allowedOrigins.has("*"))) {
    if (!isPreflight) return false;
    res.writeHead(403, { "content-type": "text/plain" });
    res.end("origin not allowed\n");
    return true;
  }
  res.setHeader("access-control-allow-origin", origin);
  res.setHeader("vary", "Origin");
  if (!isPreflight) {
    res.setHeader("access-control-expose-headers", exposedHeaders.join(", "));
    return false;
  }
  res.writeHead(204, {
    "access-control-allow-methods": allowedMethods.join(", "),
    "access-control-allow-headers": allowedHeaders.join(", "),
    "access-control-max-age": String(preflightMaxAgeSeconds),
  });
  res.end();
  return true;
}
