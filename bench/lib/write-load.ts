/**
 * Closed-loop write load: some clients, each with its own HTTP/2 connection,
 * instance (by :authority) and token, each sending its next gRPC call when
 * the previous one answered. Runs in a child process (write-load-child.ts),
 * so the driver never shares an event loop with the server or the parent.
 *
 * h2load cannot do this: it sends one host and one token for all clients,
 * and writes of one instance contend on its sequence by design.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Which RPC each call makes. */
export type WriteKind = "password" | "send-mail";

/** One client's identity. */
export interface WriteClient {
  /** Host that selects the client's instance. */
  readonly host: string;
  readonly token: string;
  /** SMTP config to change (for "password"). */
  readonly configId: string;
}

/** A load run. */
export interface WriteLoadSpec {
  readonly port: number;
  readonly kind: WriteKind;
  readonly clients: readonly WriteClient[];
  /** Unmeasured, then measured time, s. */
  readonly warmupSeconds: number;
  readonly seconds: number;
}

/** What the run measured. */
export interface WriteLoadResult {
  /** Calls answered with grpc-status 0, per second of the measured time. */
  readonly callsPerSecond: number;
  /** Calls answered otherwise, or failed, in the measured time. */
  readonly failures: number;
  /** The first failure seen, for the report. */
  readonly firstFailure?: string;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** Runs the load in a child process and resolves with its result. */
export function runWriteLoad(spec: WriteLoadSpec): Promise<WriteLoadResult> {
  const child = fork(fileURLToPath(new URL("./write-load-child.js", import.meta.url)), [JSON.stringify(spec)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    child.once("message", (result: WriteLoadResult) => resolve(result));
    child.once("exit", (code) => reject(new Error(`write load exited with ${code} before reporting`)));
  });
}
