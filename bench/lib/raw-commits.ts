/**
 * The floor for durable writes: one INSERT + COMMIT per row in a loop, on
 * the server's own database file with the server's durability settings
 * (WAL, synchronous=FULL), into a scratch table. Runs in a child process so
 * its synchronous loop blocks nothing else; the server stays idle meanwhile.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";

/** A raw run: rows of `rowBytes` bytes, for `seconds`. */
export interface RawSpec {
  readonly path: string;
  readonly rowBytes: number;
  readonly seconds: number;
}

/** Runs the loop in a child process; resolves to committed rows per second. */
export function runRawCommits(spec: RawSpec): Promise<number> {
  const child = fork(fileURLToPath(import.meta.url), [JSON.stringify(spec)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    child.once("message", (rowsPerSecond: number) => resolve(rowsPerSecond));
    child.once("exit", (code) => reject(new Error(`raw commit loop exited with ${code} before reporting`)));
  });
}

function loop(spec: RawSpec): number {
  const db = new Database(spec.path);
  // The same settings as openSqliteStore.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.exec("CREATE TABLE IF NOT EXISTS bench_raw_rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)");
  const insert = db.prepare("INSERT INTO bench_raw_rows (payload) VALUES (?)");
  const payload = "r".repeat(spec.rowBytes);
  const end = performance.now() + spec.seconds * 1000;
  let rows = 0;
  // Autocommit: each run() is its own BEGIN, INSERT, COMMIT.
  while (performance.now() < end) {
    insert.run(payload);
    rows++;
  }
  db.exec("DELETE FROM bench_raw_rows");
  db.close();
  return rows / spec.seconds;
}

if (process.argv[2]?.startsWith("{")) {
  const rowsPerSecond = loop(JSON.parse(process.argv[2]) as RawSpec);
  process.send?.(rowsPerSecond, () => process.exit(0));
}
