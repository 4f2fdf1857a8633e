/**
 * The stream's core, without the network: the open sockets and what each is subscribed to, the fan-out entries
 * routed to them (quotes, candles, each user's events, session revocations), and the sweeps that keep sockets
 * honest (heartbeats, liveness, session expiry, the revocation backstop). server.ts hands it sockets whose ticket
 * checked out; fanout-reader.ts hands it entries.
 */
import type { WebSocket } from "ws";
import { ASSETS } from "../contract/markets.ts";
import type { EngineOutput, PrivateOutput } from "../contract/messages.ts";
import { quotesView, type Quote } from "../functions/views.ts";
import type { Logger } from "../platform/log.ts";
import { throttled } from "../platform/log.ts";
import { CandleFanout, LOAD_RETRY_DELAYS_MS, type LoadBucket, type MinuteRow } from "./candles.ts";
import { parseClientFrame, type RequestId, type Subscription } from "./client-frames.ts";
import { monotonicMs } from "./clock.ts";
import { CLOSE_CODES } from "../client/protocol.ts";
import { StreamConnection, type StreamLimits, type Ticket } from "./connection.ts";
import type { StreamMetrics } from "./metrics.ts";
import { PrivateChannel, type PrivateStore } from "./private-channel.ts";
import { compareOutputIds } from "../worker/history-writes.ts";
import { QuoteFanout, thinBytesOf, type QuoteOutput } from "./quotes.ts";

/**
 * A session's revocation notices, watched while an upgrade checks that session (server.ts): a notice that comes after
 * the check read the revocation key, and before the socket is registered, would otherwise find no socket to close.
 */
export interface SessionWatch {
  /** A notice (or the backstop) said the session was signed out since the watch began. */
  readonly revoked: boolean;
  /** Stops watching; a second call does nothing. */
  end(): void;
}

export interface HubDeps {
  readonly limits: StreamLimits;
  readonly store: PrivateStore;
  /** Whether a session has been revoked (logout): the backstop behind the fan-out's notice. */
  readonly revokedSessions: (sessions: readonly { userId: string; sessionId: string }[]) => Promise<boolean[]>;
  readonly loadBucket?: LoadBucket | undefined;
  readonly log: Logger;
  readonly metrics: StreamMetrics;
}

const EVERY_ASSET = ASSETS.map((a) => a.symbol);
/** The scheduler tick: held-back quotes and candles, owed summaries. */
const TICK_MS = 100;

/** How often the sweep (heartbeats, liveness, session expiry) runs. */
function sweepEveryMs(heartbeatMs: number): number {
  return Math.min(1_000, heartbeatMs / 2);
}

/**
 * How soon a socket whose client vanished is dropped at the latest: silent for over 2 × heartbeatMs, as the next
 * sweep finds it. What the 429's Retry-After covers (server.ts): by then its user's place is free.
 */
export function silentDropWithinMs(heartbeatMs: number): number {
  return 2 * heartbeatMs + sweepEveryMs(heartbeatMs);
}

export class StreamHub {
  private readonly connections = new Set<StreamConnection>();
  private readonly bySession = new Map<string, Set<StreamConnection>>();
  private readonly byUser = new Map<string, Set<StreamConnection>>();
  /** The sessions upgrades are checking, by session id (watchSession). */
  private readonly watchedSessions = new Map<string, Set<{ revoked: boolean }>>();
  private readonly privateByUser = new Map<string, Set<StreamConnection>>();
  /** Private channels by the assets of their open trades: whose summary a quote moves. */
  private readonly privateByAsset = new Map<string, Set<StreamConnection>>();
  /** Sockets owed a price-driven summary (the tick sends each once summaryIntervalMs has passed since its last). */
  private readonly summariesDue = new Set<StreamConnection>();
  private readonly latestQuotes = new Map<string, Quote>();
  /** The output id of each asset's latest quote from the fan-out: an older one that comes after it is dropped. */
  private readonly latestQuoteIds = new Map<string, string>();
  private readonly quotes: QuoteFanout;
  private readonly candles: CandleFanout;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Shut down: no timers run, so a socket handed over now would get no heartbeat nor its 1001. */
  private stopped = false;
  private lastRevocationCheckMs = -Infinity;
  /** The revocation check under way: the next waits for it to end, so a slow Redis never has two going. */
  private revocationCheck: Promise<void> | undefined;
  private readonly warnBadEntry: ReturnType<typeof throttled>;
  /** The timers' failures, throttled apiece: a bad quote can fail every holder's summary on every tick. */
  private readonly warnSummary: ReturnType<typeof throttled>;
  private readonly warnTimer: ReturnType<typeof throttled>;

