/**
 * The stream's HTTP side: `GET /health`, and the WebSocket upgrade at /api/v1/stream, admitted only with an allowed
 * Origin (or none: not a browser) and a ticket that has not been used, issued for a session that is not signed out.
 * The ticket (POST /api/v1/stream/ticket) is taken with GETDEL on the SHA-256 of its text, so it works once; it
 * expires on its own after ~30 s. A logout within those 30 s revokes the session but leaves its tickets in place, so
 * the session's revocation key is checked too, and the hub watches the session for the logout's notice from before
 * that read until the socket is registered under its session (StreamHub.watchSession). A logout recorded before the
 * read is found by it; one recorded after sends its notice after that (functions/routes/auth.ts), which the watch
 * sees while the upgrade is answered (refused as well) and the registration once it is (the socket closed, 4401).
 * A ticket that is not a ticket's shape is refused before any of it, so junk upgrades cost no Redis command; and a
 * user with maxConnectionsPerUser sockets open here is refused 429, once the ticket said whose it is.
 *
 * A stop (`close`) stops accepting first, so no socket opens after it began: an upgrade still checking its ticket is
 * answered 503. Then every socket is closed with 1001, and any whose client has not finished the close handshake
 * after STOP_GRACE_MS is cut.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type ServerOptions, type WebSocket } from "ws";
import { CLOSE_CODES } from "../client/protocol.ts";
import { z } from "zod";
import { STREAM_TICKET_PATTERN, streamTicketHash } from "../functions/auth/stream-tickets.ts";
import { API_ERRORS } from "../functions/errors.ts";
import type { Logger } from "../platform/log.ts";
import type { Ticket } from "./connection.ts";
import { silentDropWithinMs, type SessionWatch, type StreamHub } from "./hub.ts";

export const STREAM_PATH = "/api/v1/stream";

/**
 * Where the stream is, told with every 404 on its port: the likely mistakes (a trailing slash, the bare host, the
 * path copied without its ticket) are one step from the right address, and the ticket's `url` is that address. The
 * ticket route is named as the API's because a reader already on the wrong host would post it here, to another 404.
 */
export const WHERE_THE_STREAM_IS =
  `The stream is a WebSocket at ${STREAM_PATH}: open the url that the API's POST /api/v1/stream/ticket answers ` +
  "(the API has its own port or host, not this one), with ?ticket=<ticket>.";

/** Paths are shown up to this many characters in an answer. */
const SHOWN_PATH = 100;

/** A 404's message on the stream's port: what was asked for (cut to SHOWN_PATH), then where the stream is. */
function notHere(what: string, path: string): string {
  const shown = path.length > SHOWN_PATH ? `${path.slice(0, SHOWN_PATH)}…` : path;
  return `${what} ${shown}. ${WHERE_THE_STREAM_IS}`;
}

/**
 * How long an idle keep-alive connection stays open: above the load balancer's idle timeout (60 s, infra/plan.ts
 * streamLoadBalancer), so the load balancer, not this server, closes the connections it pools. Node's default (5 s)
 * would close them first, and AWS documents that a target closing its side can meet a request the load balancer
 * already sent on it, which the client then gets as a 502 (ELB, Application Load Balancers, "Connection idle
 * timeout"). WebSockets are not affected: after the upgrade the socket is ws's.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/**
 * Above the keep-alive timeout, the usual pairing behind a load balancer: the header timer never ends a pooled
 * connection before the keep-alive timeout would.
 */
export const HEADERS_TIMEOUT_MS = 66_000;

/**
 * How long an upgrade waits for its ticket check before it is answered 503: commands wait for Redis while it cannot
 * be reached (platform/redis.ts), and neither the client nor its socket may be held for that long. Ample for two
 * round trips; a client answered 503 tries again with a new ticket.
 */
export const TICKET_CHECK_TIMEOUT_MS = 2_500;

/**
 * Retry-After of an upgrade refused because this server is stopping: the load balancer sends the next attempt to
 * another replica (or this one's replacement), which has nothing to wait for.
 */
