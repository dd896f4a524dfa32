/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge).
 *
 * Node's HTTP/2 server only falls back to HTTP/1.1 under TLS (ALPN), so
 * without TLS we look at the first bytes of each connection: the HTTP/2
 * client preface goes to the HTTP/2 server, anything else to the HTTP/1.1
 * server. The bytes read are put back before handing the socket over.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** How long a connection may take to send enough bytes to be routed, in ms. */
const sniffTimeoutMs = 10_000;

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
 * Creates the servers and listens on `host`:`port` (0 picks a free port).
 * Resolves once listening.
 */
export async function listenDual(handler: RequestHandler, host: string, port: number): Promise<DualServer> {
  const http1 = http.createServer(handler as http.RequestListener);
  const h2 = http2.createServer({}, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    route(socket, http1, h2);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => resolve());
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
