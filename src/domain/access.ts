/**
 * Who is calling and what they may do. Tokens carry roles; roles grant
 * permissions; an RPC names the permission it needs.
 */
import { DomainError } from "./errors.js";

/** Permissions an RPC can require. */
export type Permission = "iam.read" | "iam.write" | "notify.send";

/** Roles a token can hold. */
export type Role = "IAM_OWNER" | "IAM_OWNER_VIEWER" | "NOTIFY_SENDER";

/**
 * The permissions each role grants. NOTIFY_SENDER is for platform services:
 * they may send mail and ask about it, but not read or change SMTP settings.
 */
export const permissionsByRole: Readonly<Record<Role, readonly Permission[]>> = {
  IAM_OWNER: ["iam.read", "iam.write", "notify.send"],
  IAM_OWNER_VIEWER: ["iam.read"],
  NOTIFY_SENDER: ["notify.send"],
};

/** All known role names, for validating CLI input. */
export const roles = Object.keys(permissionsByRole) as Role[];

/** True when `name` is a role this server knows. */
export function isRole(name: string): name is Role {
  return Object.hasOwn(permissionsByRole, name);
}

/** An instance of the platform, selected by the request's host. */
export interface Instance {
  readonly id: string;
  readonly domains: readonly string[];
  readonly createdAt: Date;
}

/** The authenticated caller of one request. */
export interface Principal {
  /** Id of the token, never the token itself. */
  readonly tokenId: string;
  readonly instanceId: string;
  readonly roles: readonly Role[];
}

/** True when any of the principal's roles grants `permission`. */
export function hasPermission(principal: Principal, permission: Permission): boolean {
  return principal.roles.some((role) => permissionsByRole[role].includes(permission));
}

/**
 * Throws DomainError "forbidden" unless the principal holds `permission`.
 */
export function requirePermission(principal: Principal, permission: Permission): void {
  if (!hasPermission(principal, permission)) {
    throw new DomainError(
      "forbidden",
      "AUTHZ-perm01",
      `No matching permissions found: ${permission} is required`,
    );
  }
}
