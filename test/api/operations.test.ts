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
import { eventually, notifyClient } from "../helpers/notify.js";
import { startSlowSink, type SlowSink } from "../helpers/slow-sink.js";
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

describe("delivery metrics", () => {
  let t: TestServer;
  let sink: SlowSink;
  let providerId: string;
  before(async () => {
    sink = await startSlowSink(() => 600);
    t = await startTestServer({ outbox: { pollMs: 50 } });
    const admin = adminClient("connect-json", t.baseUrl, t.ownerToken);
    providerId = (await admin.addSMTPConfig({ senderAddress: "noreply@smtpgate.test", senderName: "smtpgate", host: sink.hostPort, tls: false })).id;
    await admin.activateSMTPConfig({ id: providerId });
  });
  after(async () => {
    await t.stop();
    await sink.stop();
  });

  const scrape = async () => (await fetch(`${t.baseUrl}/metrics`)).text();

  test("GET /metrics shows each provider's busy pooled connections and waiting sends, then the attempts by outcome and reply class", async () => {
    const notify = notifyClient("connect-json", t.baseUrl, t.ownerToken);
    await Promise.all([0, 1, 2].map((i) => notify.sendMail({ to: ["user@example.com"], subject: `metrics ${i}`, textBody: "x" })));

    // Three sends at once on a pool of two connections: two busy, one waiting.
    await eventually(() => sink.arrivals.filter((a) => a.subject.startsWith("metrics")).length >= 2, 5000, "two mails in flight");
    const busy = await scrape();
    assert.match(busy, new RegExp(`smtpgate_smtp_pool_busy_connections\\{provider_id="${providerId}"\\} 2`));
    assert.match(busy, new RegExp(`smtpgate_smtp_pool_waiting_sends\\{provider_id="${providerId}"\\} 1`));
    assert.match(busy, /smtpgate_outbox_mails\{state="sending"\} 3/);

    await eventually(() => sink.arrivals.filter((a) => a.subject.startsWith("metrics") && a.answered).length === 3, 10_000, "three mails sent");
    await eventually(async () => /smtpgate_mail_attempts_total\{outcome="sent",reply_class="2xx"\} 3/.test(await scrape()), 5000, "three sent attempts counted");
    const after = await scrape();
    assert.match(after, new RegExp(`smtpgate_smtp_pool_busy_connections\\{provider_id="${providerId}"\\} 0`));
    assert.match(after, /smtpgate_outbox_mails\{state="sending"\} 0/);
    assert.doesNotMatch(after, /smtpgate_outbox_mails\{state="sent"\}/);
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
