/**
 * The REST binding: a request such as "PUT /admin/v1/smtp/{id}/password"
 * becomes the Connect JSON call of the RPC its google.api.http option names,
 * and runs through the very same universal handler (auth gate, interceptors,
 * error mapper, domain). Only the envelope changes: path variables and query
 * parameters are merged into the request message, and errors get
 * grpc-gateway's body.
 *
 * A request whose body or parameters cannot make a message (too large, a
 * path variable the message lacks, a mistyped query value) is still handed
 * to the handler, with a body that fails as it is read: the auth gate runs
 * first, so REST keeps WIRE.md's order of checks (instance, token,
 * permission, then input), as Connect and gRPC do.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { ScalarType, type DescField, type DescMessage, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { protocolKey } from "../context.js";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "../../domain/deps.js";
import { errorWithId } from "../error-mapper.js";
import { withCheckedBody } from "../request-body.js";
import { logOutcome, logRefusedRequest } from "../request-log.js";
import { gatewayError, toGatewayError, type GatewayError } from "./gateway-error.js";
import { compareSpecificity, matchPath, splitPath } from "./path-template.js";
import type { RestRoute } from "./http-rules.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

interface Bound {
  readonly route: RestRoute;
  readonly handler: UniversalHandler;
}

/** What the transcoder found for a path. */
type Lookup =
  | { readonly kind: "none" }
  | { readonly kind: "wrong_verb"; readonly allowed: string[] }
  | { readonly kind: "found"; readonly bound: Bound; readonly vars: Record<string, string> };

/** Serves REST requests for a set of routes. */
export class RestTranscoder {
  private readonly routes: Bound[];

  /**
   * `handlers` are the router's universal handlers; each route is bound to
   * the handler of its method. Routes are kept most specific first.
   */
  constructor(
    routes: readonly RestRoute[],
    handlers: readonly UniversalHandler[],
    private readonly readMaxBytes: number,
    private readonly log: Logger,
  ) {
    this.routes = routes
      .map((route) => ({ route, handler: handlers.find((h) => h.method === route.method)! }))
      .filter((b) => b.handler !== undefined)
      .sort((a, b) => compareSpecificity(a.route.template, b.route.template));
  }

  /** True when some route's template matches the path, whatever the verb. */
  handles(path: string): boolean {
    return this.lookup("", path).kind !== "none";
  }

  private lookup(verb: string, path: string): Lookup {
    const parts = splitPath(path);
    if (!parts) return { kind: "none" };
    const allowed: string[] = [];
    for (const bound of this.routes) {
      const vars = matchPath(bound.route.template, parts);
      if (!vars) continue;
      if (bound.route.verb === verb) return { kind: "found", bound, vars };
      allowed.push(bound.route.verb);
    }
    return allowed.length > 0 ? { kind: "wrong_verb", allowed } : { kind: "none" };
  }

  /** Answers one REST request. Never throws; failures become gateway errors. */
  async serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://rest.invalid");
    const found = this.lookup(req.method ?? "", url.pathname);
    try {
      if (found.kind === "none") {
        logRefusedRequest(this.log, "rest.no_route", req, 404);
        return send(res, gatewayError(Code.NotFound, "REST-path01", "no REST route for this path"));
      }
      if (found.kind === "wrong_verb") {
        logRefusedRequest(this.log, "rest.wrong_verb", req, 405);
        res.setHeader("allow", [...new Set(found.allowed)].join(", "));
        // grpc-gateway's answer: code Unimplemented in the body, yet HTTP 405.
        const text = `method ${req.method} is not allowed on this path`;
        return send(res, { ...gatewayError(Code.Unimplemented, "REST-verb01", text), status: 405 });
      }
      let message: JsonValue | Buffer | ConnectError;
      try {
        const body = await readBody(req, this.readMaxBytes, found.bound.route.body === "*");
        message = requestJson(found.bound.handler.method.input, body, found.vars, url.searchParams);
      } catch (err) {
        if (!(err instanceof ConnectError)) throw err;
        message = err;
      }
      await this.forward(req, res, found.bound.handler, message);
    } catch (err) {
      if (!(err instanceof ConnectError)) {
        this.log.error({ event: "rest.fault", path: url.pathname, err: (err as Error).message }, "REST request failed unexpectedly");
      }
      if (!res.headersSent) send(res, toGatewayError(ConnectError.from(err)));
    }
  }

  /** Calls `handler` with `message`, or with a body that fails with `message` when it is a refusal. */
  private async forward(
    req: NodeRequest,
    res: NodeResponse,
    handler: UniversalHandler,
    message: JsonValue | Buffer | ConnectError,
  ): Promise<void> {
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    const header = new Headers({ "content-type": "application/json", "connect-protocol-version": "1" });
    const authorization = req.headers.authorization;
    if (typeof authorization === "string") header.set("authorization", authorization);
    const authority = "authority" in req ? req.authority : req.headers.host;

    // Bytes, and checked like a Connect JSON body, so that a body that does
    // not decode (bytes that did not parse go in raw) is refused after the
    // auth checks, in the usual order, with the same error and id.
    const values = createContextValues().set(protocolKey, "rest");
    const body =
      message instanceof ConnectError
        ? refusedBody(message, () => logOutcome({ log: this.log }, { method: handler.method, values }, message))
        : oneChunk(Buffer.isBuffer(message) ? message : Buffer.from(JSON.stringify(message)));
    const uReq: UniversalServerRequest = {
      httpVersion: req.httpVersion,
      method: "POST",
      url: new URL(handler.requestPath, `http://${authority ?? "unknown.invalid"}`).toString(),
      header,
      body,
      signal: abort.signal,
      contextValues: values,
    };
    const uRes = await handler(withCheckedBody(uReq, handler.method, { log: this.log }));
    const answer = await collect(uRes.body);
    if (uRes.status === 200) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(answer);
      return;
    }
    send(res, toGatewayError(errorFromJsonBytes(answer, undefined, new ConnectError("request failed", Code.Internal))));
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * A body that fails with `refusal` when read: the handler reads it only
 * after its auth gate admitted the call. `log` runs then, once, since a
 * failure while reading the body passes no interceptor, the request log's
 * included.
 */
