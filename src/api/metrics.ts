/**
 * Prometheus metrics at `GET /metrics`: requests by method, protocol and
 * code with latency histograms; outbox depth and age by state; delivery
 * attempts by outcome and SMTP reply class; open provider transports.
 * Labels never carry tenant secrets, ids or mail content.
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

  constructor(store: Store, transports: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: "smtpgate_process_" });
    new Gauge({
      name: "smtpgate_outbox_mails",
      help: "Mails in the outbox by state.",
      labelNames: ["state"],
      registers: [this.registry],
      async collect() {
        const counts = await store.countMails().catch(() => ({}) as Record<string, number>);
        for (const state of ["queued", "sending", "sent", "failed"]) this.set({ state }, counts[state] ?? 0);
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
        this.set(transports());
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
