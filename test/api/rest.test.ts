/**
 * The REST binding end to end, called with fetch as a JSON client would:
 * every route of WIRE.md's table, both generations of the password update,
 * how path, query and body combine, proto3 JSON in and out, and grpc-gateway's
 * error body and statuses.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { restRoutesOf } from "../../src/api/rest/http-rules.js";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { assertGatewayError, okJson, rest, type JsonBody, type RestOptions } from "../helpers/rest.js";
import { breakEventLog, startTestServer, type TestServer } from "../helpers/server.js";
import { startSmtpSink, type SmtpSink } from "../helpers/smtp-sink.js";

const prefix = "/admin/v1";

/** WIRE.md's table of HTTP bindings, as "VERB template" under the prefix. */
const wireRoutes = [
  "GET /healthz",
  "GET /smtp",
  "GET /smtp/{id}",
  "POST /smtp/_search",
  "POST /smtp",
  "PUT /smtp/{id}",
  "PUT /smtp/{id}/password",
  "PUT /smtp/password",
  "POST /smtp/{id}/_activate",
  "POST /smtp/{id}/_deactivate",
  "DELETE /smtp/{id}",
  "POST /smtp/{id}/_test",
  "POST /smtp/_test",
  "POST /email/_search",
  "GET /email",
  "GET /email/{id}",
  "POST /email/smtp",
  "PUT /email/smtp/{id}",
  "PUT /email/smtp/{id}/password",
  "POST /email/{id}/_activate",
  "POST /email/{id}/_deactivate",
  "DELETE /email/{id}",
  "POST /email/smtp/{id}/_test",
  "POST /email/smtp/_test",
];

/**
 * ZITADEL's HTTP (webhook) provider RPCs, beyond WIRE.md: served so that
 * their clients get Unimplemented with a reason, not a bare 404 or 405.
 */
const httpProviderRoutes = ["POST /email/http", "PUT /email/http/{id}"];

const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Sender settings in proto3 JSON's camelCase; `host` is set by the caller. */
function settings(host: string, user: string): JsonBody {
  return { senderAddress: "noreply@example.com", senderName: "REST tests", host, user, tls: false };
}

/**
 * A server of its own for the calling describe (started and stopped by the
 * hooks this registers), and `call` to reach a route of WIRE.md's table as
 * the owner; pass `token: undefined` in the options to send none.
 */
function restFixture() {
  const visited = new Set<string>();
  const fixture = {
    t: undefined as unknown as TestServer,
    visited,
    /** Calls `route` ("VERB template") with its variables filled from `vars`, as the owner. */
    call(route: string, vars: Record<string, string> = {}, options: RestOptions = {}) {
      visited.add(route);
      const [verb, template] = route.split(" ");
      const path = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(vars[name]));
      return rest(fixture.t.baseUrl, verb, prefix + path, { token: fixture.t.ownerToken, ...options });
    },
    /** The provider's current object details, read over REST. */
    async detailsOf(id: string): Promise<JsonBody> {
      return okJson(await fixture.call("GET /smtp/{id}", { id })).smtpConfig.details;
    },
  };
  before(async () => {
    fixture.t = await startTestServer();
  });
  after(() => fixture.t.stop());
  return fixture;
}

test("the REST routes read from the descriptors are exactly WIRE.md's table and the HTTP-provider routes", () => {
  const routes = restRoutesOf(AdminService, prefix).map((r) => `${r.verb} ${r.template.source.slice(prefix.length)}`);
  assert.deepEqual(routes.sort(), [...wireRoutes, ...httpProviderRoutes].sort());
});

