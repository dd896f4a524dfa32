/**
 * Calls to the REST binding with fetch, as a JSON client (a script, curl)
 * makes them, and the check every REST error must pass: grpc-gateway's body
 * with one zitadel.v1.ErrorDetail.
 */
import assert from "node:assert/strict";
import type { Code } from "@connectrpc/connect";

/**
 * Parsed JSON. Loosely typed on purpose: tests reach into nested fields and
 * assert on them, so a wrong guess fails as an assertion, not a cast.
 */
export type JsonBody = Record<string, any>;

/** Everything but the verb and path of a REST call; all optional. */
export interface RestOptions {
  /** Sent as "Authorization: Bearer <token>". */
  readonly token?: string;
  /** Sent as is when a string, else JSON-serialized. */
  readonly body?: string | object;
  /** Default "application/json" when there is a body. */
  readonly contentType?: string;
  /** Extra request headers, e.g. Origin. */
  readonly headers?: Record<string, string>;
}

/** One REST answer. */
export interface RestAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body as JSON; undefined when it is not JSON. */
  readonly json: JsonBody | undefined;
}

/** Sends `verb` `path` (e.g. "/admin/v1/smtp") to `baseUrl`. */
export async function rest(
  baseUrl: string,
  verb: string,
  path: string,
  options: RestOptions = {},
): Promise<RestAnswer> {
  const headers = new Headers(options.headers);
  if (options.token !== undefined) headers.set("authorization", `Bearer ${options.token}`);
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers.set("content-type", options.contentType ?? "application/json");
  }
  const res = await fetch(baseUrl + path, { method: verb, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: parseJson(text) };
}

function parseJson(text: string): JsonBody | undefined {
  try {
    return JSON.parse(text) as JsonBody;
  } catch {
    return undefined;
  }
}

/** The JSON of a successful answer, asserting HTTP 200 first. */
export function okJson(answer: RestAnswer): JsonBody {
  assert.equal(answer.status, 200, answer.text);
  assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
  assert.ok(answer.json, `not JSON: ${answer.text}`);
  return answer.json;
}

/** The ErrorDetail of a REST error. */
export interface GatewayDetail {
  readonly id: string;
  readonly message: string;
}

/**
 * Asserts grpc-gateway's error body, exactly: {"code": <int>, "message":
 * "<text> (<id>)", "details": [{"@type": ".../zitadel.v1.ErrorDetail", "id",
 * "message"}]}, with `status` and `code`, and `id` when given. Returns the
 * detail.
 */
export function assertGatewayError(answer: RestAnswer, status: number, code: Code, id?: string): GatewayDetail {
  assert.equal(answer.status, status, answer.text);
  assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
  const body = answer.json;
  assert.ok(body, `not JSON: ${answer.text}`);
  assert.deepEqual(Object.keys(body).sort(), ["code", "details", "message"]);
  assert.equal(body.code, code, answer.text);
  assert.equal(body.details.length, 1, `expected one detail: ${answer.text}`);

  const [detail] = body.details as JsonBody[];
  assert.deepEqual(Object.keys(detail).sort(), ["@type", "id", "message"]);
  assert.equal(detail["@type"], "type.googleapis.com/zitadel.v1.ErrorDetail");
  assert.match(detail.id, /^[A-Za-z]+-[A-Za-z0-9]+$/);
  assert.equal(body.message, `${detail.message} (${detail.id})`);
  if (id !== undefined) assert.equal(detail.id, id, answer.text);
  return { id: detail.id, message: detail.message };
}