async function* refusedBody(refusal: ConnectError, log: () => void): AsyncIterable<Uint8Array> {
  log();
  throw refusal;
}

async function collect(body: AsyncIterable<Uint8Array> | undefined): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  if (body) for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function send(res: NodeResponse, error: GatewayError): void {
  res.writeHead(error.status, { "content-type": "application/json" });
  res.end(JSON.stringify(error.body));
}

/**
 * Reads the body up to `limit` bytes. Throws ResourceExhausted beyond it,
 * without buffering the rest.
 */
async function readBody(req: NodeRequest, limit: number, wanted: boolean): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    if (wanted) chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function tooLarge(limit: number): ConnectError {
  return errorWithId(Code.ResourceExhausted, "REST-size01", `request body is larger than ${limit} bytes`);
}

/**
 * The request message as JSON: the body (when the route takes one), then
 * query parameters, then path variables, later ones winning. Returns the raw
 * bytes when the body is not a JSON object, for the handler to refuse.
 */
function requestJson(input: DescMessage, body: Buffer, vars: Record<string, string>, query: URLSearchParams): JsonValue | Buffer {
  let json: JsonObject = {};
  if (body.length > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      return body;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return body;
    json = parsed as JsonObject;
  }
  // Query parameters that name no field are ignored, as grpc-gateway does and
  // as unknown body fields are (request-body.ts): clients add their own, such
  // as a cache buster.
  for (const [name, value] of query) {
    if (isKnownField(input, name.split("."))) setField(input, json, name.split("."), value);
  }
  for (const [name, value] of Object.entries(vars)) setField(input, json, name.split("."), value);
  return json;
}

function findField(message: DescMessage, name: string): DescField | undefined {
  return message.fields.find((f) => f.name === name || f.jsonName === name);
}

/** True when the dotted path names a field, through message fields. */
function isKnownField(message: DescMessage, path: string[]): boolean {
  const [name, ...rest] = path;
  const field = findField(message, name);
  if (!field || rest.length === 0) return field !== undefined;
  return field.fieldKind === "message" && isKnownField(field.message, rest);
}

/**
 * Sets a (possibly nested) field from text, typed by its descriptor. An
 * unknown name (a path variable the message lacks) is refused.
 */
function setField(message: DescMessage, target: JsonObject, path: string[], text: string): void {
  const [name, ...rest] = path;
  const field = findField(message, name);
  if (!field) throw errorWithId(Code.InvalidArgument, "REST-field01", `unknown field "${name}" in ${message.typeName}`);
  // Drop the other spelling, so path variables win over body fields.
  if (field.name !== field.jsonName) delete target[field.name];
  if (rest.length > 0) {
    if (field.fieldKind !== "message") throw errorWithId(Code.InvalidArgument, "REST-field02", `field "${name}" has no subfields`);
    const child = (target[field.jsonName] ?? {}) as JsonObject;
    target[field.jsonName] = child;
    setField(field.message, child, rest, text);
    return;
  }
  target[field.jsonName] = typed(field, text);
}

function typed(field: DescField, text: string): JsonValue {
  if (field.fieldKind === "scalar" && field.scalar === ScalarType.BOOL) {
    if (text === "true" || text === "false") return text === "true";
    throw errorWithId(Code.InvalidArgument, "REST-field03", `field "${field.name}" must be true or false`);
  }
  return text;
}
