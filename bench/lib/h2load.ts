/**
 * Runs h2load (Debian's nghttp2-client), a load generator written in C, so
 * that the client side costs the same for every server under test and never
 * shares a Node event loop with it.
 *
 * h2load counts any HTTP 2xx as a success. A gRPC error is also HTTP 200,
 * so callers check grpc-status themselves (see probe.ts) and compare the
 * response bytes per request with the size they expect.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** One load run against one URL. */
export interface LoadSpec {
  readonly url: string;
  /** HTTP/1.1 instead of HTTP/2 (h2c with prior knowledge). */
  readonly isHttp1: boolean;
  /** Connections. */
  readonly clients: number;
  /** Requests in flight per connection; keep 1 for HTTP/1.1 (no pipelining). */
  readonly streams: number;
  /** Measured time, s. Ignored when `requests` is given. */
  readonly seconds: number;
  /** Unmeasured time before it, s. Ignored when `requests` is given. */
  readonly warmupSeconds: number;
  /**
   * Send exactly this many requests instead of running for a time. Only then
   * are the byte counts exact: in timed runs h2load counts warm-up traffic too.
   */
  readonly requests?: number;
  readonly headers: Readonly<Record<string, string>>;
  /** POST this body; GET when absent. */
  readonly body?: Uint8Array;
  /** Record each request's latency to compute percentiles. */
  readonly wantsLatencies?: boolean;
}

/** What h2load reported. */
export interface LoadResult {
  readonly requestsPerSecond: number;
  readonly succeeded: number;
  /** Failed, errored and timed out requests together. */
  readonly failed: number;
  /** Responses with a status outside 2xx. */
  readonly non2xx: number;
  /** Response body bytes (HTTP/2 DATA or HTTP/1.1 body) per finished request; exact only with `requests`. */
  readonly bodyBytesPerRequest: number;
  readonly meanLatencyMs: number;
  /** Only with wantsLatencies. */
  readonly p50LatencyMs?: number;
  readonly p99LatencyMs?: number;
}

/** True when h2load is on the PATH. */
export function hasH2load(): boolean {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Runs h2load once. Throws when it exits non-zero or prints no summary. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "smtpgate-h2load-"));
  try {
    const args = argsOf(spec, dir);
    const output = await exec("h2load", args);
    const result = parseSummary(output);
    if (!spec.wantsLatencies) return result;
    return { ...result, ...percentilesOf(readFileSync(join(dir, "requests.log"), "utf8")) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function argsOf(spec: LoadSpec, dir: string): string[] {
  const args = [
    "-c", String(spec.clients),
    "-m", String(spec.streams),
    // One thread: the machine has few cores and the server needs one.
    "-t", "1",
  ];
  if (spec.requests !== undefined) args.push("-n", String(spec.requests));
  else args.push("-D", `${Math.round(spec.seconds * 1000)}ms`, "--warm-up-time", `${Math.round(spec.warmupSeconds * 1000)}ms`);
  if (spec.isHttp1) args.push("--h1");
  for (const [name, value] of Object.entries(spec.headers)) args.push("-H", `${name}: ${value}`);
  if (spec.body?.length === 0) {
    // h2load cannot map an empty file; a POST without a body is said this way.
    args.push("-H", ":method: POST");
  } else if (spec.body) {
    const file = join(dir, "body");
    writeFileSync(file, spec.body);
    args.push("-d", file);
  }
  if (spec.wantsLatencies) args.push("--log-file", join(dir, "requests.log"));
  return [...args, spec.url];
}

/** Reads the lines of h2load's summary that we use. Exported for tests of this file by hand. */
export function parseSummary(text: string): LoadResult {
  const rate = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text);
  const counts = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(text);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  const traffic = /traffic: .*?, ([\d.]+\w*) \((\d+)\) data/.exec(text);
  const latency = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(text);
  if (!rate || !counts || !codes || !traffic || !latency) throw new Error(`unexpected h2load output:\n${text}`);
  const done = Number(counts[2]);
  return {
    requestsPerSecond: Number(rate[1]),
    succeeded: Number(counts[3]),
    failed: Number(counts[4]) + Number(counts[5]) + Number(counts[6]),
    non2xx: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    bodyBytesPerRequest: done > 0 ? Number(traffic[2]) / done : 0,
    meanLatencyMs: toMs(Number(latency[5]), latency[6]),
  };
}

function toMs(value: number, unit: string): number {
  return unit === "us" ? value / 1000 : unit === "s" ? value * 1000 : value;
}

/** p50 and p99 from h2load's log file: start µs, status, duration µs per line. */
function percentilesOf(log: string): { p50LatencyMs: number; p99LatencyMs: number } {
  const micros = log
    .split("\n")
    .filter(Boolean)
    .map((line) => Number(line.split("\t")[2]))
    .sort((a, b) => a - b);
  const at = (q: number) => (micros.length === 0 ? NaN : micros[Math.min(micros.length - 1, Math.floor(q * micros.length))] / 1000);
  return { p50LatencyMs: at(0.5), p99LatencyMs: at(0.99) };
}

function exec(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited with ${code}:\n${out}`))));
  });
}
