/**
 * The one error type of the domain. Every failure that a caller can act on is
 * a DomainError with a kind from a closed list and a stable id; the API edge
 * (src/api/error-mapper.ts) turns the kind into a protocol code, once.
 */

/** What went wrong, in the domain's words. The mapper owns the wire codes. */
export type ErrorKind =
  | "unauthenticated"
  | "forbidden"
  | "not_found"
  | "invalid"
  | "failed_precondition"
  // A per-instance rate limit was hit; the caller may retry later.
  | "resource_exhausted"
  | "unavailable"
  | "unimplemented"
  | "internal";

/**
 * A failure with a kind, a stable id (like ZITADEL's "COMMAND-xyz") and a
 * message that is safe to show a client: never a secret, SQL or a stack.
 */
export class DomainError extends Error {
  override readonly name = "DomainError";

  constructor(
    readonly kind: ErrorKind,
    readonly id: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True when `err` is a DomainError, optionally of one kind. */
export function isDomainError(err: unknown, kind?: ErrorKind): err is DomainError {
  return err instanceof DomainError && (kind === undefined || err.kind === kind);
}
