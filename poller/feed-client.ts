/**
 * One WebSocket to a Backpack-protocol feed (the exchange or the sim), kept alive forever.
 *
 * On open it subscribes `bookTicker.<market>` and `markPrice.<market>` for every configured market. Every text
 * frame is parsed (frames.ts); quotes pass the ordering gate (ordering.ts) and accepted ones go to `onQuote` in
 * arrival order; markPrice frames and size-only book frames are evidence of life, and a due heartbeat (the last
 * top of book stamped with the exchange's newer time, heartbeat.ts) goes to `onHeartbeat`. A quote or markPrice
 * frame stamped further ahead of this machine's clock than the engine accepts is dropped first (`future`,
 * ordering.ts), so it reaches neither. A market whose ids started over is logged (`feed_sequence_reset`); one
 * whose book has shown nothing for `bookSilenceMs` while its mark price flows gets no heartbeats and is logged
 * once (`feed_book_silent`) until its book shows itself again (`feed_book_resumed`). Such a silence is either a
 * book halted at the exchange or a bookTicker subscription the exchange lost while the connection and the mark price
 * flow on, which nothing else would repair: so that one stream alone is subscribed again (UNSUBSCRIBE, then
 * SUBSCRIBE: a SUBSCRIBE of a stream the server still counts as subscribed may be ignored), at once and every
 * `bookSilenceMs` while the silence lasts (`feed_book_resubscribed`). The socket is not dropped for it: that would
 * interrupt every other market, and would not bring a halted book back. The first book frame after a resubscribe,
 * and a market's first on a new connection (every reconnect subscribes every stream again), is the book showing
 * itself only if it changes the top: a server may answer a SUBSCRIBE with a snapshot of the top stamped now, and for
 * a halted book that is the frozen top, so it is dropped (`unchanged`) and neither resumes the book nor vouches for
 * its heartbeats. A frame dropped as out of date (`stale`, as a lagging gateway node's) or `implausible` is not the
 * book's word and does not end that wait: the snapshot may come after it. Otherwise a connection that drops more
 * often than `bookSilenceMs` would keep a halted market tradable for as long as that goes on. A live start's first
 * connection judges it against the log's last live top (`loggedTops`, price-feed.ts), so a restart's snapshot of a
 * frozen top is `unchanged` too. The next frame counts as any other, so a live book shows itself again at its next
 * change of the top, sizes included: after a reconnect or a restart, a quiet market's heartbeats wait for that frame
 * (from a server that sends no snapshot, the book's second), as they wait for the first when no snapshot comes.
 * A book frame refused although stamped later than the market's last accepted one (out of sequence, or prices
 * that cannot be taken or are missing) stops the market's heartbeats too, logged once (`feed_book_refused`), until a
 * book frame is accepted again (`feed_book_resumed`): the exchange has said its top moved, so the old one is not
 * vouched for. One stamped further ahead than the engine accepts stops nothing: its time is as much garbage as a
 * `future` frame's, so it says nothing of when the top moved.
 *
 * A socket that delivers no message for `silenceMs` is treated as dead (a half-open TCP connection or a lost
 * subscription looks exactly like that). Pings and pongs do not count as life (ws answers the server's pings
 * itself): a server can exchange them while the subscription is gone. A calm market is no silence: its markPrice
 * frames come about once a second whether or not the book moves. Reconnects use exponential backoff with full
 * jitter (delay uniform in [0, min(cap, base·2^attempt)]), so many pollers do not hammer the exchange in step.
 * The attempt count resets only when a connection has stayed open `stableAfterMs` (10 s, the backoff's cap), judged
 * when it closes. A message, even a quote, is not enough: a server (or a proxy, a gateway) that answers each
 * connection with an error or a frame and then closes it would otherwise be retried several times a second,
 * forever, and an exchange bans that. With the rule, such a server is retried after a random delay that grows to
 * 0–cap (about half the cap on average).
 *
 * A host name that does not resolve (ENOTFOUND) is told to `firstQuote` waiters at once: waiting longer cannot
 * bring a first quote from a host this machine cannot look up. A resolver that did not answer (EAI_AGAIN) is
 * usually passing (a network still coming up), so that one waits like any other failure.
 */
