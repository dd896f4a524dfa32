/**
 * The store contract (contract.ts) on the embedded SQLite engine: a new file
 * in a temp directory per test; "another store" is a second connection to
 * the same file, as a second process would open it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { describeStoreContract } from "./contract.js";

let dir: string | undefined;

describeStoreContract("SQLite", {
  async openEmpty() {
    dir = mkdtempSync(join(tmpdir(), "smtpgate-contract-"));
    return openSqliteStore(join(dir, "smtpgate.db"));
  },
  async openAgain() {
    if (!dir) throw new Error("openAgain before openEmpty");
    return openSqliteStore(join(dir, "smtpgate.db"));
  },
  async discard() {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  },
});
