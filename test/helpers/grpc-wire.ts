/**
 * Unary gRPC and gRPC-web calls without a client library, so a test sees
 * what travels: the HTTP status, and the status in the trailers
 * (grpc-status, grpc-message, grpc-status-details-bin), which connect's own
 * decoders then read back into a ConnectError.
 */
import http2 from "node:http2";
import type { ConnectError } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse } from "@connectrpc/connect/protocol-grpc-web";

/** One unary call: the full method path and the request in protobuf binary. */
export interface WireCall {
  readonly port: number;
  /** E.g. "/zitadel.admin.v1.AdminService/GetSMTPConfigById". */
  readonly path: string;
  readonly message: Uint8Array;
  readonly token?: string;
  /** Sent as the Origin header, as a browser page would (gRPC-web only). */
  readonly origin?: string;
}

/** What came back. */
export interface WireAnswer {
  readonly httpStatus: number;
  /** Response headers and trailers together (a trailers-only answer has no trailers). */
  readonly metadata: Headers;
  /** The status the trailers carry; undefined when grpc-status is 0. */
  readonly error: ConnectError | undefined;
  /** The response message, when there was one. */
  readonly message: Uint8Array | undefined;
}

/** Wraps a message in gRPC's 5-byte length-prefixed envelope. */
function envelope(message: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** Splits a body into its envelopes. */
function unwrap(body: Buffer): { flags: number; data: Buffer }[] {
  const frames: { flags: number; data: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const end = at + 5 + body.readUInt32BE(at + 1);
    frames.push({ flags: body[at], data: body.subarray(at + 5, end) });
    at = end;
  }
  return frames;
}

function answerOf(httpStatus: number, metadata: Headers, frames: { flags: number; data: Buffer }[]): WireAnswer {
  if (!metadata.has("grpc-status")) throw new Error(`no grpc-status in ${JSON.stringify([...metadata])}`);
  const data = frames.find((f) => (f.flags & trailerFlag) === 0);
  return { httpStatus, metadata, error: findTrailerError(metadata), message: data?.data };
}

/** A gRPC call over h2c, as grpc-go or grpc-js makes it. */
export async function rawGrpc(call: WireCall): Promise<WireAnswer> {
  const session = http2.connect(`http://127.0.0.1:${call.port}`);
  try {
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": call.path,
      "content-type": "application/grpc+proto",
      te: "trailers",
    };
    if (call.token !== undefined) headers.authorization = `Bearer ${call.token}`;
    const stream = session.request(headers);
    const metadata = new Headers();
    const add = (h: http2.IncomingHttpHeaders) => {
      for (const [name, value] of Object.entries(h)) if (!name.startsWith(":")) metadata.append(name, String(value));
    };
    let httpStatus = 0;
    stream.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      add(h);
    });
    stream.on("trailers", add);
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    await new Promise<void>((resolve, reject) => {
      stream.on("end", resolve);
      stream.on("error", reject);
      stream.end(envelope(call.message));
    });
    return answerOf(httpStatus, metadata, unwrap(Buffer.concat(chunks)));
  } finally {
    session.close();
  }
}

/** A gRPC-web call over HTTP/1.1, as a browser's grpc-web client makes it. */
export async function rawGrpcWeb(call: WireCall): Promise<WireAnswer> {
  const headers = new Headers({ "content-type": "application/grpc-web+proto", "x-grpc-web": "1" });
  if (call.token !== undefined) headers.set("authorization", `Bearer ${call.token}`);
  if (call.origin !== undefined) headers.set("origin", call.origin);
  const res = await fetch(`http://127.0.0.1:${call.port}${call.path}`, {
    method: "POST",
    headers,
    body: envelope(call.message),
  });
  const frames = unwrap(Buffer.from(await res.arrayBuffer()));
  const metadata = new Headers(res.headers);
  // gRPC-web carries its trailers as the body's last frame.
  for (const frame of frames.filter((f) => (f.flags & trailerFlag) === trailerFlag)) {
    trailerParse(frame.data).forEach((value, name) => metadata.append(name, value));
  }
  return answerOf(res.status, metadata, frames);
}
