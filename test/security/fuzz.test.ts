/**
 * Property-based fuzzing of every RPC over every protocol with fast-check:
 * typed requests with hostile field values over Connect JSON, gRPC and
 * gRPC-web; REST calls with hostile paths and bodies; raw bodies that are
 * not messages at all over Connect (JSON and binary), gRPC and gRPC-web.
 *
 * What must hold for every generated call:
 * - the server answers, with a client-side code (InvalidArgument, NotFound,
 *   FailedPrecondition, ResourceExhausted) or success; never Internal,
 *   Unknown or Unavailable, never an HTTP 5xx;
 * - a call that failed changed neither the event log nor the provider list;
 * - nothing was logged at error level (the mark of an unexpected failure).
 *
 * No mail leaves the machine: every address is denied by the outbound
 * policy and every name resolves to a documentation address, so a request
 * that happens to be valid ends in FailedPrecondition instead of a
 * connection. The runs are bounded so the file takes well under a minute.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import type { DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { restRoutesOf, type RestRoute } from "../../src/api/rest/http-rules.js";
import { NotificationService } from "../../src/gen/smtpgate/notify/v1/notify_pb.js";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { providerInput } from "../helpers/admin-api.js";
import { adminClient, protocols, transportFor, type Protocol } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { envelope, instanceState, rawGrpc, rawGrpcWeb, tableLookup } from "./fixtures.js";

/** Codes a client mistake may get. */
const clientCodes = new Set([Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.ResourceExhausted]);

const services: readonly DescService[] = [AdminService, NotificationService];
/**
 * RPCs smtpgate declares but does not offer (HTTP email providers): they
 * answer Unimplemented, a server-side code, whatever the input, and
 * test/api/email-provider.test.ts checks that answer.
 */
const notOffered = new Set(["AddEmailProviderHTTP", "UpdateEmailProviderHTTP"]);
const methods: readonly DescMethod[] = services.flatMap((s) => s.methods).filter((m) => !notOffered.has(m.name));

// Reproducible runs; FUZZ_SEED=<n> explores others.
const seed = Number(process.env.FUZZ_SEED ?? 20240607);

// ---- generators ----------------------------------------------------------

const hostileStrings = fc.oneof(
  fc.constantFrom(
    "", " ", "\r\n", "a\r\nBcc: evil@example.net", "x\0y", "no-at-sign", "@", "a@b@c", "<a@b.c>", "a@b.c\n",
    "host", "host:0", "host:65536", "host:-1", "[::1", "[zz]:25", "-bad-.test:25", "169.254.169.254:25", "[fe80::1]:25",
    "1.2.3.4:25", "%00", "../../etc/passwd", "\u202egnp.exe", "😀".repeat(120), "x".repeat(201), "x".repeat(501), "p".repeat(1001),
  ),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ minLength: 195, maxLength: 210 }),
  fc.string({ unit: "grapheme", minLength: 95, maxLength: 105 }),
);

/** A plausible value per field name, so that calls get past the first check. */
function plausible(name: string, ids: readonly string[]): fc.Arbitrary<unknown> {
  switch (name) {
    case "senderAddress": case "receiverAddress": case "replyTo":
      return fc.constantFrom("noreply@example.com", "admin@example.com");
    case "host":
      return fc.constantFrom("smtp.fuzz.test:25", "127.0.0.1:2525", "[::1]:25");
    case "id":
      return fc.constantFrom(...ids, "123456789");
    case "to":
      return fc.constant(["user@example.com"]);
    case "subject": case "textBody": case "senderName":
      return fc.constant("fuzz");
    default:
      return fc.constant(undefined);
  }
}

function scalarValue(field: DescField): fc.Arbitrary<unknown> {
  if (field.fieldKind !== "scalar") return fc.constant(undefined);
  switch (field.scalar) {
    case 8: // bool
      return fc.boolean();
    case 4: case 6: // uint64, fixed64
      return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    case 13: // uint32
      return fc.oneof(fc.integer({ min: 0, max: 1200 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    default:
      return hostileStrings;
  }
}

/** A request init for `message`: each field plausible, hostile, or absent. */
function requestFor(message: DescMessage, ids: readonly string[]): fc.Arbitrary<Record<string, unknown>> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of message.fields) {
    let hostile: fc.Arbitrary<unknown>;
    if (field.fieldKind === "message") hostile = requestFor(field.message, ids);
    else if (field.fieldKind === "list") hostile = fc.array(hostileStrings, { maxLength: 60 });
    else hostile = scalarValue(field);
    fields[field.localName] = fc.oneof(
      { arbitrary: plausible(field.localName, ids), weight: 3 },
      { arbitrary: hostile, weight: 2 },
      { arbitrary: fc.constant(undefined), weight: 1 },
    );
  }
  return fc.record(fields).map((record) => Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)));
}

