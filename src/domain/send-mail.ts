/**
 * Accepting mails from platform services into the outbox, and reporting on
 * them. A mail is committed before the call answers; the worker in
 * src/notify delivers it through the instance's active provider.
 */
import { requirePermission, type Instance, type Principal } from "./access.js";
import type { DomainDeps } from "./deps.js";
import { DomainError } from "./errors.js";
import { newObjectId } from "./ids.js";
import type { OutboxMail } from "./outbox.js";
import { checkAddress, checkHeaderSafe, checkLength } from "./validate.js";

/** Limits of a mail, beyond which SendMail answers invalid. */
export const mailLimits = {
  recipients: { min: 1, max: 50 },
  address: { min: 1, max: 200 },
  subject: { min: 1, max: 500 },
  // Bytes of UTF-8 for both bodies together.
  bodyBytes: 512 * 1024,
  idempotencyKey: { min: 0, max: 200 },
} as const;

/** A mail as a platform service hands it over. */
export interface MailRequest {
  readonly to: readonly string[];
  readonly subject: string;
  readonly textBody: string;
  readonly htmlBody: string;
  readonly replyTo: string;
  readonly idempotencyKey: string;
}

/**
 * Validates and queues a mail. Resolves once it is durably stored; with a
 * known idempotency key, resolves to the first mail and `created: false`.
 * Throws forbidden, invalid, or resource_exhausted when the instance is over
 * its send rate (a repeated idempotent call counts too).
 */
export async function sendMail(
  deps: DomainDeps,
  principal: Principal,
  instance: Instance,
  input: MailRequest,
): Promise<{ mail: OutboxMail; created: boolean }> {
  requirePermission(principal, "notify.send");
  checkMail(input);
  deps.limits?.take("send_mail", principal.instanceId);

  const id = newObjectId();
  const now = deps.now();
  const result = await deps.store.enqueueMail({
    id,
    instanceId: principal.instanceId,
    idempotencyKey: input.idempotencyKey,
    // Fixed now, so a retried or re-sent attempt carries the same header and
    // receivers can drop duplicates.
    messageId: `<${id}@${instance.domains[0] ?? "smtpgate.invalid"}>`,
    to: [...input.to],
    subject: input.subject,
    textBody: input.textBody,
    htmlBody: input.htmlBody,
    replyTo: input.replyTo,
    createdAt: now,
  });
  const fields = { event: "mail.accepted", instanceId: principal.instanceId, mailId: result.mail.id, recipients: input.to.length, created: result.created };
  deps.log.info(fields, result.created ? "mail queued" : "mail already queued under this idempotency key");
  return result;
}

/** One mail of the caller's instance. Throws forbidden, invalid or not_found. */
export async function getMail(deps: DomainDeps, principal: Principal, id: string): Promise<OutboxMail> {
  requirePermission(principal, "notify.send");
  checkLength("id", id, { min: 1, max: 100 });
  const mail = await deps.store.findMail(principal.instanceId, id);
  if (!mail) throw new DomainError("not_found", "MAIL-nf01", "mail not found");
  return mail;
}

function checkMail(input: MailRequest): void {
  const { min, max } = mailLimits.recipients;
  if (input.to.length < min || input.to.length > max) {
    throw new DomainError("invalid", "MAIL-to01", `to must list ${min} to ${max} recipients`);
  }
  for (const address of input.to) {
    checkLength("to", address, mailLimits.address);
    checkAddress("to", address);
  }
  checkLength("subject", input.subject, mailLimits.subject);
  checkHeaderSafe("subject", input.subject);
  if (input.replyTo !== "") {
    checkLength("reply_to", input.replyTo, mailLimits.address);
    checkAddress("reply_to", input.replyTo);
  }
  checkLength("idempotency_key", input.idempotencyKey, mailLimits.idempotencyKey);
  checkHeaderSafe("idempotency_key", input.idempotencyKey);
  if (input.textBody === "" && input.htmlBody === "") {
    throw new DomainError("invalid", "MAIL-body01", "text_body or html_body is required");
  }
  const bytes = Buffer.byteLength(input.textBody) + Buffer.byteLength(input.htmlBody);
  if (bytes > mailLimits.bodyBytes) {
    throw new DomainError("invalid", "MAIL-body02", `text_body and html_body together must be at most ${mailLimits.bodyBytes} bytes, got ${bytes}`);
  }
}
