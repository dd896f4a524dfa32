import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { classifyPrefix } from "../../src/api/listener.js";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { adminClient, bearer, protocols } from "../helpers/clients.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

describe("one port for HTTP/1.1 and h2c", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test("classifyPrefix waits for the whole preface and routes anything else to HTTP/1.1", () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert.equal(classifyPrefix(preface.subarray(0, 5)), undefined);
    assert.equal(classifyPrefix(preface), "h2");
    assert.equal(classifyPrefix(Buffer.from("POST / HTTP/1.1\r\n")), "http1");
    assert.equal(classifyPrefix(Buffer.from("PRX")), "http1");
  });

  for (const protocol of protocols) {
    test(`an authenticated read succeeds over ${protocol}`, async () => {
      const res = await adminClient(protocol, t.baseUrl, t.ownerToken).listSMTPConfigs({});
      assert.equal(res.details?.totalResult, 0n);
    });
  }

  test("Connect binary over h2c reaches the same handler", async () => {
    const transport = createConnectTransport({
      baseUrl: t.baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      interceptors: [bearer(t.ownerToken)],
    });
    const res = await createClient(AdminService, transport).listSMTPConfigs({});
    assert.equal(res.details?.totalResult, 0n);
  });

  for (const [name, transport] of [
    ["Connect JSON over h2c", () => createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "2", interceptors: [bearer(t.ownerToken)] })],
    ["gRPC-web over h2c", () => createGrpcWebTransport({ baseUrl: t.baseUrl, httpVersion: "2", interceptors: [bearer(t.ownerToken)] })],
  ] as const) {
    test(`${name} reaches the same handler`, async () => {
      const res = await createClient(AdminService, transport()).listSMTPConfigs({});
      assert.equal(res.details?.totalResult, 0n);
    });
  }

  test("a preface split over several TCP writes is still routed to HTTP/2", async () => {
    const socket = net.connect(t.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    const session = http2.connect(t.baseUrl, {
      createConnection: () => {
        // Deliver the first bytes one at a time, so the sniffer must wait.
        const write = socket.write.bind(socket);
        let first = true;
        socket.write = ((chunk: Buffer, ...rest: never[]) => {
          if (first && Buffer.isBuffer(chunk) && chunk.length > 3) {
            first = false;
            write(chunk.subarray(0, 3));
            return write(chunk.subarray(3), ...rest);
          }
          return write(chunk, ...rest);
        }) as typeof socket.write;
        return socket;
      },
    });
    const req = session.request({ ":method": "GET", ":path": "/no/such/path" });
    const status = await new Promise<number>((resolve) => req.on("response", (h) => resolve(Number(h[":status"]))));
    req.close();
    session.close();
    assert.equal(status, 404);
  });

  test("an unknown path answers 404 over HTTP/1.1, and says so in the log without its query", async () => {
    const res = await fetch(`${t.baseUrl}/nothing/here?token=should-not-be-logged`);
    assert.equal(res.status, 404);
    const line = t.logLines.find((l) => l.includes('"event":"http.not_found"') && l.includes('"path":"/nothing/here"'));
    assert.ok(line, "the 404 has a log line");
    assert.ok(!line.includes("should-not-be-logged"), line);
  });

  test("a 5 MiB body is refused while it is read, and the server stays healthy", async () => {
    const big = JSON.stringify({ password: "x".repeat(5 * 1024 * 1024) });
    const res = await fetch(`${t.baseUrl}/zitadel.admin.v1.AdminService/UpdateSMTPConfigPassword`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${t.ownerToken}` },
      body: big,
    });
    assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
    const body = (await res.json()) as { code: string };
    assert.equal(body.code, "resource_exhausted");
    const health = await adminClient("grpc", t.baseUrl).healthz({});
    assert.ok(health);
  });
});

describe("what one client may hold open on the port", () => {
  const limits = { maxConnections: 4, maxStreamsPerSession: 5, sessionIdleMs: 300, requestMs: 400 };
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ connectionLimits: limits });
  });
  after(() => t.stop());

  /** An h2c session to the server, and a promise of its first GOAWAY or close. */
  function openSession(): { session: http2.ClientHttp2Session; ended: Promise<string> } {
    const session = http2.connect(t.baseUrl);
    session.on("error", () => {});
    const ended = new Promise<string>((resolve) => {
      session.once("goaway", () => resolve("goaway"));
      session.once("close", () => resolve("close"));
    });
    return { session, ended };
  }

  /** GET /healthz on `session`; resolves with the status. */
  function healthz(session: http2.ClientHttp2Session): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = session.request({ ":method": "GET", ":path": "/healthz" });
      req.on("response", (headers) => resolve(Number(headers[":status"])));
      req.on("error", reject);
      req.resume();
      req.end();
    });
  }

  const within = <T>(promise: Promise<T>, ms: number, what: string) =>
    Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms))]);

  test("the server announces its limit of streams per HTTP/2 session", async () => {
    const { session } = openSession();
    try {
      const settings = await within(new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve)), 2000, "SETTINGS");
      assert.equal(settings.maxConcurrentStreams, limits.maxStreamsPerSession);
    } finally {
      session.destroy();
    }
  });

  test("an HTTP/2 session left idle after its calls is closed with GOAWAY", async () => {
    const { session, ended } = openSession();
    try {
      assert.equal(await healthz(session), 200);
      assert.equal(await within(ended, 5 * limits.sessionIdleMs, "end of the idle session"), "goaway");
    } finally {
      session.destroy();
    }
  });

  test("an HTTP/2 request whose body never ends is reset with CANCEL, and the session and server keep serving", async () => {
    const { session } = openSession();
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/zitadel.admin.v1.AdminService/ListSMTPConfigs",
        "content-type": "application/json",
        authorization: `Bearer ${t.ownerToken}`,
      });
      stream.on("error", () => {});
      stream.write("{");
      const rstCode = await within(new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode))), 5 * limits.requestMs, "reset");
      assert.equal(rstCode, http2.constants.NGHTTP2_CANCEL);
      assert.equal(await healthz(session), 200);
    } finally {
      session.destroy();
    }
  });

  test("an HTTP/1.1 request whose body never ends gets 408 and its connection closed", async () => {
    const socket = net.connect(t.port, "127.0.0.1");
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    socket.write("POST /zitadel.admin.v1.AdminService/ListSMTPConfigs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{");
    await within(new Promise((resolve) => socket.once("close", resolve)), 10 * limits.requestMs, "closed connection");
    assert.match(received, /^HTTP\/1\.1 408 /);
  });

  test("connections beyond the limit are closed as they arrive; once others end, new ones are served", async () => {
    const held = await Promise.all(
      Array.from({ length: limits.maxConnections }, () => new Promise<net.Socket>((resolve) => {
        const socket = net.connect(t.port, "127.0.0.1", () => resolve(socket));
      })),
    );
    try {
      // The server counts a connection once it accepted it; give it a moment.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const extra = net.connect(t.port, "127.0.0.1");
      extra.on("error", () => {});
      await within(new Promise((resolve) => extra.once("close", resolve)), 2000, "refusal of the extra connection");
    } finally {
      for (const socket of held) socket.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const res = await adminClient("connect-json", t.baseUrl, t.ownerToken).listSMTPConfigs({});
    assert.equal(res.details?.totalResult, 0n);
  });
});
