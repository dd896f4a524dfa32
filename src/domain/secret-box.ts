/**
 * Sealing of SMTP passwords with AES-256-GCM under a master key.
 *
 * Sealed, not hashed: delivery must read the password back to log in. Each
 * sealed value names the key it was sealed under, so keys can be rotated
 * while old values still open, and is bound to its owner through associated
 * data, so a value copied onto another provider's row does not open there.
 *
 * Format: "v1.<keyId>.<iv>.<ciphertext>.<tag>", parts base64url.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { DomainError } from "./errors.js";

const version = "v1";
const ivBytes = 12;

/** Who a sealed value belongs to; becomes the GCM associated data. */
export interface SealOwner {
  readonly instanceId: string;
  readonly providerId: string;
}

/** Derives the public id of a 32-byte key: 8 hex digits of its SHA-256. */
export function keyIdOf(key: Buffer): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

function associatedData(owner: SealOwner): Buffer {
  return Buffer.from(`smtpgate/smtp-password/${owner.instanceId}/${owner.providerId}`);
}

/** Seals and opens secrets under a set of master keys, sealing with the first. */
export class SecretBox {
  private readonly keys = new Map<string, Buffer>();
  private readonly primaryId: string;

  /**
   * `keys[0]` seals; all of them open. Each key must be 32 bytes.
   * Throws Error when the list is empty or a key has the wrong length.
   */
  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new Error("at least one master key is required");
    for (const key of keys) {
      if (key.length !== 32) throw new Error("a master key must be 32 bytes");
      this.keys.set(keyIdOf(key), key);
    }
    this.primaryId = keyIdOf(keys[0]);
  }

  /** Id of the key new values are sealed under. */
  get primaryKeyId(): string {
    return this.primaryId;
  }

  /** Seals `plaintext` for `owner`. The empty string stays empty (no secret). */
  seal(plaintext: string, owner: SealOwner): string {
    if (plaintext === "") return "";
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv("aes-256-gcm", this.keys.get(this.primaryId)!, iv);
    cipher.setAAD(associatedData(owner));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const parts = [iv, body, cipher.getAuthTag()].map((b) => b.toString("base64url"));
    return [version, this.primaryId, ...parts].join(".");
  }

  /**
   * Opens a value sealed for `owner`. Fails closed: throws DomainError
   * "internal" when the key is unknown, the value was tampered with, or it
   * belongs to another owner. The message never contains the secret.
   */
  open(sealed: string, owner: SealOwner): string {
    if (sealed === "") return "";
    const [ver, keyId, iv, body, tag] = sealed.split(".");
    const key = this.keys.get(keyId ?? "");
    if (ver !== version || !key || !iv || body === undefined || !tag) {
      throw new DomainError("internal", "CRYPTO-key01", "stored password cannot be opened with the configured master keys");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"));
      decipher.setAAD(associatedData(owner));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      const plain = Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]);
      return plain.toString("utf8");
    } catch (cause) {
      throw new DomainError("internal", "CRYPTO-open01", "stored password failed its integrity check", { cause });
    }
  }
}
