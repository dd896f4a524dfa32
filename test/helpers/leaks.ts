/**
 * Looks for secrets where they must never be: log lines, files of the data
 * directory (the SQLite file, its WAL, the key file) and raw answers.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The byte forms a leaked secret could take: as typed, and base64 as SMTP AUTH sends it. */
export function secretForms(secret: string): Buffer[] {
  return [
    Buffer.from(secret, "utf8"),
    Buffer.from(Buffer.from(secret, "utf8").toString("base64"), "utf8"),
  ];
}

/** Every regular file under `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(path);
    return entry.isFile() ? [path] : [];
  });
}

/** Where each secret was found, as "<secret> in <place>"; empty when nowhere. */
export function findSecrets(
  secrets: readonly string[],
  places: ReadonlyMap<string, Buffer>,
): string[] {
  const found: string[] = [];
  for (const secret of secrets) {
    for (const [place, bytes] of places) {
      if (secretForms(secret).some((form) => bytes.includes(form)))
        found.push(`${secret} in ${place}`);
    }
  }
  return found;
}

/**
 * Asserts that no secret appears in any file under `dir`, read as bytes.
 * `stored` is a value known to be stored in clear (such as a host): finding
 * it proves the scan sees the rows, the WAL included.
 */
export function assertNoSecretsInFiles(
  secrets: readonly string[],
  dir: string,
  stored: string,
): void {
  const places = new Map(filesUnder(dir).map((file) => [file, readFileSync(file)] as const));
  assert.ok(findSecrets([stored], places).length > 0, `${stored} not found under ${dir}`);
  assert.deepEqual(findSecrets(secrets, places), []);
}

/** Asserts that no secret appears in any of `texts`, keyed by where they came from. */
export function assertNoSecretsInTexts(
  secrets: readonly string[],
  texts: ReadonlyMap<string, string>,
): void {
  const places = new Map(
    [...texts].map(([place, text]) => [place, Buffer.from(text, "utf8")] as const),
  );
  assert.deepEqual(findSecrets(secrets, places), []);
}
