/**
 * SMTP servers that misbehave in time rather than in content, for delivery
 * tests: one that holds back its reply to DATA (so a test can act while mails
 * are in flight), and one that accepts connections and never greets.
 */
import net from "node:net";
import { SMTPServer } from "smtp-server";

/** One mail the slow sink took in. */
export interface Arrival {
  readonly subject: string;
  readonly messageId: string;
  readonly to: readonly string[];
  /** True once the sink sent its reply to the DATA. */
  answered: boolean;
}

/** A running slow sink, without AUTH or TLS. */
export interface SlowSink {
  readonly hostPort: string;
  readonly port: number;
  /** Every mail whose DATA arrived, in order, answered or not. */
  readonly arrivals: Arrival[];
  /** How long to hold the reply to a mail's DATA, ms; may be changed while running. */
  replyDelayMs: (arrival: Arrival) => number;
  stop(): Promise<void>;
}

/** Starts a slow sink on a free loopback port. */
export async function startSlowSink(replyDelayMs: (arrival: Arrival) => number): Promise<SlowSink> {
  const arrivals: Arrival[] = [];
  const sink = { replyDelayMs };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["AUTH", "STARTTLS"],
    disableReverseLookup: true,
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const arrival: Arrival = {
          subject: headerOf(raw, "subject"),
          messageId: headerOf(raw, "message-id"),
          to: session.envelope.rcptTo.map((r) => r.address),
          answered: false,
        };
        arrivals.push(arrival);
        setTimeout(() => {
          arrival.answered = true;
          callback(null, "queued");
        }, sink.replyDelayMs(arrival));
      });
    },
  });
  // A client killed mid-session makes smtp-server report the reset; expected here.
  server.on("error", () => {});
  const port = await new Promise<number>((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve((server.server.address() as net.AddressInfo).port));
  });
  return Object.assign(sink, {
    hostPort: `127.0.0.1:${port}`,
    port,
    arrivals,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

function headerOf(raw: string, name: string): string {
  const end = raw.indexOf("\r\n\r\n");
  const match = new RegExp(`^${name}:[ \\t]*(.*)$`, "im").exec(end < 0 ? raw : raw.slice(0, end));
  return match?.[1].trim() ?? "";
}

/** A TCP server that accepts connections and never says a word. */
export interface SilentServer {
  readonly hostPort: string;
  /** Connections accepted so far. */
  connectionCount(): number;
  /** Connections accepted and not yet closed. */
  openConnections(): number;
  /** Closes the listener and every connection it holds. */
  stop(): Promise<void>;
}

/** Starts a silent server on a free loopback port. */
export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => sockets.delete(socket));
  });
  const port = await new Promise<number>((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port));
  });
  return {
    hostPort: `127.0.0.1:${port}`,
    connectionCount: () => accepted,
    openConnections: () => sockets.size,
    stop: () => {
      sockets.forEach((socket) => socket.destroy());
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
