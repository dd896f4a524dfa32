/**
 * The one Node request handler behind the port: Connect, gRPC and gRPC-web
 * for every service, from one connect router.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { DomainDeps } from "../domain/deps.js";
import { NotificationService } from "../gen/smtpgate/notify/v1/notify_pb.js";
import { AdminService } from "../gen/zitadel/admin/v1/admin_pb.js";
import { createAdminService } from "./admin-service.js";
import { createNotificationService } from "./notification-service.js";
import { createAuthGate } from "./auth-gate.js";
import { errorMapper } from "./error-mapper.js";
import type { RequestHandler } from "./listener.js";
import { requestLogger } from "./request-log.js";

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

/** Builds the request handler for all services. */
export function createHandler(deps: DomainDeps): RequestHandler {
  return connectNodeAdapter({
    readMaxBytes,
    maxTimeoutMs,
    // First is outermost: the logger sees the error the mapper produced.
    interceptors: [requestLogger(deps.log), errorMapper(deps.log)],
    requestGate: createAuthGate(deps.store, deps.log),
    routes(router) {
      router.service(AdminService, createAdminService(deps));
      router.service(NotificationService, createNotificationService(deps), { readMaxBytes: mailReadMaxBytes });
    },
  }) as RequestHandler;
}
