/**
 * Real clients of the three protocols, built with connect-node transports.
 */
import type { LookupFunction } from "node:net";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";

/** The protocols every RPC is tested over. */
export const protocols = ["connect-json", "grpc", "grpc-web"] as const;
export type Protocol = (typeof protocols)[number];

/** An AdminService client. */
export type AdminClient = Client<typeof AdminService>;

/** How a transport reaches the server; both fields are optional. */
export interface TransportOptions {
  /** Sent as "Authorization: Bearer <token>". */
  readonly token?: string;
  /**
   * Resolves the base URL's host name instead of DNS, for HTTP/1.1 requests
   * and HTTP/2 sessions alike. With it, a test can call the server under any
   * name (so Host and :authority carry that name) while it listens on loopback.
   */
  readonly lookup?: LookupFunction;
}

/** An interceptor that sends "Authorization: Bearer <token>" when given one. */
export function bearer(token: string | undefined): Interceptor {
  return (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/**
 * A lookup that answers 127.0.0.1 for every name. Names under ".localhost"
 * would need none on some systems, but not on all (this one answers
 * ENOTFOUND), so tests that call the server under another name bring this.
 */
export const loopbackLookup: LookupFunction = (_hostname, options, callback) => {
  // net.connect asks for all addresses when it may race IPv4 against IPv6.
  if (options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
  else callback(null, "127.0.0.1", 4);
};

/**
 * A transport for `protocol` to `baseUrl`: Connect JSON over HTTP/1.1,
 * gRPC over h2c, gRPC-web over HTTP/1.1.
 */
export function transportFor(
  protocol: Protocol,
  baseUrl: string,
  options: TransportOptions = {},
): Transport {
  const interceptors = [bearer(options.token)];
  const nodeOptions = options.lookup ? { lookup: options.lookup } : undefined;
  switch (protocol) {
    case "connect-json":
      return createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        useBinaryFormat: false,
        interceptors,
        nodeOptions,
      });
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors, nodeOptions });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors, nodeOptions });
  }
}

/** An AdminService client over `protocol`, with `token` when given. */
export function adminClient(protocol: Protocol, baseUrl: string, token?: string): AdminClient {
  return createClient(AdminService, transportFor(protocol, baseUrl, { token }));
}

/**
 * An AdminService client that calls the server listening on 127.0.0.1:`port`
 * under the name `hostname`, as a client of that instance's domain would.
 */
export function adminClientAt(
  protocol: Protocol,
  hostname: string,
  port: number,
  token?: string,
): AdminClient {
  const baseUrl = `http://${hostname}:${port}`;
  return createClient(
    AdminService,
    transportFor(protocol, baseUrl, { token, lookup: loopbackLookup }),
  );
}