describe("every route of WIRE.md's table, through the life of two providers", () => {
  const f = restFixture();
  let sink: SmtpSink;
  const ids = { a: "", b: "" };
  before(async () => {
    sink = await startSmtpSink({ users: { "mailer-a": "a-third", "mailer-b": "b-second" } });
  });
  after(() => sink.stop());

  test("GET /healthz answers {} without a token", async () => {
    assert.deepEqual(okJson(await f.call("GET /healthz", {}, { token: undefined })), {});
  });

  test("POST /smtp adds a provider from snake_case fields", async () => {
    const body = {
      sender_address: "a@example.com",
      sender_name: "Provider A",
      host: sink.hostPort,
      user: "mailer-a",
      password: "a-first",
      reply_to_address: "replies@example.com",
    };
    const added = okJson(await f.call("POST /smtp", {}, { body }));
    assert.match(added.id, /^\S+$/);
    assert.match(added.details.sequence, /^[1-9]\d*$/);
    ids.a = added.id;
  });

  test("POST /email/smtp adds a provider from camelCase fields", async () => {
    const body = { ...settings(sink.hostPort, "mailer-b"), password: "b-first", description: "provider B" };
    const added = okJson(await f.call("POST /email/smtp", {}, { body }));
    assert.match(added.details.sequence, /^[1-9]\d*$/);
    ids.b = added.id;
  });

  test("GET /smtp/{id} returns the snake_case input as camelCase proto3 JSON", async () => {
    const { smtpConfig } = okJson(await f.call("GET /smtp/{id}", { id: ids.a }));
    assert.equal(smtpConfig.id, ids.a);
    assert.equal(smtpConfig.senderAddress, "a@example.com");
    assert.equal(smtpConfig.replyToAddress, "replies@example.com");
    assert.equal(smtpConfig.state, "SMTP_CONFIG_INACTIVE");
  });

  test("GET /email/{id} returns the provider with its smtp settings", async () => {
    const { config } = okJson(await f.call("GET /email/{id}", { id: ids.b }));
    assert.equal(config.id, ids.b);
    assert.equal(config.state, "EMAIL_PROVIDER_INACTIVE");
    assert.equal(config.description, "provider B");
    assert.equal(config.smtp.user, "mailer-b");
  });

  test("POST /smtp/_search and POST /email/_search list both providers", async () => {
    const smtp = okJson(await f.call("POST /smtp/_search", {}, { body: {} }));
    assert.equal(smtp.details.totalResult, "2");
    assert.deepEqual(smtp.result.map((c: JsonBody) => c.id).sort(), [ids.a, ids.b].sort());
    const email = okJson(await f.call("POST /email/_search", {}, { body: { query: { limit: 1 } } }));
    assert.equal(email.details.totalResult, "2");
    assert.equal(email.result.length, 1);
  });

  test("PUT /smtp/{id} and PUT /email/smtp/{id} update the settings", async () => {
    const a = await f.call("PUT /smtp/{id}", { id: ids.a }, { body: settings(sink.hostPort, "mailer-a") });
    assert.equal(okJson(a).details.sequence, (await f.detailsOf(ids.a)).sequence);
    const bBody = { ...settings(sink.hostPort, "mailer-b"), description: "B" };
    const b = await f.call("PUT /email/smtp/{id}", { id: ids.b }, { body: bBody });
    assert.equal(okJson(b).details.sequence, (await f.detailsOf(ids.b)).sequence);
    assert.equal(okJson(await f.call("GET /email/{id}", { id: ids.b })).config.description, "B");
  });

  test("PUT /smtp/{id}/password and PUT /email/smtp/{id}/password rotate each password", async () => {
    const a = await f.call("PUT /smtp/{id}/password", { id: ids.a }, { body: { password: "a-second" } });
    assert.equal(okJson(a).details.sequence, (await f.detailsOf(ids.a)).sequence);
    const b = await f.call("PUT /email/smtp/{id}/password", { id: ids.b }, { body: { password: "b-second" } });
    assert.equal(okJson(b).details.sequence, (await f.detailsOf(ids.b)).sequence);
  });

  test("POST /smtp/{id}/_activate makes the provider the one GET /smtp and GET /email return", async () => {
    okJson(await f.call("POST /smtp/{id}/_activate", { id: ids.a }, { body: {} }));
    const { smtpConfig } = okJson(await f.call("GET /smtp"));
    assert.equal(smtpConfig.id, ids.a);
    assert.equal(smtpConfig.state, "SMTP_CONFIG_ACTIVE");
    const { config } = okJson(await f.call("GET /email"));
    assert.equal(config.id, ids.a);
    assert.equal(config.state, "EMAIL_PROVIDER_ACTIVE");
  });

  test("PUT /smtp/password rotates the active provider's password", async () => {
    const before = await f.detailsOf(ids.a);
    const answer = okJson(await f.call("PUT /smtp/password", {}, { body: { password: "a-third" } }));
    assert.ok(BigInt(answer.details.sequence) > BigInt(before.sequence));
    assert.equal((await f.detailsOf(ids.a)).sequence, answer.details.sequence);
  });

  test("the activate and deactivate routes of both families switch the active provider", async () => {
    okJson(await f.call("POST /smtp/{id}/_deactivate", { id: ids.a }, { body: {} }));
    okJson(await f.call("POST /email/{id}/_activate", { id: ids.b }, { body: {} }));
    assert.equal(okJson(await f.call("GET /smtp")).smtpConfig.id, ids.b);
    okJson(await f.call("POST /email/{id}/_deactivate", { id: ids.b }, { body: {} }));
    assertGatewayError(await f.call("GET /email"), 404, Code.NotFound);
  });

  test("the four _test routes send a mail each, logging in with the rotated passwords", async () => {
    const receiver = { receiverAddress: "someone@example.com" };
    assert.deepEqual(okJson(await f.call("POST /smtp/{id}/_test", { id: ids.a }, { body: receiver })), {});
    assert.deepEqual(okJson(await f.call("POST /email/smtp/{id}/_test", { id: ids.b }, { body: receiver })), {});
    const a = { ...settings(sink.hostPort, "mailer-a"), password: "a-third", ...receiver };
    assert.deepEqual(okJson(await f.call("POST /smtp/_test", {}, { body: a })), {});
    const b = { ...settings(sink.hostPort, "mailer-b"), password: "b-second", ...receiver };
    assert.deepEqual(okJson(await f.call("POST /email/smtp/_test", {}, { body: b })), {});
    const mails = await sink.waitForMessages(4);
    assert.deepEqual(mails.map((m) => m.user), ["mailer-a", "mailer-b", "mailer-a", "mailer-b"]);
  });

  test("DELETE /smtp/{id} and DELETE /email/{id} remove the providers", async () => {
    okJson(await f.call("DELETE /smtp/{id}", { id: ids.a }));
    okJson(await f.call("DELETE /email/{id}", { id: ids.b }));
    assertGatewayError(await f.call("GET /smtp/{id}", { id: ids.a }), 404, Code.NotFound, "SMTP-nf01");
    assertGatewayError(await f.call("GET /email/{id}", { id: ids.b }), 404, Code.NotFound, "SMTP-nf01");
  });

  test("the walk above called every route of the table", () => {
    assert.deepEqual([...wireRoutes].filter((r) => !f.visited.has(r)), []);
  });
});