  constructor(private readonly deps: HubDeps) {
    this.quotes = new QuoteFanout(deps.limits);
    this.candles = new CandleFanout(
      deps.loadBucket,
      (error) => deps.log.warn("candle_load_failed", { error }),
      LOAD_RETRY_DELAYS_MS,
      thinBytesOf(deps.limits),
    );
    this.warnBadEntry = throttled(deps.log, 10_000);
    this.warnSummary = throttled(deps.log, 10_000);
    this.warnTimer = throttled(deps.log, 10_000);
  }

  /**
   * Starts the scheduler tick and the sweep. `latestQuotes`: the quotes read model (each asset's latest quote output),
   * so that summaries start priced and a quotes subscribe gets each asset's latest quote before its next one comes:
   * a market that is halted may send none for a long time.
   */
  start(latestQuotes: Record<string, string> = {}): void {
    for (const [asset, quote] of quotesView(latestQuotes)) this.latestQuotes.set(asset, quote);
    for (const json of Object.values(latestQuotes)) {
      const quote = JSON.parse(json) as QuoteOutput;
      this.quotes.seed(quote);
      this.latestQuoteIds.set(quote.asset, quote.id); // the fan-out may still bring it, or one older
    }
    const tick = setInterval(() => this.tick(), TICK_MS);
    const sweep = setInterval(() => this.sweep(), sweepEveryMs(this.deps.limits.heartbeatMs));
    tick.unref();
    sweep.unref();
    this.timers.push(tick, sweep);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Whether `userId` may open another socket here: fewer than maxConnectionsPerUser open (or closing). */
  admits(userId: string): boolean {
    return (this.byUser.get(userId)?.size ?? 0) < this.deps.limits.maxConnectionsPerUser;
  }

  /**
   * Watches `sessionId` for a revocation from now until `end`: server.ts starts watching before it reads the
   * revocation key and ends after the socket was accepted (or refused), so a logout is seen by the read, by the watch
   * or, once accepted, by the socket's registration here (endSession), whenever its notice comes.
   */
  watchSession(sessionId: string): SessionWatch {
    const state = { revoked: false };
    addTo(this.watchedSessions, sessionId, state);
    return {
      get revoked() {
        return state.revoked;
      },
      end: () => removeFrom(this.watchedSessions, sessionId, state),
    };
  }

  accept(ws: WebSocket, ticket: Ticket): void {
    if (this.stopped) {
      ws.close(CLOSE_CODES.goingAway, "server going away");
      return;
    }
    const nowMs = monotonicMs();
    const conn = new StreamConnection(ws, ticket, this.deps.limits, this.deps.metrics, nowMs);
    this.connections.add(conn);
    addTo(this.bySession, ticket.sessionId, conn);
    addTo(this.byUser, ticket.userId, conn);
    this.deps.metrics.connected(1);
    ws.on("message", (data, isBinary) => this.onMessage(conn, data as Buffer, isBinary));
    ws.on("ping", (payload) => this.onPing(conn, payload));
    ws.on("pong", (payload) => conn.pong(payload, monotonicMs()));
    ws.on("error", (error) => {
      // ws closes the socket itself on a bad frame and then reports 1006 (it stops reading): the code it sent counts.
      conn.closeCode ??= closeCodeOf(error);
      conn.private?.stop(); // as when this server closes it (StreamConnection.close): it will read nothing more
      this.deps.log.debug("socket_error", { userId: conn.userId, error });
    });
    ws.on("close", (code) => this.onClose(conn, code));
    const { heartbeatMs, maxMessagesPerSec, maxSubscriptions, maxFrameBytes } = this.deps.limits;
    conn.send(
      {
        type: "welcome",
        userId: conn.userId,
        heartbeatMs,
        limits: { maxMessagesPerSec, maxSubscriptions, maxFrameBytes },
      },
      nowMs,
    );
    if (ticket.sessionExpiresAtMs <= Date.now()) conn.close(CLOSE_CODES.sessionEnded, "session expired");
  }

  /**
   * One fan-out entry: `kind` and its fields, as the worker and the API write them (worker/events.ts,
   * functions/auth/stream-tickets.ts; docs/architecture.md, "The stream"). `id` the entry's id, for the lag.
   */
  handleEntry(id: string, fields: Readonly<Record<string, string>>): void {
    const nowMs = monotonicMs();
    this.deps.metrics.fanoutLag((Date.now() - Number(id.slice(0, id.indexOf("-")))) / 1000);
    try {
      switch (fields.kind) {
        case "event":
          this.onEvent(fields);
          return;
        case "quote":
          this.onQuote(JSON.parse(fields.body!) as QuoteOutput, nowMs);
          return;
        case "candle":
          this.candles.publish(JSON.parse(fields.body!) as MinuteRow, nowMs);
          return;
        case "revoked": {
          const { sessionId } = JSON.parse(fields.body!) as { userId: string; sessionId: string };
          this.endSession(sessionId, "signed out");
          return;
        }
        default:
          this.warnBadEntry("warn", "fanout_entry_unknown", { id, kind: fields.kind });
      }
    } catch (error) {
      this.warnBadEntry("warn", "fanout_entry_malformed", { id, error });
    }
  }

  /**
   * The fan-out reader may have missed entries (a Redis error or lost connection, or the trim passed it while it
   * lagged: fanout-reader.ts): every private channel looks in the store, and every candle series loads its bucket
   * again.
   */
  fanoutRecovered(): void {
    for (const conns of this.privateByUser.values()) for (const conn of conns) conn.private?.recheck();
    this.candles.recheck(Date.now());
  }

  /**
   * Closes every socket with 1001 (server going away: reconnect and resume) and stops the timers; a socket handed
   * over after it is closed with 1001 at once.
   */
  shutdown(): void {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const conn of this.connections) conn.close(CLOSE_CODES.goingAway, "server going away");
  }

