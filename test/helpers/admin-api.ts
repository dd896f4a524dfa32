/**
 * Shared pieces of the admin API end-to-end tests: valid provider settings to
 * start from, the check every error must pass, and raw Connect JSON calls.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../src/gen/zitadel/v1/object_pb.js";
import type { SmtpSink } from "./smtp-sink.js";

/** The fields that add and test requests of both families share. */
export interface ProviderInput {
  senderAddress: string;
  senderName: string;
  tls: boolean;
  host: string;
  user: string;
  password: string;
  replyToAddress: string;
  description: string;
}

/**
 * Settings of a valid provider. The default host is never contacted; tests
 * that send mail pass a sink's address.
 */
export function providerInput(overrides: Partial<ProviderInput> = {}): ProviderInput {
  return {
    senderAddress: "noreply@example.com",
    senderName: "smtpgate tests",
    tls: false,
    host: "smtp.example.com:587",
    user: "mailer",
    password: "",
    replyToAddress: "",
    description: "",
    ...overrides,
  };
}

/**
 * Awaits `call`, which must fail with `code`, and checks the error's shape
 * that every protocol shares: one zitadel.v1.ErrorDetail with a stable id and
 * a message, and a message that is the detail's text followed by "(<id>)".
 * `what` names the call in assertion messages. Returns the error.
 */
export async function expectError(
  call: Promise<unknown>,
  code: Code,
  what = "the call",
): Promise<ConnectError> {
  let caught: unknown;
  try {
    await call;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected ${Code[code]}, but ${what} succeeded`);
  const err = ConnectError.from(caught);
  assert.equal(Code[err.code], Code[code], `${what} failed with: ${err.rawMessage}`);
  assertErrorShape(err, what);
  return err;
}

/** Checks the ErrorDetail and "(<id>)" suffix of one error of `what`. */
export function assertErrorShape(err: ConnectError, what = "the call"): void {
  const details = err.findDetails(ErrorDetailSchema);
  assert.equal(details.length, 1, `expected one ErrorDetail from ${what}: "${err.rawMessage}"`);
  const [{ id, message }] = details;
  assert.match(id, /^[A-Za-z]+-[A-Za-z0-9]+$/);
  assert.ok(message.length > 0);
  assert.equal(err.rawMessage, `${message} (${id})`, what);
}

/** Asserts that `date` is a Timestamp within the last minute. */
export function assertRecent(date: { seconds: bigint } | undefined, what: string): void {
  assert.ok(date, `${what} missing`);
  const ageMs = Date.now() - Number(date.seconds) * 1000;
  assert.ok(ageMs > -5_000 && ageMs < 60_000, `${what} is ${ageMs} ms old`);
}

/** One raw HTTP answer. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** A raw Connect unary call with a JSON body. */
export interface RawCall {
  readonly port: number;
  /** The RPC's method name, e.g. "ListSMTPConfigs". */
  readonly method: string;
  /** Sent as is when a string, else serialized. */
  readonly body: string | object;
  readonly token?: string;
  /** The Host header; default 127.0.0.1 (the bootstrap instance). */
  readonly host?: string;
  readonly contentType?: string;
}

/**
 * Sends one Connect unary request over HTTP/1.1 without a client library, so
 * a test sees the bytes a JSON client gets and can send bytes no client would.
 */
export function rawConnect(call: RawCall): Promise<RawAnswer> {
  const body = typeof call.body === "string" ? call.body : JSON.stringify(call.body);
  const headers: http.OutgoingHttpHeaders = {
    host: `${call.host ?? "127.0.0.1"}:${call.port}`,
    "content-type": call.contentType ?? "application/json",
    "connect-protocol-version": "1",
    "content-length": Buffer.byteLength(body),
  };
  if (call.token !== undefined) headers.authorization = `Bearer ${call.token}`;
  const path = `/zitadel.admin.v1.AdminService/${call.method}`;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: call.port, method: "POST", path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** The JSON of a raw answer, asserting its status first. */
export function jsonOf(answer: RawAnswer, status = 200): Record<string, unknown> {
  assert.equal(answer.status, status, answer.body);
  return JSON.parse(answer.body) as Record<string, unknown>;
}

/**
 * Asserts that a raw Connect answer is an error with `status` and the
 * Connect code name `code` (e.g. "invalid_argument"), in the shape every
 * error shares: one zitadel.v1.ErrorDetail, and a message ending in its id.
 */
export function assertRawError(answer: RawAnswer, status: number, code: string): void {
  const body = jsonOf(answer, status) as {
    code: string;
    message: string;
    details?: { type: string; value: string }[];
  };
  assert.equal(body.code, code);
  assert.equal(body.details?.length, 1, `expected one detail in ${answer.body}`);
  const [detail] = body.details ?? [];
  assert.equal(detail.type, ErrorDetailSchema.typeName);
  const { id, message } = fromBinary(ErrorDetailSchema, Buffer.from(detail.value, "base64"));
  assert.equal(body.message, `${message} (${id})`);
}

/** One login a sink saw: user, password, and whether it was accepted. */
export type Login = [user: string, password: string, accepted: boolean];

/** The logins `sink` saw, from the `from`-th on. */
export function loginsSince(sink: SmtpSink, from = 0): Login[] {
  return sink.authAttempts.slice(from).map((a): Login => [a.username, a.password, a.accepted]);
}

/** A loopback port that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
