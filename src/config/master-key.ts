/**
 * Where the master keys that seal SMTP passwords come from, and how they are
 * rotated.
 *
 * SMTPGATE_MASTERKEY holds one or more comma-separated 32-byte keys, each as
 * 64 hex digits or base64; the first seals, all open. Without it, the
 * embedded default keeps its keys in <data-dir>/masterkey (mode 0600), one
 * per line, the first sealing; the first start writes one generated key.
 *
 * Rotating the embedded key: `smtpgate keys rotate` puts a new key on the
 * first line (the old ones stay below it, so existing values still open),
 * then re-seals every stored password under it. A running server follows
 * without a restart: it looks at the file before sealing, and when it meets
 * a key id it does not know, and reads it again when it changed (see
 * SecretBox's reload option and keyFileWatcher).
 *
 * Rotating SMTPGATE_MASTERKEY: a process cannot see its environment change,
 * so the operator restarts with the new key in front, "new,old", and then
 * runs `smtpgate keys reseal` with the same value. With several replicas,
 * first give every replica "old,new" (all can open both, all still seal
 * under old), then "new,old" everywhere, then reseal: at no point does a
 * replica meet a value it cannot open. Once the reseal reports no value
 * under the old key, it may be dropped from the list.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Name of the embedded key file in the data directory. */
export const masterKeyFile = "masterkey";

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
  const file = join(dataDir, masterKeyFile);
  if (!existsSync(file)) {
    if (!create) throw new Error(`no master key: set SMTPGATE_MASTERKEY or start the server once to create ${file}`);
    try {
      // "wx": never overwrite a key another process just wrote.
      writeFileSync(file, randomBytes(32).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw err;
    }
  }
  return readKeyFile(file);
}

/**
 * The keys of a key file: one per line, blank lines and "#" comments
 * ignored. Throws Error when a line is not a key or there is none.
 */
export function readKeyFile(file: string): Buffer[] {
  const lines = readFileSync(file, "utf8").split("\n").map((line) => line.trim());
  const keys = lines.filter((line) => line !== "" && !line.startsWith("#")).map(decodeMasterKey);
  if (keys.length === 0) throw new Error(`${file} holds no master key`);
  return keys;
}

/**
 * Returns a function that reads `file`'s keys when the file changed since
 * its last call (always on the first), and returns undefined otherwise.
 * Throws what readKeyFile or stat throws.
 *
 * Why: a server looks at its key file before every seal, to follow a
 * rotation at once. Reading and decoding the file each time cost about 9 µs
 * of every password write in a CPU profile (bench/durable-writes.ts); a stat
 * costs about 2. A change is seen by the file's identity, size and change
 * time: a rotation replaces the file (a new inode) and makes it longer; an
 * edit in place changes its times.
 */
export function keyFileWatcher(file: string): () => Buffer[] | undefined {
  let seen = "";
  return () => {
    const stat = statSync(file, { bigint: true });
    const identity = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
    if (identity === seen) return undefined;
    const keys = readKeyFile(file);
    seen = identity;
    return keys;
  };
}

/**
 * Puts a newly generated key in front of the embedded key file, keeping the
 * old keys after it. The file is replaced in one rename, so a reader sees
 * the old list or the new one, never half of it. Returns the new key list.
 * Throws Error when the file is missing or unreadable.
 */
export function rotateKeyFile(dataDir: string): Buffer[] {
  const file = join(dataDir, masterKeyFile);
  const keys = [randomBytes(32), ...readKeyFile(file)];
  const staging = `${file}.${process.pid}.new`;
  writeFileSync(staging, keys.map((key) => key.toString("base64")).join("\n") + "\n", { mode: 0o600, flag: "wx" });
  renameSync(staging, file);
  return keys;
}