  private onEvent(fields: Readonly<Record<string, string>>): void {
    const conns = this.privateByUser.get(fields.user!);
    if (conns === undefined) return; // nobody here listens for this user: skip the parse
    const output = JSON.parse(fields.body!) as EngineOutput & { seq?: number };
    const event = { ...output, seq: output.seq ?? Number(fields.seq) } as PrivateOutput;
    if (!Number.isSafeInteger(event.seq) || event.seq < 1 || event.userId !== fields.user) {
      this.warnBadEntry("warn", "fanout_event_malformed", { user: fields.user, seq: fields.seq });
      return;
    }
    for (const conn of conns) conn.private?.notify(event, fields.more === "1");
  }

  private onQuote(quote: QuoteOutput, nowMs: number): void {
    // Two workers fan out in their own round trips, after their guarded read-model writes: one asset's quotes can
    // come out of log order, and the older must not replace the newer (nor a quote sent again replace itself).
    const latestId = this.latestQuoteIds.get(quote.asset);
    if (latestId !== undefined && compareOutputIds(quote.id, latestId) <= 0) return;
    this.latestQuoteIds.set(quote.asset, quote.id);
    const { bid, ask, updatedAt, source } = quote;
    this.latestQuotes.set(quote.asset, { bid, ask, updatedAt, source });
    this.quotes.publish(quote, nowMs);
    for (const conn of this.privateByAsset.get(quote.asset) ?? []) {
      if (conn.private === undefined) continue;
      conn.private.summaryDue = true;
      this.summariesDue.add(conn);
    }
  }

  /** A client's WebSocket ping: counted against the rate as a message is (server.ts turns ws's autoPong off). */
  private onPing(conn: StreamConnection, payload: Buffer): void {
    if (conn.closed) return;
    if (!conn.admitMessage(monotonicMs())) {
      conn.close(CLOSE_CODES.tooManyMessages, "too many messages");
      return;
    }
    conn.answerPing(payload);
  }

  private onMessage(conn: StreamConnection, data: Buffer, isBinary: boolean): void {
    const nowMs = monotonicMs();
    if (conn.closed) return;
    if (!conn.admitMessage(nowMs)) {
      conn.close(CLOSE_CODES.tooManyMessages, "too many messages");
      return;
    }
    if (isBinary) {
      conn.send(
        {
          type: "error",
          code: "INVALID_FRAME",
          field: "frame",
          message: "frame: expected a text frame, received binary.",
        },
        nowMs,
      );
      return;
    }
    const frame = parseClientFrame(data.toString("utf8"));
    if ("code" in frame) {
      conn.send({ type: "error", ...frame }, nowMs);
      return;
    }
    if (frame.op === "ping") {
      conn.send({ type: "pong", ...(frame.id === undefined ? {} : { id: frame.id }) }, nowMs);
      return;
    }
    const echo = frame.id === undefined ? {} : { id: frame.id };
    if (frame.op === "subscribe") this.subscribe(conn, frame.subscription, echo, nowMs);
    else this.unsubscribe(conn, frame.subscription, echo, nowMs);
  }