export const STOPPING_RETRY_AFTER_S = 1;

/**
 * How long a stop waits for clients to answer its close frames before it cuts their sockets: ws would wait its own
 * close timeout (tens of seconds), as long as ECS waits between SIGTERM and SIGKILL.
 */
export const STOP_GRACE_MS = 1_000;

/**
 * How long a socket this server closed (4401, 4008, 4029, 1011, 1009 …) waits for its client's close frame before ws
 * cuts it: heartbeatMs, at most ws's default 30 s. Until its 'close' the socket keeps its user's place
 * (maxConnectionsPerUser) and its send backlog, and the 429's Retry-After (silentDropWithinMs) promises that a socket
 * which stopped answering is gone by then. Counted from the close, not from when the close frame has gone out: a 4008
 * client still reading its backlog may be cut first, and sees 1006, which it treats as 4008 (reconnect, resume).
 */
export function closeTimeoutMs(heartbeatMs: number): number {
  return Math.min(heartbeatMs, 30_000);
}

export interface StreamServer {
  readonly http: Server;
  /** Stops accepting, closes every socket (1001) and stops listening; once (a second call gets the same promise). */
  close(): Promise<void>;
}

export interface StreamServerDeps {
  readonly hub: StreamHub;
  /** GETDEL of a ticket's key: its JSON value, or null when unknown, used or expired. */
  readonly takeTicket: (ticketHash: string) => Promise<string | null>;
  /** Whether the session a ticket names was signed out (its revocation key, functions/auth/sessions.ts). */
  readonly sessionRevoked: (userId: string, sessionId: string) => Promise<boolean>;
  readonly allowedOrigins: ReadonlySet<string>;
  readonly maxFrameBytes: number;
  readonly maxConnectionsPerUser: number;
  /** A socket that stopped answering is dropped within about twice this: the Retry-After of TOO_MANY_CONNECTIONS. */
  readonly heartbeatMs: number;
  readonly log: Logger;
}

const ticketSchema = z.object({
  userId: z.string().min(1).max(64),
  sessionId: z.string().min(1).max(64),
  sessionExpiresAtMs: z.number(),
});

