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
 * | resource_exhausted  | ResourceExhausted (8), with a google.rpc.RetryInfo detail |
 * | unavailable         | Unavailable (14)     |
 * | unimplemented       | Unimplemented (12)   |
 * | internal, other     | Internal (13), fixed message |
 *
 * Messages follow ZITADEL: the text, then the stable id in parentheses; the
 * id travels again in a zitadel.v1.ErrorDetail. Anything that is not a
 * DomainError or ConnectError is logged in full and answered as Internal
 * with a fixed message, so no SQL, stack or secret reaches a client.
 */
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../domain/deps.js";
import { DomainError, type ErrorKind } from "../domain/errors.js";
import { RateLimitedError } from "../domain/rate-limit.js";
import { ErrorDetailSchema } from "../gen/zitadel/v1/object_pb.js";

const codeByKind: Readonly<Record<ErrorKind, Code>> = {
  unauthenticated: Code.Unauthenticated,
  forbidden: Code.PermissionDenied,
  not_found: Code.NotFound,
  invalid: Code.InvalidArgument,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
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
    const mapped = errorWithId(code, err.id, err.message);
    if (err instanceof RateLimitedError) mapped.details.push(retryInfo(err.retryAfterMs));
    return mapped;
  }
  if (err instanceof ConnectError) return err;
  return errorWithId(Code.Internal, internalId, internalText);
}

/**
 * A google.rpc.RetryInfo detail { retry_delay: Duration } saying how long to
 * wait, for clients that honour it (grpc-go's retry policies, Google's
 * client libraries). Encoded by hand: two fields are not worth vendoring
 * google/rpc/error_details.proto and generating code for it. The message
 * says the same in words, for everyone else and for the REST binding, which
 * renders only our ErrorDetail.
 */
function retryInfo(retryAfterMs: number): { type: string; value: Uint8Array } {
  const seconds = Math.floor(retryAfterMs / 1000);
  const nanos = (retryAfterMs % 1000) * 1_000_000;
  const duration = new BinaryWriter().tag(1, WireType.Varint).int64(seconds).tag(2, WireType.Varint).int32(nanos).finish();
  return { type: "google.rpc.RetryInfo", value: new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(duration).finish() };
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
