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
// Fixed, and given to the decipher: without authTagLength, Node accepts a
// tag cut down to 4 bytes, so a truncated (or forged short) tag would pass.
const tagBytes = 16;

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

/** Options of a SecretBox. */
export interface SecretBoxOptions {
  /**
   * Reads the key list again, first key sealing. Given for the embedded key
   * file, so that a running server follows `smtpgate keys rotate` without a
   * restart: it seals under the newest key at once, and opens values sealed
   * under a key it learned after it started. Absent with SMTPGATE_MASTERKEY,
   * which cannot change under a running process (see src/config/master-key.ts
   * for the order of steps there). It returns undefined when the list has
   * not changed since its last call, which keeps the current keys.
   */
  readonly reload?: () => readonly Buffer[] | undefined;
}

/** The key id a sealed value names, or undefined for "" and malformed values. */
export function sealedKeyId(sealed: string): string | undefined {
  const parts = sealed.split(".");
  return parts.length === 5 && parts[0] === version && parts[1] !== "" ? parts[1] : undefined;
}

// Unknown key ids that already caused a reload are remembered, so a value
// naming a key that does not exist (tampered, or from another deployment)
// costs one reload, not one per attempt. Bounded; cleared when full.
const maxMissedIds = 1000;

/** Seals and opens secrets under a set of master keys, sealing with the first. */
export class SecretBox {
  private readonly keys = new Map<string, Buffer>();
  private primaryId = "";
  private readonly reload: (() => readonly Buffer[] | undefined) | undefined;
  private readonly missedIds = new Set<string>();

  /**
   * `keys[0]` seals; all of them open. Each key must be 32 bytes.
   * Throws Error when the list is empty or a key has the wrong length.
   */
  constructor(keys: readonly Buffer[], options: SecretBoxOptions = {}) {
    this.useKeys(keys);
    this.reload = options.reload;
  }

  /** Replaces the key set, after checking every key; throws Error like the constructor. */
  private useKeys(keys: readonly Buffer[]): void {
    if (keys.length === 0) throw new Error("at least one master key is required");
    for (const key of keys) {
      if (key.length !== 32) throw new Error("a master key must be 32 bytes");
    }
    this.keys.clear();
    for (const key of keys) this.keys.set(keyIdOf(key), key);
    this.primaryId = keyIdOf(keys[0]);
  }

  /** Reads the key source again; keeps the current keys when it fails. */
  private reloadKeys(): void {
    if (!this.reload) return;
    try {
      const keys = this.reload();
      if (keys !== undefined) this.useKeys(keys);
    } catch {
      // A key file being edited by hand may be briefly unreadable; the keys
      // we have stay valid, and a value under an unknown key fails closed.
    }
  }

  /** The key for `keyId`, reloading the key source once for an id never seen. */
  private keyFor(keyId: string): Buffer | undefined {
    const known = this.keys.get(keyId);
    if (known || !this.reload || keyId === "" || this.missedIds.has(keyId)) return known;
    if (this.missedIds.size >= maxMissedIds) this.missedIds.clear();
    this.missedIds.add(keyId);
    this.reloadKeys();
    return this.keys.get(keyId);
  }

  /** Id of the key new values are sealed under. */
  get primaryKeyId(): string {
    return this.primaryId;
  }

  /**
   * Seals `plaintext` for `owner` under the newest key; with a key source
   * to reload, that source is read first. The empty string stays empty.
   */
  seal(plaintext: string, owner: SealOwner): string {
    if (plaintext === "") return "";
    this.reloadKeys();
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv("aes-256-gcm", this.keys.get(this.primaryId)!, iv, { authTagLength: tagBytes });
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
    const parts = sealed.split(".");
    const [ver, keyId, iv, body, tag] = parts;
    const key = this.keyFor(keyId ?? "");
    if (parts.length !== 5 || ver !== version || !key || !iv || !tag) {
      throw new DomainError("internal", "CRYPTO-key01", "stored password cannot be opened with the configured master keys");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"), { authTagLength: tagBytes });
      decipher.setAAD(associatedData(owner));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      const plain = Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]);
      return plain.toString("utf8");
    } catch (cause) {
      throw new DomainError("internal", "CRYPTO-open01", "stored password failed its integrity check", { cause });
    }
  }
}