describe("PUT /admin/v1/smtp/password beside PUT /admin/v1/smtp/{id}/password", () => {
  const f = restFixture();
  const ids = { a: "", b: "" };
  const lastEvent = async () => {
    const events = await f.t.server.store.listEvents((await f.t.server.store.findInstanceByDomain("127.0.0.1"))!.id);
    return events[events.length - 1];
  };
  before(async () => {
    for (const name of ["a", "b"] as const) {
      const body = { ...settings("smtp.example.com:587", `user-${name}`), tls: true, password: "first" };
      ids[name] = okJson(await f.call("POST /smtp", {}, { body })).id;
    }
  });

  test("with no active provider, PUT /smtp/password is NotFound for the active one, not for one named \"password\"", async () => {
    const answer = await f.call("PUT /smtp/password", {}, { body: { password: "x" } });
    assertGatewayError(answer, 404, Code.NotFound, "SMTP-nf02");
  });

  test("PUT /smtp/password is UpdateSMTPConfigPassword of the active provider, never UpdateSMTPConfig", async () => {
    okJson(await f.call("POST /smtp/{id}/_activate", { id: ids.a }, { body: {} }));
    const before = { a: await f.detailsOf(ids.a), b: await f.detailsOf(ids.b) };

    const answer = okJson(await f.call("PUT /smtp/password", {}, { body: { password: "second" } }));

    assert.ok(BigInt(answer.details.sequence) > BigInt(before.a.sequence));
    assert.equal((await f.detailsOf(ids.a)).sequence, answer.details.sequence);
    assert.deepEqual(await f.detailsOf(ids.b), before.b);
    const event = await lastEvent();
    assert.equal(event.type, "smtp.config.password.changed");
    assert.equal(event.objectId, ids.a);
  });

  test("PUT /smtp/{id}/password rotates that provider's password, though it is inactive", async () => {
    const before = { a: await f.detailsOf(ids.a), b: await f.detailsOf(ids.b) };
    const answer = okJson(await f.call("PUT /smtp/{id}/password", { id: ids.b }, { body: { password: "second" } }));
    assert.equal((await f.detailsOf(ids.b)).sequence, answer.details.sequence);
    assert.deepEqual(await f.detailsOf(ids.a), before.a);
    assert.equal((await lastEvent()).objectId, ids.b);
  });

  test("PUT /smtp/password with an id in the body rotates that provider's password", async () => {
    const before = await f.detailsOf(ids.a);
    okJson(await f.call("PUT /smtp/password", {}, { body: { id: ids.b, password: "third" } }));
    assert.equal((await lastEvent()).objectId, ids.b);
    assert.deepEqual(await f.detailsOf(ids.a), before);
  });

  test("PUT /smtp/password from a viewer is PermissionDenied: the RPC needs iam.write", async () => {
    const viewer = await f.t.token(["IAM_OWNER_VIEWER"]);
    const answer = await f.call("PUT /smtp/password", {}, { token: viewer, body: { password: "x" } });
    assertGatewayError(answer, 403, Code.PermissionDenied, "AUTHZ-perm01");
  });
});

