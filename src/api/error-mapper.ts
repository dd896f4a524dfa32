/**
 * The one place that knows protocol codes. Domain errors become ConnectErrors
 * here, for every protocol; Connect itself then picks the HTTP status.
 *
 * | kind                | code                 |
 * | ------------------- | -------------------- |
 * | unauthenticated     | Unauthenticated (16) |
 * | forbidden           | PermissionDenied (7) |
 * | not_found           | NotFound (5)         |
 * | invalid             | InvalidArgument (3)  |
 * | failed_precondition | FailedPrecondition (9) |
 * | unavailable         | Unavailable (14)     |
 * | unimplemented       | Unimplemented (12)   |
 * | internal, other     | Internal (13), fixed message |
 *
 * Messages follow ZITADEL: the text, then the stable id in parentheses; the
 * id travels again in a zitadel.v1.ErrorDetail. Anything that is not a
 * DomainError or ConnectError is logged in full and answered as Internal
 * with a fixed message, so no SQL, stack or secret reaches a client.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../domain/deps.js";
import { DomainError, type ErrorKind } from "../domain/errors.js";
import { ErrorDetailSchema } from "../gen/zitadel/v1/object_pb.js";

const codeByKind: Readonly<Record<ErrorKind, Code>> = {
  unauthenticated: Code.Unauthenticated,
  forbidden: Code.PermissionDenied,
  not_found: Code.NotFound,
  invalid: Code.InvalidArgument,
  failed_precondition: Code.FailedPrecondition,
  unavailable: Code.Unavailable,
  unimplemented: Code.Unimplemented,
  internal: Code.Internal,
};

const internalId = "INTERNAL-0001";
const internalText = "internal error";

/** Builds the client-facing error for a stable id and text. */
export function errorWithId(code: Code, id: string, text: string): ConnectError {
  return new ConnectError(`${text} (${id})`, code, undefined, [
    { desc: ErrorDetailSchema, value: { id, message: text } },
  ]);
}

/**
 * Turns any thrown value into the ConnectError a client sees. Internal
 * domain errors and unknown errors get a fixed message; the original is
 * logged by the caller.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof DomainError) {
    const code = codeByKind[err.kind];
    if (code === Code.Internal) return errorWithId(code, internalId, internalText);
    return errorWithId(code, err.id, err.message);
  }
  if (err instanceof ConnectError) return err;
  return errorWithId(Code.Internal, internalId, internalText);
}

/** True when the error is the server's fault and must be logged as such. */
export function isServerFault(err: unknown): boolean {
  if (err instanceof DomainError) return err.kind === "internal";
  if (err instanceof ConnectError) return err.code === Code.Internal || err.code === Code.Unknown;
  return true;
}

/** Interceptor that maps every error leaving a handler, logging faults once. */
export function errorMapper(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (isServerFault(err)) {
        log.error({ event: "rpc.fault", method: req.method.name, err: describe(err) }, "request failed unexpectedly");
      }
      throw toConnectError(err);
    }
  };
}

/** A loggable summary of an unexpected error: its name, message and stack. */
export function describe(err: unknown): { name: string; message: string; stack?: string } {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: typeof err, message: String(err) };
}