import { WebSocket } from "ws";
import type { AssetConfig } from "../contract/markets.ts";
import { throttled, type Logger } from "../platform/log.ts";
import {
  FRAME_DROP_REASONS,
  frameText,
  marketTable,
  parseFrame,
  streamsFor,
  type FeedQuote,
  type MarketTable,
  type TopOfBook,
} from "./frames.ts";
import { BOOK_SILENCE_MS, Heartbeats } from "./heartbeat.ts";
import { aheadOfEngine, GATE_DROP_REASONS, QuoteGate, type GateDropReason, type LoggedTop } from "./ordering.ts";

export type DropReason = (typeof FRAME_DROP_REASONS)[number] | GateDropReason;

/** Where the connection stands: opening a socket, open, closed and waiting to reconnect, or stopped for good. */
export const FEED_STATES = ["connecting", "connected", "disconnected", "stopped"] as const;
export type FeedState = (typeof FEED_STATES)[number];

/** How `firstQuote` ended. */
export type FirstQuote = "quote" | "timeout" | "unresolvable" | "stopped";

/** getaddrinfo's code for a name that does not resolve. */
const UNRESOLVABLE = "ENOTFOUND";

export interface FeedCounters {
  /** Text frames received. */
  received: number;
  /** Quotes handed to `onQuote`. */
  published: number;
  /** markPrice frames received (valid ones; each is evidence of life, not necessarily a heartbeat). */
  heartbeatFrames: number;
  /** Heartbeats handed to `onHeartbeat`: from markPrice frames, or book frames that changed only sizes. */
  heartbeats: number;
  /**
   * Heartbeats not sent because the market's book had shown nothing for `bookSilenceMs`, or refused a later frame
   * since it last showed itself (heartbeat.ts).
   */
  withheld: number;
  /** Markets whose update ids started over within a connection (ordering.ts). */
  sequenceResets: number;
  /** bookTicker streams subscribed again for a silent book. */
  resubscribes: number;
  /** Subscription answers and other non-quote messages. */
  control: number;
  connects: number;
  dropped: Record<DropReason, number>;
}

export interface FeedClientOptions {
  readonly url: string;
  readonly markets: readonly AssetConfig[];
  readonly onQuote: (quote: FeedQuote) => void;
  /** The market's unchanged top of book, stamped with the exchange's newer time (see heartbeat.ts). */
  readonly onHeartbeat: (update: TopOfBook) => void;
  readonly log: Logger;
  readonly silenceMs?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
  /**
   * A market's heartbeats need a book frame accepted at most this long (exchange time) before them (default 15 s,
   * heartbeat.ts).
   */
  readonly bookSilenceMs?: number | undefined;
  /**
   * A connection open at least this long worked: the backoff starts over when it closes (default 10 s). Nothing
   * else resets it, not even market data: one frame per connection proves nothing against a server that closes.
   */
  readonly stableAfterMs?: number;
  /** At most one log line about dropped frames per this period. */
  readonly dropLogEveryMs?: number;
  readonly random?: () => number;
  /** Called each time a reconnect is scheduled (the socket closed, or could not be opened). */
  readonly onReconnect?: (() => void) | undefined;
  /**
   * Per market, its last top in the log before this process and the exchange time (µs) from which it stood (a live
   * start: price-feed.ts): a first frame stamped earlier is dropped as `stale`, and one that repeats the top as
   * `unchanged`, as on a reconnect (ordering.ts); the heartbeats re-publish it once the book shows itself.
   */
  readonly loggedTops?: ReadonlyMap<string, LoggedTop> | undefined;
}