  /** `echo`: the request's id, which every answer to it carries. */
  private subscribe(conn: StreamConnection, sub: Subscription, echo: { id?: RequestId }, nowMs: number): void {
    const adds = added(conn, sub);
    if (sub.channel === "private" && conn.private !== undefined) {
      conn.send(
        {
          type: "error",
          ...echo,
          code: "ALREADY_SUBSCRIBED",
          field: "channel",
          message:
            'channel: expected a channel not yet subscribed, received "private" (unsubscribe first to start over).',
        },
        nowMs,
      );
      return;
    }
    // What adds nothing is never refused: an unsubscribe from all quotes can leave a socket over the limit.
    if (adds > 0 && conn.subscriptionCount + adds > this.deps.limits.maxSubscriptions) {
      conn.send(
        {
          type: "error",
          ...echo,
          code: "TOO_MANY_SUBSCRIPTIONS",
          field: "channel",
          message: `channel: expected at most ${this.deps.limits.maxSubscriptions} subscriptions per socket, received a subscribe that would make ${conn.subscriptionCount + adds}.`,
        },
        nowMs,
      );
      return;
    }
    conn.send({ type: "subscribed", ...echo, ...sub }, nowMs);
    switch (sub.channel) {
      case "quotes":
        this.quotes.subscribe(conn, sub.assets, nowMs);
        return;
      case "candles":
        this.candles.subscribe(conn, sub.asset, sub.interval, Date.now(), nowMs);
        return;
      case "private": {
        const channel = new PrivateChannel(conn, {
          store: this.deps.store,
          quotes: this.latestQuotes,
          log: this.deps.log,
          metrics: this.deps.metrics,
          now: monotonicMs,
          flushQuotes: (nowMs) => this.quotes.flush(conn, nowMs),
          holding: (asset, held) => {
            if (conn.private !== channel) return; // dropped meanwhile
            if (held) addTo(this.privateByAsset, asset, conn);
            else removeFrom(this.privateByAsset, asset, conn);
          },
        });
        conn.private = channel;
        addTo(this.privateByUser, conn.userId, conn);
        channel.start(sub.since).catch((error: unknown) => {
          channel.stop();
          if (conn.private !== channel) return; // unsubscribed meanwhile: the channel now held, if any, is another
          this.deps.log.warn("private_start_failed", { userId: conn.userId, error });
          conn.close(CLOSE_CODES.internalError, "could not read the account: reconnect");
        });
        return;
      }
    }
  }

  private unsubscribe(conn: StreamConnection, sub: Subscription, echo: { id?: RequestId }, nowMs: number): void {
    switch (sub.channel) {
      case "quotes":
        this.quotes.unsubscribe(conn, sub.assets, EVERY_ASSET);
        break;
      case "candles":
        this.candles.unsubscribe(conn, sub.asset, sub.interval);
        break;
      case "private":
        this.dropPrivate(conn);
        break;
    }
    conn.send({ type: "unsubscribed", ...echo, ...sub }, nowMs);
  }

  private dropPrivate(conn: StreamConnection): void {
    conn.private?.stop();
    for (const asset of conn.private?.heldAssets() ?? []) removeFrom(this.privateByAsset, asset, conn);
    this.summariesDue.delete(conn);
    conn.private = undefined;
    removeFrom(this.privateByUser, conn.userId, conn);
  }

  private onClose(conn: StreamConnection, code: number): void {
    conn.closed = true;
    this.connections.delete(conn);
    removeFrom(this.bySession, conn.sessionId, conn);
    removeFrom(this.byUser, conn.userId, conn);
    this.dropPrivate(conn);
    this.quotes.remove(conn);
    this.candles.remove(conn);
    this.deps.metrics.connected(-1);
    // closeCode is set only if this server closed it first (or ws failed a bad frame); else the code is the client's.
    this.deps.metrics.closed(conn.closeCode ?? code, conn.closeCode === undefined ? "client" : "server");
  }

  private endSession(sessionId: string, reason: string): void {
    for (const watch of this.watchedSessions.get(sessionId) ?? []) watch.revoked = true;
    for (const conn of this.bySession.get(sessionId) ?? []) conn.close(CLOSE_CODES.sessionEnded, reason);
  }

