/**
 * Instances: the tenants of smtpgate, each reached under its own domains.
 */
import type { Store } from "../store/store.js";
import type { Instance } from "./access.js";
import { DomainError } from "./errors.js";
import { newObjectId } from "./ids.js";

/**
 * Normalizes a request host or a configured domain: lowercase, no port, no
 * brackets around IPv6, no trailing dot.
 */
export function normalizeDomain(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    h = end > 0 ? h.slice(1, end) : h;
  } else if (h.split(":").length === 2) {
    h = h.split(":")[0];
  }
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

/**
 * The instance that the request's host selects. Throws DomainError
 * "not_found" for a host no instance owns.
 */
export async function resolveInstance(store: Store, host: string | undefined): Promise<Instance> {
  const domain = normalizeDomain(host ?? "");
  const instance = domain === "" ? undefined : await store.findInstanceByDomain(domain);
  if (!instance) {
    throw new DomainError("not_found", "INSTANCE-nf01", "no instance found for this host");
  }
  return instance;
}

/**
 * Adds an instance reached under `domains`. Throws DomainError "invalid" for
 * an empty list, a malformed domain, or a domain already taken.
 */
export async function addInstance(store: Store, domains: readonly string[], now = new Date()): Promise<Instance> {
  const normalized = [...new Set(domains.map(normalizeDomain))];
  if (normalized.length === 0) throw new DomainError("invalid", "INSTANCE-dom02", "at least one domain is required");
  for (const d of normalized) {
    if (!/^[a-z0-9.:-]{1,253}$/.test(d)) {
      throw new DomainError("invalid", "INSTANCE-dom03", `not a valid domain: ${JSON.stringify(d)}`);
    }
  }
  const instance: Instance = { id: newObjectId(now.getTime()), domains: normalized, createdAt: now };
  await store.addInstance(instance);
  return instance;
}
