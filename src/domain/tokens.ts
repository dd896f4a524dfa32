/**
 * Personal access tokens: opaque random strings, stored only as SHA-256
 * hashes. A token belongs to one instance and grants the permissions of its
 * roles there, and nowhere else.
 *
 * SHA-256 without a salt is enough here: tokens carry 256 random bits, so
 * there is nothing to brute-force, and a fast hash keeps lookups cheap.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Store } from "../store/store.js";
import type { Principal, Role } from "./access.js";
import { DomainError } from "./errors.js";
import { newObjectId } from "./ids.js";

const prefix = "sgpat_";

/** SHA-256 of a token, hex; what the store keeps. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/**
 * Creates a token for `instanceId` with `roles` and returns it in clear, the
 * only time it is ever visible. Side effect: stores its hash.
 */
export async function createToken(
  store: Store,
  input: { instanceId: string; roles: readonly Role[]; now?: Date },
): Promise<{ id: string; token: string }> {
  const token = prefix + randomBytes(32).toString("base64url");
  const id = newObjectId();
  await store.addToken({
    id,
    instanceId: input.instanceId,
    hash: hashToken(token),
    roles: input.roles,
    createdAt: input.now ?? new Date(),
  });
  return { id, token };
}

/**
 * Resolves the bearer token of a request to a principal of `instanceId`.
 * Throws DomainError "unauthenticated" when the token is missing, unknown,
 * or belongs to another instance (which is reported like an unknown one, so
 * a caller learns nothing about other instances).
 */
export async function authenticate(store: Store, instanceId: string, token: string | undefined): Promise<Principal> {
  if (!token) {
    throw new DomainError("unauthenticated", "AUTH-none01", "authentication required: send Authorization: Bearer <token>");
  }
  const record = await store.findTokenByHash(hashToken(token));
  if (!record || record.instanceId !== instanceId) {
    throw new DomainError("unauthenticated", "AUTH-tok01", "invalid token");
  }
  return { tokenId: record.id, instanceId: record.instanceId, roles: record.roles };
}
