/**
 * Errors in grpc-gateway's shape, as ZITADEL's REST API answers them:
 * {"code": 5, "message": "text (ID)", "details": [{"@type": "...", ...}]}.
 * The code and message come from the same ConnectError every other protocol
 * gets; only the body's shape differs. The HTTP status is Connect's mapping,
 * which matches grpc-gateway's.
 */
import type { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { errorWithId } from "../error-mapper.js";
import { ErrorDetailSchema } from "../../gen/zitadel/v1/object_pb.js";

/** The HTTP status and JSON body of a REST error. */
export interface GatewayError {
  readonly status: number;
  readonly body: {
    code: number;
    message: string;
    details: Array<Record<string, unknown>>;
  };
}

/** Renders a ConnectError as grpc-gateway does. */
export function toGatewayError(err: ConnectError): GatewayError {
  const details = err.findDetails(ErrorDetailSchema).map((d) => ({
    "@type": `type.googleapis.com/${ErrorDetailSchema.typeName}`,
    id: d.id,
    message: d.message,
  }));
  return { status: codeToHttpStatus(err.code), body: { code: err.code, message: err.rawMessage, details } };
}

/**
 * A REST-level error that never reached a handler (bad path, verb, query),
 * with a stable id like every other error.
 */
export function gatewayError(code: Code, id: string, text: string): GatewayError {
  return toGatewayError(errorWithId(code, id, text));
}
