/**
 * One log line per finished RPC: method, protocol, code, duration, instance
 * and principal ids. Never headers, bodies or tokens.
 */
import { Code, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../domain/deps.js";
import { instanceKey, principalKey, protocolKey, startKey } from "./context.js";
import { toConnectError } from "./error-mapper.js";

interface Call {
  readonly method: { readonly name: string };
  readonly values: ContextValues;
}

/** Logs the outcome of one call; `err` undefined means success. */
export function logOutcome(log: Logger, call: Call, err?: unknown): void {
  const fields = {
    event: "rpc.done",
    method: call.method.name,
    protocol: call.values.get(protocolKey),
    code: err === undefined ? "ok" : Code[toConnectError(err).code],
    durationMs: Math.round((performance.now() - call.values.get(startKey)) * 100) / 100,
    instanceId: call.values.get(instanceKey)?.id,
    principalId: call.values.get(principalKey)?.tokenId,
  };
  if (err === undefined) log.info(fields, "request done");
  else log.warn(fields, "request failed");
}

/** Interceptor that logs each call that got past the gate. Put it outermost. */
export function requestLogger(log: Logger): Interceptor {
  return (next) => async (req) => {
    const call = { method: req.method, values: req.contextValues };
    try {
      const res = await next(req);
      logOutcome(log, call);
      return res;
    } catch (err) {
      logOutcome(log, call, err);
      throw err;
    }
  };
}