export class FeedClient {
  readonly counters: FeedCounters = {
    received: 0,
    published: 0,
    heartbeatFrames: 0,
    heartbeats: 0,
    withheld: 0,
    sequenceResets: 0,
    resubscribes: 0,
    control: 0,
    connects: 0,
    dropped: Object.fromEntries([...FRAME_DROP_REASONS, ...GATE_DROP_REASONS].map((r) => [r, 0])) as Record<
      DropReason,
      number
    >,
  };
  private readonly markets: MarketTable;
  private readonly gate: QuoteGate;
  private readonly heartbeats: Heartbeats;
  /** Markets whose heartbeats are withheld for a silent book, so each silence is logged once. */
  private readonly silentBooks = new Set<string>();
  /** Markets whose heartbeats stopped for a refused later book frame, so each is logged once. */
  private readonly refusedBooks = new Set<string>();
  /** Per market, the exchange time (µs) of the evidence at which its silent book was last subscribed again. */
  private readonly resubscribedAtUs = new Map<string, bigint>();
  /**
   * Markets subscribed (again, or on a new connection) whose book has sent no frame taken (`accept` or `unchanged`)
   * since: the first may be a snapshot of a frozen top.
   */
  private readonly awaitingBook = new Set<string>();
  private readonly silenceMs: number;
  private readonly bookSilenceMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;
  private readonly stableAfterMs: number;
  private readonly random: () => number;
  private readonly logDrop: ReturnType<typeof throttled>;
  private readonly logControlError: ReturnType<typeof throttled>;
  private socket: WebSocket | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  private quoteWaiters: ((outcome: FirstQuote) => void)[] = [];
  /** The resolver's error when the last connection attempt failed to look the host up. */
  private unresolvedBy: string | undefined;
  /** True once a quote was taken in sequence (`accept` or `unchanged`): `firstQuote`. */
  private quoted = false;
  /** How far ahead of this machine's clock (ms) the last frame refused as `future` was stamped, at its arrival. */
  private lastFutureAheadMs: number | undefined;

  constructor(private readonly options: FeedClientOptions) {
    this.markets = marketTable(options.markets);
    this.gate = new QuoteGate((market, fromId, toId) => {
      this.counters.sequenceResets++;
      options.log.warn("feed_sequence_reset", { url: options.url, market, fromId, toId });
    });
    this.bookSilenceMs = options.bookSilenceMs ?? BOOK_SILENCE_MS;
    this.heartbeats = new Heartbeats(this.bookSilenceMs);
    for (const [market, top] of options.loggedTops ?? []) {
      this.gate.loggedBefore(market, top);
      this.heartbeats.loggedBefore(market, top);
    }
    this.silenceMs = options.silenceMs ?? 15_000;
    this.backoffBaseMs = options.backoffBaseMs ?? 250;
    this.backoffCapMs = options.backoffCapMs ?? 10_000;
    this.stableAfterMs = options.stableAfterMs ?? 10_000;
    this.random = options.random ?? Math.random;
    this.logDrop = throttled(options.log, options.dropLogEveryMs ?? 10_000);
    this.logControlError = throttled(options.log, options.dropLogEveryMs ?? 10_000);
  }

  start(): void {
    if (this.socket === undefined && this.reconnectTimer === undefined && !this.stopped) this.connect();
  }

