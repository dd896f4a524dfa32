/**
 * One log line per finished RPC: method, protocol, code, duration, instance
 * and principal ids; and one per request refused before it reached an RPC
 * (unknown path, wrong verb, CORS). Never headers, bodies or tokens.
 */
import { Code, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../domain/deps.js";
import { instanceKey, principalKey, protocolKey, startKey } from "./context.js";
import { toConnectError } from "./error-mapper.js";
import type { Metrics } from "./metrics.js";

/** Where request outcomes go: the log, and metrics when enabled. */
export interface Telemetry {
  readonly log: Logger;
  readonly metrics?: Metrics;
}

interface Call {
  readonly method: { readonly name: string };
  readonly values: ContextValues;
}

/** Logs and counts the outcome of one call; `err` undefined means success. */
export function logOutcome(t: Telemetry, call: Call, err?: unknown): void {
  const fields = {
    event: "rpc.done",
    method: call.method.name,
    protocol: call.values.get(protocolKey),
    code: err === undefined ? "ok" : Code[toConnectError(err).code],
    durationMs: Math.round((performance.now() - call.values.get(startKey)) * 100) / 100,
    instanceId: call.values.get(instanceKey)?.id,
    principalId: call.values.get(principalKey)?.tokenId,
  };
  if (err === undefined) t.log.info(fields, "request done");
  else t.log.warn(fields, "request failed");
  t.metrics?.recordRequest({ method: fields.method, protocol: fields.protocol, code: fields.code, seconds: fields.durationMs / 1000 });
}

/** Interceptor that logs each call that got past the gate. Put it outermost. */
export function requestLogger(t: Telemetry): Interceptor {
  return (next) => async (req) => {
    const call = { method: req.method, values: req.contextValues };
    try {
      const res = await next(req);
      logOutcome(t, call);
      return res;
    } catch (err) {
      logOutcome(t, call, err);
      throw err;
    }
  };
}

/** Longest part of a request path written to the log; the rest is cut. */
const loggedPathChars = 200;

/**
 * Logs a request answered before any RPC ran: `event` says why (e.g.
 * "http.not_found"), `status` is the HTTP status sent. A warning: it is
 * the caller's mistake. The path is cut short, and its query dropped.
 */
export function logRefusedRequest(log: Logger, event: string, req: { method?: string; url?: string }, status: number): void {
  const path = (req.url ?? "").split("?", 1)[0].slice(0, loggedPathChars);
  log.warn({ event, method: req.method, path, status }, "request refused");
}
