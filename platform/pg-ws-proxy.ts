/**
 * A WebSocket→TCP proxy so the functions' Neon driver `Pool` (which speaks the Postgres wire protocol over a
 * WebSocket) can reach a plain Postgres: the local stack, CI and tests (functions/postgres.ts). The containers
 * connect over TCP and never use it. Each WebSocket to `/v1?address=host:port` gets its own TCP
 * socket to that address; raw bytes flow both ways as binary frames, and when either side closes or fails the
 * other is closed too.
 *
 * Contract:
 * - Only this process's own client may connect. The Postgres behind it is often a passwordless superuser (npm start's,
 *   trust auth), and any web page the developer has open can open a WebSocket to 127.0.0.1 (no CORS, no mixed-content
 *   block for loopback). So an upgrade that carries an `Origin` header, which browsers always send and Node's `ws`
 *   client never does unless told to, is refused with HTTP 403; and one without this proxy's `secret` (random per
 *   proxy, kept in memory, never logged) in its query is refused with HTTP 401, so another local process that finds
 *   the port cannot use it either. Each refusal logs `pg_proxy_refused` at warn with its `reason`.
 * - Only addresses in `allow` are dialled (exact `host:port` after lower-casing; no DNS equivalence), so this is
 *   never an open proxy that lets a WebSocket client reach arbitrary hosts. Anything else gets HTTP 403.
 * - It listens on 127.0.0.1 by default on an ephemeral port; `close()` ends every open connection.
 * - Back-pressure both ways: a slow Postgres pauses reading the WebSocket, a slow WebSocket pauses the TCP socket,
 *   so a large result never piles up in the proxy's memory.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { Logger } from "./log.ts";

export interface PgWsProxy {
  readonly port: number;
  /** What a client sends as the `secret` query parameter of its upgrade; without it the proxy answers 401. */
  readonly secret: string;
  close(): Promise<void>;
}

export interface PgWsProxyOptions {
  /** `host:port` addresses the proxy may dial; typically just the configured database's. */
  allow: readonly string[];
  log: Logger;
  /** Interface to listen on. Default 127.0.0.1: the proxy serves this process, not the network. */
  listenHost?: string;
  /** Largest WebSocket message accepted from a client. The driver sends a query with its parameters in one message. */
  maxPayloadBytes?: number;
}

/** TCP reads pause while this much is waiting to go out on the WebSocket. */
const WS_HIGH_WATER_BYTES = 4 * 1024 * 1024;

export async function startPgWsProxy(options: PgWsProxyOptions): Promise<PgWsProxy> {
  const allowed = new Set(
    options.allow.map((a) => {
      const parsed = parseAddress(a);
      if (parsed === undefined) throw new Error(`pg ws proxy: bad allow-list address "${a}" (want host:port)`);
      return parsed.key;
    }),
  );
  const log = options.log;
  const secret = randomBytes(32).toString("base64url");
  const open = new Set<{ ws: WebSocket; tcp: Socket }>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes ?? 64 * 1024 * 1024 });
  const server = createServer((_req, res) => {
    res.writeHead(426, { "content-type": "text/plain" }).end("WebSocket upgrade required\n");
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://proxy.invalid");
    const target = targetOf(url);
    const refusal = refusalOf(req, url, secret, target === undefined ? false : allowed.has(target.key));
    if (refusal !== undefined || target === undefined) {
      const { reason, status, text } = refusal ?? ADDRESS_REFUSAL;
      // Logged at warn: a refusal means a misconfigured client, a web page or another process probing the port.
      // The path and address, not the URL: the URL may carry the secret.
      log.warn("pg_proxy_refused", {
        reason,
        status,
        path: url.pathname,
        address: url.searchParams.get("address") ?? "",
        ...(req.headers.origin === undefined ? {} : { origin: req.headers.origin }),
      });
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const tcp = connect({ host: target.host, port: target.port });
      const pair = { ws, tcp };
      open.add(pair);
      pipe(ws, tcp, log.child({ address: target.key }), () => open.delete(pair));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, options.listenHost ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("pg ws proxy: no TCP address after listen");
  log.info("pg_proxy_started", { port: address.port, allow: [...allowed] });

  return {
    port: address.port,
    secret,
    close: async () => {
      for (const { ws, tcp } of open) {
        ws.terminate();
        tcp.destroy();
      }
      open.clear();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

function pipe(ws: WebSocket, tcp: Socket, log: Logger, done: () => void) {
  tcp.setNoDelay(true);
  // Bytes that arrive before the TCP connect completes are buffered by the socket and sent once it connects.
  ws.on("message", (data: RawData) => {
    if (!tcp.write(toBuffer(data))) ws.pause();
  });
  tcp.on("drain", () => ws.resume());
  tcp.on("data", (chunk: Buffer) => {
    ws.send(chunk, { binary: true }, () => {
      if (tcp.isPaused() && ws.bufferedAmount < WS_HIGH_WATER_BYTES / 2) tcp.resume();
    });
    if (ws.bufferedAmount >= WS_HIGH_WATER_BYTES) tcp.pause();
  });

  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done();
  };
  ws.on("close", () => {
    // The client hung up: let Postgres see an orderly end of the connection.
    tcp.end();
    finish();
  });
  ws.on("error", (err: Error) => {
    log.debug("pg_proxy_ws_error", { error: err.message });
    tcp.destroy();
    finish();
  });
  tcp.on("error", (err: Error) => log.debug("pg_proxy_tcp_error", { error: err.message }));
  tcp.on("close", (hadError: boolean) => {
    // 1011 tells the driver the upstream failed; a clean end from Postgres is a normal close.
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
      if (hadError) ws.close(1011, "upstream error");
      else ws.close(1000);
    }
    finish();
  });
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

interface Refusal {
  /** `browser_origin`, `no_secret` (missing or wrong) or `address` (not allow-listed, or not a proxy request). */
  reason: "browser_origin" | "no_secret" | "address";
  status: 401 | 403;
  text: string;
}

const ADDRESS_REFUSAL: Refusal = { reason: "address", status: 403, text: "Forbidden" };

/** Why an upgrade is refused, checked in this order; undefined when it may go through. */
function refusalOf(req: IncomingMessage, url: URL, secret: string, allowedTarget: boolean): Refusal | undefined {
  // `Sec-WebSocket-Origin` is what the old (version 8) handshake called Origin.
  if (req.headers.origin !== undefined || req.headers["sec-websocket-origin"] !== undefined) {
    return { reason: "browser_origin", status: 403, text: "Forbidden" };
  }
  const given = Buffer.from(url.searchParams.get("secret") ?? "");
  const expected = Buffer.from(secret);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { reason: "no_secret", status: 401, text: "Unauthorized" };
  }
  return allowedTarget ? undefined : ADDRESS_REFUSAL;
}

/**
 * The dial target of an upgrade request: `/v1?address=host:port&secret=…`, as the driver's `wsProxy` function builds
 * it (functions/postgres.ts).
 */
function targetOf(url: URL) {
  if (url.pathname !== "/v1") return undefined;
  const address = url.searchParams.get("address");
  return address === null ? undefined : parseAddress(address);
}

/** `host:port`, `[v6]:port`; the host lower-cased so the allow-list compares names consistently. */
export function parseAddress(address: string): { host: string; port: number; key: string } | undefined {
  const colon = address.lastIndexOf(":");
  if (colon <= 0) return undefined;
  let host = address.slice(0, colon).toLowerCase();
  const portText = address.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65_535) return undefined;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "" || /[\s/?#@]/.test(host)) return undefined;
  return { host, port, key: `${host.includes(":") ? `[${host}]` : host}:${port}` };
}
