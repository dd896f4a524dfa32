/**
 * CORS as a browser sees it: what a preflight from an allowed origin may send
 * (the headers and methods of Connect, gRPC-web and the REST binding), which
 * response headers a page may read, and that other origins, or any origin
 * when none is configured, get no CORS headers at all.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { GetSMTPConfigByIdRequestSchema } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { rawGrpcWeb } from "../helpers/grpc-wire.js";
import { rest, type RestAnswer } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const allowedOrigin = "http://console.example.test:8080";
const otherOrigin = "http://evil.example.test";
const rpcPath = "/zitadel.admin.v1.AdminService/GetSMTPConfigById";

/** What connect-web's Connect transport sends on a unary call. */
const connectHeaders = ["authorization", "connect-protocol-version", "connect-timeout-ms", "content-type"];
/** What connect-web's and grpc-web's gRPC-web transports send. */
const grpcWebHeaders = ["authorization", "content-type", "grpc-timeout", "x-grpc-web", "x-user-agent"];
/** What a page must read to see a gRPC-web status and its ErrorDetail. */
const statusHeaders = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/** A preflight as a browser sends it before a cross-origin call. */
function preflight(t: TestServer, path: string, origin: string, method: string, headers: string[]) {
  return rest(t.baseUrl, "OPTIONS", path, {
    headers: {
      origin,
      "access-control-request-method": method,
      "access-control-request-headers": headers.join(","),
    },
  });
}

/** A header's comma-separated values, lowercased. */
function listOf(answer: RestAnswer, name: string): string[] {
  return (answer.headers.get(name) ?? "").split(",").map((v) => v.trim().toLowerCase()).filter(Boolean);
}

function assertNoCorsHeaders(answer: RestAnswer): void {
  const cors = [...answer.headers.keys()].filter((name) => name.startsWith("access-control-"));
  assert.deepEqual(cors, []);
}

describe("CORS with an allowed origin", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ corsOrigins: [allowedOrigin] });
  });
  after(() => t.stop());

  test("a Connect preflight is allowed with every header connect-web sends", async () => {
    const answer = await preflight(t, rpcPath, allowedOrigin, "POST", connectHeaders);
    assert.equal(answer.status, 204);
    assert.equal(answer.headers.get("access-control-allow-origin"), allowedOrigin);
    assert.ok(listOf(answer, "access-control-allow-methods").includes("post"));
    const allowed = listOf(answer, "access-control-allow-headers");
    assert.deepEqual(connectHeaders.filter((h) => !allowed.includes(h)), []);
    assert.match(answer.headers.get("access-control-max-age") ?? "", /^\d+$/);
    assert.ok(listOf(answer, "vary").includes("origin"));
  });

  test("a gRPC-web preflight is allowed with x-grpc-web, x-user-agent and grpc-timeout", async () => {
    const answer = await preflight(t, rpcPath, allowedOrigin, "POST", grpcWebHeaders);
    assert.equal(answer.status, 204);
    const allowed = listOf(answer, "access-control-allow-headers");
    assert.deepEqual(grpcWebHeaders.filter((h) => !allowed.includes(h)), []);
  });

  test("a REST preflight allows the binding's verbs", async () => {
    const headers = ["authorization", "content-type"];
    const answer = await preflight(t, "/admin/v1/smtp/password", allowedOrigin, "PUT", headers);
    assert.equal(answer.status, 204);
    const methods = listOf(answer, "access-control-allow-methods");
    assert.deepEqual(["get", "post", "put", "delete"].filter((m) => !methods.includes(m)), []);
  });

  test("a gRPC-web answer lets the page read grpc-status, grpc-message and grpc-status-details-bin", async () => {
    const message = toBinary(GetSMTPConfigByIdRequestSchema, create(GetSMTPConfigByIdRequestSchema, { id: "4242" }));
    const call = { port: t.port, path: rpcPath, message, token: t.ownerToken, origin: allowedOrigin };
    const answer = await rawGrpcWeb(call);
    assert.equal(answer.error?.code, Code.NotFound);
    assert.equal(answer.metadata.get("access-control-allow-origin"), allowedOrigin);
    const exposed = (answer.metadata.get("access-control-expose-headers") ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase());
    assert.deepEqual(statusHeaders.filter((h) => !exposed.includes(h)), []);
  });

  test("a REST answer carries the allowed origin too", async () => {
    const answer = await rest(t.baseUrl, "GET", "/admin/v1/healthz", { headers: { origin: allowedOrigin } });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers.get("access-control-allow-origin"), allowedOrigin);
  });

  test("another origin's preflight is refused with 403 and no CORS headers", async () => {
    const answer = await preflight(t, rpcPath, otherOrigin, "POST", connectHeaders);
    assert.equal(answer.status, 403);
    assertNoCorsHeaders(answer);
    assert.ok(t.logLines.some((l) => l.includes('"event":"cors.refused"') && l.includes('"status":403')), "the refusal has a log line");
  });

  test("another origin's request gets no CORS headers, so its page cannot read the answer", async () => {
    assertNoCorsHeaders(await rest(t.baseUrl, "GET", "/admin/v1/healthz", { headers: { origin: otherOrigin } }));
  });

  test("an origin that differs only in port or scheme is another origin", async () => {
    for (const origin of ["http://console.example.test", "https://console.example.test:8080"]) {
      const answer = await preflight(t, rpcPath, origin, "POST", connectHeaders);
      assert.equal(answer.status, 403, origin);
      assertNoCorsHeaders(answer);
    }
  });
});

describe("CORS without configured origins (the default)", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test("every origin's preflight is refused with 403 and no CORS headers", async () => {
    for (const origin of [allowedOrigin, t.baseUrl, "null"]) {
      const answer = await preflight(t, rpcPath, origin, "POST", connectHeaders);
      assert.equal(answer.status, 403, origin);
      assertNoCorsHeaders(answer);
    }
  });

  test("requests with an Origin get no CORS headers", async () => {
    assertNoCorsHeaders(await rest(t.baseUrl, "GET", "/admin/v1/healthz", { headers: { origin: allowedOrigin } }));
  });

  test("requests without an Origin, from servers and curl, are served as always", async () => {
    const answer = await rest(t.baseUrl, "GET", "/admin/v1/healthz");
    assert.equal(answer.status, 200);
    assertNoCorsHeaders(answer);
  });
});
