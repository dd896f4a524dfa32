/**
 * NodemailerSender against a real SMTP sink on 127.0.0.1: delivery, login,
 * TLS and its STARTTLS fallback, and how each failure is reported.
 */
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { DomainError } from "../../src/domain/errors.js";
import { SmtpSendError, type OutgoingMail, type SmtpSettings } from "../../src/domain/mail.js";
import { NodemailerSender, parseHostPort } from "../../src/notify/smtp-sender.js";
import {
  createTestCertificates,
  startSmtpSink,
  type SmtpSink,
  type SmtpSinkOptions,
  type TestCertificates,
} from "../helpers/smtp-sink.js";

const password = "Pw-7f3c9e1a-never-echoed";

const mail: OutgoingMail = {
  fromAddress: "noreply@smtpgate.test",
  fromName: "smtpgate",
  replyTo: "support@smtpgate.test",
  to: ["alice@example.test"],
  subject: "Verify your email",
  text: "Your code is 123456.",
  messageId: "<verify-1@smtpgate.test>",
};

let certs: TestCertificates;
const sinks: SmtpSink[] = [];

before(async () => {
  certs = await createTestCertificates();
});

after(async () => {
  await Promise.all(sinks.map((sink) => sink.stop()));
});

async function sink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const started = await startSmtpSink(options);
  sinks.push(started);
  return started;
}

function settingsFor(target: SmtpSink, overrides: Partial<SmtpSettings> = {}): SmtpSettings {
  return { host: target.hostPort, tls: false, user: "", password: "", ...overrides };
}

/** A TLS sink with the test CA's certificate that accepts "mailer" with `password`. */
function tlsSink(tls: "implicit" | "starttls"): Promise<SmtpSink> {
  return sink({ tls, key: certs.key, cert: certs.cert, users: { mailer: password } });
}

const tlsLogin: Partial<SmtpSettings> = { tls: true, user: "mailer", password };

function sender(): NodemailerSender {
  return new NodemailerSender({ ca: certs.ca, name: "gateway.smtpgate.test" });
}

async function sendError(settings: SmtpSettings, sent = mail, via = sender()) {
  const err = await via.send(settings, sent).then(
    () => assert.fail("send should have failed"),
    (caught: unknown) => caught,
  );
  assert.ok(err instanceof SmtpSendError, `expected SmtpSendError, got ${String(err)}`);
  return err;
}

