import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeGrpcMessage } from "../../src/api/grpc-message.js";

test("encodeGrpcMessage keeps printable ASCII, including : / , ( ), as it is", () => {
  const text = "No matching permissions found: iam.write is required (AUTHZ-perm01), a/b";
  assert.equal(encodeGrpcMessage(text), text);
});

test("encodeGrpcMessage escapes % and bytes outside printable ASCII as UTF-8", () => {
  assert.equal(encodeGrpcMessage("100%"), "100%25");
  assert.equal(encodeGrpcMessage("caf\u00e9\n"), "caf%C3%A9%0A");
});

test("encodeGrpcMessage output decodes back with decodeURIComponent and decodeURI alike", () => {
  const text = "SMTP server said: 535 5.7.8 caf\u00e9 100% wrong, try again";
  assert.equal(decodeURIComponent(encodeGrpcMessage(text)), text);
  assert.equal(decodeURI(encodeGrpcMessage(text)), text);
});
