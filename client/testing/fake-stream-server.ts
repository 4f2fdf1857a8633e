/**
 * Test support: a stand-in for the API's ticket route and the stream server (docs/stream.md), faithful to the
 * protocol and nothing else, so the client's own behaviour (reconnects, resume, resync, backoff, session end) can
 * be driven exactly: the test decides the snapshot, publishes events, drops or silences connections, forgets old
 * events, refuses tickets. One user; the real stream server is tested against the same client end to end.
 *
 * - `POST /api/v1/stream/ticket` with `Authorization: Bearer <token>` or the `session=<token>` cookie → 201
 *   `{"ticket", "url", "expiresAt"}`; 401 without it or after `endSession()`.
 * - `GET /api/v1/stream?ticket=` upgrades once per ticket (401 otherwise), then: welcome; subscribe → subscribed
 *   (echo); private without `since` → snapshot, with `since` → the events after it, or a resync when they are
 *   gone (before `retainFrom`) or ahead; every published event to private subscribers, each followed by a summary;
 *   ping → pong; a heartbeat every heartbeatMs; a frame it cannot read → an error frame; while `refuseSubscribes`
 *   is on, a subscribe → an error frame echoing its id; a second private subscribe → ALREADY_SUBSCRIBED, as the
 *   stream server answers it.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { ClientFrame, EventFrame, PrivateSnapshot, ServerFrame, StreamLimits } from "../protocol.ts";

/** An event as a test publishes it: the fake assigns seq and time. */
export type PublishedEvent = EventFrame extends infer F
  ? F extends unknown
    ? Omit<F, "type" | "seq" | "time">
    : never
  : never;

export interface FakeConnection {
  readonly socket: WebSocket;
  /** Every frame the client sent, parsed. */
  readonly received: ClientFrame[];
  privateSubscribed: boolean;
}

export interface FakeStreamServer {
  readonly apiUrl: string;
  readonly token: string;
  readonly userId: string;
  readonly connections: FakeConnection[];
  /** Ticket requests answered so far, with when each came (ms). */
  readonly ticketRequests: number[];
  /** The state a snapshot or resync shows; the test keeps it consistent with the events it publishes. */
  snapshot: PrivateSnapshot;
  /** Appends an event to the log (next seq) and sends it, and a summary, to every private subscriber. */
  publish(event: PublishedEvent): number;
  /** Sends a frame as is to every open connection. */
  broadcast(frame: ServerFrame | Record<string, unknown>): void;
  /** Events below this seq are forgotten: a resume from before them gets a resync. */
  retainFrom(seq: number): void;
  /**
   * Ticket requests answer this status until called with undefined; with Retry-After when given (seconds, or a
   * string sent as is, such as an HTTP date).
   */
  refuseTickets(status: number | undefined, retryAfter?: number | string): void;
  /** Subscribes are answered with an error frame of this code (echoing their id) until called with undefined. */
  refuseSubscribes(code: string | undefined): void;
  /** Sends nothing more (no heartbeats, no pongs) on current and later connections until called with false. */
  silence(on: boolean): void;
  /** Closes every connection with a close frame. */
  closeAll(code: number, reason: string): void;
  /** Cuts every connection without a close frame, as a crash would. */
  terminateAll(): void;
  /** The session is over: open sockets close 4401, tickets are refused 401. */
  endSession(): void;
  close(): Promise<void>;
}

