/**
 * The seed's request, made by the real curl binary: the older generation of
 * UpdateSMTPConfigPassword, `PUT /admin/v1/smtp/password` with only a
 * password, sent with curl's defaults (-d, so the content type is
 * application/x-www-form-urlencoded although the body is JSON).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Code } from "@connectrpc/connect";
import { providerInput } from "../helpers/admin-api.js";
import { adminClient } from "../helpers/clients.js";
import { assertGatewayError, type RestAnswer } from "../helpers/rest.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const run = promisify(execFile);

async function hasCurl(): Promise<boolean> {
  try {
    await run("curl", ["--version"]);
    return true;
  } catch {
    return false;
  }
}

/**
 * `curl -X PUT <url> -d <body>`, with a bearer token when given. The status
 * comes from --write-out, on a line of its own after the body.
 */
async function curlPut(url: string, body: string, token?: string): Promise<RestAnswer> {
  const args = ["--silent", "--show-error", "--noproxy", "*", "--max-time", "10", "-X", "PUT", url, "-d", body];
  if (token !== undefined) args.push("-H", `Authorization: Bearer ${token}`);
  args.push("--write-out", "\n%{http_code}\n%{content_type}");
  const { stdout } = await run("curl", args);
  const lines = stdout.split("\n");
  const contentType = lines.pop() ?? "";
  const status = Number(lines.pop());
  const text = lines.join("\n");
  let json: RestAnswer["json"];
  try {
    json = JSON.parse(text) as RestAnswer["json"];
  } catch {
    json = undefined;
  }
  return { status, text, json, headers: new Headers({ "content-type": contentType }) };
}

const skip = (await hasCurl()) ? false : "the curl binary is not installed (apt-get install curl)";

describe("curl PUT /admin/v1/smtp/password", { skip }, () => {
  let t: TestServer;
  let url: string;
  let providerId: string;
  const secret = "rotated-by-curl-7f3a";
  before(async () => {
    t = await startTestServer();
    url = `${t.baseUrl}/admin/v1/smtp/password`;
    const owner = adminClient("grpc", t.baseUrl, t.ownerToken);
    providerId = (await owner.addSMTPConfig(providerInput({ tls: true, password: "first-secret" }))).id;
    await owner.activateSMTPConfig({ id: providerId });
  });
  after(() => t.stop());

  test("with the owner token rotates the active provider's password and answers its object details", async () => {
    const answer = await curlPut(url, JSON.stringify({ password: secret }), t.ownerToken);

    assert.equal(answer.status, 200, answer.text);
    assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
    const details = answer.json?.details;
    assert.deepEqual(Object.keys(answer.json ?? {}), ["details"]);
    assert.match(details.sequence, /^[1-9]\d*$/);
    assert.match(details.changeDate, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    const instance = await t.server.store.findInstanceByDomain("127.0.0.1");
    assert.equal(details.resourceOwner, instance?.id);

    const events = await t.server.store.listEvents(instance!.id);
    const last = events[events.length - 1];
    assert.equal(last.type, "smtp.config.password.changed");
    assert.equal(last.objectId, providerId);
    assert.equal(String(last.sequence), details.sequence);
    assert.ok(!answer.text.includes(secret), "the answer never echoes the password");
    assert.ok(!t.logLines.some((line) => line.includes(secret)), "the password is never logged");
  });

  test("with a viewer token is 403 PermissionDenied in grpc-gateway's body", async () => {
    const viewer = await t.token(["IAM_OWNER_VIEWER"]);
    const answer = await curlPut(url, JSON.stringify({ password: "not-applied" }), viewer);
    assertGatewayError(answer, 403, Code.PermissionDenied, "AUTHZ-perm01");
  });

  test("without a token is 401 Unauthenticated in grpc-gateway's body", async () => {
    const answer = await curlPut(url, JSON.stringify({ password: "not-applied" }));
    assertGatewayError(answer, 401, Code.Unauthenticated, "AUTH-none01");
  });
});
