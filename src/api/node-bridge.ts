/**
 * Hands a Node request to one of the router's universal handlers and writes
 * its answer back: a leaner stand-in for connect-node's
 * universalRequestFromNodeRequest and universalResponseToNodeResponse, used
 * for unary RPCs, which is every RPC but the streaming ones of health and
 * reflection (those keep connect-node's functions).
 *
 * Why: under load (bench/grpc-vs-grpcjs.ts) the general functions took about
 * a tenth of a bare connect-node server's CPU per call. They serve streams
 * too, so they await each chunk's write with its own drain, error and end
 * listeners, and they abort the request's signal on every close, which
 * builds a DOMException with a stack trace even after a complete answer,
 * when nothing listens any more. A unary answer is one message: here it is
 * collected, then head, body and trailers go out in one write.
 *
 * Kept from connect-node: the request URL, headers and body stream; the
 * signal aborts when the client goes away before the answer is written
 * (handlers such as test mails stop then); and over HTTP/1.1 an answer given
 * before the request body arrived in full (a refused token, a broken frame)
 * is written by connect-node's function, which drains the rest of the body.
 * Over HTTP/2 such an answer is followed by a reset of the stream, done
 * here: see stopRequestAfterAnswer.
 */
import type http from "node:http";
import http2 from "node:http2";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** One call between Node and a universal handler. */
export interface NodeBridge {
  readonly request: UniversalServerRequest;
  /** Writes the handler's answer. Rejects when writing fails. */
  respond(answer: UniversalServerResponse): Promise<void>;
}

/** Bridges `req`/`res` for a call of `method`; unary calls take the lean path. */
export function bridgeNodeCall(method: DescMethod, req: NodeRequest, res: NodeResponse): NodeBridge {
  if (method.methodKind !== "unary") {
    return {
      request: universalRequestFromNodeRequest(req, res, undefined, undefined),
      respond: (answer) => universalResponseToNodeResponse(answer, res),
    };
  }
  return bridgeUnary(req, res);
}

function bridgeUnary(req: NodeRequest, res: NodeResponse): NodeBridge {
  const controller = new AbortController();
  let isAnswered = false;
  const onGone = () => {
    if (!isAnswered) controller.abort(new ConnectError("the client closed the call", Code.Canceled));
  };
  // HTTP/1.1 requests close once their body is read, so watch the response there.
  (isHttp2(req) ? req : res).once("close", onGone);

  const body = req.iterator({ destroyOnReturn: false });
  const request: UniversalServerRequest = {
    httpVersion: req.httpVersion,
    method: req.method ?? "",
    url: requestUrl(req),
    header: webHeaders(req.headers),
    body,
    signal: controller.signal,
  };
  const respond = async (answer: UniversalServerResponse) => {
    const message = await collect(answer.body);
    if (!req.complete) {
      // Answered early over HTTP/1.1: connect-node drains the rest of the body.
      if (!isHttp2(req)) return universalResponseToNodeResponse({ ...answer, body: once(message) }, res);
      stopRequestAfterAnswer(req, body);
    }
    isAnswered = true;
    res.writeHead(answer.status, nodeHeaders(answer.header));
    if (answer.trailer) res.addTrailers(nodeHeaders(answer.trailer));
    res.end(message);
  };
  return { request, respond };
}

/**
 * Once an answer given before the whole request arrived is out, trailers
 * included, resets the stream with NO_ERROR, which tells the client to stop
 * sending (RFC 9113, section 8.1), and drops the request bytes still
 * buffered. Node destroys a reset stream only once its readable side has
 * ended, and a stream holding unread bytes never ends: it stayed open until
 * the client went away, and the session's close() at shutdown waited for it
 * (test/notify/send-validation.test.ts). The body's iterator, which the
 * handler left unfinished, is ended first: while its "readable" listener is
 * on the stream (Node removes it from its bookkeeping a tick later), resume()
 * does not make the request flow. (The request, not its stream: the
 * compatibility layer pauses the stream while the request's buffer is full.)
 */
function stopRequestAfterAnswer(req: http2.Http2ServerRequest, body: AsyncIterator<unknown>): void {
  const stream = req.stream;
  // Node has no event for "trailers sent": its own wantTrailers listener,
  // registered before ours, sends them on setImmediate, so ours comes after.
  stream.once("wantTrailers", () =>
    setImmediate(() => {
      if (stream.state.remoteClose !== 0) return;
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
      void Promise.resolve(body.return?.()).finally(() => setImmediate(() => req.resume()));
    }),
  );
}

function isHttp2(req: NodeRequest): req is http2.Http2ServerRequest {
  return "stream" in req;
}

/** The URL as connect-node builds it, so handlers see the same value. */
function requestUrl(req: NodeRequest): string {
  const authority = isHttp2(req) ? req.authority : req.headers.host;
  if (authority === undefined) throw new ConnectError("request without an authority", Code.InvalidArgument);
  const isTls = "encrypted" in req.socket && req.socket.encrypted === true;
  return new URL(req.url ?? "", `${isTls ? "https" : "http"}://${authority}`).toString();
}

/** Node's headers as fetch Headers, without HTTP/2 pseudo-headers. */
function webHeaders(headers: http.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const name in headers) {
    const value = headers[name];
    if (name.startsWith(":") || value === undefined) continue;
    if (typeof value === "string") out.append(name, value);
    else for (const item of value) out.append(name, item);
  }
  return out;
}

function nodeHeaders(headers: Headers | undefined): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  headers?.forEach((value, name) => {
    // Headers joins repeated fields with ", "; set-cookie is the one that must stay a list.
    out[name] = name === "set-cookie" ? headers.getSetCookie() : value;
  });
  return out;
}

async function collect(body: AsyncIterable<Uint8Array> | undefined): Promise<Buffer> {
  if (body === undefined) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return chunks.length === 1 ? Buffer.from(chunks[0].buffer, chunks[0].byteOffset, chunks[0].byteLength) : Buffer.concat(chunks);
}

async function* once(body: Uint8Array): AsyncIterable<Uint8Array> {
  if (body.length > 0) yield body;
}