describe("REST request and response conventions", () => {
  const f = restFixture();
  const ids = { a: "", b: "" };
  before(async () => {
    for (const name of ["a", "b"] as const) {
      ids[name] = okJson(await f.call("POST /smtp", {}, { body: settings("smtp.example.com:587", name) })).id;
    }
  });

  test("a read is proto3 JSON: uint64 as string, RFC 3339 times, enums by name, zero values omitted", async () => {
    const { smtpConfig } = okJson(await f.call("GET /smtp/{id}", { id: ids.a }));
    const keys = ["details", "host", "id", "senderAddress", "senderName", "state", "user"];
    assert.deepEqual(Object.keys(smtpConfig).sort(), keys);
    const { details } = smtpConfig;
    assert.deepEqual(Object.keys(details).sort(), ["changeDate", "creationDate", "resourceOwner", "sequence"]);
    assert.match(details.sequence, /^[1-9]\d*$/);
    assert.match(details.creationDate, rfc3339);
    assert.match(details.changeDate, rfc3339);
    assert.ok(Math.abs(Date.parse(details.changeDate) - Date.now()) < 60_000);
    assert.equal(smtpConfig.state, "SMTP_CONFIG_INACTIVE");
  });

  test("path variables win over the same field in the body", async () => {
    const body = { ...settings("smtp.example.com:587", "a"), id: ids.b, senderName: "renamed by path" };
    okJson(await f.call("PUT /smtp/{id}", { id: ids.a }, { body }));
    const read = (id: string) => f.call("GET /smtp/{id}", { id }).then(okJson);
    assert.equal((await read(ids.a)).smtpConfig.senderName, "renamed by path");
    assert.equal((await read(ids.b)).smtpConfig.senderName, "REST tests");

    okJson(await f.call("POST /smtp/{id}/_activate", { id: ids.a }, { body: { id: ids.b } }));
    assert.equal(okJson(await f.call("GET /smtp")).smtpConfig.id, ids.a);
  });

  test("path variables win over query parameters on a GET", async () => {
    const answer = await rest(f.t.baseUrl, "GET", `${prefix}/smtp/${ids.a}?id=${ids.b}`, { token: f.t.ownerToken });
    assert.equal(okJson(answer).smtpConfig.id, ids.a);
  });

  test("snake_case and camelCase names are accepted, also mixed in one body", async () => {
    const body = {
      sender_address: "mixed@example.com",
      senderName: "mixed",
      host: "smtp.example.com:25",
      reply_to_address: "r@example.com",
    };
    const { id } = okJson(await f.call("POST /email/smtp", {}, { body }));
    const { config } = okJson(await f.call("GET /email/{id}", { id }));
    assert.equal(config.smtp.senderAddress, "mixed@example.com");
    assert.equal(config.smtp.senderName, "mixed");
    assert.equal(config.smtp.replyToAddress, "r@example.com");
  });

  test("fields and query parameters that name no field are ignored, as ZITADEL's gateway does", async () => {
    const search = await f.call("POST /smtp/_search", {}, { body: { query: { limit: 1 }, clientTag: "x" } });
    assert.equal(okJson(search).result.length, 1);
    const path = `${prefix}/smtp/${ids.a}?cacheBuster=123&query.nothing=1`;
    const read = await rest(f.t.baseUrl, "GET", path, { token: f.t.ownerToken });
    assert.equal(okJson(read).smtpConfig.id, ids.a);
  });

  test("curl's default application/x-www-form-urlencoded type with a JSON body is read as JSON", async () => {
    const form = { contentType: "application/x-www-form-urlencoded" };
    const answer = await f.call("PUT /smtp/{id}/password", { id: ids.b }, { ...form, body: { password: "from-curl" } });
    assert.match(okJson(answer).details.sequence, /^\d+$/);
    assert.ok(okJson(await f.call("POST /smtp/_search", {}, { ...form, body: "{}" })).result.length >= 2);
  });

  test("an unknown path under /admin/v1 is 404 in grpc-gateway's shape", async () => {
    assertGatewayError(await f.call("GET /smtp/{id}/nothing", { id: ids.a }), 404, Code.NotFound);
    assertGatewayError(await f.call("POST /sms/_search", {}, { body: {} }), 404, Code.NotFound);
    assert.ok(
      f.t.logLines.some((l) => l.includes('"event":"rest.no_route"') && l.includes('"path":"/admin/v1/sms/_search"') && l.includes('"status":404')),
      "the refusal has a log line",
    );
  });

  test("a known path with the wrong verb is 405 and lists the allowed verbs", async () => {
    const answer = await f.call("PATCH /smtp/{id}", { id: ids.a }, { body: {} });
    assertGatewayError(answer, 405, Code.Unimplemented);
    assert.deepEqual(answer.headers.get("allow")?.split(", ").sort(), ["DELETE", "GET", "PUT"]);
    const activate = await f.call("GET /smtp/{id}/_activate", { id: ids.a });
    assertGatewayError(activate, 405, Code.Unimplemented);
    assert.equal(activate.headers.get("allow"), "POST");
    const collection = await f.call("DELETE /smtp");
    assertGatewayError(collection, 405, Code.Unimplemented);
    assert.deepEqual(collection.headers.get("allow")?.split(", ").sort(), ["GET", "POST"]);
    assert.ok(
      f.t.logLines.some((l) => l.includes('"event":"rest.wrong_verb"') && l.includes('"method":"DELETE"') && l.includes('"status":405')),
      "the refusal has a log line",
    );
  });
});

