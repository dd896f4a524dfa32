/**
 * The change feed across replicas: commits send NOTIFY in their transaction
 * (so only committed changes are announced), and one dedicated connection
 * per process LISTENs. When that connection drops, it reconnects with
 * backoff and announces a catch-up change, so listeners re-read the store:
 * correctness never depends on a notification arriving.
 */
import pg from "pg";
import type { Logger } from "../domain/deps.js";
import type { StoreChange } from "./store.js";

/** The channel all replicas share. */
export const changeChannel = "smtpgate_changes";

/** Listens for changes and hands them to `emit`. */
export class PostgresFeed {
  private client: pg.Client | undefined;
  private closed = false;
  private retryMs = 100;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connectionString: string,
    private readonly emit: (change: StoreChange | "catch_up") => void,
    private readonly log: Logger,
  ) {}

  /** Connects and starts listening; later failures reconnect by themselves. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    // keepAlive: a connection that died without a word (a dropped network
    // path) is noticed and replaced instead of listening to nothing forever.
    const client = new pg.Client({
      connectionString: this.connectionString,
      connectionTimeoutMillis: 5000,
      keepAlive: true,
    });
    client.on("error", () => this.onLost(client));
    client.on("end", () => this.onLost(client));
    client.on("notification", (msg) => this.onNotification(msg.payload));
    try {
      await client.connect();
      await client.query(`LISTEN ${changeChannel}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      // close() ran while this reconnect was under way; an open client
      // would keep the process alive.
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.retryMs = 100;
  }

  private onNotification(payload: string | undefined): void {
    try {
      const change = JSON.parse(payload ?? "") as StoreChange;
      if (typeof change.instanceId === "string") this.emit(change);
    } catch {
      this.emit("catch_up");
    }
  }

  private onLost(client: pg.Client): void {
    if (this.closed || this.client !== client) return;
    this.client = undefined;
    void client.end().catch(() => undefined);
    this.log.warn({ event: "store.feed_lost" }, "change feed connection lost; reconnecting");
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect().then(
        () => {
          if (this.closed) return;
          this.log.info({ event: "store.feed_restored" }, "change feed reconnected");
          // Whatever was committed meanwhile was not announced: re-read.
          this.emit("catch_up");
        },
        () => {
          this.retryMs = Math.min(this.retryMs * 2, 5000);
          this.scheduleReconnect();
        },
      );
    }, this.retryMs);
    this.timer.unref();
  }

  /** Stops listening and closes the connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
