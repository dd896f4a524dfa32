/**
 * Commands that change an instance's SMTP providers. Each checks permission,
 * then input, then state, and records every change as an event.
 *
 * Rules (WIRE.md): new providers start inactive; at most one is active, and
 * activating one deactivates the other; activating the active one or
 * deactivating an inactive one is failed_precondition; an update that
 * changes nothing succeeds and records nothing; every password update
 * records an event, even with the same value.
 */
import { requirePermission, type Principal } from "./access.js";
import type { DomainDeps, ObjectDetails } from "./deps.js";
import { DomainError } from "./errors.js";
import { newObjectId } from "./ids.js";
import { settingNames, type ProviderSettings, type SmtpProvider } from "./provider.js";
import { checkLength, limits } from "./validate.js";
import { checkPassword, checkSettings } from "./provider-input.js";
import { checkPasswordStaysWithLogin, checkPlaintextAuth, defaultPlaintextAuthPolicy } from "./smtp-policy.js";
import { writeProviders, type Decision } from "./write-providers.js";
import type { NewEvent, ProviderSnapshot } from "../store/store.js";

/** Input of an update: all settings, and a new password when non-empty. */
export interface ProviderUpdate extends ProviderSettings {
  readonly id: string;
  readonly password: string;
}

/** Throws DomainError "not_found" unless the snapshot holds provider `id`. */
export function findIn(snapshot: ProviderSnapshot, id: string): SmtpProvider {
  const provider = snapshot.providers.find((p) => p.id === id);
  if (!provider) throw notFound();
  return provider;
}

/** The error for a provider that does not exist in the caller's instance. */
export function notFound(): DomainError {
  return new DomainError("not_found", "SMTP-nf01", "SMTP configuration not found");
}

/**
 * Stores a new, inactive provider. Returns its id and details.
 * Throws forbidden or invalid.
 */
export async function addProvider(
  deps: DomainDeps,
  principal: Principal,
  input: ProviderSettings & { password: string },
): Promise<{ id: string; details: ObjectDetails }> {
  requirePermission(principal, "iam.write");
  checkSettings(input);
  checkPassword(input.password);
  checkPlaintextAuth(deps.smtpPolicy ?? defaultPlaintextAuthPolicy, { ...input, hasPassword: input.password !== "" });

  const id = newObjectId();
  const details = await writeProviders(deps, principal, (_snapshot, now) => {
    const owner = { instanceId: principal.instanceId, providerId: id };
    const provider: SmtpProvider = {
      ...pickSettings(input),
      instanceId: principal.instanceId,
      id,
      isActive: false,
      sealedPassword: deps.secrets.seal(input.password, owner),
      sequence: 0n,
      creationDate: now,
      changeDate: now,
    };
    const payload = { ...pickSettings(input), hasPassword: input.password !== "" };
    return single({ type: "smtp.config.added", objectId: id, payload }, provider);
  });
  deps.log.info({ event: "smtp.config_added", instanceId: principal.instanceId, configId: id }, "smtp config added");
  return { id, details };
}

/**
 * Changes a provider's settings, and its password when one is given.
 * Without a new password the stored one is kept, which is refused when the
 * host or user changes (SMTP-upd01, see smtp-policy.ts), and so is a result
 * that would send a password unencrypted (SMTP-plain01).
 * Throws forbidden, invalid or not_found.
 */
export async function updateProvider(
  deps: DomainDeps,
  principal: Principal,
  input: ProviderUpdate,
): Promise<ObjectDetails> {
  requirePermission(principal, "iam.write");
  checkLength("id", input.id, limits.id);
  checkSettings(input);
  checkPassword(input.password);

  const details = await writeProviders(deps, principal, (snapshot) => {
    const current = findIn(snapshot, input.id);
    if (input.password === "") checkPasswordStaysWithLogin(current, input);
    const hasPassword = input.password !== "" || current.sealedPassword !== "";
    checkPlaintextAuth(deps.smtpPolicy ?? defaultPlaintextAuthPolicy, { ...input, hasPassword });
    const changed = changedSettings(current, input);
    const events: NewEvent[] = [];
    let next: SmtpProvider = { ...current, ...changed };
    if (Object.keys(changed).length > 0) {
      events.push({ type: "smtp.config.changed", objectId: current.id, payload: changed });
    }
    if (input.password !== "") {
      next = { ...next, sealedPassword: sealFor(deps, next, input.password) };
      events.push(passwordEvent(next.id));
    }
    return { events, upserts: [next], deletes: [], subject: current };
  });
  deps.log.info({ event: "smtp.config_changed", instanceId: principal.instanceId, configId: input.id, sequence: String(details.sequence) }, "smtp config changed");
  return details;
}

/**
 * Replaces the password a provider logs in with; "" clears it. An empty id
 * means the active provider. The new password is what the next mail uses.
 * Throws forbidden, invalid or not_found (also when no provider is active).
 *
 * Deliberately not checked against the plaintext-AUTH rule: this call only
 * replaces the secret, while where it may go is decided by add and update.
 * A password set on a provider with tls=false and a remote host is stored
 * but never sent: src/notify refuses that connection (SMTP-plain02), so the
 * error shows up at the first test or send. Refusing it here would break
 * password rotation of providers saved before the rule, or while the
 * operator allowed plaintext AUTH.
 */