function assertNoPassword(err: Error): void {
  for (const text of [err.message, String(err), JSON.stringify(err)]) {
    assert.ok(!text.includes(password), `password leaked into: ${text}`);
  }
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("NodemailerSender on a plain connection", () => {
  test("a mail arrives with the given From, To, Reply-To, Subject and Message-ID", async () => {
    const target = await sink();

    const result = await sender().send(settingsFor(target), mail);

    const [received] = await target.waitForMessages(1);
    assert.equal(received.from, "noreply@smtpgate.test");
    assert.deepEqual(received.to, ["alice@example.test"]);
    assert.equal(received.headers["from"], "smtpgate <noreply@smtpgate.test>");
    assert.equal(received.headers["to"], "alice@example.test");
    assert.equal(received.headers["reply-to"], "support@smtpgate.test");
    assert.equal(received.headers["subject"], "Verify your email");
    assert.equal(received.headers["message-id"], "<verify-1@smtpgate.test>");
    assert.equal(received.secure, false);
    assert.equal(result.messageId, "<verify-1@smtpgate.test>");
    assert.match(result.response, /^250 /);
  });

  test("a mail without a Message-ID gets a generated one, reported in the result", async () => {
    const target = await sink();

    const result = await sender().send(settingsFor(target), { ...mail, messageId: undefined });

    const [received] = await target.waitForMessages(1);
    assert.match(result.messageId, /^<.+@.+>$/);
    assert.equal(received.headers["message-id"], result.messageId);
  });

  test("tls=false stays plain even when the server offers STARTTLS", async () => {
    const target = await sink({ tls: "starttls", key: certs.key, cert: certs.cert });

    await sender().send(settingsFor(target), mail);

    const [received] = await target.waitForMessages(1);
    assert.equal(received.secure, false);
  });
});

describe("NodemailerSender login", () => {
  test("AUTH PLAIN is used when the server offers it, even listed after LOGIN", async () => {
    const target = await sink({ users: { mailer: password }, authMethods: ["LOGIN", "PLAIN"] });

    await sender().send(settingsFor(target, { user: "mailer", password }), mail);

    assert.deepEqual(
      target.authAttempts.map(({ method, username, accepted }) => ({ method, username, accepted })),
      [{ method: "PLAIN", username: "mailer", accepted: true }],
    );
    const [received] = await target.waitForMessages(1);
    assert.equal(received.user, "mailer");
  });

  test("AUTH LOGIN is used when the server offers only LOGIN", async () => {
    const target = await sink({ users: { mailer: password }, authMethods: ["LOGIN"] });

    await sender().send(settingsFor(target, { user: "mailer", password }), mail);

    assert.equal(target.authAttempts.length, 1);
    assert.equal(target.authAttempts[0].method, "LOGIN");
    assert.equal(target.authAttempts[0].accepted, true);
  });

  test("no AUTH is sent when user and password are empty", async () => {
    const target = await sink({ users: { mailer: password }, authOptional: true });

    await sender().send(settingsFor(target), mail);

    const [received] = await target.waitForMessages(1);
    assert.deepEqual(target.authAttempts, []);
    assert.equal(received.user, undefined);
  });

  test("a user without a password still logs in, with an empty password", async () => {
    const target = await sink({ users: { relay: "" } });

    await sender().send(settingsFor(target, { user: "relay" }), mail);

    assert.equal(target.authAttempts.length, 1);
    assert.equal(target.authAttempts[0].password, "");
    assert.equal(target.authAttempts[0].accepted, true);
  });

  test("a rejected password fails with reason auth, the 535 reply and no password", async () => {
    const target = await sink({ users: { mailer: "the-right-one" } });

    const err = await sendError(settingsFor(target, { user: "mailer", password }));

    assert.equal(err.reason, "auth");
    assert.equal(err.kind, "failed_precondition");
    assert.equal(err.responseCode, 535);
    assert.equal(
      err.message,
      "SMTP server rejected the credentials: 535 5.7.8 Authentication failed",
    );
    assertNoPassword(err);
    assert.equal(target.messages.length, 0);
  });

  test("a password changed on the server is accepted on the next send", async () => {
    const target = await sink({ users: { mailer: "old-password" } });
    target.setPassword("mailer", password);

    await sender().send(settingsFor(target, { user: "mailer", password }), mail);

    assert.equal(target.authAttempts[0].accepted, true);
  });

  test("credentials for a server that offers no AUTH fail with reason auth", async () => {
    const target = await sink({ authMethods: [] });

    const err = await sendError(settingsFor(target, { user: "mailer", password }));

    assert.equal(err.reason, "auth");
    assert.match(err.message, /offers no AUTH PLAIN or LOGIN \(offers: none\)/);
    assert.equal(target.messages.length, 0);
  });

  test("a server that requires a login answers an anonymous send with reason auth", async () => {
    const target = await sink({ users: { mailer: password } });

    const err = await sendError(settingsFor(target));

    assert.equal(err.reason, "auth");
    assert.equal(err.responseCode, 530);
    assert.match(err.message, /requires a login: 530 /);
  });
});

describe("NodemailerSender with tls=true", () => {
  test("implicit TLS with a certificate from the configured CA delivers the mail", async () => {
    const target = await tlsSink("implicit");

    await sender().send(settingsFor(target, tlsLogin), mail);

    const [received] = await target.waitForMessages(1);
    assert.equal(received.secure, true);
    assert.equal(target.connectionCount(), 1);
  });

  test("a STARTTLS-only server gets a second connection that upgrades with STARTTLS", async () => {
    const target = await tlsSink("starttls");

    await sender().send(settingsFor(target, tlsLogin), mail);

    const [received] = await target.waitForMessages(1);
    assert.equal(received.secure, true);
    assert.equal(target.authAttempts[0].secure, true);
    assert.equal(target.connectionCount(), 2);
  });

  test("an untrusted CA fails with reason tls, with no fallback and no AUTH", async () => {
    const target = await tlsSink("implicit");
    const withoutCa = new NodemailerSender();

    const err = await sendError(settingsFor(target, tlsLogin), mail, withoutCa);

    assert.equal(err.reason, "tls");
    assert.equal(err.kind, "failed_precondition");
    assert.match(err.message, new RegExp(`^TLS handshake with ${target.hostPort} failed: `));
    assert.deepEqual(target.authAttempts, []);
    assert.equal(target.connectionCount(), 1);
    assertNoPassword(err);
  });

  test("an untrusted certificate after STARTTLS fails with reason tls and no AUTH", async () => {
    const target = await tlsSink("starttls");
    const withoutCa = new NodemailerSender();

    const err = await sendError(settingsFor(target, tlsLogin), mail, withoutCa);

    assert.equal(err.reason, "tls");
    assert.match(err.message, /^STARTTLS handshake with .+ failed: .*certificate/);
    assert.deepEqual(target.authAttempts, []);
  });

  test("a plain server without STARTTLS fails with reason tls, nothing sent", async () => {
    const target = await sink();

    const err = await sendError(settingsFor(target, { tls: true }));

    assert.equal(err.reason, "tls");
    assert.match(err.message, /speaks neither TLS on connect nor STARTTLS: 5\d\d /);
    assert.equal(target.messages.length, 0);
  });
});

describe("NodemailerSender failures", () => {
  test("a port with nothing listening fails with reason connect and kind unavailable", async () => {
    const port = await closedPort();

    const err = await sendError({ host: `127.0.0.1:${port}`, tls: false, user: "", password });

    assert.equal(err.reason, "connect");
    assert.equal(err.kind, "unavailable");
    assert.equal(err.message, `connection refused by 127.0.0.1:${port}`);
  });

  test("a server that never greets fails with reason timeout", async (t) => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    t.after(() => {
      sockets.forEach((socket) => socket.destroy());
      silent.close();
    });
    const { port } = silent.address() as { port: number };
    const impatient = new NodemailerSender({ connectionTimeoutMs: 300 });

    const settings = { host: `127.0.0.1:${port}`, tls: false, user: "", password: "" };
    const err = await sendError(settings, mail, impatient);

    assert.equal(err.reason, "timeout");
    assert.equal(err.kind, "unavailable");
    assert.match(err.message, /sent no greeting within 300 ms/);
  });

  test("a recipient refused with 550 fails with reason rejected_permanent, named", async () => {
    const target = await sink({ rejectRecipients: () => "5.1.1 Mailbox unavailable" });

    const err = await sendError(settingsFor(target));

    assert.equal(err.reason, "rejected_permanent");
    assert.equal(err.responseCode, 550);
    assert.equal(
      err.message,
      "SMTP server rejected recipient alice@example.test: 550 5.1.1 Mailbox unavailable",
    );
  });

  test("a recipient deferred with 451 fails with reason rejected_temporary", async () => {
    const target = await sink({
      failNext: { stage: "rcpt", code: 451, message: "4.3.0 Try later" },
    });

    const err = await sendError(settingsFor(target));

    assert.equal(err.reason, "rejected_temporary");
    assert.equal(err.kind, "unavailable");
    assert.match(err.message, /rejected recipient alice@example.test: 451 4\.3\.0 Try later/);
  });

  test("a password the server echoes back is cut out of the message and the cause", async () => {
    const target = await sink({
      users: { mailer: password },
      rejectRecipients: () => `5.7.1 relay denied for mailer/${password}`,
    });

    const err = await sendError(settingsFor(target, { user: "mailer", password }));

    assert.equal(err.reason, "rejected_permanent");
    assert.match(err.message, /relay denied for mailer\/\*\*\*$/);
    assertNoPassword(err);
    const cause = err.cause as Error;
    assert.ok(!JSON.stringify({ ...cause, message: cause.message }).includes(password));
    assert.ok(!String(cause.stack).includes(password));
  });

  test("a message refused after DATA fails with reason rejected_permanent", async () => {
    const target = await sink({ failNext: { stage: "data", code: 554, message: "5.6.0 Spam" } });

    const err = await sendError(settingsFor(target));

    assert.equal(err.reason, "rejected_permanent");
    assert.equal(err.message, "SMTP server rejected the message: 554 5.6.0 Spam");
  });
});

