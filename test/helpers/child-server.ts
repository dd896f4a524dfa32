/**
 * Runs the real `smtpgate` command (bin/smtpgate.js over the compiled dist/)
 * as a child process, for tests of the CLI and of crashes and restarts.
 * Every child started here is tracked so a test can kill what it started.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: this file is compiled to dist/test/helpers/. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The command's entry point. */
export const binPath = join(repoRoot, "bin", "smtpgate.js");

/** How a finished command ended and what it printed. */
export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Environment for a child: ours without any SMTPGATE_* variable (so the
 * developer's shell cannot leak settings in), plus `extra`.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("SMTPGATE_")) env[name] = value;
  }
  return { ...env, ...extra };
}

/** Runs `smtpgate <args>` to completion; rejects after `timeoutMs` (default 60 s). */
export function runCommand(
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const child = spawn(process.execPath, [binPath, ...args], {
    cwd: repoRoot,
    env: childEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `smtpgate ${args.join(" ")} did not finish within ${options.timeoutMs ?? 60_000} ms`,
        ),
      );
    }, options.timeoutMs ?? 60_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
      });
    });
  });
}

/** A running `smtpgate serve` child. */
export interface ChildServer {
  readonly child: ChildProcess;
  /** The port from the "server.listening" log line. */
  readonly port: number;
  readonly baseUrl: string;
  /** The listening line, parsed. */
  readonly listening: Record<string, unknown>;
  /** Every stdout line so far (JSON log lines). */
  readonly stdoutLines: string[];
  /** Every stderr chunk so far, joined. */
  stderr(): string;
  /** Sends `signal` and resolves with the exit code and signal once it ended. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `smtpgate serve <args>` and resolves once it logged
 * "server.listening". Rejects (and kills the child) if it exits first or
 * takes longer than `timeoutMs` (default 60 s).
 */
export function startChildServer(
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ChildServer> {
  const child = spawn(process.execPath, [binPath, "serve", ...args], {
    cwd: repoRoot,
    env: childEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdoutLines: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  let partial = "";
  const lineWaiters = new Set<() => void>();
  child.stdout!.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString("utf8")).split("\n");
    partial = lines.pop() ?? "";
    stdoutLines.push(...lines.filter(Boolean));
    lineWaiters.forEach((wake) => wake());
  });
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString("utf8")));

  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };

  return new Promise((resolve, reject) => {
    const fail = (message: string) => {
      cleanUp();
      child.kill("SIGKILL");
      reject(new Error(`${message}; stderr: ${stderr.join("")}`));
    };
    const timer = setTimeout(
      () => fail("smtpgate serve did not log server.listening in time"),
      options.timeoutMs ?? 60_000,
    );
    const check = () => {
      const line = stdoutLines.find((l) => l.includes('"event":"server.listening"'));
      if (!line) return;
      cleanUp();
      const listening = JSON.parse(line) as Record<string, unknown>;
      const port = Number(listening.port);
      resolve({
        child,
        port,
        baseUrl: `http://127.0.0.1:${port}`,
        listening,
        stdoutLines,
        stderr: () => stderr.join(""),
        stop,
      });
    };
    const cleanUp = () => {
      clearTimeout(timer);
      lineWaiters.delete(check);
    };
    lineWaiters.add(check);
    void exited.then(({ code, signal }) => {
      if (lineWaiters.has(check))
        fail(`smtpgate serve exited early (code ${code}, signal ${signal})`);
    });
  });
}
