import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../src/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { adminClient } from "../helpers/clients.js";
import { repoRoot } from "../helpers/child-server.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const run = promisify(execFile);

describe("health, reflection and metrics", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test("grpc.health.v1 Check answers SERVING for the server and for our services, NotFound for others", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: t.baseUrl }));
    assert.equal((await health.check({ service: "" })).status, Status.SERVING);
    assert.equal((await health.check({ service: "zitadel.admin.v1.AdminService" })).status, Status.SERVING);
    await assert.rejects(health.check({ service: "no.such.Service" }), /unknown service/);
  });

  test("grpc.health.v1 Watch streams the current status first", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: t.baseUrl }));
    const abort = new AbortController();
    for await (const res of health.watch({ service: "" }, { signal: abort.signal })) {
      assert.equal(res.status, Status.SERVING);
      break;
    }
    abort.abort();
  });

  test("buf curl lists our services through server reflection", async () => {
    const buf = join(repoRoot, "node_modules", ".bin", "buf");
    const { stdout } = await run(buf, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", "--list-services", t.baseUrl]);
    const services = stdout.trim().split("\n");
    for (const name of ["zitadel.admin.v1.AdminService", "smtpgate.notify.v1.NotificationService", "grpc.health.v1.Health"]) {
      assert.ok(services.includes(name), `${name} missing from ${stdout}`);
    }
    const methods = await run(buf, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", "--list-methods", t.baseUrl]);
    assert.match(methods.stdout, /zitadel\.admin\.v1\.AdminService\/UpdateSMTPConfigPassword/);
  });

  test("reflection v1alpha hands out the file that defines a symbol, with its imports", async () => {
    const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: t.baseUrl }));
    const requests = (async function* () {
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "zitadel.admin.v1.AdminService" } };
    })();
    for await (const res of reflection.serverReflectionInfo(requests)) {
      assert.equal(res.messageResponse.case, "fileDescriptorResponse");
      const files = res.messageResponse.case === "fileDescriptorResponse" ? res.messageResponse.value.fileDescriptorProto : [];
      const text = files.map((f) => Buffer.from(f).toString("latin1")).join("\n");
      assert.match(text, /zitadel\/admin\/v1\/admin\.proto/);
      assert.match(text, /google\/api\/annotations\.proto/);
      break;
    }
  });

  test("GET /healthz answers 200 with SERVING while the store answers", async () => {
    const res = await fetch(`${t.baseUrl}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "SERVING" });
  });

  test("GET /metrics counts requests by method, protocol and code, and reports the outbox", async () => {
    await adminClient("grpc", t.baseUrl, t.ownerToken).listSMTPConfigs({});
    await adminClient("connect-json", t.baseUrl).listSMTPConfigs({}).catch(() => undefined);
    const res = await fetch(`${t.baseUrl}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /smtpgate_rpc_requests_total\{method="ListSMTPConfigs",protocol="grpc",code="ok"\} [1-9]/);
    assert.match(text, /smtpgate_rpc_requests_total\{method="ListSMTPConfigs",protocol="connect",code="Unauthenticated"\} [1-9]/);
    assert.match(text, /smtpgate_outbox_mails\{state="queued"\} 0/);
    assert.match(text, /smtpgate_rpc_duration_seconds_bucket/);
    assert.doesNotMatch(text, new RegExp(t.ownerToken));
  });
});

describe("health when the store is gone", () => {
  test("GET /healthz and Check report NOT_SERVING once the store stops answering", async () => {
    const t = await startTestServer();
    try {
      await t.server.store.close();
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const res = await fetch(`${t.baseUrl}/healthz`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "NOT_SERVING" });
      const health = createClient(Health, createGrpcTransport({ baseUrl: t.baseUrl }));
      assert.equal((await health.check({ service: "" })).status, Status.NOT_SERVING);
    } finally {
      await t.stop();
    }
  });
});
