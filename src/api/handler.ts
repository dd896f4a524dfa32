/**
 * The one Node request handler behind the port. Every service is registered
 * once on a Connect router, which serves Connect, gRPC and gRPC-web; the REST
 * binding transcodes onto the same universal handlers, and so do unary gRPC
 * calls, onto their Connect protocol (grpc-unary.ts says why). CORS sits in
 * front.
 */
import { ConnectError, createConnectRouter, Code } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { DomainDeps } from "../domain/deps.js";
import { NotificationService } from "../gen/smtpgate/notify/v1/notify_pb.js";
import { AdminService } from "../gen/zitadel/admin/v1/admin_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createAdminService } from "./admin-service.js";
import { createHealthService, serveHealthz, type HealthMonitor } from "./health.js";
import type { Metrics } from "./metrics.js";
import { createReflectionV1, createReflectionV1alpha, DescriptorIndex } from "./reflection.js";
import { createAuthGate } from "./auth-gate.js";
import { applyCors } from "./cors.js";
import { errorMapper } from "./error-mapper.js";
import { withSpecGrpcMessage } from "./grpc-message.js";
import { withCheckedFraming } from "./grpc-framing.js";
import { withCheckedBody } from "./request-body.js";
import { withRequestLimits } from "./request-limits.js";
import { callGrpcUnary, isTranscodableGrpc, type GrpcUnaryOptions } from "./grpc-unary.js";
import { bridgeNodeCall } from "./node-bridge.js";
import type { RequestHandler } from "./listener.js";
import { createNotificationService } from "./notification-service.js";
import { logRefusedRequest, requestLogger, type Telemetry } from "./request-log.js";
import { restRoutesOf } from "./rest/http-rules.js";
import { RestTranscoder } from "./rest/transcoder.js";

/**
 * Largest request message accepted, in bytes. Admin messages are a few
 * hundred bytes; 1 MiB leaves room and refuses a large body while reading it,
 * without buffering it whole.
 */
export const readMaxBytes = 1024 * 1024;

/**
 * Largest SendMail request, in bytes: above the domain's 512 KiB body limit
 * with room for JSON escaping, so an oversized body gets the domain's clear
 * InvalidArgument, and only far larger ones the transport's refusal.
 */
export const mailReadMaxBytes = 2 * 1024 * 1024;

/** Longest deadline a client may ask for, in ms. */
export const maxTimeoutMs = 5 * 60_000;

/** Where each service's REST binding lives. WIRE.md: admin under /admin/v1. */
const restPrefixes = [
  { service: AdminService, prefix: "/admin/v1" },
  { service: NotificationService, prefix: "" },
];

/** Options of the handler beyond the domain. */
export interface HandlerOptions {
  /** Origins allowed to call from a browser; "*" for any. */
  readonly corsOrigins?: readonly string[];
  /** Answers grpc.health.v1 and GET /healthz. */
  readonly health: HealthMonitor;
  /** Serves GET /metrics and counts requests. */
  readonly metrics?: Metrics;
}

/** Services offered besides ours. */
const infrastructure = [Health, ReflectionV1, ReflectionV1alpha];

/** Full names of every service served, for health checks by service name. */
export const servedServiceNames = [AdminService, NotificationService, ...infrastructure].map((s) => s.typeName);

/** Builds the request handler for all services and protocols. */
export function createHandler(deps: DomainDeps, options: HandlerOptions): RequestHandler {
  const telemetry = { log: deps.log, metrics: options.metrics };
  const acceptCompression = [compressionGzip, compressionBrotli];
  const router = createConnectRouter({
    readMaxBytes,
    maxTimeoutMs,
    acceptCompression,
    // First is outermost: the logger sees the error the mapper produced.
    interceptors: [requestLogger(telemetry), errorMapper(deps.log)],
    requestGate: createAuthGate(deps.store, telemetry),
  });
  router.service(AdminService, createAdminService(deps));
  router.service(NotificationService, createNotificationService(deps), { readMaxBytes: mailReadMaxBytes });
  const index = new DescriptorIndex([AdminService, NotificationService, ...infrastructure]);
  router.service(Health, createHealthService(options.health));
  router.service(ReflectionV1, createReflectionV1(index));
  router.service(ReflectionV1alpha, createReflectionV1alpha(index));

  const byPath = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  const routes = restPrefixes.flatMap(({ service, prefix }) => restRoutesOf(service, prefix));
  const rest = new RestTranscoder(routes, router.handlers, mailReadMaxBytes, deps.log);
  const origins = new Set(options.corsOrigins ?? []);
  const readMaxBytesOf = (method: DescMethod) => (method.parent.typeName === NotificationService.typeName ? mailReadMaxBytes : readMaxBytes);
  const grpcUnary: GrpcUnaryOptions = { acceptCompression, maxTimeoutMs, readMaxBytesOf, telemetry };

  return withSpecGrpcMessage((req, res) => {
    if (applyCors(origins, req, res)) {
      if (res.statusCode === 403) logRefusedRequest(deps.log, "cors.refused", req, 403);
      return;
    }
    const path = (req.url ?? "").split("?", 1)[0];
    const rpc = byPath.get(path);
    if (req.method === "GET" && path === "/healthz") {
      void serveHealthz(options.health, res);
    } else if (req.method === "GET" && path === "/metrics" && options.metrics) {
      void options.metrics.serve(res);
    } else if (rpc) {
      serveRpc(rpc, req, res, grpcUnary);
    } else if (rest.handles(path) || path.startsWith("/admin/v1/") || path.startsWith("/notify/v1/")) {
      // Under the REST prefixes even a path no route matches (say, one with
      // a broken %-escape) gets grpc-gateway's JSON error, not plain text.
      void rest.serve(req, res);
    } else {
      logRefusedRequest(deps.log, "http.not_found", req, 404);
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
}

function serveRpc(rpc: UniversalHandler, req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1], grpcUnary: GrpcUnaryOptions): void {
  const { telemetry } = grpcUnary;
  // Unary calls skip connect-node's general stream adapter; node-bridge.ts says why.
  const bridge = bridgeNodeCall(rpc.method, req, res);
  // Unary gRPC takes the router's Connect protocol; grpc-unary.ts says why.
  const limits = { readMaxBytes: grpcUnary.readMaxBytesOf(rpc.method), maxTimeoutMs: grpcUnary.maxTimeoutMs, telemetry };
  const answer = isTranscodableGrpc(bridge.request, rpc.method, grpcUnary.maxTimeoutMs)
    ? callGrpcUnary(rpc, bridge.request, grpcUnary)
    : rpc(withRequestLimits(withCheckedFraming(withCheckedBody(bridge.request, rpc.method, telemetry), rpc.method, telemetry), rpc.method, limits));
  // Each chunk meets the frame checks first (inside callGrpcUnary too), so a
  // body that is not framed is refused as such, not as a frame too large;
  // then the limits, then the message check.
  answer
    .then((uRes) => bridge.respond(uRes))
    .catch((reason: unknown) => {
      // Aborted: the client went away mid-response; nothing to report.
      if (ConnectError.from(reason).code === Code.Aborted) return;
      telemetry.log.error({ event: "rpc.write_failed", method: rpc.method.name, err: String(reason) }, "writing a response failed");
    });
}
