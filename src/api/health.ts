/**
 * Health: the gRPC health service (Check and Watch) and the plain
 * `GET /healthz` probe. Serving means the store answers and the server is
 * not shutting down; the store is asked at most once per second.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type http from "node:http";
import type http2 from "node:http2";
import type { Store } from "../store/store.js";
import { HealthCheckResponse_ServingStatus as Status, type Health } from "../gen/grpc/health/v1/health_pb.js";

/** How long a store probe result is reused, ms. */
const probeCacheMs = 1000;

/** How often Watch re-checks, ms. */
const watchIntervalMs = 2000;

/** Tracks whether this server can serve. */
export class HealthMonitor {
  private draining = false;
  private last: { at: number; ok: boolean } | undefined;

  constructor(
    private readonly store: Store,
    /** Names of the services this server offers (for Check with a service name). */
    private readonly services: ReadonlySet<string>,
  ) {}

  /** From now on, report NOT_SERVING (shutdown has begun). */
  drain(): void {
    this.draining = true;
  }

  /** SERVING, or NOT_SERVING while draining or when the store fails. */
  async status(): Promise<Status> {
    if (this.draining) return Status.NOT_SERVING;
    const now = performance.now();
    if (!this.last || now - this.last.at > probeCacheMs) {
      const ok = await this.store.countInstances().then(() => true, () => false);
      this.last = { at: now, ok };
    }
    return this.last.ok ? Status.SERVING : Status.NOT_SERVING;
  }

  /** True for "" (the whole server) and the names of our services. */
  knows(service: string): boolean {
    return service === "" || this.services.has(service);
  }
}

/** The grpc.health.v1.Health implementation. */
export function createHealthService(monitor: HealthMonitor): ServiceImpl<typeof Health> {
  return {
    async check(req) {
      if (!monitor.knows(req.service)) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status: await monitor.status() };
    },
    async *watch(req, ctx) {
      if (!monitor.knows(req.service)) {
        yield { status: Status.SERVICE_UNKNOWN };
        return;
      }
      let previous: Status | undefined;
      while (!ctx.signal.aborted) {
        const status = await monitor.status();
        if (status !== previous) yield { status };
        previous = status;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, watchIntervalMs);
          ctx.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve(undefined);
          }, { once: true });
        });
      }
    },
  };
}

/** Answers `GET /healthz`: 200 when serving, 503 otherwise, a JSON body either way. */
export async function serveHealthz(
  monitor: HealthMonitor,
  res: http.ServerResponse | http2.Http2ServerResponse,
): Promise<void> {
  const status = await monitor.status();
  const body = JSON.stringify({ status: Status[status] });
  res.writeHead(status === Status.SERVING ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(body);
}