export function createStreamServer(deps: StreamServerDeps): StreamServer {
  // A frame over maxFrameBytes closes the socket with 1009 (ws does it, before buffering the frame). closeTimeout is
  // taken by ws (8.23: lib/websocket-server.js) but not listed in @types/ws: hence the options' own type. A client's
  // WebSocket pings are answered by the hub, counted against maxMessagesPerSec as every client frame is (4029 past
  // it): ws's own answers count for nothing, and it cuts a socket with 60 of them pending (1006, no reason given).
  const options: ServerOptions & { closeTimeout: number } = {
    noServer: true,
    maxPayload: deps.maxFrameBytes,
    perMessageDeflate: false,
    autoPong: false,
    closeTimeout: closeTimeoutMs(deps.heartbeatMs),
  };
  const wss = new WebSocketServer(options);
  /** Upgrade sockets not handed to ws (their ticket check under way, or refused and not closed yet): a stop cuts them. */
  const upgrading = new Set<Duplex>();
  /** Of those, the ones whose ticket check is under way: a stop answers them. */
  const checking = new Set<Duplex>();
  let stopping = false;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/health" && (req.method === "GET" || req.method === "HEAD")) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok" }));
      return;
    }
    const upgrade = path === STREAM_PATH;
    res
      .writeHead(upgrade ? 426 : 404, { "content-type": "application/json" })
      .end(
        JSON.stringify(
          upgrade
            ? { error: { code: "UPGRADE_REQUIRED", message: "Open a WebSocket here, with ?ticket=." } }
            : { error: { code: "NOT_FOUND", message: notHere(`No route ${req.method ?? ""}`, path ?? "") } },
        ),
      );
  });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    upgrading.add(socket);
    socket.once("close", () => upgrading.delete(socket));
    if (stopping) {
      refuse(socket, 503, "UNAVAILABLE", STOPPING, STOPPING_RETRY_AFTER_S);
      return;
    }
    checking.add(socket);
    // A timer rather than a race with the check: the check's answer, however late, still ends its session's watch.
    const late = setTimeout(() => {
      if (checking.delete(socket))
        unavailable(socket, deps.log, new Error(`no answer from Redis within ${TICKET_CHECK_TIMEOUT_MS} ms`));
    }, TICKET_CHECK_TIMEOUT_MS);
    admit(req, deps).then(
      (answer) => {
        clearTimeout(late);
        try {
          if (!checking.delete(socket)) return; // answered by the stop or the timer meanwhile
          if ("status" in answer) refuse(socket, answer.status, answer.code, answer.message);
          // The logout's notice came while the revocation key was read, and the read found it not yet set.
          else if (answer.watch.revoked) refuse(socket, SIGNED_OUT.status, SIGNED_OUT.code, SIGNED_OUT.message);
          // Counted here, not in admit: from here to hub.accept nothing waits (ws's handleUpgrade answers at once),
          // so two upgrades of one user checked at the same time cannot both take the last place.
          else if (!deps.hub.admits(answer.ticket.userId))
            refuse(
              socket,
              429,
              "TOO_MANY_CONNECTIONS",
              `connections: expected at most ${deps.maxConnectionsPerUser} open sockets per user on this server, received one more; close one first.`,
              Math.ceil(silentDropWithinMs(deps.heartbeatMs) / 1000),
            );
          else {
            upgrading.delete(socket);
            const { ticket } = answer;
            wss.handleUpgrade(req, socket, head, (ws) => deps.hub.accept(withTooBigReason(ws, deps), ticket));
          }
        } finally {
          // After hub.accept, which registers the socket under its session: a notice from now on finds it there.
          if ("watch" in answer) answer.watch.end();
        }
      },
      (error: unknown) => {
        clearTimeout(late);
        if (checking.delete(socket)) unavailable(socket, deps.log, error);
      },
    );
  });
  const stop = async () => {
    stopping = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of checking) refuse(socket, 503, "UNAVAILABLE", STOPPING, STOPPING_RETRY_AFTER_S);
    checking.clear();
    deps.hub.shutdown();
    const cut = setTimeout(() => {
      for (const ws of wss.clients) ws.terminate();
      for (const socket of upgrading) socket.destroy();
      server.closeAllConnections();
    }, STOP_GRACE_MS);
    await closed;
    clearTimeout(cut);
  };
  let stopped: Promise<void> | undefined;
  return { http: server, close: () => (stopped ??= stop()) };
}

const STOPPING = "The stream is stopping; try again.";

/** A ticket check that failed or got no answer in time: 503, and the client tries again with a new ticket. */
function unavailable(socket: Duplex, log: Logger, error: unknown): void {
  log.warn("upgrade_failed", { error });
  refuse(
    socket,
    503,
    "UNAVAILABLE",
    "The stream cannot check tickets right now; try again after Retry-After seconds.",
    API_ERRORS.UNAVAILABLE.retryAfterSeconds,
  );
}

type Refusal = { status: number; code: string; message: string };
type Admitted = { ticket: Ticket; watch: SessionWatch };

const SIGNED_OUT: Refusal = {
  status: 401,
  code: "INVALID_TICKET",
  message: "ticket: expected a ticket of a signed-in session, received one whose session was signed out.",
};

/**
 * ws closes the socket of a frame over maxPayload itself, with 1009 and no reason, before any of ours sees the frame:
 * its own close call on the socket is where the reason can be added.
 */
function withTooBigReason(ws: WebSocket, { maxFrameBytes }: Pick<StreamServerDeps, "maxFrameBytes">): WebSocket {
  const close = ws.close.bind(ws);
  const tooBig = `frame over maxFrameBytes (${maxFrameBytes} bytes)`;
  ws.close = (code?: number, reason?: string | Buffer) =>
    close(code, code === CLOSE_CODES.frameTooBig && reason === undefined ? tooBig : reason);
  return ws;
}

