/**
 * A SecretBox with a key source to reload follows a key rotation without a
 * restart: it seals under the newest key, opens values under a key it
 * learned after it was made, and reloads only once per unknown key id.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { DomainError } from "../../src/domain/errors.js";
import { keyIdOf, SecretBox, sealedKeyId } from "../../src/domain/secret-box.js";

const owner = { instanceId: "i1", providerId: "p1" };

/** A box over a key list the test can change, counting reloads. */
function reloadingBox(initial: Buffer[]) {
  const source = { keys: initial, reloads: 0, fails: false };
  const box = new SecretBox(initial, {
    reload: () => {
      source.reloads++;
      if (source.fails) throw new Error("key file unreadable");
      return source.keys;
    },
  });
  return { box, source };
}

describe("SecretBox with a key source to reload", () => {
  test("seals under the key put first after it was made", () => {
    const [oldKey, newKey] = [randomBytes(32), randomBytes(32)];
    const { box, source } = reloadingBox([oldKey]);
    assert.equal(sealedKeyId(box.seal("pw", owner)), keyIdOf(oldKey));

    source.keys = [newKey, oldKey];
    assert.equal(sealedKeyId(box.seal("pw", owner)), keyIdOf(newKey));
    assert.equal(box.primaryKeyId, keyIdOf(newKey));
  });

  test("opens a value sealed under a key it learned after it was made", () => {
    const [oldKey, newKey] = [randomBytes(32), randomBytes(32)];
    const { box, source } = reloadingBox([oldKey]);
    const sealedElsewhere = new SecretBox([newKey]).seal("rotated", owner);

    source.keys = [newKey, oldKey];
    assert.equal(box.open(sealedElsewhere, owner), "rotated");
  });

  test("an unknown key id causes one reload, not one per attempt, and still fails closed", () => {
    const { box, source } = reloadingBox([randomBytes(32)]);
    const foreign = new SecretBox([randomBytes(32)]).seal("x", owner);
    for (let i = 0; i < 3; i++) {
      assert.throws(() => box.open(foreign, owner), (err: unknown) => err instanceof DomainError && err.id === "CRYPTO-key01");
    }
    assert.equal(source.reloads, 1);
  });

  test("a key source that fails to load leaves the current keys in use", () => {
    const key = randomBytes(32);
    const { box, source } = reloadingBox([key]);
    source.fails = true;
    const sealed = box.seal("pw", owner);
    assert.equal(sealedKeyId(sealed), keyIdOf(key));
    assert.equal(box.open(sealed, owner), "pw");
  });

  test("sealedKeyId reads the key id of a value, and nothing from malformed ones", () => {
    const key = randomBytes(32);
    assert.equal(sealedKeyId(new SecretBox([key]).seal("pw", owner)), keyIdOf(key));
    for (const bad of ["", "v1.only", "v2.k.i.b.t", "v1..i.b.t"]) assert.equal(sealedKeyId(bad), undefined, bad);
  });
});
