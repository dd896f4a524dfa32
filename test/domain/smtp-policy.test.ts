/**
 * The rules on where a stored SMTP password may go: never unencrypted to a
 * remote host, never to a host or user it was not entered for.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DomainError } from "../../src/domain/errors.js";
import {
  checkPasswordStaysWithLogin,
  checkPlaintextAuth,
  defaultPlaintextAuthPolicy,
  isLoopbackAddress,
  isLoopbackHost,
} from "../../src/domain/smtp-policy.js";

function refusalId(run: () => void): string | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof DomainError, String(err));
    assert.equal(err.kind, "invalid");
    return err.id;
  }
}

describe("isLoopbackHost", () => {
  for (const host of ["127.0.0.1:25", "127.9.8.7:2525", "[::1]:25", "localhost:25", "LocalHost.:25", "mail.localhost:25", "[::ffff:127.0.0.1]:25"]) {
    test(`${host} is loopback`, () => assert.equal(isLoopbackHost(host), true));
  }
  for (const host of ["smtp.example.com:25", "10.0.0.1:25", "[2001:db8::1]:25", "localhost.example.com:25", "128.0.0.1:25", "0.0.0.0:25"]) {
    test(`${host} is not loopback`, () => assert.equal(isLoopbackHost(host), false));
  }
  test("isLoopbackAddress refuses names, which only a lookup can place", () => {
    assert.equal(isLoopbackAddress("localhost"), false);
    assert.equal(isLoopbackAddress("0:0:0:0:0:0:0:1"), true);
  });
});

describe("checkPlaintextAuth", () => {
  const remote = { host: "smtp.example.com:25", tls: false, hasPassword: true };

  test("a password over a plain connection to a remote host is refused with SMTP-plain01", () => {
    assert.equal(refusalId(() => checkPlaintextAuth(defaultPlaintextAuthPolicy, remote)), "SMTP-plain01");
  });

  test("tls, no password, or a loopback host each make it pass", () => {
    const policy = defaultPlaintextAuthPolicy;
    assert.equal(refusalId(() => checkPlaintextAuth(policy, { ...remote, tls: true })), undefined);
    assert.equal(refusalId(() => checkPlaintextAuth(policy, { ...remote, hasPassword: false })), undefined);
    assert.equal(refusalId(() => checkPlaintextAuth(policy, { ...remote, host: "127.0.0.1:25" })), undefined);
  });

  test("an operator who allows plaintext AUTH lets it pass", () => {
    const policy = { ...defaultPlaintextAuthPolicy, allowPlaintextAuth: true };
    assert.equal(refusalId(() => checkPlaintextAuth(policy, remote)), undefined);
  });

  test("without the loopback exemption, loopback hosts are refused too", () => {
    const policy = { ...defaultPlaintextAuthPolicy, plaintextAuthLoopbackExempt: false };
    assert.equal(refusalId(() => checkPlaintextAuth(policy, { ...remote, host: "127.0.0.1:25" })), "SMTP-plain01");
  });
});

describe("checkPasswordStaysWithLogin", () => {
  const stored = { host: "smtp.example.com:587", user: "mailer", sealedPassword: "v1.k.i.b.t" };

  test("the same host and user keep the stored password", () => {
    assert.equal(refusalId(() => checkPasswordStaysWithLogin(stored, stored)), undefined);
  });

  test("another host is refused with SMTP-upd01, naming the host", () => {
    let message = "";
    const id = refusalId(() => {
      try {
        checkPasswordStaysWithLogin(stored, { ...stored, host: "attacker.example.net:587" });
      } catch (err) {
        message = (err as Error).message;
        throw err;
      }
    });
    assert.equal(id, "SMTP-upd01");
    assert.match(message, /changing the host needs the password again/);
  });

  test("another user is refused too", () => {
    assert.equal(refusalId(() => checkPasswordStaysWithLogin(stored, { ...stored, user: "admin" })), "SMTP-upd01");
  });

  test("with no stored password there is nothing to redirect", () => {
    const empty = { ...stored, sealedPassword: "" };
    assert.equal(refusalId(() => checkPasswordStaysWithLogin(empty, { host: "other.example:25", user: "x" })), undefined);
  });
});