/** JSON of a request init: bigint as decimal string, as proto3 JSON has it. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v));
}

/** Bodies that are not the message: other JSON, wrong types, unknown keys, garbage. */
const hostileJsonBodies = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.dictionary(fc.constantFrom("tls", "host", "password", "id", "query", "to", "smtpPassword", "sender_address", "__proto__"), fc.jsonValue({ maxDepth: 2 })).map((v) => JSON.stringify(v)),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.constantFrom("{", "[]", "null", "\"x\"", "{\"tls\":\"yes\"}", "{\"query\":{\"limit\":-1}}", "{\"query\":{\"offset\":\"-1\"}}", "{\"to\":\"a@b.c\"}"),
);

// ---- the properties ------------------------------------------------------

describe("fuzzing every RPC over every protocol", () => {
  let t: TestServer;
  let ids: string[] = [];
  const errorLinesBefore = () => t.logLines.filter((line) => line.includes('"level":50')).length;
  let errorsAtStart = 0;

  before(async () => {
    const dns = tableLookup({});
    t = await startTestServer({
      smtpOutbound: {
        denyNetworks: ["0.0.0.0/0", "::/0"],
        // Every name "resolves" to a documentation address, denied above.
        lookup: (hostname, options, callback) => {
          dns.calls.push(hostname);
          if (options.all) callback(null, [{ address: "192.0.2.1", family: 4 }]);
          else callback(null, "192.0.2.1", 4);
        },
      },
    });
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    for (const tls of [false, true]) {
      const { id } = await admin.addSMTPConfig({ ...providerInput({ host: "smtp.fuzz.test:25", tls }), password: tls ? "fuzz-secret" : "" });
      ids.push(id);
    }
    await admin.activateSMTPConfig({ id: ids[0] });
    errorsAtStart = errorLinesBefore();
  });
  after(() => t.stop());

  /** Runs `call`; when it failed, asserts that the instance is unchanged. */
  async function unchangedUnlessOk(call: () => Promise<boolean>, what: () => string): Promise<void> {
    const before = await instanceState(t);
    const ok = await call();
    if (!ok) assert.deepEqual(await instanceState(t), before, `a failed call changed the instance: ${what()}`);
  }

  function assertClientCode(code: number, what: string): void {
    assert.ok(clientCodes.has(code), `${Code[code] ?? code} for ${what}`);
  }

  test("typed requests with hostile fields get a client-side answer and never half a write", async () => {
    const clients = new Map<Protocol, Record<string, (req: unknown) => Promise<unknown>>>();
    for (const protocol of protocols) {
      const transport = transportFor(protocol, t.baseUrl, { token: t.ownerToken });
      const admin = createClient(AdminService, transport) as unknown as Record<string, (req: unknown) => Promise<unknown>>;
      const notify = createClient(NotificationService, transport) as unknown as Record<string, (req: unknown) => Promise<unknown>>;
      clients.set(protocol, { ...admin, ...notify });
    }
    const calls = fc.constantFrom(...methods).chain((method) =>
      fc.tuple(fc.constant(method), fc.constantFrom(...protocols), requestFor(method.input, ids)),
    );
    await fc.assert(
      fc.asyncProperty(calls, async ([method, protocol, request]) => {
        const what = () => `${method.name} over ${protocol} with ${toJson(request)}`;
        await unchangedUnlessOk(async () => {
          try {
            await clients.get(protocol)![method.localName](request);
            return true;
          } catch (err) {
            assertClientCode(ConnectError.from(err).code, what());
            return false;
          }
        }, what);
      }),
      {
        numRuns: 400,
        seed,
        interruptAfterTimeLimit: 20_000,
        includeErrorInReport: true,
        // Every RPC over every protocol at least once, whatever the seed draws.
        examples: methods.flatMap((method) => protocols.map((protocol) => [[method, protocol, {}]] as [[DescMethod, Protocol, Record<string, unknown>]])),
      },
    );
  });

  test("REST calls with hostile paths and bodies are never a 5xx and never half a write", async () => {
    const routes: RestRoute[] = [...restRoutesOf(AdminService, "/admin/v1"), ...restRoutesOf(NotificationService, "")].filter(
      (route) => !notOffered.has(route.method.name),
    );
    const pathPart = fc.oneof(
      { arbitrary: fc.constantFrom(...ids), weight: 2 },
      { arbitrary: hostileStrings.map((s) => encodeURIComponent(s)), weight: 2 },
      { arbitrary: fc.constantFrom("%zz", "..", "%2F", "a%00b", "x".repeat(300)), weight: 1 },
    );
    const calls = fc.constantFrom(...routes).chain((route) =>
      fc.tuple(
        fc.constant(route),
        pathPart,
        fc.oneof(requestFor(route.method.input, ids).map(toJson), hostileJsonBodies),
        fc.constantFrom("application/json", "application/x-www-form-urlencoded", "text/plain"),
      ),
    );
    await fc.assert(
      fc.asyncProperty(calls, async ([route, id, body, contentType]) => {
        const path = route.template.segments.map((s) => (s.kind === "literal" ? s.value : id)).join("/");
        const hasBody = route.verb !== "GET" && route.verb !== "DELETE";
        const what = () => `${route.verb} /${path} with ${body}`;
        await unchangedUnlessOk(async () => {
          const res = await fetch(`${t.baseUrl}/${path}`, {
            method: route.verb,
            headers: { authorization: `Bearer ${t.ownerToken}`, "content-type": contentType },
            body: hasBody ? body : undefined,
          });
          const text = await res.text();
          assert.ok(res.status < 500, `HTTP ${res.status} for ${what()}: ${text}`);
          if (res.status === 200) return true;
          const error = JSON.parse(text) as { code: number; message: string };
          // A verb the path does not take is 405 with Unimplemented, as grpc-gateway answers
          // (fetch resolves ".." segments, so a hostile id can land on another route).
          if (res.status === 405) assert.equal(error.code, Code.Unimplemented, text);
          else assertClientCode(error.code, `${what()}: ${text}`);
          return false;
        }, what);
      }),
      {
        numRuns: 300,
        seed,
        interruptAfterTimeLimit: 15_000,
        includeErrorInReport: true,
        examples: routes.map((route) => [[route, "%zz", "{", "application/json"]] as [[RestRoute, string, string, string]]),
      },
    );
  });

  test("bodies that are not a message, over Connect, gRPC and gRPC-web, are refused as client mistakes", async () => {
    const session = http2.connect(t.baseUrl);
    try {
      const wires = ["connect-json", "connect-proto", "grpc", "grpc-web"] as const;
      const bytes = fc.oneof(
        fc.uint8Array({ maxLength: 120 }),
        hostileJsonBodies.map((text) => new Uint8Array(Buffer.from(text, "utf8"))),
      );
      const calls = fc.tuple(fc.constantFrom(...methods), fc.constantFrom(...wires), bytes, fc.boolean());
      await fc.assert(
        fc.asyncProperty(calls, async ([method, wire, payload, framed]) => {
          const path = `/${method.parent.typeName}/${method.name}`;
          const what = () => `${method.name} over ${wire} with ${Buffer.from(payload).toString("hex")} (framed: ${framed})`;
          await unchangedUnlessOk(async () => {
            if (wire === "grpc" || wire === "grpc-web") {
              const body = framed ? envelope(payload) : payload;
              const answer = wire === "grpc" ? await rawGrpc(session, path, t.ownerToken, body) : await rawGrpcWeb(t.baseUrl, path, t.ownerToken, body);
              assert.ok(answer.http < 500, `HTTP ${answer.http} for ${what()}`);
              if (answer.grpc === 0) return true;
              assertClientCode(answer.grpc, what());
              return false;
            }
            const res = await fetch(t.baseUrl + path, {
              method: "POST",
              headers: { authorization: `Bearer ${t.ownerToken}`, "content-type": wire === "connect-json" ? "application/json" : "application/proto" },
              body: new Uint8Array(payload),
            });
            const text = await res.text();
            assert.ok(res.status < 500, `HTTP ${res.status} for ${what()}: ${text}`);
            if (res.status === 200) return true;
            const code = (JSON.parse(text) as { code: string }).code;
            const numeric = Object.entries(Code).find(([name]) => name.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()) === code)?.[1];
            assertClientCode(Number(numeric), `${what()}: ${text}`);
            return false;
          }, what);
        }),
        {
          numRuns: 300,
          seed,
          interruptAfterTimeLimit: 15_000,
          includeErrorInReport: true,
          examples: methods.flatMap((method) => wires.map((wire) => [[method, wire, new Uint8Array([0x7b]), false]] as [[DescMethod, (typeof wires)[number], Uint8Array, boolean]])),
        },
      );
    } finally {
      session.close();
    }
  });

  test("after all of it the server still answers and logged no unexpected failure", async () => {
    const admin = adminClient("grpc", t.baseUrl, t.ownerToken);
    await admin.healthz({});
    const faults = t.logLines.filter((line) => line.includes('"level":50')).slice(errorsAtStart);
    assert.deepEqual(faults, []);
  });
});