/**
 * The ticket's grant, with its session watched (the caller ends the watch), or why the upgrade is refused. The watch
 * begins before the revocation key is read: a logout records the key before it sends its notice (functions/routes/
 * auth.ts), so a notice that came before the watch began means the read finds the key.
 */
async function admit(req: IncomingMessage, deps: StreamServerDeps): Promise<Admitted | Refusal> {
  const url = requestUrl(req.url ?? "/");
  // A target Node's parser took but URL cannot (`http://[/api/v1/stream`) is no path of the stream's, as for the
  // plain HTTP handler: 404, not a failure to log and retry.
  if (url === undefined)
    return { status: 404, code: "NOT_FOUND", message: notHere("No stream at", (req.url ?? "").split("?")[0]!) };
  if (url.pathname !== STREAM_PATH)
    return { status: 404, code: "NOT_FOUND", message: notHere("No stream at", url.pathname) };
  const origin = req.headers.origin;
  if (origin !== undefined && !deps.allowedOrigins.has(origin))
    return {
      status: 403,
      code: "FORBIDDEN_ORIGIN",
      // As the API's: the developer of a frontend on another origin meets this, and is told what admits it.
      message:
        `Origin ${origin.slice(0, 100)} may not open the stream: a browser may open it only from APP_URL's origin ` +
        "or one listed in CORS_ORIGINS (set on the stream as on the API).",
    };
  const ticket = url.searchParams.get("ticket");
  // Unknown, used and expired are told apart by nobody: the ticket is gone either way.
  const invalid = (received: string) => ({
    status: 401,
    code: "INVALID_TICKET",
    message: `ticket: expected an unused ticket from POST /api/v1/stream/ticket, not older than 30 s; received ${received}.`,
  });
  if (ticket === null || ticket.length === 0) return invalid("nothing");
  if (!STREAM_TICKET_PATTERN.test(ticket))
    return {
      ...invalid(""),
      message: `ticket: expected 43 base64url characters (a ticket from POST /api/v1/stream/ticket), received ${ticket.length === 43 ? "43 characters not all base64url" : ticket.length === 1 ? "1 character" : `${ticket.length} characters`}.`,
    };
  const stored = await deps.takeTicket(streamTicketHash(ticket));
  if (stored === null) return invalid("one that is unknown, used or expired");
  const parsed = ticketSchema.safeParse(JSON.parse(stored));
  if (!parsed.success) throw new Error(`malformed ticket record: ${parsed.error.message}`);
  // A second round trip, not one script doing both: the revocation key's name comes from the ticket's value, and
  // it lives in the user's hash tag while the ticket lives in its own; a script touching a key not passed in KEYS,
  // in another cluster slot, breaks on Redis Cluster, and every script here touches one slot (contract/names.ts).
  // Nor can one pipeline carry both, as the second key is not known before the first answers.
  const watch = deps.hub.watchSession(parsed.data.sessionId);
  try {
    if (!(await deps.sessionRevoked(parsed.data.userId, parsed.data.sessionId))) return { ticket: parsed.data, watch };
  } catch (error) {
    watch.end();
    throw error;
  }
  watch.end();
  return SIGNED_OUT;
}

/** The request target as a URL, or undefined when URL cannot parse it. */
function requestUrl(target: string): URL | undefined {
  try {
    return new URL(target, "http://stream.invalid");
  } catch {
    return undefined;
  }
}

const REASONS: Readonly<Record<number, string>> = {
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  429: "Too Many Requests",
  503: "Service Unavailable",
};

/**
 * An upgrade refused with `status` and the error body; a 429 or 503 says in Retry-After when to come back. The socket
 * is destroyed once the answer is written, as ws does for its own refusals: past `'upgrade'` no server timeout covers
 * it, and a client that leaves its side open would otherwise keep it, without a ticket, for as long as it likes.
 */
function refuse(socket: Duplex, status: number, code: string, message: string, retryAfterSeconds?: number): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code, message } });
  const retryAfter = retryAfterSeconds === undefined ? "" : `Retry-After: ${retryAfterSeconds}\r\n`;
  socket.once("finish", () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retryAfter}Connection: close\r\n\r\n${body}`,
  );
}
