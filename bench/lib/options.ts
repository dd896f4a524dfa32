/**
 * Command-line options shared by every benchmark file, so `npm run bench`
 * can pass the same ones to all of them:
 *
 *   --rounds N    rounds per measurement; ratios are medians over rounds (default 5)
 *   --seconds S   measured seconds per load run (default 4)
 *   --quick       1 round of 2 s: checks that the benchmark runs, measures nothing
 */

/** How long to measure. */
export interface BenchOptions {
  readonly rounds: number;
  /** Measured time per load run, s. */
  readonly seconds: number;
  /** Unmeasured time before each load run, s. */
  readonly warmupSeconds: number;
  readonly isQuick: boolean;
}

/** Reads the options from `argv` (process.argv.slice(2)). Throws on a malformed value. */
export function parseOptions(argv: readonly string[]): BenchOptions {
  const isQuick = argv.includes("--quick");
  const number = (flag: string, fallback: number) => {
    const i = argv.indexOf(flag);
    if (i < 0) return fallback;
    const value = Number(argv[i + 1]);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${flag} needs a positive number`);
    return value;
  };
  return {
    rounds: isQuick ? 1 : Math.round(number("--rounds", 5)),
    seconds: isQuick ? 2 : number("--seconds", 4),
    warmupSeconds: isQuick ? 0.5 : 1,
    isQuick,
  };
}

/** The value after `flag` in `argv`, or undefined when the flag is absent. */
export function flagValue(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
}

/** Progress for the person watching; results go to stdout as Markdown. */
export function progress(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

/** The options as they would be typed again, for the result's header. */
export function describeOptions(o: BenchOptions): string {
  return o.isQuick ? "--quick" : `--rounds ${o.rounds} --seconds ${o.seconds}`;
}