  /**
   * "quote" once a first quote has been taken in sequence: published, or `unchanged` (after a live start, a quiet
   * market's first frames repeat the top the log holds, and are the feed delivering all the same); "unresolvable" as
   * soon as the host's name fails to resolve (`unresolved` says how); "timeout" if neither happened within
   * `timeoutMs`; "stopped" if the client stopped.
   */
  firstQuote(timeoutMs: number): Promise<FirstQuote> {
    if (this.quoted) return Promise.resolve("quote");
    if (this.stopped) return Promise.resolve("stopped");
    if (this.unresolvedBy !== undefined) return Promise.resolve("unresolvable");
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle("timeout"), timeoutMs);
      const settle = (outcome: FirstQuote) => {
        clearTimeout(timer);
        this.quoteWaiters = this.quoteWaiters.filter((w) => w !== settle);
        resolve(outcome);
      };
      this.quoteWaiters.push(settle);
    });
  }

  /** The resolver's error (e.g. "getaddrinfo ENOTFOUND host") while the host's name does not resolve. */
  get unresolved(): string | undefined {
    return this.unresolvedBy;
  }

  /**
   * How far ahead of this machine's clock (ms) the last frame dropped as `future` was stamped when it arrived;
   * undefined before the first. Every frame that far ahead usually means this machine's clock is behind.
   */
  get futureAheadMs(): number | undefined {
    return this.lastFutureAheadMs;
  }

  /** True while the socket is open (a silent one is closed within `silenceMs`). */
  get live(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  get state(): FeedState {
    if (this.stopped) return "stopped";
    const ready = this.socket?.readyState;
    if (ready === WebSocket.OPEN) return "connected";
    return ready === WebSocket.CONNECTING ? "connecting" : "disconnected";
  }

  /** Closes the socket (waiting briefly for the close handshake) and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.silenceTimer);
    for (const waiter of [...this.quoteWaiters]) waiter("stopped");
    const socket = this.socket;
    this.socket = undefined;
    if (socket === undefined || socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => socket.terminate(), 1_000);
      socket.once("close", () => {
        clearTimeout(force);
        resolve();
      });
      socket.close(1000, "poller stopping");
    });
    this.options.log.info("feed_stopped", { url: this.options.url });
  }

  private connect(): void {
    this.reconnectTimer = undefined;
    const { url, log } = this.options;
    // The handshake gets the same budget as silence: a server that never completes it is just as dead.
    const socket = new WebSocket(url, { handshakeTimeout: this.silenceMs, maxPayload: 1 << 20 });
    this.socket = socket;
    let openedAt = 0;
    let opened = false;
    socket.on("open", () => {
      opened = true;
      openedAt = Date.now();
      this.unresolvedBy = undefined;
      this.counters.connects++;
      this.gate.newConnection();
      this.heartbeats.newConnection();
      this.resubscribedAtUs.clear();
      // The new SUBSCRIBE may be answered as a resubscribe's is, with a halted book's frozen top stamped now.
      for (const { market } of this.options.markets) this.awaitingBook.add(market);
      log.info("feed_connected", { url });
      const streams = streamsFor(this.options.markets);
      socket.send(JSON.stringify({ method: "SUBSCRIBE", params: streams }));
      log.info("feed_subscribed", { url, streams });
      this.armSilence(socket);
    });
    socket.on("message", (data, isBinary) => {
      if (socket !== this.socket) return;
      this.armSilence(socket);
      this.onFrame(isBinary ? "" : frameText(data));
    });
    socket.on("error", (err) => {
      // A close event always follows; it decides about reconnecting. Closing a connecting socket in stop() lands here too.
      if (this.stopped) return;
      if (opened) return void log.warn("feed_socket_error", { url, error: err.message });
      log.warn("feed_connect_failed", { url, error: err.message });
      if ((err as NodeJS.ErrnoException).code === UNRESOLVABLE) {
        this.unresolvedBy = err.message;
        for (const waiter of [...this.quoteWaiters]) waiter("unresolvable");
      }
    });
    socket.on("close", (code, reason) => {
      if (socket !== this.socket) return;
      this.socket = undefined;
      clearTimeout(this.silenceTimer);
      if (opened) {
        const connectedMs = Date.now() - openedAt;
        log.warn("feed_disconnected", { url, code, reason: reason.toString(), connectedMs });
        if (connectedMs >= this.stableAfterMs) this.attempt = 0;
      }
      this.scheduleReconnect();
    });
  }

  private armSilence(socket: WebSocket): void {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      this.options.log.warn("feed_silent", { url: this.options.url, silenceMs: this.silenceMs });
      socket.terminate(); // emits close, which reconnects
    }, this.silenceMs);
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const ceilingMs = Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** Math.min(this.attempt, 30));
    const delayMs = Math.floor(this.random() * ceilingMs);
    this.attempt++;
    this.options.onReconnect?.();
    this.options.log.info("feed_reconnect_scheduled", { url: this.options.url, attempt: this.attempt, delayMs });
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  private onFrame(text: string): void {
    this.counters.received++;
    const result = parseFrame(text, this.markets);
    if (result.kind === "control") {
      this.counters.control++;
      if (result.error !== undefined)
        this.logControlError("warn", "feed_error_message", { url: this.options.url, error: result.error });
      return;
    }
    if (result.kind === "rejected") {
      const { book } = result;
      // Stamped further ahead than the engine accepts, its time is garbage, as a `future` frame's: no word on the top.
      if (book !== undefined && !aheadOfEngine(book.exchangeTimeUs, Date.now()))
        this.bookRefused(book.market, book.exchangeTimeUs, result.reason);
      return this.drop(result.reason, result.detail);
    }
    const { market, exchangeTimeUs } = result.kind === "quote" ? result.quote : result.heartbeat;
    const nowMs = Date.now();
    if (aheadOfEngine(exchangeTimeUs, nowMs)) {
      this.lastFutureAheadMs = Number(BigInt(exchangeTimeUs) / 1000n) - nowMs;
      return this.drop("future", `${market} at ${exchangeTimeUs} µs`);
    }
    if (result.kind === "heartbeat") {
      this.counters.heartbeatFrames++;
      return this.beat(result.heartbeat.market, result.heartbeat.exchangeTimeUs, false);
    }
    const quote = result.quote;
    const verdict = this.gate.admit(quote);
    // The answer to a resubscribe may be the top as it was, stamped now: only a changed top shows a live book.
    const showsBook = verdict === "accept" || (verdict === "unchanged" && !this.awaitingBook.has(quote.market));
    // A frame not taken (out of date, or prices that cannot be) is not the book's word: the snapshot may come next.
    if (verdict === "accept" || verdict === "unchanged") this.awaitingBook.delete(quote.market);
    if (verdict === "stale" || verdict === "implausible") this.bookRefused(quote.market, quote.exchangeTimeUs, verdict);
    if (showsBook) this.bookResumed(quote.market);
    if (showsBook && verdict === "unchanged") this.beat(quote.market, quote.exchangeTimeUs, true);
    if (verdict === "accept" || verdict === "unchanged") {
      this.quoted = true;
      for (const waiter of [...this.quoteWaiters]) waiter("quote");
    }
    if (verdict !== "accept") return this.drop(verdict, `${quote.market} u=${quote.updateId}`);
    this.counters.published++;
    this.heartbeats.published(quote);
    this.options.onQuote(quote);
  }

  private beat(market: string, exchangeTimeUs: string, showsBook: boolean): void {
    const due = this.heartbeats.evidence(market, exchangeTimeUs, showsBook);
    if (due === undefined) return;
    if (due === "book_silent") {
      this.counters.withheld++;
      this.resubscribeBook(market, exchangeTimeUs);
      if (this.silentBooks.has(market)) return;
      this.silentBooks.add(market);
      const { url } = this.options;
      return this.options.log.warn("feed_book_silent", {
        url,
        market,
        exchangeTimeUs,
        bookSilenceMs: this.bookSilenceMs,
      });
    }
    if (due === "book_refused") return void this.counters.withheld++;
    this.counters.heartbeats++;
    this.options.onHeartbeat(due);
  }

  /** A book frame of `market` was refused: stamped later than its last accepted one, its top may be gone. */
  private bookRefused(market: string, exchangeTimeUs: string, reason: DropReason): void {
    if (!this.gate.laterThanAccepted(market, exchangeTimeUs)) return; // older news: says nothing of the top now
    this.heartbeats.bookRefused(market);
    if (this.refusedBooks.has(market)) return;
    this.refusedBooks.add(market);
    this.options.log.warn("feed_book_refused", { url: this.options.url, market, reason, exchangeTimeUs });
  }

  /**
   * `market`'s book is silent while its mark price flows: subscribes its bookTicker stream again, alone, unless done
   * less than `bookSilenceMs` of exchange time ago on this connection. The book's next frame resumes it only if it
   * changes the top, so a halted book answered with a snapshot of its frozen top stays silent.
   */
  private resubscribeBook(market: string, exchangeTimeUs: string): void {
    const socket = this.socket;
    if (socket?.readyState !== WebSocket.OPEN) return;
    const atUs = BigInt(exchangeTimeUs);
    const lastUs = this.resubscribedAtUs.get(market);
    if (lastUs !== undefined && atUs - lastUs < BigInt(this.bookSilenceMs) * 1000n) return;
    this.resubscribedAtUs.set(market, atUs);
    const params = [`bookTicker.${market}`];
    socket.send(JSON.stringify({ method: "UNSUBSCRIBE", params }));
    socket.send(JSON.stringify({ method: "SUBSCRIBE", params }));
    this.awaitingBook.add(market);
    this.counters.resubscribes++;
    this.options.log.info("feed_book_resubscribed", { url: this.options.url, market, exchangeTimeUs });
  }

  /** A book frame of `market` was accepted in sequence: its heartbeats count again. */
  private bookResumed(market: string): void {
    this.resubscribedAtUs.delete(market);
    const silent = this.silentBooks.delete(market);
    const refused = this.refusedBooks.delete(market);
    if (silent || refused) this.options.log.info("feed_book_resumed", { url: this.options.url, market });
  }

  private drop(reason: DropReason, detail: string): void {
    this.counters.dropped[reason]++;
    // Unchanged quotes are routine (size-only updates); only refused or out-of-order frames are worth a line.
    if (reason === "unchanged") return;
    this.logDrop("warn", "feed_frames_dropped", {
      url: this.options.url,
      reason,
      detail,
      dropped: nonZero(this.counters.dropped),
    });
  }
}

function nonZero(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
}