export async function startFakeStreamServer(
  options: {
    heartbeatMs?: number;
    /** What the welcome says the heartbeat is, when it is not the period it keeps (a server misconfigured). */
    welcomeHeartbeatMs?: number;
    userId?: string;
    limits?: Partial<StreamLimits>;
  } = {},
): Promise<FakeStreamServer> {
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const userId = options.userId ?? "u-fake";
  const token = randomBytes(16).toString("hex");
  const tickets = new Set<string>();
  const events: EventFrame[] = [];
  let retainedFrom = 1;
  let refusal: { status: number; retryAfter: number | string | undefined } | undefined;
  let silent = false;
  let subscribeRefusal: string | undefined;
  let sessionEnded = false;
  const connections: FakeConnection[] = [];
  const ticketRequests: number[] = [];
  const wss = new WebSocketServer({ noServer: true });

  const send = (connection: FakeConnection, frame: unknown) => {
    if (!silent && connection.socket.readyState === connection.socket.OPEN)
      connection.socket.send(JSON.stringify(frame));
  };
  const lastSeq = () => events.at(-1)?.seq ?? fake.snapshot.seq;
  const summaryFrame = (seq: number) => ({ type: "summary", seq, ...fake.snapshot.summary });
  const snapshotFrame = (type: "snapshot" | "resync", extra: Record<string, unknown> = {}) => ({
    type,
    ...extra,
    ...fake.snapshot,
  });

  const server: Server = createServer((req, res) => answerTicket(req, res));
  const answerTicket = (req: IncomingMessage, res: ServerResponse) => {
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "POST" || req.url !== "/api/v1/stream/ticket")
      return json(404, { error: { code: "NOT_FOUND", message: "Not found." } });
    ticketRequests.push(Date.now());
    const signedIn =
      req.headers.authorization === `Bearer ${token}` || (req.headers.cookie ?? "").includes(`session=${token}`);
    if (!signedIn || sessionEnded) return json(401, { error: { code: "UNAUTHENTICATED", message: "Sign in first." } });
    if (refusal !== undefined)
      return json(
        refusal.status,
        { error: { code: "UNAVAILABLE", message: "Refused by the test." } },
        refusal.retryAfter === undefined ? {} : { "retry-after": String(refusal.retryAfter) },
      );
    const ticket = randomBytes(32).toString("base64url");
    tickets.add(ticket);
    const { port } = server.address() as AddressInfo;
    json(201, {
      ticket,
      url: `ws://127.0.0.1:${port}/api/v1/stream`,
      expiresAt: new Date(Date.now() + 30_000).toISOString(),
    });
  };

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://fake");
    const ticket = url.searchParams.get("ticket");
    if (url.pathname !== "/api/v1/stream" || ticket === null || !tickets.delete(ticket)) {
      const body = JSON.stringify({ error: { code: "INVALID_TICKET", message: "Unknown, used or expired ticket." } });
      socket.end(
        `HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws));
  });

  const accept = (socket: WebSocket) => {
    const connection: FakeConnection = { socket, received: [], privateSubscribed: false };
    connections.push(connection);
    send(connection, {
      type: "welcome",
      userId,
      heartbeatMs: options.welcomeHeartbeatMs ?? heartbeatMs,
      limits: { maxMessagesPerSec: 20, maxSubscriptions: 20, maxFrameBytes: 4096, ...options.limits },
    });
    const heartbeat = setInterval(
      () => send(connection, { type: "heartbeat", time: new Date().toISOString() }),
      heartbeatMs,
    );
    socket.on("close", () => clearInterval(heartbeat));
    socket.on("message", (data) => {
      let frame: ClientFrame;
      try {
        frame = JSON.parse(textOf(data)) as ClientFrame;
      } catch {
        send(connection, { type: "error", code: "MALFORMED_FRAME", message: "The frame is not JSON." });
        return;
      }
      connection.received.push(frame);
      receive(connection, frame);
    });
  };

  const receive = (connection: FakeConnection, frame: ClientFrame) => {
    if (frame.op === "ping")
      return send(connection, { type: "pong", ...(frame.id === undefined ? {} : { id: frame.id }) });
    const { op, ...echo } = frame;
    if (op === "subscribe" && subscribeRefusal !== undefined) {
      const id = frame.id === undefined ? {} : { id: frame.id };
      return send(connection, { type: "error", ...id, code: subscribeRefusal, message: "Refused by the test." });
    }
    if (op === "subscribe" && frame.channel === "private" && connection.privateSubscribed) {
      const id = frame.id === undefined ? {} : { id: frame.id };
      const message = "Already subscribed to the private channel.";
      return send(connection, { type: "error", ...id, code: "ALREADY_SUBSCRIBED", field: "channel", message });
    }
    send(connection, { type: op === "subscribe" ? "subscribed" : "unsubscribed", ...echo });
    if (frame.channel !== "private") return;
    connection.privateSubscribed = frame.op === "subscribe";
    if (frame.op !== "subscribe") return;
    if (frame.since === undefined) return send(connection, snapshotFrame("snapshot"));
    if (frame.since > lastSeq()) return send(connection, snapshotFrame("resync", { reason: "ahead" }));
    if (frame.since < retainedFrom - 1)
      return send(connection, snapshotFrame("resync", { reason: "beyond_retention" }));
    for (const event of events) {
      if (event.seq <= frame.since) continue;
      send(connection, event);
      send(connection, summaryFrame(event.seq));
    }
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  // The helpers above read its `snapshot` (which the test may replace) only once connections come in.
  const fake: FakeStreamServer = {
    apiUrl: `http://127.0.0.1:${port}`,
    token,
    userId,
    connections,
    ticketRequests,
    snapshot: {
      seq: 0,
      balances: { USD: "10000" },
      trades: [],
      orders: [],
      summary: {
        balance: "10000",
        equity: "10000",
        marginUsed: "0",
        freeMargin: "10000",
        marginLevel: null,
        unrealizedPnl: "0",
        pricesMissing: [],
      },
    },
    publish(body) {
      const event = { type: "event", seq: lastSeq() + 1, time: new Date().toISOString(), ...body } as EventFrame;
      events.push(event);
      for (const connection of connections) {
        if (!connection.privateSubscribed) continue;
        send(connection, event);
        send(connection, summaryFrame(event.seq));
      }
      return event.seq;
    },
    broadcast(frame) {
      for (const connection of connections) send(connection, frame);
    },
    retainFrom(seq) {
      retainedFrom = seq;
    },
    refuseTickets(status, retryAfter) {
      refusal = status === undefined ? undefined : { status, retryAfter };
    },
    refuseSubscribes(code) {
      subscribeRefusal = code;
    },
    silence(on) {
      silent = on;
    },
    closeAll(code, reason) {
      for (const { socket } of connections) socket.close(code, reason);
    },
    terminateAll() {
      for (const { socket } of connections) socket.terminate();
    },
    endSession() {
      sessionEnded = true;
      fake.closeAll(4401, "session ended");
    },
    async close() {
      fake.terminateAll();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}

function textOf(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.isBuffer(data) ? data.toString("utf8") : new TextDecoder().decode(new Uint8Array(data));
}
