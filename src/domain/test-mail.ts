/**
 * Test mails: a real mail sent synchronously through a stored provider or
 * through settings the caller types, so an administrator sees at once
 * whether the server accepts them.
 */
import { requirePermission, type Principal } from "./access.js";
import type { DomainDeps } from "./deps.js";
import { DomainError, isDomainError } from "./errors.js";
import type { SmtpSettings } from "./mail.js";
import { checkLength, checkAddress, limits } from "./validate.js";
import { notFound } from "./provider-commands.js";
import { checkPassword, checkSenderAndServer } from "./provider-input.js";
import type { SmtpProvider } from "./provider.js";
import { checkPlaintextAuth, defaultPlaintextAuthPolicy } from "./smtp-policy.js";

const subject = "Test mail from smtpgate";
const body = "This is a test mail. Your SMTP settings work: the server accepted it.";

/** Settings typed by the caller for TestSMTPConfig. */
export interface TestSettings {
  readonly senderAddress: string;
  readonly senderName: string;
  readonly tls: boolean;
  readonly host: string;
  readonly user: string;
  readonly password: string;
  readonly receiverAddress: string;
  /** A stored provider whose password may be reused; "" for none. */
  readonly id: string;
}

/**
 * Sends a test mail through stored provider `id`, active or not, logging in
 * with its current password. Throws forbidden, invalid, not_found,
 * resource_exhausted (the instance's test-mail limit), or the SmtpSendError
 * that says what the server answered. A stored provider that breaks the
 * outbound policy is refused by src/notify before it connects.
 */
export async function testProviderById(
  deps: DomainDeps,
  principal: Principal,
  input: { id: string; receiverAddress: string },
  signal?: AbortSignal,
): Promise<void> {
  requirePermission(principal, "iam.write");
  checkLength("id", input.id, limits.id);
  checkReceiver(input.receiverAddress);
  deps.limits?.take("test_mail", principal.instanceId);

  const provider = await deps.store.findProvider(principal.instanceId, input.id);
  if (!provider) throw notFound();
  const settings = { host: provider.host, tls: provider.tls, user: provider.user, password: openPassword(deps, provider) };
  await sendTest(deps, principal, settings, provider, input.receiverAddress, signal);
}

/**
 * Sends a test mail with typed settings. Without a password but with an id,
 * the stored password is reused only if host and user equal the stored ones:
 * a stored password is never sent to a host the caller just typed. A
 * password is never sent unencrypted to a remote host (SMTP-plain01).
 * Throws forbidden, invalid, not_found, resource_exhausted, or SmtpSendError.
 */
export async function testSettings(deps: DomainDeps, principal: Principal, input: TestSettings, signal?: AbortSignal): Promise<void> {
  requirePermission(principal, "iam.write");
  checkTestInput(input);
  deps.limits?.take("test_mail", principal.instanceId);

  let password = input.password;
  if (password === "" && input.id !== "") {
    const stored = await deps.store.findProvider(principal.instanceId, input.id);
    if (!stored) throw notFound();
    if (stored.host !== input.host || stored.user !== input.user) {
      throw new DomainError(
        "invalid",
        "SMTP-test02",
        "a stored password is only reused with the host and user it was saved for; enter the password",
      );
    }
    password = openPassword(deps, stored);
  }
  checkPlaintextAuth(deps.smtpPolicy ?? defaultPlaintextAuthPolicy, { ...input, hasPassword: password !== "" });
  const settings = { host: input.host, tls: input.tls, user: input.user, password };
  await sendTest(deps, principal, settings, input, input.receiverAddress, signal);
}

function checkTestInput(input: TestSettings): void {
  checkSenderAndServer(input);
  checkPassword(input.password);
  checkLength("id", input.id, { min: 0, max: limits.id.max });
  checkReceiver(input.receiverAddress);
}

function checkReceiver(address: string): void {
  checkLength("receiver_address", address, limits.receiverAddress);
  checkAddress("receiver_address", address);
}

/**
 * The provider's stored password, opened. A value that does not open
 * (tampered, or sealed under a key this server does not hold) fails closed
 * before any connection, as FailedPrecondition rather than Internal: the
 * administrator can mend it by setting the password again, and is told so.
 * The operator is told too, since a wrong master key is theirs to fix.
 */
function openPassword(deps: DomainDeps, p: SmtpProvider): string {
  try {
    return deps.secrets.open(p.sealedPassword, { instanceId: p.instanceId, providerId: p.id });
  } catch (err) {
    if (!isDomainError(err, "internal") || !err.id.startsWith("CRYPTO-")) throw err;
    deps.log.error(
      { event: "smtp.password_unreadable", instanceId: p.instanceId, configId: p.id, errorId: err.id, reason: err.message },
      "stored smtp password cannot be opened",
    );
    throw new DomainError("failed_precondition", err.id, `${err.message}; set the password again`, { cause: err });
  }
}

async function sendTest(
  deps: DomainDeps,
  principal: Principal,
  settings: SmtpSettings,
  sender: { senderAddress: string; senderName: string; replyToAddress?: string },
  receiver: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const started = Date.now();
  try {
    await deps.mailer.send(settings, {
      fromAddress: sender.senderAddress,
      fromName: sender.senderName,
      replyTo: sender.replyToAddress || undefined,
      to: [receiver],
      subject,
      text: body,
    }, signal);
  } catch (err) {
    const reason = (err as { reason?: string }).reason;
    deps.log.warn({ event: "smtp.test_failed", instanceId: principal.instanceId, host: settings.host, reason, durationMs: Date.now() - started }, "test mail not sent");
    throw err;
  }
  deps.log.info({ event: "smtp.test_sent", instanceId: principal.instanceId, host: settings.host, durationMs: Date.now() - started }, "test mail sent");
}
