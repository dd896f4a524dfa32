/**
 * `npm run bench`: runs every benchmark, one process each, and prints one
 * Markdown report: the machine, the command, then each benchmark's section.
 * Nothing here runs in `npm test`.
 *
 *   npm run bench -- [--rounds N] [--seconds S] [--quick] [--only a,b]
 *                    [--before DIST] [--out FILE]
 *
 * --rounds, --seconds, --quick  passed to every benchmark (see lib/options.ts)
 * --only a,b                    run only these, by name (see `benches` below)
 * --before DIST                 passed to grpc-vs-grpcjs: the dist directory of
 *                               another build to measure as "smtpgate before"
 * --out FILE                    also write the report to FILE
 *
 * A benchmark file is a program that prints its Markdown section to stdout
 * and progress to stderr, and exits 0. Adding one is adding a row to
 * `benches`. Files owned elsewhere (delivery, postgres) are run when their
 * compiled file exists; a failing benchmark is reported and the rest go on.
 */
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describeMachine, machineLine } from "./lib/machine.js";
import { describeOptions, parseOptions, progress, type BenchOptions } from "./lib/options.js";

interface Bench {
  readonly name: string;
  /** Compiled file next to this one. */
  readonly file: string;
  /** Its command-line arguments for these options. */
  readonly args: (o: BenchOptions, argv: readonly string[]) => string[];
}

const common = (o: BenchOptions) => (o.isQuick ? ["--quick"] : ["--rounds", String(o.rounds), "--seconds", String(o.seconds)]);

function passThrough(argv: readonly string[], flag: string): string[] {
  const i = argv.indexOf(flag);
  return i < 0 ? [] : [flag, argv[i + 1]];
}

/** Every benchmark, in the order of the report. */
const benches: readonly Bench[] = [
  { name: "protocols", file: "protocols.js", args: common },
  { name: "grpc-vs-grpcjs", file: "grpc-vs-grpcjs.js", args: (o, argv) => [...common(o), ...passThrough(argv, "--before")] },
  { name: "durable-writes", file: "durable-writes.js", args: common },
  // delivery.ts and postgres.ts take their own flags (see their headers).
  {
    name: "delivery",
    file: "delivery.js",
    args: (o) => (o.isQuick ? ["--rounds", "1", "--mails", "200", "--saves", "3"] : ["--rounds", String(Math.min(o.rounds, 3))]),
  },
  { name: "postgres", file: "postgres.js", args: (o) => (o.isQuick ? ["--saves", "10", "--seconds", "2"] : ["--seconds", String(o.seconds)]) },
  { name: "scale", file: "scale.js", args: common },
];

/** Longest one benchmark may take before it is stopped, ms. */
const benchTimeoutMs = 45 * 60_000;

interface Outcome {
  readonly name: string;
  readonly markdown: string;
}

function runBench(bench: Bench, args: string[]): Promise<Outcome> {
  const file = fileURLToPath(new URL(`./${bench.file}`, import.meta.url));
  if (!existsSync(file)) return Promise.resolve({ name: bench.name, markdown: `## ${bench.name}\n\nNot run: ${bench.file} is not built.\n` });
  progress(`run: ${bench.name} ${args.join(" ")}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGTERM"), benchTimeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve({ name: bench.name, markdown: out });
      const why = signal ? `stopped by ${signal}` : `exited with ${code}`;
      resolve({ name: bench.name, markdown: `## ${bench.name}\n\nFailed (${why}); its progress and error are on stderr.\n\n${out}` });
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const only = passThrough(argv, "--only")[1]?.split(",");
  const selected = benches.filter((b) => !only || only.includes(b.name));
  if (only && selected.length !== only.length) throw new Error(`--only names one of: ${benches.map((b) => b.name).join(", ")}`);

  const machine = describeMachine();
  const sections: string[] = [];
  for (const bench of selected) sections.push((await runBench(bench, bench.args(options, argv))).markdown.trimEnd());

  const report = [
    "# smtpgate benchmarks",
    "",
    `Machine: ${machineLine(machine)}`,
    "",
    `Command: \`npm run bench${argv.length > 0 ? ` -- ${argv.join(" ")}` : ""}\` (${describeOptions(options)})`,
    "",
    ...sections.flatMap((s) => [s, ""]),
  ].join("\n");
  process.stdout.write(report);
  const out = passThrough(argv, "--out")[1];
  if (out) writeFileSync(out, report);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
