/**
 * Prepared statements of the SQLite engine, compiled once per database.
 *
 * better-sqlite3's prepare() parses and plans its SQL on every call. For the
 * small indexed queries a request runs, that costs more than running them:
 * a CPU profile of GetSMTPConfig under load (bench/grpc-vs-grpcjs.ts) spent
 * about a tenth of the server's time in prepare(). The SQL texts are a fixed
 * set written in this folder, so the cache never grows past a few dozen.
 */
import type Database from "better-sqlite3";

/** Prepares each distinct SQL text on one database once, and hands out that statement after. */
export class StatementCache {
  private readonly byText = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  /** The statement for `sql`, compiled on first use. Throws what db.prepare throws. */
  prepare(sql: string): Database.Statement {
    let statement = this.byText.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.byText.set(sql, statement);
    }
    return statement;
  }
}
