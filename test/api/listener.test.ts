import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
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

  test("an unknown path answers 404 over HTTP/1.1", async () => {
    const res = await fetch(`${t.baseUrl}/nothing/here`);
    assert.equal(res.status, 404);
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
