/**
 * Validation of the settings and password that add, update and test carry.
 */
import { DomainError } from "./errors.js";
import type { ProviderSettings } from "./provider.js";
import { checkAddress, checkHeaderSafe, checkHostPort, checkLength, limits } from "./validate.js";

/**
 * Checks the sender and server fields that stored settings and typed test
 * settings share. Throws DomainError "invalid" naming the first bad field.
 */
export function checkSenderAndServer(s: Pick<ProviderSettings, "senderAddress" | "senderName" | "host" | "user">): void {
  checkLength("sender_address", s.senderAddress, limits.senderAddress);
  checkAddress("sender_address", s.senderAddress);
  checkLength("sender_name", s.senderName, limits.senderName);
  checkHeaderSafe("sender_name", s.senderName);
  checkLength("host", s.host, limits.host);
  checkHostPort("host", s.host);
  checkLength("user", s.user, limits.user);
  checkHeaderSafe("user", s.user);
}

/** Throws DomainError "invalid" naming the first field that breaks a rule. */
export function checkSettings(s: ProviderSettings): void {
  checkSenderAndServer(s);
  checkLength("reply_to_address", s.replyToAddress, limits.replyToAddress);
  if (s.replyToAddress !== "") checkAddress("reply_to_address", s.replyToAddress);
  checkLength("description", s.description, limits.description);
  checkHeaderSafe("description", s.description);
}

/** Throws DomainError "invalid" for an overlong password or one with line breaks. */
export function checkPassword(password: string): void {
  if (password.length > limits.password.max) {
    throw new DomainError("invalid", "SMTP-len01", `password must be at most ${limits.password.max} characters long`);
  }
  // AUTH PLAIN and LOGIN send it base64-encoded, but a line break can only
  // be a paste mistake, and NUL would split the PLAIN triple.
  checkHeaderSafe("password", password);
}
