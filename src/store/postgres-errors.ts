/**
 * Turns the PostgreSQL failures the API can explain into DomainErrors:
 * a database that cannot be reached becomes "unavailable" (clients retry),
 * never a crash or an Internal with driver text.
 */
import { DomainError } from "../domain/errors.js";

const unavailableCodes = new Set([
  // Node socket errors
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH", "EAI_AGAIN",
  // SQLSTATE class 08 (connection exception) and server shutting down / starting up
  "08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03",
]);

/** True when `err` means the database is (for now) out of reach. */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e?.code && unavailableCodes.has(e.code)) return true;
  const message = e?.message ?? "";
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message);
}

/** Re-throws `err`, as DomainError "unavailable" when the database is unreachable. */
export function translatePgError(err: unknown): never {
  if (isUnavailable(err)) {
    throw new DomainError("unavailable", "STORE-down01", "the database is unavailable, try again shortly", { cause: err });
  }
  throw err;
}
