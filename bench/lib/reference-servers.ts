/**
 * The servers smtpgate is measured against, each in its own process (see
 * child.ts): a bare connect-node handler and a bare @grpc/grpc-js server
 * returning a constant GetSMTPConfigResponse, and grpc-js serving
 * GetSMTPConfig with smtpgate's own instance lookup, token check,
 * permission check, domain query, converter and request log line.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, createConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { bearerToken } from "../../src/api/auth-gate.js";
import { providerToSmtpConfig } from "../../src/api/convert.js";
import { toConnectError } from "../../src/api/error-mapper.js";
import { createLogger } from "../../src/config/logger.js";
import { requirePermission } from "../../src/domain/access.js";
import type { DomainDeps } from "../../src/domain/deps.js";
import { resolveInstance } from "../../src/domain/instances.js";
import { getActiveProvider } from "../../src/domain/provider-queries.js";
import { SecretBox } from "../../src/domain/secret-box.js";
import { authenticate } from "../../src/domain/tokens.js";
import {
  AdminService,
  GetSMTPConfigRequestSchema,
  GetSMTPConfigResponseSchema,
} from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import type { Ports } from "./servers.js";

/** A started reference server. */
export interface Closable {
  readonly ports: Ports;
  close(): Promise<void>;
}

/** The REST path of GetSMTPConfig (google.api.http option, under /admin/v1). */
export const restPath = "/admin/v1/smtp";

const grpcPath = "/zitadel.admin.v1.AdminService/GetSMTPConfig";

/**
 * connect-node with default options answering GetSMTPConfig with `response`
 * (base64 protobuf) on a plain HTTP/1.1 server and a plain h2c server, and
 * `restJson` on GET /admin/v1/smtp of the HTTP/1.1 server: connect-node has
 * no REST binding, so the REST floor is bare node:http.
 */
export async function startBareConnect(response: string, restJson: string): Promise<Closable> {
  const message = fromBinary(GetSMTPConfigResponseSchema, Buffer.from(response, "base64"));
  const connect = connectNodeAdapter({
    routes: (router) => router.service(AdminService, { getSMTPConfig: () => message }),
  });
  const h1 = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === restPath) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(restJson);
      return;
    }
    connect(req, res);
  });
  const h2 = http2.createServer({}, connect);
  const ports = { main: await listen(h1), http2: await listen(h2) };
  return { ports, close: async () => void (await Promise.all([closeServer(h1), closeServer(h2)])) };
}

/** @grpc/grpc-js with default options answering GetSMTPConfig with `response` (base64 protobuf). */
export async function startBareGrpcJs(response: string): Promise<Closable> {
  const message = fromBinary(GetSMTPConfigResponseSchema, Buffer.from(response, "base64"));
  return serveGrpcJs((_call, callback) => callback(null, message));
}

/**
 * @grpc/grpc-js serving GetSMTPConfig as smtpgate does, over the SQLite store
 * in `dataDir`: instance from the host, principal from the bearer token,
 * iam.read, the active provider, the same converter and error mapping, and
 * one info log line per call (to /dev/null, as smtpgate's in the benchmark).
 */
export async function startGrpcJsOverStore(dataDir: string): Promise<Closable> {
  const store = openSqliteStore(join(dataDir, "smtpgate.db"));
  const log = createLogger("info", pino.destination({ dest: "/dev/null", sync: false }));
  const deps: DomainDeps = {
    store,
    log,
    // Neither is used by a read; present to satisfy the type honestly.
    secrets: new SecretBox([randomBytes(32)]),
    mailer: { send: () => Promise.reject(new Error("no mail in this benchmark")) },
    now: () => new Date(),
  };
  const server = await serveGrpcJs((call, callback) => {
    const started = performance.now();
    answer(deps, call).then(
      (reply) => {
        log.info({ event: "rpc.done", method: "GetSMTPConfig", protocol: "grpc", code: "ok", durationMs: performance.now() - started }, "request done");
        callback(null, reply);
      },
      (err: unknown) => {
        const mapped = toConnectError(err);
        log.warn({ event: "rpc.done", method: "GetSMTPConfig", protocol: "grpc", code: Code[mapped.code] }, "request failed");
        callback({ code: mapped.code as number, details: mapped.rawMessage });
      },
    );
  });
  return { ports: server.ports, close: async () => void (await server.close(), await store.close()) };
}

type Reply = MessageShape<typeof GetSMTPConfigResponseSchema>;

async function answer(deps: DomainDeps, call: grpc.ServerUnaryCall<unknown, Reply>): Promise<Reply> {
  const instance = await resolveInstance(deps.store, call.getHost());
  const authorization = call.metadata.get("authorization")[0];
  const principal = await authenticate(deps.store, instance.id, bearerToken(typeof authorization === "string" ? authorization : null));
  requirePermission(principal, "iam.read");
  const provider = await getActiveProvider(deps, principal);
  return create(GetSMTPConfigResponseSchema, { smtpConfig: providerToSmtpConfig(provider) });
}

function codec<T extends DescMessage>(schema: T) {
  return {
    serialize: (message: MessageShape<T>) => {
      const bytes = toBinary(schema, message);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    deserialize: (bytes: Buffer) => fromBinary(schema, bytes),
  };
}

async function serveGrpcJs(handler: grpc.handleUnaryCall<unknown, Reply>): Promise<Closable> {
  const input = codec(GetSMTPConfigRequestSchema);
  const output = codec(GetSMTPConfigResponseSchema);
  const definition: grpc.ServiceDefinition = {
    getSMTPConfig: {
      path: grpcPath,
      requestStream: false,
      responseStream: false,
      requestSerialize: input.serialize as (m: unknown) => Buffer,
      requestDeserialize: input.deserialize,
      responseSerialize: output.serialize as (m: unknown) => Buffer,
      responseDeserialize: output.deserialize,
    },
  };
  const server = new grpc.Server();
  server.addService(definition, { getSMTPConfig: handler });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    ports: { main: port },
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

function listen(server: http.Server | http2.Http2Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function closeServer(server: http.Server | http2.Http2Server): Promise<void> {
  if ("closeAllConnections" in server) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Exported for the protocol benchmark's checks. */
export { grpcPath };
