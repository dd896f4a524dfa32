/**
 * The browser app of the end-to-end test, bundled by esbuild at test time.
 * With connect-web, once over the Connect protocol and once over gRPC-web, it
 * adds an SMTP provider, rotates its password, reads the provider back, and
 * tries the rotation with a viewer token. Each step's outcome goes into the
 * page as <li data-step="<transport>:<step>" data-result="<json>">, and
 * #status gets data-done when all is over, for the test to read.
 *
 * Settings come from the query string: base (smtpgate's URL), owner and
 * viewer (tokens).
 */
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../src/gen/zitadel/admin/v1/admin_pb.js";
import { SMTPConfigState } from "../../src/gen/zitadel/settings/v1/smtp_pb.js";
import { ErrorDetailSchema } from "../../src/gen/zitadel/v1/object_pb.js";

type Result = Record<string, string | boolean>;

const transports = {
  connect: (baseUrl: string, interceptors: Interceptor[]) => createConnectTransport({ baseUrl, interceptors }),
  "grpc-web": (baseUrl: string, interceptors: Interceptor[]) => createGrpcWebTransport({ baseUrl, interceptors }),
} satisfies Record<string, (baseUrl: string, interceptors: Interceptor[]) => Transport>;

type Kind = keyof typeof transports;

function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** Adds one line to the page: readable text, and the result as JSON. */
function report(kind: Kind, step: string, result: Result): void {
  const item = document.createElement("li");
  item.dataset.step = `${kind}:${step}`;
  item.dataset.result = JSON.stringify(result);
  item.textContent = `${kind} ${step}: ${Object.entries(result).map(([k, v]) => `${k}=${v}`).join(" ")}`;
  document.getElementById("steps")!.append(item);
}

function describeError(err: unknown): Result {
  const error = ConnectError.from(err);
  const detail = error.findDetails(ErrorDetailSchema)[0];
  return { code: Code[error.code], message: error.rawMessage, detailId: detail?.id ?? "" };
}

async function runScenario(kind: Kind, baseUrl: string, owner: string, viewer: string): Promise<void> {
  const asOwner = createClient(AdminService, transports[kind](baseUrl, [bearer(owner)]));
  const asViewer = createClient(AdminService, transports[kind](baseUrl, [bearer(viewer)]));

  const added = await asOwner.addSMTPConfig({
    senderAddress: `${kind}@example.com`,
    senderName: `browser over ${kind}`,
    host: "smtp.example.com:465",
    tls: true,
    user: "browser",
    password: "first-secret",
    description: `added over ${kind}`,
  });
  report(kind, "add", { id: added.id, sequence: String(added.details?.sequence) });

  const rotated = await asOwner.updateSMTPConfigPassword({ id: added.id, password: "second-secret" });
  report(kind, "rotate", { sequence: String(rotated.details?.sequence) });

  const { smtpConfig } = await asOwner.getSMTPConfigById({ id: added.id });
  report(kind, "read", {
    id: smtpConfig?.id ?? "",
    description: smtpConfig?.description ?? "",
    state: SMTPConfigState[smtpConfig?.state ?? 0],
    sequence: String(smtpConfig?.details?.sequence),
    hasPassword: smtpConfig !== undefined && "password" in smtpConfig,
  });

  try {
    await asViewer.updateSMTPConfigPassword({ id: added.id, password: "viewer-secret" });
    report(kind, "viewer", { code: "OK" });
  } catch (err) {
    report(kind, "viewer", describeError(err));
  }
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const [baseUrl, owner, viewer] = ["base", "owner", "viewer"].map((name) => params.get(name) ?? "");
  for (const kind of Object.keys(transports) as Kind[]) {
    try {
      await runScenario(kind, baseUrl, owner, viewer);
    } catch (err) {
      report(kind, "failed", describeError(err));
    }
  }
  const status = document.getElementById("status")!;
  status.textContent = "done";
  status.dataset.done = "true";
}

void main();
