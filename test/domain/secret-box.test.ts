import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { isDomainError } from "../../src/domain/errors.js";
import { keyIdOf, SecretBox, type SealOwner } from "../../src/domain/secret-box.js";

const owner: SealOwner = { instanceId: "instance-1", providerId: "provider-1" };
const secret = "correct horse battery staple \u00e9\u{1F511}";

function newKey(): Buffer {
  return randomBytes(32);
}

/** Asserts that opening fails closed: DomainError "internal" whose message holds no secret. */
function assertFailsClosed(open: () => string, plaintext = secret): void {
  assert.throws(open, (err: unknown) => {
    assert.ok(isDomainError(err, "internal"), `expected DomainError internal, got ${String(err)}`);
    assert.ok(!err.message.includes(plaintext));
    return true;
  });
}

/** Replaces part `index` of a sealed value ("v1.keyId.iv.body.tag"). */
function withPart(sealed: string, index: number, value: string): string {
  const parts = sealed.split(".");
  parts[index] = value;
  return parts.join(".");
}

/** Flips one bit of the first byte of a base64url part. */
function flipFirstByte(part: string): string {
  const bytes = Buffer.from(part, "base64url");
  bytes[0] ^= 0x01;
  return bytes.toString("base64url");
}

describe("SecretBox", () => {
  test("opens what it sealed for the same owner", () => {
    const box = new SecretBox([newKey()]);
    assert.equal(box.open(box.seal(secret, owner), owner), secret);
  });

  test("a sealed value names its key and holds neither the plaintext nor the key", () => {
    const key = newKey();
    const sealed = new SecretBox([key]).seal(secret, owner);
    assert.match(sealed, /^v1\.[0-9a-f]{8}\.[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal(sealed.split(".")[1], keyIdOf(key));
    assert.ok(!sealed.includes("horse"));
    assert.ok(!sealed.includes(key.toString("base64url")));
  });

  test("sealing the same plaintext twice gives different values that both open", () => {
    const box = new SecretBox([newKey()]);
    const first = box.seal(secret, owner);
    const second = box.seal(secret, owner);
    assert.notEqual(first, second);
    assert.equal(box.open(first, owner), secret);
    assert.equal(box.open(second, owner), secret);
  });

  test("the empty password seals to the empty string and opens to it", () => {
    const box = new SecretBox([newKey()]);
    assert.equal(box.seal("", owner), "");
    assert.equal(box.open("", owner), "");
  });

  test("a value sealed for one provider does not open for another provider or instance", () => {
    const box = new SecretBox([newKey()]);
    const sealed = box.seal(secret, owner);
    assertFailsClosed(() => box.open(sealed, { ...owner, providerId: "provider-2" }));
    assertFailsClosed(() => box.open(sealed, { ...owner, instanceId: "instance-2" }));
  });

  for (const [index, part] of [
    [2, "iv"],
    [3, "ciphertext"],
    [4, "tag"],
  ] as const) {
    test(`a flipped bit in the ${part} fails the integrity check`, () => {
      const box = new SecretBox([newKey()]);
      const sealed = box.seal(secret, owner);
      const tampered = withPart(sealed, index, flipFirstByte(sealed.split(".")[index]));
      assertFailsClosed(() => box.open(tampered, owner));
    });
  }

  test("a tag cut short fails the integrity check, even at GCM's shortest legal lengths", () => {
    const box = new SecretBox([newKey()]);
    const sealed = box.seal(secret, owner);
    const tag = Buffer.from(sealed.split(".")[4], "base64url");
    assert.equal(tag.length, 16);
    for (const length of [4, 8, 12, 15]) {
      const short = withPart(sealed, 4, tag.subarray(0, length).toString("base64url"));
      assertFailsClosed(() => box.open(short, owner));
    }
  });

  test("a malformed value fails closed", () => {
    const box = new SecretBox([newKey()]);
    const sealed = box.seal(secret, owner);
    for (const broken of [
      sealed.split(".").slice(0, 4).join("."),
      "garbage",
      withPart(sealed, 0, "v2"),
      `${sealed}.extra`,
    ]) {
      assertFailsClosed(() => box.open(broken, owner));
    }
  });

  test("a value sealed under a key the box does not hold fails closed", () => {
    const sealed = new SecretBox([newKey()]).seal(secret, owner);
    assertFailsClosed(() => new SecretBox([newKey()]).open(sealed, owner));
  });

  test("a value claiming a known key id but sealed under another key fails closed", () => {
    const held = newKey();
    const sealed = new SecretBox([newKey()]).seal(secret, owner);
    assertFailsClosed(() => new SecretBox([held]).open(withPart(sealed, 1, keyIdOf(held)), owner));
  });

  test("rotation: with the new key first and the old second, old values open and new ones use the new key", () => {
    const oldKey = newKey();
    const newer = newKey();
    const sealedBefore = new SecretBox([oldKey]).seal(secret, owner);

    const rotated = new SecretBox([newer, oldKey]);
    assert.equal(rotated.primaryKeyId, keyIdOf(newer));
    assert.equal(rotated.open(sealedBefore, owner), secret);

    const sealedAfter = rotated.seal(secret, owner);
    assert.equal(sealedAfter.split(".")[1], keyIdOf(newer));
    assert.equal(new SecretBox([newer]).open(sealedAfter, owner), secret);
    // Once the old key is dropped, only values sealed before rotation stop opening.
    assertFailsClosed(() => new SecretBox([newer]).open(sealedBefore, owner));
    assertFailsClosed(() => new SecretBox([oldKey]).open(sealedAfter, owner));
  });

  test("refuses an empty key list and keys that are not 32 bytes", () => {
    assert.throws(() => new SecretBox([]));
    assert.throws(() => new SecretBox([randomBytes(16)]));
    assert.throws(() => new SecretBox([newKey(), randomBytes(33)]));
  });

  test("keyIdOf is 8 hex digits, stable for a key and different across keys", () => {
    const key = newKey();
    assert.match(keyIdOf(key), /^[0-9a-f]{8}$/);
    assert.equal(keyIdOf(Buffer.from(key)), keyIdOf(key));
    assert.notEqual(keyIdOf(newKey()), keyIdOf(key));
  });
});
