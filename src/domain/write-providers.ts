/**
 * The one way the domain changes providers: read a snapshot, decide events
 * and new rows, commit them atomically, and retry on a concurrent write.
 */
import type { NewEvent } from "../store/store.js";
import { StoreConflict, type ProviderSnapshot } from "../store/store.js";
import type { Principal } from "./access.js";
import type { DomainDeps, ObjectDetails } from "./deps.js";
import { DomainError } from "./errors.js";
import type { SmtpProvider } from "./provider.js";

/** What a command decided. Sequence and change date of upserts are stamped later. */
export interface Decision {
  readonly events: readonly NewEvent[];
  readonly upserts: readonly SmtpProvider[];
  readonly deletes: readonly string[];
  /** The provider the caller asked about; its details are returned. */
  readonly subject: SmtpProvider;
}

/** How often a write is tried before giving up on a busy instance. */
const maxAttempts = 8;

/**
 * Ceiling of the pause after the first lost race, ms; it doubles with each
 * loss and the pause is random below it. Retrying at once lets a writer
 * that keeps writing win every round: with two replicas writing one
 * instance non-stop, a few percent of calls ran out of attempts, with
 * eight about 40 %. The jittered pauses (about one commit long at first)
 * spread the writers out; they cost nothing when there is no race.
 */
const backoffBaseMs = 10;

/**
 * Runs `decide` on a fresh snapshot and commits what it returns. A decision
 * with no events commits nothing and returns the subject's current details.
 * Throws whatever `decide` throws, or DomainError "unavailable" when the
 * instance keeps changing under us.
 */
export async function writeProviders(
  deps: Pick<DomainDeps, "store" | "now">,
  principal: Principal,
  decide: (snapshot: ProviderSnapshot, now: Date) => Decision,
): Promise<ObjectDetails> {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const snapshot = await deps.store.readProviders(principal.instanceId);
    const now = deps.now();
    const decision = decide(snapshot, now);
    if (decision.events.length === 0) return detailsOf(decision.subject);

    const upserts = decision.upserts.map((p) => stamp(p, decision.events, snapshot.sequence, now));
    try {
      await deps.store.commit({
        instanceId: principal.instanceId,
        actor: principal.tokenId,
        expectedSequence: snapshot.sequence,
        createdAt: now,
        events: decision.events,
        upserts,
        deletes: decision.deletes,
      });
    } catch (err) {
      if (!(err instanceof StoreConflict)) throw err;
      if (attempt < maxAttempts) await pause(Math.random() * backoffBaseMs * 2 ** (attempt - 1));
      continue;
    }
    return writeDetails(decision, snapshot.sequence, now, principal.instanceId);
  }
  throw new DomainError("unavailable", "STORE-race01", "the instance is being changed concurrently, try again");
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Gives a row the sequence of the last event about it, and the write's time. */
function stamp(p: SmtpProvider, events: readonly NewEvent[], base: bigint, now: Date): SmtpProvider {
  const index = events.map((e) => e.objectId).lastIndexOf(p.id);
  if (index < 0) return p;
  return { ...p, sequence: base + BigInt(index + 1), changeDate: now };
}

function writeDetails(decision: Decision, base: bigint, now: Date, instanceId: string): ObjectDetails {
  const creationDate = decision.subject.sequence === 0n ? now : decision.subject.creationDate;
  return {
    sequence: base + BigInt(decision.events.length),
    creationDate,
    changeDate: now,
    resourceOwner: instanceId,
  };
}

/** Details of a provider as read: its newest and first events. */
export function detailsOf(p: SmtpProvider): ObjectDetails {
  return {
    sequence: p.sequence,
    creationDate: p.creationDate,
    changeDate: p.changeDate,
    resourceOwner: p.instanceId,
  };
}
