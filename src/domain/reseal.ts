/**
 * Re-sealing: the second half of a master-key rotation. Every stored SMTP
 * password that is not sealed under the newest key is opened with the keys
 * the box holds and sealed again under the newest one, so that afterwards no
 * value depends on a retired key.
 *
 * Each re-seal is an event ("smtp.config.password.resealed", payload: the
 * new key id, never the value), written like every other change: with the
 * instance's compare-and-set, retried when an administrator writes at the
 * same moment. The provider's sequence moves, so pooled transports are
 * rebuilt; the password itself is unchanged, so delivery is not disturbed.
 */
import type { DomainDeps, Logger } from "./deps.js";
import type { SmtpProvider } from "./provider.js";
import { sealedKeyId } from "./secret-box.js";
import { writeProviders } from "./write-providers.js";
import type { NewEvent } from "../store/store.js";

/** What a pass found and did. */
export interface ResealReport {
  /** Values sealed again under the newest key. */
  readonly resealed: number;
  /** Providers whose value opens with no key held: tampered, or under a lost key. */
  readonly failed: readonly { readonly instanceId: string; readonly providerId: string }[];
  /** After the pass: how many stored values name each key id. */
  readonly valuesByKeyId: Readonly<Record<string, number>>;
}

/** The actor recorded on re-seal events: the command, not a token. */
export const resealActor = "system:keys-reseal";

type Deps = Pick<DomainDeps, "store" | "secrets" | "now"> & { readonly log: Logger };

/**
 * Re-seals every password of every instance under `deps.secrets`' newest
 * key. Values that do not open are left as they are and reported in
 * `failed` (they fail closed at send time until their password is saved
 * again). Throws only when the store fails.
 */
export async function resealPasswords(deps: Deps): Promise<ResealReport> {
  let resealed = 0;
  const failed: { instanceId: string; providerId: string }[] = [];
  for (const instanceId of await deps.store.listInstanceIds()) {
    const outcome = await resealInstance(deps, instanceId);
    resealed += outcome.resealed;
    failed.push(...outcome.failed.map((providerId) => ({ instanceId, providerId })));
  }
  const valuesByKeyId = await countValuesByKeyId(deps);
  const fields = { event: "keys.resealed", resealed, failed: failed.length, keyId: deps.secrets.primaryKeyId };
  deps.log.info(fields, "passwords re-sealed");
  return { resealed, failed, valuesByKeyId };
}

/** How many stored values name each key id, over all instances. */
export async function countValuesByKeyId(deps: Pick<DomainDeps, "store">): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const instanceId of await deps.store.listInstanceIds()) {
    for (const provider of (await deps.store.readProviders(instanceId)).providers) {
      if (provider.sealedPassword === "") continue;
      const keyId = sealedKeyId(provider.sealedPassword) ?? "malformed";
      counts[keyId] = (counts[keyId] ?? 0) + 1;
    }
  }
  return counts;
}

async function resealInstance(deps: Deps, instanceId: string): Promise<{ resealed: number; failed: string[] }> {
  const needsReseal = (p: SmtpProvider) =>
    p.sealedPassword !== "" && sealedKeyId(p.sealedPassword) !== deps.secrets.primaryKeyId;
  const snapshot = await deps.store.readProviders(instanceId);
  if (!snapshot.providers.some(needsReseal)) return { resealed: 0, failed: [] };

  const principal = { tokenId: resealActor, instanceId, roles: [] };
  let outcome = { resealed: 0, failed: [] as string[] };
  await writeProviders(deps, principal, (current) => {
    // Decided afresh on every attempt: a retry after a concurrent write sees its result.
    const events: NewEvent[] = [];
    const upserts: SmtpProvider[] = [];
    const failed: string[] = [];
    for (const provider of current.providers.filter(needsReseal)) {
      const next = resealOne(deps, provider);
      if (!next) {
        failed.push(provider.id);
        continue;
      }
      upserts.push(next);
      const payload = { keyId: deps.secrets.primaryKeyId };
      events.push({ type: "smtp.config.password.resealed", objectId: provider.id, payload });
    }
    outcome = { resealed: upserts.length, failed };
    // With no events nothing is committed; the subject only names details nobody reads.
    return { events, upserts, deletes: [], subject: upserts[0] ?? current.providers[0] ?? snapshot.providers[0] };
  });
  return outcome;
}

/** The provider with its password sealed under the newest key, or undefined when it does not open. */
function resealOne(deps: Deps, provider: SmtpProvider): SmtpProvider | undefined {
  const owner = { instanceId: provider.instanceId, providerId: provider.id };
  let password: string;
  try {
    password = deps.secrets.open(provider.sealedPassword, owner);
  } catch {
    const fields = { event: "keys.reseal_failed", instanceId: provider.instanceId, configId: provider.id };
    deps.log.warn(fields, "stored password does not open; left as it is");
    return undefined;
  }
  return { ...provider, sealedPassword: deps.secrets.seal(password, owner) };
}