export async function changeSmtpPassword(
  deps: DomainDeps,
  principal: Principal,
  input: { id: string; password: string },
): Promise<ObjectDetails> {
  requirePermission(principal, "iam.write");
  checkLength("id", input.id, { min: 0, max: limits.id.max });
  checkPassword(input.password);

  let configId = input.id;
  const details = await writeProviders(deps, principal, (snapshot) => {
    const current = input.id === "" ? activeIn(snapshot) : findIn(snapshot, input.id);
    configId = current.id;
    const next = { ...current, sealedPassword: sealFor(deps, current, input.password) };
    return single(passwordEvent(current.id), next, current);
  });
  deps.log.info({ event: "smtp.password_changed", instanceId: principal.instanceId, configId, sequence: String(details.sequence) }, "smtp password changed");
  return details;
}

/**
 * Makes a provider the active one, deactivating the one active before.
 * Throws forbidden, invalid, not_found, or failed_precondition when it is
 * already active.
 */
export async function activateProvider(deps: DomainDeps, principal: Principal, id: string): Promise<ObjectDetails> {
  requirePermission(principal, "iam.write");
  checkLength("id", id, limits.stateChangeId);

  const details = await writeProviders(deps, principal, (snapshot) => {
    const target = findIn(snapshot, id);
    if (target.isActive) {
      throw new DomainError("failed_precondition", "SMTP-act01", "SMTP configuration is already active");
    }
    const previous = snapshot.providers.find((p) => p.isActive);
    const events: NewEvent[] = [];
    const upserts: SmtpProvider[] = [];
    if (previous) {
      events.push({ type: "smtp.config.deactivated", objectId: previous.id, payload: {} });
      upserts.push({ ...previous, isActive: false });
    }
    events.push({ type: "smtp.config.activated", objectId: target.id, payload: {} });
    upserts.push({ ...target, isActive: true });
    return { events, upserts, deletes: [], subject: target };
  });
  deps.log.info({ event: "smtp.config_activated", instanceId: principal.instanceId, configId: id }, "smtp config activated");
  return details;
}

/**
 * Stops a provider from delivering mail. Throws forbidden, invalid,
 * not_found, or failed_precondition when it is not active.
 */
export async function deactivateProvider(deps: DomainDeps, principal: Principal, id: string): Promise<ObjectDetails> {
  requirePermission(principal, "iam.write");
  checkLength("id", id, limits.stateChangeId);

  const details = await writeProviders(deps, principal, (snapshot) => {
    const target = findIn(snapshot, id);
    if (!target.isActive) {
      throw new DomainError("failed_precondition", "SMTP-act02", "SMTP configuration is already inactive");
    }
    return single({ type: "smtp.config.deactivated", objectId: id, payload: {} }, { ...target, isActive: false });
  });
  deps.log.info({ event: "smtp.config_deactivated", instanceId: principal.instanceId, configId: id }, "smtp config deactivated");
  return details;
}

/** Deletes a provider, active or not. Throws forbidden, invalid or not_found. */
export async function removeProvider(deps: DomainDeps, principal: Principal, id: string): Promise<ObjectDetails> {
  requirePermission(principal, "iam.write");
  checkLength("id", id, limits.id);

  const details = await writeProviders(deps, principal, (snapshot) => {
    const target = findIn(snapshot, id);
    const event: NewEvent = { type: "smtp.config.removed", objectId: id, payload: {} };
    return { events: [event], upserts: [], deletes: [id], subject: target };
  });
  deps.log.info({ event: "smtp.config_removed", instanceId: principal.instanceId, configId: id }, "smtp config removed");
  return details;
}

function activeIn(snapshot: ProviderSnapshot): SmtpProvider {
  const active = snapshot.providers.find((p) => p.isActive);
  if (!active) throw new DomainError("not_found", "SMTP-nf02", "no active SMTP configuration found");
  return active;
}

function single(event: NewEvent, row: SmtpProvider, subject: SmtpProvider = row): Decision {
  return { events: [event], upserts: [row], deletes: [], subject };
}

function passwordEvent(id: string): NewEvent {
  // The payload says that the password changed, never what it is.
  return { type: "smtp.config.password.changed", objectId: id, payload: {} };
}

function sealFor(deps: DomainDeps, p: SmtpProvider, password: string): string {
  return deps.secrets.seal(password, { instanceId: p.instanceId, providerId: p.id });
}

/** The settings of `input`, and nothing else (no password, no id). */
export function pickSettings(input: ProviderSettings): ProviderSettings {
  const out: Record<string, unknown> = {};
  for (const name of settingNames) out[name] = input[name];
  return out as unknown as ProviderSettings;
}

function changedSettings(current: SmtpProvider, input: ProviderSettings): Partial<ProviderSettings> {
  const changed: Record<string, unknown> = {};
  for (const name of settingNames) {
    if (current[name] !== input[name]) changed[name] = input[name];
  }
  return changed as Partial<ProviderSettings>;
}

/**
 * Answers the RPCs of HTTP (webhook) email providers, which smtpgate does
 * not offer: it delivers over SMTP only. The caller's permission is checked
 * first, as for any write, so a viewer learns no more than "forbidden".
 * Always throws: DomainError "forbidden" or "unimplemented".
 */
export function refuseHttpProvider(principal: Principal): never {
  requirePermission(principal, "iam.write");
  throw new DomainError(
    "unimplemented",
    "EMAIL-http01",
    "HTTP email providers (webhook delivery) are not supported; smtpgate delivers over SMTP: use AddEmailProviderSMTP",
  );
}
