/**
 * The store contract as one test suite, run unchanged against every engine
 * (test/store/sqlite-contract.test.ts, test/store/postgres-contract.test.ts).
 * It covers what the domain, the API and the outbox worker rely on; the
 * sections live in contract-providers.ts and contract-outbox.ts, the shared
 * fixtures here.
 */
import { afterEach, beforeEach, describe } from "node:test";
import type { Logger } from "../../src/domain/deps.js";
import type { SmtpProvider } from "../../src/domain/provider.js";
import type { NewEvent, NewMail, ProviderWrite, Store, StoreChange } from "../../src/store/store.js";
import { describeOutboxContract } from "./contract-outbox.js";
import { describeProviderContract } from "./contract-providers.js";

/** How the suite gets stores of one engine. */
export interface StoreEngine {
  /** Opens a store on an empty database; each call starts over. */
  openEmpty(): Promise<Store>;
  /** Opens one more store on the database of the last openEmpty, as another process would. */
  openAgain(): Promise<Store>;
  /** Removes what the last openEmpty created, after its stores were closed. */
  discard?(): Promise<void>;
}

/** What each test of the suite works with. */
export interface ContractContext {
  /** The store under test, opened empty before each test. */
  readonly store: Store;
  /** A second store on the same database; closed after the test. */
  openAgain(): Promise<Store>;
  /** Adds the instances "inst-a" and "inst-b". */
  seed(): Promise<void>;
}

/** Base time of the fixtures, with milliseconds to catch truncation. */
export const t0 = new Date("2024-05-02T08:15:30.123Z");

/** A logger that drops everything, for stores opened by tests. */
export const silentLog: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Registers the contract suite under `engineName`. Every test gets a store
 * on an empty database; stores it opens are closed afterwards.
 */
export function describeStoreContract(engineName: string, engine: StoreEngine, options: { skip?: string } = {}): void {
  describe(`store contract on ${engineName}`, { skip: options.skip }, () => {
    let opened: Store[] = [];
    const ctx = {
      store: undefined as unknown as Store,
      async openAgain() {
        const store = await engine.openAgain();
        opened.push(store);
        return store;
      },
      async seed() {
        for (const id of ["inst-a", "inst-b"]) {
          await ctx.store.addInstance({ id, domains: [`${id}.test`], createdAt: t0 });
        }
      },
    };
    beforeEach(async () => {
      ctx.store = await engine.openEmpty();
      opened = [ctx.store];
    });
    afterEach(async () => {
      await Promise.all(opened.map((s) => s.close()));
      await engine.discard?.();
    });

    describeProviderContract(ctx);
    describeOutboxContract(ctx);
  });
}

/** A provider of "inst-a" with every field set; `fields` override. */
export function provider(id: string, fields: Partial<SmtpProvider> = {}): SmtpProvider {
  return {
    instanceId: "inst-a",
    id,
    description: `provider ${id}`,
    senderAddress: `${id}@example.test`,
    senderName: `Sender ${id}`,
    replyToAddress: "",
    tls: true,
    host: "smtp.example.test:465",
    user: id,
    isActive: false,
    sealedPassword: `v1.sealed.${id}`,
    sequence: 1n,
    creationDate: t0,
    changeDate: t0,
    ...fields,
  };
}

/** An event about `objectId` with a small payload. */
export function event(objectId: string, type: NewEvent["type"] = "smtp.config.added"): NewEvent {
  return { type, objectId, payload: { note: `${type} of ${objectId}` } };
}

/** A write to "inst-a" by "token-1" at t0 with nothing but `fields`. */
export function write(fields: Partial<ProviderWrite> & Pick<ProviderWrite, "expectedSequence" | "events">): ProviderWrite {
  return { instanceId: "inst-a", actor: "token-1", createdAt: t0, upserts: [], deletes: [], ...fields };
}

/** Commits `p` as its instance's next event; returns the new sequence. */
export async function commitProvider(store: Store, p: SmtpProvider): Promise<bigint> {
  const { sequence } = await store.readProviders(p.instanceId);
  await store.commit({
    ...write({ expectedSequence: sequence, events: [event(p.id)] }),
    instanceId: p.instanceId,
    upserts: [{ ...p, sequence: sequence + 1n }],
  });
  return sequence + 1n;
}

/** A mail of "inst-a" created at t0, without idempotency key; `fields` override. */
export function mail(id: string, fields: Partial<NewMail> = {}): NewMail {
  return {
    id,
    instanceId: "inst-a",
    idempotencyKey: "",
    messageId: `<${id}@inst-a.test>`,
    to: [`${id}@example.test`, "copy@example.test"],
    subject: `subject ${id}`,
    textBody: `text ${id}`,
    htmlBody: `<p>${id}</p>`,
    replyTo: "reply@example.test",
    createdAt: t0,
    ...fields,
  };
}

/** `t0` plus `ms` milliseconds. */
export function at(ms: number): Date {
  return new Date(t0.getTime() + ms);
}

/**
 * Records the changes a store announces. `settle()` enqueues a marker mail
 * of "inst-b" and waits for its change: the feed keeps commit order, so
 * whatever was announced before has arrived by then. It resolves to the
 * changes so far, markers left out (as does `recorded()`); tests of the feed must not enqueue
 * "inst-b" mails themselves.
 */
export function recordChanges(store: Store): { stop(): void; recorded(): StoreChange[]; settle(): Promise<StoreChange[]> } {
  const changes: StoreChange[] = [];
  const stop = store.subscribe((change) => changes.push(change));
  const isMarker = (c: StoreChange) => c.instanceId === "inst-b" && c.kind === "mails";
  let markers = 0;
  return {
    stop,
    recorded: () => changes.filter((c) => !isMarker(c)),
    async settle() {
      markers += 1;
      await store.enqueueMail(mail(`marker-${markers}`, { instanceId: "inst-b" }));
      await waitFor(() => changes.filter(isMarker).length >= markers, "the marker change");
      return changes.filter((c) => !isMarker(c));
    },
  };
}

/** Polls `check` every 10 ms; rejects after `timeoutMs` naming `what`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
