/**
 * keyFileWatcher reads the embedded key file only when it changed: after a
 * rotation (the file replaced, longer), after an edit in place (new times),
 * and never twice for the same file. A SecretBox using it seals under a key
 * rotated in by another process at its next seal.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { keyFileWatcher, loadMasterKeys, masterKeyFile, rotateKeyFile } from "../../src/config/master-key.js";
import { keyIdOf, SecretBox, sealedKeyId } from "../../src/domain/secret-box.js";

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A data directory with a generated key file; returns the directory and the file. */
function keyDir(): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "smtpgate-keys-"));
  dirs.push(dir);
  loadMasterKeys(undefined, dir, true);
  return { dir, file: join(dir, masterKeyFile) };
}

const ids = (keys: Buffer[] | undefined) => keys?.map(keyIdOf);

describe("keyFileWatcher", () => {
  test("reads the file on the first call and not again while it is unchanged", () => {
    const { dir, file } = keyDir();
    const watch = keyFileWatcher(file);
    assert.deepEqual(ids(watch()), ids(loadMasterKeys(undefined, dir, false)));
    assert.equal(watch(), undefined);
    assert.equal(watch(), undefined);
  });

  test("reads the new list after a rotation", () => {
    const { dir, file } = keyDir();
    const watch = keyFileWatcher(file);
    watch();
    const rotated = rotateKeyFile(dir);
    assert.deepEqual(ids(watch()), ids(rotated));
    assert.equal(watch(), undefined);
  });

  test("reads the file again after an edit in place of the same size", () => {
    const { file } = keyDir();
    const watch = keyFileWatcher(file);
    watch();
    const before = statSync(file);
    const replacement = randomBytes(32);
    writeFileSync(file, replacement.toString("base64") + "\n");
    assert.equal(statSync(file).size, before.size);
    // Times a second apart, whatever the file system's clock granularity.
    utimesSync(file, before.atime, new Date(before.mtimeMs + 1000));
    assert.deepEqual(ids(watch()), [keyIdOf(replacement)]);
  });

  test("throws when the file is gone", () => {
    const { file } = keyDir();
    const watch = keyFileWatcher(file);
    rmSync(file);
    assert.throws(() => watch(), /ENOENT/);
  });

  test("a SecretBox over it seals under a key rotated in after it was made", () => {
    const { dir, file } = keyDir();
    const box = new SecretBox(loadMasterKeys(undefined, dir, false), { reload: keyFileWatcher(file) });
    const owner = { instanceId: "i1", providerId: "p1" };
    const first = sealedKeyId(box.seal("pw", owner));
    assert.equal(sealedKeyId(box.seal("pw", owner)), first);
    const [newest] = rotateKeyFile(dir);
    assert.equal(sealedKeyId(box.seal("pw", owner)), keyIdOf(newest));
    assert.notEqual(keyIdOf(newest), first);
  });
});
