/**
 * Where the master keys that seal SMTP passwords come from.
 *
 * SMTPGATE_MASTERKEY holds one or more comma-separated 32-byte keys, each as
 * 64 hex digits or base64; the first seals, all open (for rotation). Without
 * it, the embedded default keeps one generated key in <data-dir>/masterkey
 * (mode 0600), made on first start.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Decodes one key; throws Error with a clear message when it is not 32 bytes. */
export function decodeMasterKey(text: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (key.length !== 32) {
    throw new Error("SMTPGATE_MASTERKEY must be 32 bytes, given as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)");
  }
  return key;
}

/**
 * The master keys, from `envValue` when set, else from the key file in
 * `dataDir` (created when `create` is true and it is missing).
 * Throws Error when a key is malformed or no key can be had.
 */
export function loadMasterKeys(envValue: string | undefined, dataDir: string, create: boolean): Buffer[] {
  if (envValue && envValue.trim() !== "") {
    return envValue.split(",").map(decodeMasterKey);
  }
  const file = join(dataDir, "masterkey");
  if (!existsSync(file)) {
    if (!create) throw new Error(`no master key: set SMTPGATE_MASTERKEY or start the server once to create ${file}`);
    try {
      // "wx": never overwrite a key another process just wrote.
      writeFileSync(file, randomBytes(32).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw err;
    }
  }
  return [decodeMasterKey(readFileSync(file, "utf8"))];
}
