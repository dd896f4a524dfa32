/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge).
 *
 * Node's HTTP/2 server only falls back to HTTP/1.1 under TLS (ALPN), so
 * without TLS we look at the first bytes of each connection: the HTTP/2
 * client preface goes to the HTTP/2 server, anything else to the HTTP/1.1
 * server. The bytes read are put back before handing the socket over.
 *
 * One port serves every tenant, so what one client may hold open is bounded
 * (ConnectionLimits): connections in all, streams per HTTP/2 session, how
 * long an HTTP/2 session may sit idle, and how long a request may take to
 * arrive. HTTP/1.1 gets the same request deadline from Node's own timeouts.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** How long a connection may take to send enough bytes to be routed, in ms. */
const sniffTimeoutMs = 10_000;

/** What one client may hold open on the port. */
export interface ConnectionLimits {
  /** TCP connections open at once, both protocols together; more are closed as they arrive. */
  readonly maxConnections: number;
  /** Streams one HTTP/2 session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxStreamsPerSession: number;
  /** An HTTP/2 session without an open stream for this long is closed with GOAWAY, ms. */
  readonly sessionIdleMs: number;
  /**
   * A request must have arrived whole, headers and body, this long after it
   * began, ms; else its HTTP/2 stream is reset (CANCEL) or its HTTP/1.1
   * connection closed (Node's requestTimeout). Answers may take longer.
   */
  readonly requestMs: number;
}

/**
 * Defaults: room for many clients and for gRPC channels that keep a session
 * open between calls, none for a client that parks streams or connections.
 * Node's own HTTP/2 default would allow 2^32-1 streams per session.
 */
export const defaultConnectionLimits: ConnectionLimits = {
  maxConnections: 10_000,
  maxStreamsPerSession: 256,
  sessionIdleMs: 5 * 60_000,
  requestMs: 60_000,
};

/** Where to listen, and the limits. */
export interface ListenOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly limits?: Partial<ConnectionLimits>;
}

/** The request listener both servers share. */
export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** A listening dual-protocol server. */
export interface DualServer {
  readonly tcp: net.Server;
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  /**
   * Stops accepting, ends idle HTTP/1.1 keep-alives and asks HTTP/2 sessions
   * to finish (GOAWAY); requests still running after `graceMs` are cut off.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Decides from the bytes seen so far: "h2", "http1", or undefined when more
 * bytes are needed. Exported for tests.
 */
export function classifyPrefix(bytes: Buffer): "h2" | "http1" | undefined {
  const n = Math.min(bytes.length, preface.length);
  if (!bytes.subarray(0, n).equals(preface.subarray(0, n))) return "http1";
  return bytes.length >= preface.length ? "h2" : undefined;
}

/**
 * Creates the servers and listens on `options.host`:`options.port`.
 * Resolves once listening.
 */
export async function listenDual(handler: RequestHandler, options: ListenOptions): Promise<DualServer> {
  const limits = { ...defaultConnectionLimits, ...options.limits };
  // Node checks HTTP/1.1 request deadlines on a timer (30 s by default); a
  // quarter of the deadline keeps a short one close to what it says.
  const connectionsCheckingInterval = Math.min(30_000, Math.max(50, limits.requestMs / 4));
  const http1 = http.createServer({ requestTimeout: limits.requestMs, connectionsCheckingInterval }, handler as http.RequestListener);
  http1.headersTimeout = Math.min(http1.headersTimeout, limits.requestMs);
  const h2 = http2.createServer(
    { settings: { maxConcurrentStreams: limits.maxStreamsPerSession } },
    handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    closeWhenIdle(s, limits.sessionIdleMs);
  });
  h2.on("stream", (stream) => resetUnlessArrived(stream, limits.requestMs));

  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    route(socket, http1, h2);
  });
  tcp.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(options.port, options.host, () => resolve());
  });
  // The HTTP/1.1 server never listens itself, but Node starts its connection
  // tracking on "listening". Without it closeIdleConnections() does nothing,
  // so close() waits for clients to drop keep-alive sockets, and headersTimeout
  // and requestTimeout are never enforced.
  http1.emit("listening");

  return {
    tcp,
    http1,
    http2: h2,
    close: (graceMs = 5000) => closeAll({ tcp, http1, sessions, sockets }, graceMs),
  };
}

/** Closes `session` (GOAWAY, open streams finish) once it has had no open stream for `idleMs`. */
function closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => session.close(), idleMs);
    timer.unref();
  };
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
  arm();
}

/**
 * Resets `stream` with CANCEL if the client has not finished sending its
 * request `requestMs` after it began. A client that half-closed (every
 * unary and server-streaming call, once sent) is never reset, however long
 * the answer takes.
 */
function resetUnlessArrived(stream: http2.ServerHttp2Stream, requestMs: number): void {
  const timer = setTimeout(() => {
    if (!stream.closed && stream.state.remoteClose === 0) stream.close(http2.constants.NGHTTP2_CANCEL);
  }, requestMs);
  timer.unref();
  stream.once("close", () => clearTimeout(timer));
}

function route(socket: net.Socket, http1: http.Server, h2: http2.Http2Server): void {
  let seen = Buffer.alloc(0);
  socket.setTimeout(sniffTimeoutMs, () => socket.destroy());
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const kind = classifyPrefix(seen);
    if (!kind) return;
    socket.off("data", onData);
    socket.setTimeout(0);
    // Paused with the bytes back in its buffer: the HTTP/2 session drains
    // that buffer into its native parser before reading the handle itself,
    // and must be the only reader from then on; HTTP/1.1 wants it flowing.
    socket.pause();
    socket.unshift(seen);
    if (kind === "h2") {
      h2.emit("connection", socket);
    } else {
      // http.Server turns Nagle off only on sockets it accepts itself (its
      // noDelay default); this one came through us. HTTP/2 sets it on its own.
      socket.setNoDelay(true);
      http1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

interface Open {
  readonly tcp: net.Server;
  readonly http1: http.Server;
  readonly sessions: Set<http2.ServerHttp2Session>;
  readonly sockets: Set<net.Socket>;
}

async function closeAll(open: Open, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => open.tcp.close(() => resolve()));
  open.http1.closeIdleConnections();
  // Node 20's HTTP/2 server keeps open sessions alive on close(); end them.
  for (const session of open.sessions) session.close();
  open.http1.close();
  const deadline = setTimeout(() => {
    for (const session of open.sessions) session.destroy();
    for (const socket of open.sockets) socket.destroy();
  }, graceMs);
  await closed;
  clearTimeout(deadline);
}
