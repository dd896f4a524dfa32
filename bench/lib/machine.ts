/**
 * What a result was measured on, printed above every table: ratios travel
 * between machines, absolute numbers do not.
 */
import os from "node:os";

/** The machine and moment of a run. */
export interface Machine {
  /** ISO date and time of the run, UTC. */
  readonly date: string;
  /** Logical CPUs this process may use (what `nproc` prints). */
  readonly cpus: number;
  readonly cpuModel: string;
  /** Total memory, GiB. */
  readonly memoryGiB: number;
  readonly node: string;
  readonly kernel: string;
  /** 1-minute load average when the run started: how busy the neighbours were. */
  readonly loadAverage: number;
}

/** Describes this machine now. */
export function describeMachine(): Machine {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    loadAverage: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

/** One Markdown line naming the machine. */
export function machineLine(m: Machine): string {
  return (
    `${m.date} · nproc ${m.cpus} (${m.cpuModel}) · ${m.memoryGiB} GiB · Node ${m.node} · ` +
    `${m.kernel} · load average ${m.loadAverage} at start`
  );
}
