/**
 * Summaries of repeated measurements: the median of several rounds and the
 * range around it, and how to print them. Benchmarks on a shared machine
 * swing from round to round, so a single number is never reported alone.
 */

/** The median of some rounds, and the lowest and highest round. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** How many rounds. */
  readonly n: number;
}

/** Median and range of `values`. Throws on an empty list. */
export function spreadOf(values: readonly number[]): Spread {
  if (values.length === 0) throw new Error("no values to summarize");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

/** Per-round ratios a[i] / b[i]: both sides of a ratio come from the same round. */
export function ratiosOf(a: readonly number[], b: readonly number[]): number[] {
  return a.map((x, i) => x / b[i]);
}

/** "0.82 (0.79–0.85)": a ratio's median and range, two decimals. */
export function formatRatio(s: Spread): string {
  return `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
}

/** A count with three significant digits and a k/M suffix: 12.3k. */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toPrecision(3)}M`;
  if (Math.abs(n) >= 1e3) return `${(n / 1e3).toPrecision(3)}k`;
  return n >= 100 ? n.toFixed(0) : n.toPrecision(3);
}

/** "12.3k (11.9k–12.8k)": an absolute figure's median and range. */
export function formatSpread(s: Spread, format: (n: number) => string = formatCount): string {
  return `${format(s.median)} (${format(s.min)}–${format(s.max)})`;
}

/** Renders rows as a Markdown table; the first row is the header. */
export function markdownTable(rows: readonly (readonly string[])[]): string {
  const [head, ...body] = rows;
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...body.map(line)].join("\n");
}
