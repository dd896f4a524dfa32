/**
 * Strict framing of unary gRPC and gRPC-web requests.
 *
 * A unary call carries exactly one message frame: a flags byte, a 4-byte
 * length, the message. connect-es answers bodies that break this with codes
 * meant for servers, and without our error shape: an empty body or a second
 * frame with Unimplemented, a frame flagged as compressed while the request
 * names no grpc-encoding with Internal, a body that is not framed at all
 * with ResourceExhausted (its first bytes read as a huge length). Fuzzing
 * found each of these (test/security/fuzz.test.ts); they are all the
 * client's mistake, so this wrapper refuses them as the body streams in,
 * with InvalidArgument REQ-frame01, before connect looks at the frames.
 *
 * Well-framed bodies pass through untouched, chunk by chunk, so connect's
 * size limit still applies while reading; the message itself is checked by
 * request-body.ts. Compressed frames are allowed when the request names a
 * grpc-encoding, and connect decides whether it supports it.
 */
import { createContextValues, type ConnectError } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { DomainError } from "../domain/errors.js";
import { toConnectError } from "./error-mapper.js";
import { logOutcome, type Telemetry } from "./request-log.js";

const compressedFlag = 0b1;

/**
 * Returns `req` with its frames checked when it is a unary gRPC or binary
 * gRPC-web request, else `req` unchanged. A refusal is logged once here and
 * thrown into connect's read of the body.
 */
export function withCheckedFraming(
  req: UniversalServerRequest,
  method: DescMethod,
  telemetry: Telemetry,
): UniversalServerRequest {
  const type = (req.header.get("content-type") ?? "").split(";", 1)[0].trim().toLowerCase();
  const isFramed = type.startsWith("application/grpc") && !type.startsWith("application/grpc-web-text");
  if (!isFramed || method.methodKind !== "unary" || req.method !== "POST" || !isByteStream(req.body)) return req;

  const encoding = (req.header.get("grpc-encoding") ?? "identity").trim().toLowerCase();
  const values = req.contextValues ?? createContextValues();
  const refuse = (problem: string): ConnectError => {
    const text = `request body is not one gRPC message frame: ${problem}`;
    const err = toConnectError(new DomainError("invalid", "REQ-frame01", text));
    logOutcome(telemetry, { method, values }, err);
    return err;
  };
  const frames = new FrameReader(encoding !== "identity");
  return { ...req, contextValues: values, body: checkedFrames(req.body, frames, refuse) };
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

async function* checkedFrames(
  body: AsyncIterable<Uint8Array>,
  frames: FrameReader,
  refuse: (problem: string) => ConnectError,
) {
  for await (const chunk of body) {
    const problem = frames.read(chunk);
    if (problem) throw refuse(problem);
    yield chunk;
  }
  const problem = frames.end();
  if (problem) throw refuse(problem);
}

/** Follows frame boundaries across chunks without keeping message bytes. */
class FrameReader {
  private header = Buffer.alloc(0);
  /** Message bytes still to come of the current frame. */
  private remaining = 0;
  private count = 0;

  constructor(private readonly mayBeCompressed: boolean) {}

  /** Reads one chunk; returns what is wrong with the framing so far, or undefined. */
  read(chunk: Uint8Array): string | undefined {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const taken = Math.min(this.remaining, chunk.length - offset);
        this.remaining -= taken;
        offset += taken;
        continue;
      }
      if (this.count === 1 && this.header.length === 0) return "a unary call takes one message, and more followed";
      const needed = 5 - this.header.length;
      this.header = Buffer.concat([this.header, chunk.subarray(offset, offset + needed)]);
      offset += Math.min(needed, chunk.length - offset);
      if (this.header.length < 5) return undefined;
      const problem = this.startFrame();
      if (problem) return problem;
    }
    return undefined;
  }

  /** The problem with a body that ended here, or undefined. */
  end(): string | undefined {
    if (this.count === 0 && this.header.length === 0) return "the body is empty";
    if (this.header.length > 0 && this.header.length < 5) return "the body ends inside a frame header";
    if (this.remaining > 0) return "the body ends before the message its frame announced";
    return undefined;
  }

  private startFrame(): string | undefined {
    const flags = this.header[0];
    if ((flags & ~compressedFlag) !== 0) return `unknown frame flags 0x${flags.toString(16).padStart(2, "0")}`;
    if ((flags & compressedFlag) !== 0 && !this.mayBeCompressed) {
      return "the frame is marked compressed, but the request names no grpc-encoding";
    }
    this.remaining = this.header.readUInt32BE(1);
    this.header = Buffer.alloc(0);
    this.count += 1;
    return undefined;
  }
}
