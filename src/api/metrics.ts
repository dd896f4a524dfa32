/**
 * Prometheus metrics at `GET /metrics`: requests by method, protocol and
 * code with latency histograms; outbox depth and age by state; delivery
 * attempts by outcome and SMTP reply class; open provider transports, and
 * per provider the pooled connections busy and the sends waiting for one.
 * Labels never carry tenant secrets or mail content; the only ids are
 * provider ids, one series per provider with an open transport.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Store } from "../store/store.js";

/** Facts about one finished RPC. */
export interface RequestSample {
  readonly method: string;
  readonly protocol: string;
  readonly code: string;
  readonly seconds: number;
}

/** Facts about one delivery attempt. */
export interface AttemptSample {
  /** sent, retry, wait or failed. */
  readonly outcome: string;
  /** "2xx", "4xx", "5xx", or "none" when no SMTP reply was seen. */
  readonly replyClass: string;
}

/** One provider's share of the delivery pool. */
export interface ProviderUsage {
  readonly providerId: string;
  readonly busyConnections: number;
  readonly waitingSends: number;
}

/** What the metrics read from the delivery pool (notify/transport-pool.ts). */
export interface PoolStats {
  readonly size: number;
  usage(): readonly ProviderUsage[];
}

/** The process's metrics, in their own registry (tests run many servers in one process). */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "smtpgate_rpc_requests_total",
    help: "Finished RPCs by method, protocol and status code.",
    labelNames: ["method", "protocol", "code"],
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: "smtpgate_rpc_duration_seconds",
    help: "RPC handling time from headers to outcome.",
    labelNames: ["method", "protocol"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  private readonly attempts = new Counter({
    name: "smtpgate_mail_attempts_total",
    help: "Delivery attempts by outcome and SMTP reply class.",
    labelNames: ["outcome", "reply_class"],
    registers: [this.registry],
  });

  constructor(store: Store, pool: PoolStats) {
    collectDefaultMetrics({ register: this.registry, prefix: "smtpgate_process_" });
    new Gauge({
      name: "smtpgate_outbox_mails",
      help: "Unfinished mails in the outbox by state (queued, sending); finished ones are counted by smtpgate_mail_attempts_total.",
      labelNames: ["state"],
      registers: [this.registry],
      async collect() {
        // Only the unfinished states: counting the retained sent and failed
        // mails would read days of history on every scrape.
        const counts = await store.countMails(["queued", "sending"]).catch(() => ({}) as Record<string, number>);
        for (const state of ["queued", "sending"]) this.set({ state }, counts[state] ?? 0);
      },
    });
    new Gauge({
      name: "smtpgate_outbox_oldest_age_seconds",
      help: "Age of the oldest mail in each unfinished state.",
      labelNames: ["state"],
      registers: [this.registry],
      async collect() {
        const oldest = await store.oldestMails().catch(() => ({}) as Record<string, Date>);
        for (const state of ["queued", "sending"]) {
          const at = oldest[state];
          this.set({ state }, at ? Math.max(0, (Date.now() - at.getTime()) / 1000) : 0);
        }
      },
    });
    new Gauge({
      name: "smtpgate_smtp_transports",
      help: "Pooled SMTP transports open, one per provider in use.",
      registers: [this.registry],
      collect() {
        this.set(pool.size);
      },
    });
    this.poolGauge(pool, "smtpgate_smtp_pool_busy_connections", "Pooled SMTP connections sending right now, by provider.", (u) => u.busyConnections);
    this.poolGauge(pool, "smtpgate_smtp_pool_waiting_sends", "Sends waiting for a pooled SMTP connection, by provider.", (u) => u.waitingSends);
  }

  /** A gauge with one series per provider with an open transport, valued by `pick`. */
  private poolGauge(pool: PoolStats, name: string, help: string, pick: (usage: ProviderUsage) => number): void {
    new Gauge({
      name,
      help,
      labelNames: ["provider_id"],
      registers: [this.registry],
      collect() {
        // Providers whose transport closed drop out instead of staying at their last value.
        this.reset();
        for (const u of pool.usage()) this.set({ provider_id: u.providerId }, pick(u));
      },
    });
  }

  /** Records a finished RPC. */
  recordRequest(s: RequestSample): void {
    this.requests.inc({ method: s.method, protocol: s.protocol, code: s.code });
    this.latency.observe({ method: s.method, protocol: s.protocol }, s.seconds);
  }

  /** Records a delivery attempt. */
  recordAttempt(s: AttemptSample): void {
    this.attempts.inc({ outcome: s.outcome, reply_class: s.replyClass });
  }

  /** Answers `GET /metrics` in Prometheus' text format. */
  async serve(res: http.ServerResponse | http2.Http2ServerResponse): Promise<void> {
    const body = await this.registry.metrics();
    res.writeHead(200, { "content-type": this.registry.contentType });
    res.end(body);
  }
}
