/**
 * Per-request values that the auth gate sets and handlers read.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Instance, Principal } from "../domain/access.js";
import { DomainError } from "../domain/errors.js";

/** The instance that the request's host selected. */
export const instanceKey = createContextKey<Instance | undefined>(undefined, { description: "instance" });

/** The authenticated caller, absent for RPCs that need no credentials. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "principal" });

/** The wire protocol: "connect", "grpc" or "grpc-web". */
export const protocolKey = createContextKey<string>("", { description: "protocol" });

/** When the request arrived, from performance.now(), for durations in logs. */
export const startKey = createContextKey<number>(0, { description: "request start" });

/**
 * The caller of an RPC that requires credentials. Throws DomainError
 * "internal" if the gate did not run, which would be a wiring bug.
 */
export function principalOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) throw new DomainError("internal", "AUTH-wire01", "request reached a handler without a principal");
  return principal;
}
