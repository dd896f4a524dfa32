/**
 * The request gate: runs after headers arrive and before the body is read.
 * In WIRE.md's order it resolves the instance from the host, the principal
 * from the bearer token, and checks the RPC's permission, so that a refused
 * request costs no parsing.
 */
import type { HandlerContext } from "@connectrpc/connect";
import { requirePermission } from "../domain/access.js";
import { DomainError } from "../domain/errors.js";
import { resolveInstance } from "../domain/instances.js";
import { authenticate } from "../domain/tokens.js";
import type { Store } from "../store/store.js";
import { instanceKey, principalKey, protocolKey, startKey } from "./context.js";
import { toConnectError } from "./error-mapper.js";
import { requirementByMethod } from "./permissions.js";
import { logOutcome, type Telemetry } from "./request-log.js";

/** Reads the token from "Authorization: Bearer <token>"; undefined if absent. */
export function bearerToken(header: string | null): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/** Builds the gate for the router. It throws ConnectErrors only. */
export function createAuthGate(store: Store, t: Telemetry): (ctx: HandlerContext) => Promise<void> {
  return async (ctx) => {
    ctx.values.set(startKey, performance.now());
    // The REST transcoder names its protocol itself; it arrives as Connect.
    if (ctx.values.get(protocolKey) === "") ctx.values.set(protocolKey, ctx.protocolName);
    try {
      await admit(store, ctx);
    } catch (err) {
      logOutcome(t, { method: ctx.method, values: ctx.values }, err);
      throw toConnectError(err);
    }
  };
}

async function admit(store: Store, ctx: HandlerContext): Promise<void> {
  const requirement = requirementByMethod[`${ctx.service.typeName}/${ctx.method.name}`] ?? requirementByMethod[ctx.method.name];
  if (requirement === "public") return;
  if (requirement === undefined) {
    throw new DomainError("unimplemented", "RPC-open01", `${ctx.method.name} is not served`);
  }
  const instance = await resolveInstance(store, new URL(ctx.url).hostname);
  ctx.values.set(instanceKey, instance);
  const principal = await authenticate(store, instance.id, bearerToken(ctx.requestHeader.get("authorization")));
  ctx.values.set(principalKey, principal);
  requirePermission(principal, requirement);
}