  /**
   * Held-back quotes and candles, then owed summaries. Nothing thrown here may escape: it would end the process (an
   * exception in a timer), and with it every socket. Each channel is tried apart, so one bad account does not starve
   * the rest.
   */
  private tick(): void {
    const nowMs = monotonicMs();
    try {
      this.quotes.tick(nowMs);
    } catch (error) {
      this.warnTimer("warn", "quote_tick_failed", { error });
    }
    try {
      this.candles.tick(nowMs);
    } catch (error) {
      this.warnTimer("warn", "candle_tick_failed", { error });
    }
    const interval = this.deps.limits.summaryIntervalMs;
    for (const conn of this.summariesDue) {
      const channel = conn.private;
      if (channel?.summaryDue !== true) this.summariesDue.delete(conn); // sent with an event meanwhile, or dropped
      // Between two events of one engine step the summary would show money that never was, and during a resume's
      // replay events the client has not been sent yet: wait until it shows the account as of the last event sent.
      if (channel?.summaryDue !== true || nowMs - channel.lastSummaryMs < interval || !channel.summaryReady) continue;
      this.summariesDue.delete(conn);
      try {
        // Priced at the latest quotes: a client held back from one (a slow client) gets it first, as before an event.
        this.quotes.flush(conn, nowMs);
        channel.sendSummary(nowMs);
      } catch (error) {
        this.warnSummary("warn", "summary_failed", { userId: conn.userId, error });
      }
    }
  }

  /** Heartbeats, liveness, session expiry; every revocationCheckMs the revocation backstop. */
  private sweep(): void {
    const nowMs = monotonicMs();
    const wallMs = Date.now();
    const { heartbeatMs } = this.deps.limits;
    for (const conn of this.connections) {
      if (conn.closed) continue;
      try {
        if (conn.sessionExpiresAtMs <= wallMs) conn.close(CLOSE_CODES.sessionEnded, "session expired");
        else if (nowMs - conn.lastPongMs > 2 * heartbeatMs) conn.terminate();
        else {
          if (conn.pingDue(nowMs)) conn.ping(nowMs);
          if (nowMs - conn.lastSentMs >= heartbeatMs)
            conn.send({ type: "heartbeat", time: new Date(wallMs).toISOString() }, nowMs);
        }
      } catch (error) {
        this.warnTimer("warn", "sweep_failed", { userId: conn.userId, error }); // as in tick(): never out of a timer
      }
    }
    if (
      this.revocationCheck === undefined &&
      nowMs - this.lastRevocationCheckMs >= this.deps.limits.revocationCheckMs
    ) {
      this.lastRevocationCheckMs = nowMs;
      this.revocationCheck = this.checkRevocations().finally(() => (this.revocationCheck = undefined));
    }
  }

  private async checkRevocations(): Promise<void> {
    const sessions = [...this.bySession.entries()].map(([sessionId, conns]) => ({
      sessionId,
      userId: conns.values().next().value!.userId,
    }));
    if (sessions.length === 0) return;
    try {
      const revoked = await this.deps.revokedSessions(sessions);
      sessions.forEach((s, i) => {
        if (revoked[i]) this.endSession(s.sessionId, "signed out");
      });
    } catch (error) {
      this.deps.log.warn("revocation_check_failed", { error });
    }
  }
}

/** How many subscriptions `sub` adds to what the socket has (counted as in StreamConnection.subscriptionCount). */
function added(conn: StreamConnection, sub: Subscription): number {
  switch (sub.channel) {
    case "quotes": {
      const mine = conn.quotes;
      if (mine === "all") return 0;
      if (sub.assets === undefined) return 1 - (mine?.size ?? 0);
      return new Set(sub.assets.filter((a) => !mine?.has(a))).size; // an asset named twice counts once
    }
    case "candles":
      return conn.candles.has(`${sub.asset} ${sub.interval}`) ? 0 : 1;
    case "private":
      return conn.private === undefined ? 1 : 0;
  }
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  set?.delete(value);
  if (set?.size === 0) map.delete(key);
}

/**
 * The close code ws sends when it fails a socket for this error: its receiver's errors carry it under ws's own
 * `status-code` symbol (not exported by ws, so found by its description).
 */
function closeCodeOf(error: Error): number | undefined {
  const key = Object.getOwnPropertySymbols(error).find((symbol) => symbol.description === "status-code");
  const code = key === undefined ? undefined : (error as unknown as Record<symbol, unknown>)[key];
  return typeof code === "number" ? code : undefined;
}
