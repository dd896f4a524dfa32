/**
 * Strict decoding of request bodies, with our error shape.
 *
 * connect-es decodes a request body before any interceptor runs, so a body
 * it cannot decode never reaches the error mapper. Left alone, a malformed
 * JSON body got a bare InvalidArgument without the ErrorDetail and stable id
 * every other error carries, its message quoted the offending value (which
 * may be a password typed into the wrong field), and a malformed protobuf
 * body got Internal, which WIRE.md reserves for our own faults.
 *
 * So, as a body streams into connect (after the auth gate, which runs before
 * the body is read), we keep a copy of the request message and, once it is
 * whole, decode it ourselves: JSON (unknown fields ignored, like ZITADEL),
 * binary as protobuf. A message that does not decode fails connect's read of the body
 * with InvalidArgument from our mapper. Connect then decodes good messages
 * again; ours are small.
 *
 * Known gap: compressed bodies (Content-Encoding, or a gRPC message with the
 * compressed flag) and gRPC-web's base64 text form are left to connect, with
 * the behaviour described above. No client we know compresses these calls;
 * closing it means decompressing here too.
 */
import {
  fromBinary,
  fromJson,
  type DescMessage,
  type DescMethod,
  type JsonValue,
} from "@bufbuild/protobuf";
import { createContextValues, type ConnectError } from "@connectrpc/connect";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { DomainError } from "../domain/errors.js";
import { toConnectError } from "./error-mapper.js";
import { logOutcome, type Telemetry } from "./request-log.js";

/** How a content type frames and encodes a unary request message. */
interface BodyFormat {
  /** gRPC and gRPC-web put the message in a 5-byte-prefixed envelope. */
  readonly isEnveloped: boolean;
  readonly isJson: boolean;
}

const formats: Readonly<Record<string, BodyFormat>> = {
  "application/json": { isEnveloped: false, isJson: true },
  "application/proto": { isEnveloped: false, isJson: false },
  "application/grpc": { isEnveloped: true, isJson: false },
  "application/grpc+proto": { isEnveloped: true, isJson: false },
  "application/grpc+json": { isEnveloped: true, isJson: true },
  "application/grpc-web": { isEnveloped: true, isJson: false },
  "application/grpc-web+proto": { isEnveloped: true, isJson: false },
  "application/grpc-web+json": { isEnveloped: true, isJson: true },
};

/**
 * Returns `req` with its body checked against `method`'s input message, or
 * `req` unchanged when its format is not one we check. A failed check is
 * logged once here and thrown into connect's read of the body.
 */
export function withCheckedBody(
  req: UniversalServerRequest,
  method: DescMethod,
  telemetry: Telemetry,
): UniversalServerRequest {
  const format = formatToCheck(req);
  if (!format || !isByteStream(req.body)) return req;

  // Shared with the handler context, so the log line gets what the gate found.
  const values = req.contextValues ?? createContextValues();
  const check = (bytes: Buffer) => {
    const err = decodeError(bytes, format, method.input);
    if (!err) return;
    logOutcome(telemetry, { method, values }, err);
    throw err;
  };
  return { ...req, contextValues: values, body: checkedStream(req.body, format, check) };
}

/** The format of an uncompressed POST body we know how to decode, else undefined. */
function formatToCheck(req: UniversalServerRequest): BodyFormat | undefined {
  if (req.method !== "POST" || req.header.has("content-encoding")) return undefined;
  const type = (req.header.get("content-type") ?? "").split(";", 1)[0].trim().toLowerCase();
  return Object.hasOwn(formats, type) ? formats[type] : undefined;
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

/**
 * Passes chunks through as they come, so connect's size limit still applies
 * while reading, and runs `check` on the bytes before connect can decode
 * them: for an envelope, before the chunk that completes it (connect decodes
 * each envelope as soon as it is whole); otherwise once the body has ended.
 * Only the first envelope of a stream is checked, and only it is kept.
 */
async function* checkedStream(
  body: AsyncIterable<Uint8Array>,
  format: BodyFormat,
  check: (bytes: Buffer) => void,
) {
  let seen = Buffer.alloc(0);
  let isChecked = false;
  for await (const chunk of body) {
    if (!isChecked) seen = Buffer.concat([seen, chunk]);
    if (!isChecked && format.isEnveloped && isWholeEnvelope(seen)) {
      check(seen);
      isChecked = true;
    }
    yield chunk;
  }
  if (!isChecked) check(seen);
}

function isWholeEnvelope(bytes: Buffer): boolean {
  return bytes.length >= 5 && bytes.length >= 5 + bytes.readUInt32BE(1);
}

/** The error for a body that is not one `input` message, or undefined. */
function decodeError(
  body: Buffer,
  format: BodyFormat,
  input: DescMessage,
): ConnectError | undefined {
  const message = format.isEnveloped ? unwrapEnvelope(body) : body;
  // A broken or compressed envelope is connect's to judge.
  if (message === undefined) return undefined;
  return format.isJson ? jsonError(message, input) : binaryError(message, input);
}

/** The message of the first envelope if it is whole and uncompressed; else undefined. */
function unwrapEnvelope(body: Buffer): Buffer | undefined {
  if (body.length < 5 || (body[0] & 0b1) !== 0) return undefined;
  const end = 5 + body.readUInt32BE(1);
  return body.length >= end ? body.subarray(5, end) : undefined;
}

function binaryError(bytes: Buffer, input: DescMessage): ConnectError | undefined {
  try {
    fromBinary(input, bytes);
    return undefined;
  } catch {
    return invalid(
      "REQ-proto01",
      `request body is not a valid ${input.typeName} in protobuf binary`,
    );
  }
}

function jsonError(bytes: Buffer, input: DescMessage): ConnectError | undefined {
  let json: JsonValue;
  try {
    json = JSON.parse(bytes.toString("utf8")) as JsonValue;
  } catch {
    return invalid("REQ-json01", "request body is not valid JSON");
  }
  try {
    // Unknown fields are ignored, as ZITADEL's servers (grpc-gateway,
    // connect-go) do: a newer client sending a field we do not know yet must
    // keep working. Wrong types and malformed JSON are still refused.
    fromJson(input, json, { ignoreUnknownFields: true });
    return undefined;
  } catch (err) {
    return invalid("REQ-json02", describeJsonFailure(err, input));
  }
}

/**
 * Names the offending field, never its value: the decoder's own text quotes
 * values, and a misplaced value may be a password.
 */
function describeJsonFailure(err: unknown, input: DescMessage): string {
  const text = err instanceof Error ? err.message : "";
  const unknownKey = /key "(.{1,100}?)" is unknown/.exec(text)?.[1];
  if (unknownKey !== undefined)
    return `unknown field ${JSON.stringify(unknownKey)} in the request body`;
  const field = input.fields.find((f) => text.includes(`field ${input.typeName}.${f.name} `));
  if (field) return `field ${field.jsonName} in the request body has a value of the wrong type`;
  return `request body is not a JSON object of ${input.typeName}`;
}

function invalid(id: string, text: string): ConnectError {
  return toConnectError(new DomainError("invalid", id, text));
}