describe("REST error statuses", () => {
  const f = restFixture();
  let inactiveId: string;
  before(async () => {
    inactiveId = okJson(await f.call("POST /smtp", {}, { body: settings("smtp.example.com:587", "u") })).id;
  });

  test("no token is 401 Unauthenticated", async () => {
    const answer = await f.call("POST /smtp/_search", {}, { token: undefined, body: {} });
    assertGatewayError(answer, 401, Code.Unauthenticated, "AUTH-none01");
  });

  test("an unknown token is 401 Unauthenticated", async () => {
    const answer = await f.call("GET /smtp", {}, { token: "not-a-token" });
    assertGatewayError(answer, 401, Code.Unauthenticated, "AUTH-tok01");
  });

  test("a viewer token on a write is 403 PermissionDenied", async () => {
    const token = await f.t.token(["IAM_OWNER_VIEWER"]);
    const answer = await f.call("POST /smtp/{id}/_activate", { id: inactiveId }, { token, body: {} });
    assertGatewayError(answer, 403, Code.PermissionDenied, "AUTHZ-perm01");
  });

  test("an unknown provider is 404 NotFound", async () => {
    assertGatewayError(await f.call("DELETE /email/{id}", { id: "4242" }), 404, Code.NotFound, "SMTP-nf01");
  });

  test("input beyond WIRE.md's limits is 400 InvalidArgument", async () => {
    const body = { ...settings("smtp.example.com:587", "u"), senderName: "n".repeat(201) };
    assertGatewayError(await f.call("POST /smtp", {}, { body }), 400, Code.InvalidArgument, "SMTP-len01");
  });

  test("a body that is not JSON is 400 InvalidArgument with an ErrorDetail", async () => {
    assertGatewayError(await f.call("POST /smtp", {}, { body: "{not json" }), 400, Code.InvalidArgument);
  });

  test("a field of the wrong type is 400 InvalidArgument with an ErrorDetail", async () => {
    const answer = await f.call("POST /smtp/_search", {}, { body: { query: { limit: "many" } } });
    assertGatewayError(answer, 400, Code.InvalidArgument);
  });

  test("deactivating an inactive provider is 400 FailedPrecondition", async () => {
    const answer = await f.call("POST /smtp/{id}/_deactivate", { id: inactiveId }, { body: {} });
    assertGatewayError(answer, 400, Code.FailedPrecondition, "SMTP-act02");
  });
});

