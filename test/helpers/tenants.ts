/**
 * Instances of their own for tests that need a clean slate. Each tenant is
 * reached under its own domain through real clients that resolve it to the
 * loopback address, so the request's Host (HTTP/1.1) or :authority (HTTP/2)
 * is what selects the instance, as in production.
 */
import type { Role } from "../../src/domain/access.js";
import type { StoredEvent } from "../../src/store/store.js";
import { adminClientAt, type AdminClient, type Protocol } from "./clients.js";
import type { TestServer } from "./server.js";

/** One instance of the test server and ways to call it. */
export interface Tenant {
  readonly instanceId: string;
  /** The instance's only domain, e.g. "lifecycle.grpc.test". */
  readonly domain: string;
  readonly protocol: Protocol;
  /** An IAM_OWNER token of this instance. */
  readonly ownerToken: string;
  /** A client with the owner token. */
  readonly owner: AdminClient;
  /** A client of this instance's host with `token`, or none. */
  client(token?: string): AdminClient;
  /** A new token of this instance. */
  token(roles: Role[]): Promise<string>;
  /** The instance's events, oldest first. */
  events(): Promise<StoredEvent[]>;
}

/**
 * Adds an instance for "<label>.<protocol>.test" and returns it with an
 * owner token. Labels must be unique within one server.
 */
export async function addTenant(t: TestServer, protocol: Protocol, label: string): Promise<Tenant> {
  const domain = `${label}.${protocol}.test`;
  const instanceId = await t.addInstance([domain]);
  const ownerToken = await t.token(["IAM_OWNER"], domain);
  const client = (token?: string) => adminClientAt(protocol, domain, t.port, token);
  return {
    instanceId,
    domain,
    protocol,
    ownerToken,
    owner: client(ownerToken),
    client,
    token: (roles) => t.token(roles, domain),
    events: () => t.server.store.listEvents(instanceId),
  };
}

let tenantCount = 0;

/**
 * Adds a tenant with a label never used before in this process, for tests
 * that need an instance of their own.
 */
export function addFreshTenant(t: TestServer, protocol: Protocol, label: string): Promise<Tenant> {
  tenantCount += 1;
  return addTenant(t, protocol, `${label}${tenantCount}`);
}
