/**
 * Pieces the security tests share: a DNS lookup answered from a table (so a
 * test can make any name resolve anywhere without touching /etc/hosts), and
 * small checks on what a provider or an instance looks like after a call.
 */
import assert from "node:assert/strict";
import type { LookupAddress } from "node:dns";
import type http2 from "node:http2";
import { isIP, type LookupFunction } from "node:net";
import type { ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../src/gen/zitadel/v1/object_pb.js";
import type { TestServer } from "../helpers/server.js";

/** Answers per name; a function lets an answer change between lookups (rebinding). */
export type LookupTable = Record<string, string | string[] | (() => string | string[])>;

/** A lookup that answers from `table` and fails with ENOTFOUND otherwise. */
export interface TableLookup {
  readonly lookup: LookupFunction;
  /** Every name looked up, in order. */
  readonly calls: string[];
}

/** Builds a lookup over `table`. */
export function tableLookup(table: LookupTable): TableLookup {
  const calls: string[] = [];
  const lookup: LookupFunction = (hostname, options, callback) => {
    calls.push(hostname);
    const entry = table[hostname];
    if (entry === undefined) {
      const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
      return setImmediate(() => callback(err, "", 0));
    }
    const answer = typeof entry === "function" ? entry() : entry;
    const all: LookupAddress[] = [answer].flat().map((address) => ({ address, family: isIP(address) }));
    setImmediate(() => (options.all ? callback(null, all) : callback(null, all[0].address, all[0].family)));
  };
  return { lookup, calls };
}

/** The bootstrap instance's events and providers, to compare before and after a call. */
export async function instanceState(t: TestServer, domain = "127.0.0.1") {
  const instance = await t.server.store.findInstanceByDomain(domain);
  assert.ok(instance, `no instance for ${domain}`);
  const [events, snapshot] = await Promise.all([
    t.server.store.listEvents(instance.id),
    t.server.store.readProviders(instance.id),
  ]);
  return { events, providers: snapshot.providers };
}

/** The stable id in an error's zitadel.v1.ErrorDetail; "" when it has none. */
export function detailId(err: ConnectError): string {
  return err.findDetails(ErrorDetailSchema)[0]?.id ?? "";
}

/** Wraps a message in gRPC's 5-byte frame: flags 0, then the length. */
export function envelope(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** What a raw gRPC or gRPC-web call got: the HTTP status, grpc-status (-1 if none) and grpc-message. */
export interface RawGrpcAnswer {
  readonly http: number;
  readonly grpc: number;
  readonly message: string;
}

/** Sends `body` as is, as a unary gRPC request over an h2c session; `headers` are added. */
export function rawGrpc(
  session: http2.ClientHttp2Session,
  path: string,
  token: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawGrpcAnswer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST", ":path": path, "content-type": "application/grpc+proto", te: "trailers",
      authorization: `Bearer ${token}`, ...headers,
    });
    let http = 0;
    let grpc = -1;
    let message = "";
    const read = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) grpc = Number(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) message = decodeURIComponent(String(h["grpc-message"]));
    };
    stream.on("response", (h) => {
      http = Number(h[":status"]);
      read(h);
    });
    stream.on("trailers", read);
    stream.on("data", () => {});
    stream.on("close", () => resolve({ http, grpc, message }));
    stream.on("error", reject);
    stream.end(body);
  });
}

/** Sends `body` as is, as a unary binary gRPC-web request over HTTP/1.1. */
export async function rawGrpcWeb(baseUrl: string, path: string, token: string, body: Uint8Array): Promise<RawGrpcAnswer> {
  const res = await fetch(baseUrl + path, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${token}` },
    body: new Uint8Array(body),
  });
  // Status and message sit in the response headers, or in the trailer frame at the end of the body.
  const text = Buffer.from(await res.arrayBuffer()).toString("latin1");
  const status = res.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/i.exec(text)?.[1];
  const message = res.headers.get("grpc-message") ?? /grpc-message:\s*([^\r\n]*)/i.exec(text)?.[1] ?? "";
  return { http: res.status, grpc: Number(status ?? -1), message: decodeURIComponent(message) };
}