describe("REST order of checks, as WIRE.md's: instance, token, permission, then input", () => {
  const f = restFixture();
  const oversized = JSON.stringify({ description: "x".repeat(3 * 1024 * 1024) });
  const route = `${prefix}/smtp/123456789012345678`;

  test("a body too large or not JSON, without a token, answers 401 Unauthenticated", async () => {
    for (const body of [oversized, "{"]) {
      assertGatewayError(await rest(f.t.baseUrl, "PUT", route, { body }), 401, Code.Unauthenticated);
    }
  });

  test("the same bodies with a viewer token answer 403 PermissionDenied", async () => {
    const viewer = await f.t.token(["IAM_OWNER_VIEWER"]);
    for (const body of [oversized, "{"]) {
      assertGatewayError(await rest(f.t.baseUrl, "PUT", route, { token: viewer, body }), 403, Code.PermissionDenied);
    }
  });

  test("with the owner's token, the input is refused: 429 for the size, 400 for the JSON", async () => {
    assertGatewayError(await rest(f.t.baseUrl, "PUT", route, { token: f.t.ownerToken, body: oversized }), 429, Code.ResourceExhausted, "REST-size01");
    assertGatewayError(await rest(f.t.baseUrl, "PUT", route, { token: f.t.ownerToken, body: "{" }), 400, Code.InvalidArgument);
    assert.ok(
      f.t.logLines.some((line) => line.includes('"event":"rpc.done"') && line.includes('"protocol":"rest"') && line.includes('"code":"ResourceExhausted"')),
      "the refusal has its request log line",
    );
  });
});

describe("REST HTTP-provider routes", () => {
  const f = restFixture();

  test("POST /email/http and PUT /email/http/{id} answer 501 Unimplemented with the reason, not 404 or 405", async () => {
    const body = { endpoint: "https://hooks.example.com/mail" };
    for (const [verb, path] of [["POST", "/email/http"], ["PUT", "/email/http/123456789012345678"]] as const) {
      const answer = await rest(f.t.baseUrl, verb, `${prefix}${path}`, { token: f.t.ownerToken, body });
      assertGatewayError(answer, 501, Code.Unimplemented, "EMAIL-http01");
      assert.match(answer.json?.message, /HTTP email providers \(webhook delivery\) are not supported/);
    }
  });
});

describe("REST Internal", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
    breakEventLog(t.dataDir);
  });
  after(() => t.stop());

  test("an unexpected failure is 500 Internal with a fixed message", async () => {
    const body = { ...settings("127.0.0.1:25", "u"), password: "secret" };
    const answer = await rest(t.baseUrl, "POST", `${prefix}/smtp`, { token: t.ownerToken, body });
    assertGatewayError(answer, 500, Code.Internal, "INTERNAL-0001");
    assert.equal(answer.json?.message, "internal error (INTERNAL-0001)");
  });
});