describe("NodemailerSender input checks", () => {
  const unsafe: Array<[string, Partial<OutgoingMail>]> = [
    ["subject", { subject: "Hello\r\nBcc: victim@example.test" }],
    ["fromName", { fromName: "smtpgate\nX-Evil: 1" }],
    ["replyTo", { replyTo: "a@b.test\r" }],
    ["to", { to: ["alice@example.test\nBcc: x@y.test"] }],
    ["messageId", { messageId: "<a@b>\r\nX: y" }],
  ];
  for (const [field, change] of unsafe) {
    test(`CR or LF in ${field} is rejected as invalid before connecting`, async () => {
      const target = await sink();

      const err = await sender()
        .send(settingsFor(target), { ...mail, ...change })
        .catch((e: unknown) => e);

      assert.ok(err instanceof DomainError);
      assert.equal(err.kind, "invalid");
      assert.equal(err.id, "SMTP-hdr01");
      assert.equal(target.connectionCount(), 0);
    });
  }

  test("a bad host is rejected as invalid before connecting", async () => {
    const err = await sender()
      .send({ host: "example.com", tls: false, user: "", password: "" }, mail)
      .catch((e: unknown) => e);

    assert.ok(err instanceof DomainError);
    assert.equal(err.id, "SMTP-host01");
  });
});

