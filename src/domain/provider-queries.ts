/**
 * Reads of an instance's SMTP providers. All need iam.read.
 */
import { requirePermission, type Principal } from "./access.js";
import type { DomainDeps } from "./deps.js";
import { DomainError } from "./errors.js";
import type { SmtpProvider } from "./provider.js";
import { notFound } from "./provider-commands.js";
import { checkLength, limits } from "./validate.js";

/** Default and largest page size of a list. */
export const listLimits = { default: 100, max: 1000 } as const;

/** The active provider. Throws forbidden, or not_found when none is active. */
export async function getActiveProvider(deps: DomainDeps, principal: Principal): Promise<SmtpProvider> {
  requirePermission(principal, "iam.read");
  const provider = await deps.store.findActiveProvider(principal.instanceId);
  if (!provider) throw new DomainError("not_found", "SMTP-nf02", "no active SMTP configuration found");
  return provider;
}

/** One provider. Throws forbidden, invalid or not_found. */
export async function getProvider(deps: DomainDeps, principal: Principal, id: string): Promise<SmtpProvider> {
  requirePermission(principal, "iam.read");
  checkLength("id", id, limits.id);
  const provider = await deps.store.findProvider(principal.instanceId, id);
  if (!provider) throw notFound();
  return provider;
}

/** A page of providers, in creation order (oldest first when `asc`). */
export interface ProviderList {
  readonly total: number;
  /** The instance's sequence when the page was read. */
  readonly processedSequence: bigint;
  readonly viewTimestamp: Date;
  readonly providers: readonly SmtpProvider[];
}

/**
 * Lists providers. A limit of 0 means the default; larger than the maximum is
 * invalid. Throws forbidden or invalid.
 */
export async function listProviders(
  deps: DomainDeps,
  principal: Principal,
  query: { offset: bigint; limit: number; asc: boolean },
): Promise<ProviderList> {
  requirePermission(principal, "iam.read");
  if (query.limit > listLimits.max) {
    throw new DomainError("invalid", "SMTP-list01", `limit must be at most ${listLimits.max}`);
  }
  const offset = query.offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(query.offset);
  const page = await deps.store.listProviders(principal.instanceId, {
    offset,
    limit: query.limit === 0 ? listLimits.default : query.limit,
    asc: query.asc,
  });
  return {
    total: page.total,
    processedSequence: page.sequence,
    viewTimestamp: deps.now(),
    providers: page.providers,
  };
}
