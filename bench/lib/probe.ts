/**
 * Sends one request exactly as the load generator will, and reports what
 * came back: HTTP status, gRPC status (from trailers, or from the body's
 * trailer frame for gRPC-web) and body size. h2load only knows HTTP
 * statuses, so this is how a benchmark knows its load is not all errors.
 */
import http from "node:http";
import http2 from "node:http2";

/** One request as the load generator sends it. */
export interface ProbeRequest {
  readonly url: string;
  readonly isHttp1: boolean;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Uint8Array;
}

/** What one request got back. */
export interface ProbeResult {
  readonly httpStatus: number;
  /** undefined when the response carries none (Connect, REST). */
  readonly grpcStatus?: string;
  readonly body: Buffer;
}

/** Sends `req` once. Rejects on a transport error. */
export function probe(req: ProbeRequest): Promise<ProbeResult> {
  return req.isHttp1 ? probeHttp1(req) : probeHttp2(req);
}

function probeHttp1(req: ProbeRequest): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request(req.url, { method: req.body ? "POST" : "GET", headers: req.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        const header = res.headers["grpc-status"];
        const grpcStatus = typeof header === "string" ? header : grpcWebStatus(body);
        resolve({ httpStatus: res.statusCode ?? 0, grpcStatus, body });
      });
    });
    outgoing.on("error", reject);
    outgoing.end(req.body ? Buffer.from(req.body) : undefined);
  });
}

function probeHttp2(req: ProbeRequest): Promise<ProbeResult> {
  const url = new URL(req.url);
  const session = http2.connect(url.origin);
  return new Promise<ProbeResult>((resolve, reject) => {
    session.on("error", reject);
    const stream = session.request({ ":method": req.body ? "POST" : "GET", ":path": url.pathname, ...req.headers });
    let httpStatus = 0;
    let grpcStatus: string | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (headers) => {
      httpStatus = Number(headers[":status"]);
      // A trailers-only answer carries grpc-status in the headers.
      if (typeof headers["grpc-status"] === "string") grpcStatus = headers["grpc-status"];
    });
    stream.on("trailers", (trailers) => {
      if (typeof trailers["grpc-status"] === "string") grpcStatus = trailers["grpc-status"];
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve({ httpStatus, grpcStatus, body: Buffer.concat(chunks) }));
    stream.on("error", reject);
    stream.end(req.body ? Buffer.from(req.body) : undefined);
  }).finally(() => session.close());
}

/** grpc-status from a gRPC-web body's trailer frame (flag 0x80), if any. */
function grpcWebStatus(body: Buffer): string | undefined {
  let offset = 0;
  while (offset + 5 <= body.length) {
    const flags = body[offset];
    const length = body.readUInt32BE(offset + 1);
    if (flags & 0x80) {
      const text = body.subarray(offset + 5, offset + 5 + length).toString("latin1");
      return /^grpc-status:\s*(\d+)/im.exec(text)?.[1];
    }
    offset += 5 + length;
  }
  return undefined;
}