describe("parseHostPort", () => {
  test("splits a name, an IPv4 address and a bracketed IPv6 address from the port", () => {
    assert.deepEqual(parseHostPort("mail.example.com:587"), {
      host: "mail.example.com",
      port: 587,
    });
    assert.deepEqual(parseHostPort("127.0.0.1:2525"), { host: "127.0.0.1", port: 2525 });
    assert.deepEqual(parseHostPort("[::1]:25"), { host: "::1", port: 25 });
    assert.deepEqual(parseHostPort("[2001:db8::1]:65535"), { host: "2001:db8::1", port: 65535 });
  });

  const bad = [
    "example.com", "host:0", "host:99999", ":25", "host:", "host:25x",
    "::1:25", "[::1]", "[]:25", "[example.com]:25", "a b:25", "",
  ];
  for (const hostPort of bad) {
    test(`rejects ${JSON.stringify(hostPort)} as invalid with id SMTP-host01`, () => {
      assert.throws(
        () => parseHostPort(hostPort),
        (err: unknown) =>
          err instanceof DomainError && err.kind === "invalid" && err.id === "SMTP-host01",
      );
    });
  }
});

describe("NodemailerSender over IPv6", () => {
  test("a bracketed IPv6 host is reached on that address", async (t) => {
    const target = await sink({ listenHost: "::1" }).catch(() => undefined);
    if (!target) return t.skip("no IPv6 loopback on this machine");

    await sender().send(settingsFor(target), mail);

    assert.match(target.hostPort, /^\[::1\]:\d+$/);
    assert.equal((await target.waitForMessages(1)).length, 1);
  });
});
