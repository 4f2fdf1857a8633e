/**
 * A typed client of the live stream (docs/stream.md) for a browser bundle or Node: it imports nothing of either, and
 * is handed a WebSocket constructor (the browser's, or the `ws` package's) and a fetch.
 *
 * One connection at a time, kept up until `close()`:
 * - Each connection, reconnects included, starts with a fresh single-use ticket (POST /api/v1/stream/ticket, with a
 *   Bearer token or the session cookie), then opens the socket at the ticket's `url` with `?ticket=`. A ticket
 *   request unanswered after `ticketTimeoutMs` is aborted and retried like a failed one: no socket, no silence timer
 *   yet, so nothing else would notice it hang.
 * - What it is subscribed to follows the server's rules (subscriptions.ts): each subscribe and unsubscribe is sent as
 *   asked, with an id its answer echoes; a refused one is dropped (reported as an `error` naming it). After the
 *   server's welcome it subscribes again what the server held. The private channel resumes with `since` = the last
 *   seq applied, so the server sends exactly the events after it; a `resync` replaces the state instead.
 * - The private state (balances, open trades, pending orders, summary, seq) is kept from the snapshot and each
 *   event in seq order (private-state.ts). An event past the next seq (a gap, which the server never sends) drops
 *   the connection and resumes from the last one applied, rather than showing a state with a hole in it.
 * - It pings every heartbeatMs (the welcome says how often) and drops a connection on which nothing arrived for
 *   twice that: a dead TCP connection can otherwise take minutes to report itself. A silence timer that runs late
 *   (the thread was held up) first lets the frames that arrived meanwhile be read (silenceDue()).
 * - Every frame it sends (subscribes, unsubscribes, pings) keeps within the welcome's `maxMessagesPerSec`
 *   (send-allowance.ts): what would go over waits in a queue, in order, and goes as the allowance refills. The
 *   server closes a socket over it with 4029, and a replay of many subscriptions in one burst after each welcome
 *   would be closed on every reconnect. Should a 4029 come anyway (frames bunched by the network), it is reported
 *   (`error`, kind `rate`) and every later connection sends at half the rate before.
 * - It reconnects after jittered exponential backoff (capped at `maxMs`), a step up per failed attempt, which starts
 *   over once a connection stayed up `stableMs`; after a refused ticket request, at least its Retry-After (seconds or
 *   an HTTP date, read as at most 5 min: transport.ts). After close 1001 (the server going away, every socket of it at
 *   once) on a stable connection, it waits a random pause over 0–`goingAwayMaxMs` (5 s) instead, so a deploy's clients
 *   come back spread out. A 1001 on a connection that was not stable (never welcomed, or up less than `stableMs`) is a
 *   failed attempt: it waits the longer of that pause and the backoff step, so a server in a restart loop, going away
 *   on every connection, is asked ever more slowly rather than every few seconds for ever. A stable connection cut
 *   without a close frame (1006), as deployed the load balancer cuts a draining task's sockets all at once, waits a
 *   random pause from the first backoff step up to `goingAwayMaxMs`.
 * - It never reconnects after close code 4401 (session ended) or a 401 on the ticket: that needs a new sign-in; nor
 *   after a welcome naming another user than the first one did (on the session cookie, someone else signed in in this
 *   browser meanwhile), which ends the client the same way before anything of that user's is asked for; nor
 *   after a third other 4xx in a row on the ticket but 408 and 429 (a 404 from a wrong `apiUrl`): asking again would
 *   be refused the same way, forever, while one or two may be a gateway's during a deploy. Any other outcome of a
 *   ticket request (a network error or timeout too) starts the count over.
 * - `close()` is final, also when a listener calls it: after each listener call with more work to follow, the client
 *   checks whether it was closed meanwhile (closedMeanwhile()), and if so does nothing more: no timer, no ticket
 *   request, no socket, no further event. The event being delivered goes to no further listener either, so the
 *   final close (`reconnectInMs: null`) is the last event every listener gets.
 */
import { invalidOptions, MAX_HEARTBEAT_MS } from "./options.ts";
import { applyEvent, stateFromSnapshot, type PrivateState } from "./private-state.ts";
import { SendAllowance } from "./send-allowance.ts";
import {
  ASSET_SYMBOLS,
  CANDLE_INTERVALS,
  CLOSE_CODES,
  type CandleFrame,
  type ClientFrame,
  type ErrorFrame,
  type EventFrame,
  type QuoteFrame,
  type RequestId,
  type ServerFrame,
  type Subscription,
  type SummaryFrame,
  type WelcomeFrame,
} from "./protocol.ts";
import {
  applySubscription,
  NO_SUBSCRIPTIONS,
  replayOf,
  subscriptionsOf,
  unionOf,
  withoutHeld,
  type SubscriptionOp,
  type SubscriptionSet,
} from "./subscriptions.ts";

import {
  abandon,
  backoffDelayMs,
  cutDelayMs,
  DEFAULT_BACKOFF,
  goingAwayDelayMs,
  messageOf,
  requestTicket,
  textOf,
  type BackoffPolicy,
  type FetchLike,
  type Ticket,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./transport.ts";

export * from "./protocol.ts";
export type { PrivateState } from "./private-state.ts";
export { applyEvent, stateFromSnapshot } from "./private-state.ts";
export {
  backoffDelayMs,
  cutDelayMs,
  DEFAULT_BACKOFF,
  goingAwayDelayMs,
  requestTicket,
  RETRY_AFTER_MAX_MS,
  retryAfterMs,
} from "./transport.ts";
export type { BackoffPolicy, FetchLike, Ticket, WebSocketConstructor, WebSocketLike } from "./transport.ts";

export interface StreamClientOptions {
  /**
   * The API's origin as an absolute http(s) URL, e.g. `https://api.example.com`, without `/api/v1`: the ticket
   * comes from `<apiUrl>/api/v1/stream/ticket`.
   */
  readonly apiUrl: string;
  /** `globalThis.WebSocket` in browsers and Node 22+; on Node 20, which has none, the `ws` package's `WebSocket`. */
  readonly WebSocket: WebSocketConstructor;
  /** Default: the global fetch. */
  readonly fetch?: FetchLike;
  /** The session token, sent as `Authorization: Bearer`. Without it, the ticket request carries the cookies. */
  readonly token?: string | undefined;
  /** Further headers for the ticket request (e.g. a `Cookie` header in Node, which has no cookie jar). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Subscribed from the first connection on; more with `subscribe()`. */
  readonly subscriptions?: readonly Subscription[];
  /** Ping period until the server's welcome says otherwise. Default 10 000. */
  readonly heartbeatMs?: number;
  /** A ticket request with no answer after this long is aborted and retried with backoff. Default 10 000. */
  readonly ticketTimeoutMs?: number;
  readonly backoff?: Partial<BackoffPolicy>;
  /** Jitter's source, in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/** `ended`: the session ended; `failed`: the ticket request was refused as such (a 4xx); `closed`: by `close()`. */
export type StreamStatus = "idle" | "connecting" | "open" | "reconnecting" | "ended" | "failed" | "closed";

export interface CloseInfo {
  /**
   * The WebSocket close code; 4000 when the client gave up itself (silence, a seq gap) or never got a socket (the
   * ticket request failed or was refused), except 4401 when the ticket was refused with 401 (not signed in: the
   * session ended, as after the server's 4401) or a welcome named another user than the first; 1006 when the
   * connection was cut without a close frame.
   */
  readonly code: number;
  readonly reason: string;
  /** When the next attempt starts; null when there is none (closed, failed, or the session ended). */
  readonly reconnectInMs: number | null;
  /**
   * The session was signed out, revoked or expired, or the cookie is another user's now: sign in again, then
   * `connect()` a new client.
   */
  readonly sessionEnded: boolean;
}

/** A subscribe or unsubscribe as the caller asked for it. */
export interface SubscriptionRequest {
  readonly op: SubscriptionOp;
  readonly subscription: Subscription;
}

export type StreamClientError =
  | { readonly kind: "ticket"; readonly status: number | null; readonly message: string }
  | { readonly kind: "socket"; readonly message: string }
  | {
      readonly kind: "server";
      readonly code: string;
      readonly message: string;
      readonly field?: string;
      /**
       * The subscribe or unsubscribe the server refused (TOO_MANY_SUBSCRIPTIONS, say): it changed nothing there, and
       * the client no longer holds it either, so a refused subscribe is not sent again after a reconnect.
       */
      readonly request?: SubscriptionRequest;
    }
  | { readonly kind: "protocol"; readonly message: string }
  /** A subscribe or unsubscribe the client would not send (an asset or interval the protocol does not list). */
  | { readonly kind: "request"; readonly message: string; readonly request: SubscriptionRequest }
  | { readonly kind: "gap"; readonly expectedSeq: number; readonly receivedSeq: number }
  /**
   * The server closed the socket with 4029: it counted more than `maxMessagesPerSec` frames a second from this
   * client. The client sends at `perSec` from then on (half the rate before); the close event and a reconnect follow.
   */
  | {
      readonly kind: "rate";
      readonly message: string;
      /** The welcome's; null when it gave none. */
      readonly maxMessagesPerSec: number | null;
      readonly perSec: number | null;
    };

export type StateCause = "snapshot" | "resync" | "event" | "summary";

export interface StreamClientEvents {
  /** Connected and welcomed; subscriptions are being sent. */
  open: (welcome: WelcomeFrame) => void;
  close: (info: CloseInfo) => void;
  quote: (quote: QuoteFrame) => void;
  candle: (candle: CandleFrame) => void;
  /** A private event, applied: `state` is the state after it. */
  event: (event: EventFrame, state: PrivateState) => void;
  state: (state: PrivateState, cause: StateCause) => void;
  error: (error: StreamClientError) => void;
}

/** The code the client closes a connection with when it gives up on it itself. */
export const CLIENT_DROP_CODE = 4000;

/** The close code a WebSocket reports for a connection cut without a close frame; never sent on the wire. */
const ABNORMAL_CLOSURE = 1006;

/**
 * Each event's listeners, each with the registration it was added by: a listener removed and added again during a
 * delivery is a new registration, which that delivery skips (emit()).
 */
type Listeners = { [K in keyof StreamClientEvents]: Map<StreamClientEvents[K], object> };
type Timer = ReturnType<typeof setTimeout>;

export class StreamClient {
  private readonly fetch: FetchLike;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private readonly listeners: Listeners = {
    open: new Map(),
    close: new Map(),
    quote: new Map(),
    candle: new Map(),
    event: new Map(),
    state: new Map(),
    error: new Map(),
  };
  /**
   * What the server holds on this connection, as its answers said; while there is none, what the last one held (or
   * was being restored to it: `restoring`). What the client wants is this and `late`, with the requests still
   * unanswered applied (wanted()).
   */
  private held: SubscriptionSet = NO_SUBSCRIPTIONS;
  /**
   * Subscribes no server has confirmed: asked while there was no connection, or unanswered when it dropped. The next
   * connection sends them after what was held, so that a refusal falls on them and not on what a server accepted.
   */
  private late: SubscriptionSet = NO_SUBSCRIPTIONS;
  /**
   * Subscribes and unsubscribes asked on this connection (sent, or queued for the allowance) and not answered yet,
   * by id, in the order asked.
   */
  private readonly unanswered = new Map<RequestId, SubscriptionRequest>();
  /**
   * Those of `unanswered` that restore what the last connection held (replayed after the welcome). Should this one
   * drop before they are answered, they are still what a server held, and the next restores them the same way: taken
   * as subscribes asked anew, a quote list held as all quotes less others would go as a list, counted per asset.
   */
  private readonly restoring = new Set<RequestId>();
  /**
   * Frames waiting for the allowance, in order; each built as it goes, so a private subscribe's `since` is the seq
   * applied by then. Emptied with the connection: its requests are in `unanswered`, replayed on the next.
   */
  private readonly queue: (() => ClientFrame)[] = [];
  private allowance = new SendAllowance(Number.POSITIVE_INFINITY, 0);
  /** The last welcome's `maxMessagesPerSec`, if it gave one. */
  private maxMessagesPerSec: number | undefined;
  /** The share of the welcome's `maxMessagesPerSec` sent at: halved by each 4029. */
  private rateShare = 1;
  private queueTimer: Timer | undefined;
  private readonly pingFrame = (): ClientFrame => ({ op: "ping", id: String(++this.pings) });
  private requests = 0;
  private currentStatus: StreamStatus = "idle";
  private state: PrivateState | undefined;
  /** The first welcome's: the user whose state this is. A welcome for another one ends the client. */
  private userId: string | undefined;
  private socket: WebSocketLike | undefined;
  /** Bumped per connection attempt and on close(): callbacks of an older one are ignored. */
  private generation = 0;
  private failedAttempts = 0;
  /** Ticket requests refused as such (refusedAsSuch) in a row. */
  private refusals = 0;
  private heartbeatMs: number;
  /** When the connection was welcomed, by monotonicMs(). */
  private welcomedAt: number | undefined;
  private pings = 0;
  private retryTimer: Timer | undefined;
  /** The ticket request in flight: aborted after ticketTimeoutMs, or by close(). */
  private ticketRequest: AbortController | undefined;
  private pingTimer: Timer | undefined;
  private silenceTimer: Timer | undefined;

  constructor(private readonly options: StreamClientOptions) {
    // Checked before anything runs: a wrong option would otherwise come back only as an error on every retry.
    const invalid = invalidOptions(options);
    if (invalid !== undefined) throw new TypeError(invalid);
    this.fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.random = options.random ?? Math.random;
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    for (const subscription of options.subscriptions ?? []) {
      // No error listener can be attached yet: a subscription the server could never take is thrown here.
      const invalid = invalidSubscription(subscription);
      if (invalid !== undefined) throw new TypeError(`subscriptions: ${invalid}`);
      this.late = applySubscription(this.late, "subscribe", subscription);
    }
  }

  get status(): StreamStatus {
    return this.currentStatus;
  }

  /**
   * What the client is subscribed to, as the server holds it (or will, once the requests sent are answered), in
   * the subscribes that would make it: these are sent again on every new connection.
   */
  get subscriptions(): Subscription[] {
    return subscriptionsOf(this.wanted());
  }

  /** Subscribes and unsubscribes asked on this connection (sent or queued) that the server has not answered yet. */
  get unansweredRequests(): number {
    return this.unanswered.size;
  }

  /** Frames waiting to keep within the server's `maxMessagesPerSec`; they go, in order, as the allowance refills. */
  get queuedFrames(): number {
    return this.queue.length;
  }

  /** The private state, once the first snapshot arrived. */
  get privateState(): PrivateState | undefined {
    return this.state;
  }

  /**
   * Adds a listener (once: adding it again changes nothing); returns what removes it. As with `EventTarget`, the
   * listeners of an event are those there when its delivery starts: one added meanwhile gets the next event, not this
   * one, and one removed meanwhile is not called.
   */
  on<K extends keyof StreamClientEvents>(name: K, listener: StreamClientEvents[K]): () => void {
    if (!this.listeners[name].has(listener)) this.listeners[name].set(listener, {});
    return () => this.listeners[name].delete(listener);
  }

  /** Starts connecting (once; after close() or a session end, make a new client). */
  connect(): void {
    if (this.currentStatus !== "idle") return;
    void this.attempt();
  }

  /**
   * Adds to what is subscribed, with the server's semantics: quotes add up per asset (without `assets`: all of
   * them). Sent now when connected, else on connecting. A refusal comes as an `error` event naming the request.
   */
  subscribe(subscription: Subscription): void {
    this.request("subscribe", subscription);
  }

  /**
   * Removes from what is subscribed, likewise: quotes without `assets` stops every asset; with them, those assets
   * (from all quotes: the others stay).
   */
  unsubscribe(subscription: Subscription): void {
    this.request("unsubscribe", subscription);
  }

  /** Closes the connection for good. */
  close(): void {
    if (this.currentStatus === "closed" || this.currentStatus === "ended" || this.currentStatus === "failed") return;
    this.generation++;
    this.stopTimers();
    clearTimeout(this.retryTimer);
    this.ticketRequest?.abort(new Error("client closed"));
    const socket = this.socket;
    this.socket = undefined;
    if (socket !== undefined) abandon(socket, 1000, "client closed");
    this.currentStatus = "closed";
    this.emit("close", { code: 1000, reason: "client closed", reconnectInMs: null, sessionEnded: false });
  }

  private async attempt(): Promise<void> {
    const generation = ++this.generation;
    this.currentStatus = this.currentStatus === "idle" ? "connecting" : "reconnecting";
    let ticket: Ticket;
    const request = new AbortController();
    const timeoutMs = this.options.ticketTimeoutMs ?? 10_000;
    const timeout = setTimeout(
      () => request.abort(new Error(`no answer to the ticket request in ${timeoutMs} ms`)),
      timeoutMs,
    );
    this.ticketRequest = request;
    try {
      ticket = await requestTicket(this.fetch, this.options, request.signal);
    } catch (error) {
      if (generation !== this.generation) return;
      // Not a refusal: the refusals before it and after it are not in a row.
      this.refusals = 0;
      this.emit("error", { kind: "ticket", status: null, message: messageOf(error) });
      if (this.closedMeanwhile()) return;
      this.retry(CLIENT_DROP_CODE, "ticket request failed", 0);
      return;
    } finally {
      clearTimeout(timeout);
      if (this.ticketRequest === request) this.ticketRequest = undefined;
    }
    if (generation !== this.generation) return;
    if (!ticket.ok) {
      this.emit("error", { kind: "ticket", status: ticket.status, message: ticket.message });
      if (this.closedMeanwhile()) return;
      this.refusals = refusedAsSuch(ticket.status) ? this.refusals + 1 : 0;
      if (ticket.status === 401) this.end(CLOSE_CODES.sessionEnded, "not signed in", "ended");
      else if (this.refusals >= REFUSALS_BEFORE_FAILING)
        this.end(CLIENT_DROP_CODE, `ticket refused: HTTP ${ticket.status}`, "failed");
      else this.retry(CLIENT_DROP_CODE, "ticket refused", ticket.retryAfterMs);
      return;
    }
    this.refusals = 0;
    let socket: WebSocketLike;
    try {
      socket = new this.options.WebSocket(ticket.url);
    } catch (error) {
      this.emit("error", { kind: "socket", message: messageOf(error) });
      if (this.closedMeanwhile()) return;
      this.retry(CLIENT_DROP_CODE, "socket could not be opened", 0);
      return;
    }
    this.socket = socket;
    this.welcomedAt = undefined;
    this.watchSilence(generation);
    socket.onmessage = (message) => {
      if (generation === this.generation) this.receive(generation, message.data);
    };
    socket.onclose = (closed) => {
      if (generation !== this.generation) return;
      this.socket = undefined;
      if (closed.code === CLOSE_CODES.tooManyMessages) this.overRate();
      if (this.closedMeanwhile()) return;
      if (closed.code === CLOSE_CODES.sessionEnded) this.end(closed.code, closed.reason, "ended");
      else this.retry(closed.code, closed.reason, 0);
    };
    socket.onerror = (error) => {
      if (generation === this.generation) this.emit("error", { kind: "socket", message: messageOf(error) });
    };
  }

  /**
   * On a connection: sent as asked (within the allowance), with an id its answer echoes. Without one: what the next
   * one subscribes. A private subscribe while the private channel is wanted already is not sent: it would change
   * nothing, like any subscribe of what is held, but the server refuses a second one (ALREADY_SUBSCRIBED), which
   * would reach the app as an error for a harmless call.
   */
  private request(op: SubscriptionOp, subscription: Subscription, restore = false): void {
    // Checked here, not only by the server: one it refused while disconnected would be half kept, and an
    // oversized one is answered by a close, which would repeat on every reconnect.
    const invalid = invalidSubscription(subscription);
    if (invalid !== undefined) {
      this.emit("error", { kind: "request", message: invalid, request: { op, subscription } });
      return;
    }
    if (op === "subscribe" && subscription.channel === "private" && this.wanted().private) return;
    if (this.currentStatus !== "open") {
      this.unconfirmed(op, subscription);
      return;
    }
    const id = ++this.requests;
    this.unanswered.set(id, { op, subscription });
    if (restore) this.restoring.add(id);
    this.enqueue(() => (op === "subscribe" ? this.subscribeFrame(subscription, id) : { op, id, ...subscription }));
  }

  /** What the server will hold once every request sent is answered as asked. */
  private wanted(): SubscriptionSet {
    let set = unionOf(this.held, this.late);
    for (const { op, subscription } of this.unanswered.values()) set = applySubscription(set, op, subscription);
    return set;
  }

  /** The server carried out request `id`. */
  private answered(id: RequestId | undefined): void {
    const request = id === undefined ? undefined : this.unanswered.get(id);
    if (request === undefined) return;
    this.unanswered.delete(id!);
    this.restoring.delete(id!);
    this.held = applySubscription(this.held, request.op, request.subscription);
  }

  /** The server refused a frame: when it was a subscribe or unsubscribe, that request is forgotten. */
  private refused(frame: ErrorFrame): void {
    const request = frame.id === undefined ? undefined : this.unanswered.get(frame.id);
    if (request !== undefined) this.unanswered.delete(frame.id!);
    if (request !== undefined) this.restoring.delete(frame.id!);
    this.emit("error", {
      kind: "server",
      code: frame.code,
      message: frame.message,
      ...(frame.field === undefined ? {} : { field: frame.field }),
      ...(request === undefined ? {} : { request }),
    });
  }

  /**
   * The connection is gone: requests it did not answer are taken as carried out, to be sent on the next one; those
   * restoring what a server held, as held again.
   */
  private forgetConnection(): void {
    for (const [id, { op, subscription }] of this.unanswered) {
      if (this.restoring.has(id)) this.held = applySubscription(this.held, op, subscription);
      else this.unconfirmed(op, subscription);
    }
    this.unanswered.clear();
    this.restoring.clear();
  }

  /** A request no server answered: a subscribe waits in `late`; an unsubscribe takes effect everywhere. */
  private unconfirmed(op: SubscriptionOp, subscription: Subscription): void {
    this.late = applySubscription(this.late, op, subscription);
    if (op === "unsubscribe") this.held = applySubscription(this.held, op, subscription);
  }

  private receive(generation: number, data: unknown): void {
    this.watchSilence(generation);
    let frame: ServerFrame;
    try {
      frame = JSON.parse(textOf(data)) as ServerFrame;
    } catch {
      this.emit("error", { kind: "protocol", message: "a frame that is not JSON" });
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") {
      this.emit("error", { kind: "protocol", message: "a frame without a type" });
      return;
    }
    switch (frame.type) {
      case "welcome":
        return this.welcome(generation, frame);
      case "quote":
        return this.emit("quote", frame);
      case "candle":
        return this.emit("candle", frame);
      case "snapshot":
      case "resync":
        this.state = stateFromSnapshot(frame);
        return this.emit("state", this.state, frame.type);
      case "event":
        return this.event(frame);
      case "summary":
        return this.summary(frame);
      case "error":
        return this.refused(frame);
      case "subscribed":
      case "unsubscribed":
        return this.answered(frame.id);
      case "heartbeat":
      case "pong":
        return; // liveness only (watchSilence above)
      default:
        return; // a frame type newer than this client: ignored
    }
  }

  private welcome(generation: number, frame: WelcomeFrame): void {
    // On the session cookie a reconnect's ticket is for whoever signed in last in this browser: another user's socket
    // would answer the private resume with that user's events after this one's seq, applied onto this one's state.
    const userId = typeof frame.userId === "string" ? frame.userId : undefined;
    if (this.userId !== undefined && userId !== undefined && userId !== this.userId) {
      this.abandonSocket(1000, "signed in as another user");
      this.end(CLOSE_CODES.sessionEnded, "signed in as another user", "ended");
      return;
    }
    this.userId ??= userId;
    // Past MAX_HEARTBEAT_MS, the silence timer (twice it) would fire at once: such a welcome's figure is not taken.
    const heartbeatMs = frame.heartbeatMs;
    if (Number.isFinite(heartbeatMs) && heartbeatMs > 0 && heartbeatMs <= MAX_HEARTBEAT_MS)
      this.heartbeatMs = heartbeatMs;
    this.welcomedAt = monotonicMs();
    this.currentStatus = "open";
    this.watchSilence(generation);
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.ping(generation), this.heartbeatMs);
    const rate = frame.limits?.maxMessagesPerSec;
    this.maxMessagesPerSec = typeof rate === "number" && Number.isFinite(rate) && rate > 0 ? rate : undefined;
    const perSec = this.maxMessagesPerSec === undefined ? undefined : this.maxMessagesPerSec * this.rateShare;
    this.allowance = new SendAllowance(perSec ?? Number.POSITIVE_INFINITY, monotonicMs());
    this.queue.length = 0;
    // A new socket holds nothing: what the last one held is subscribed again, then what no server confirmed.
    const max = frame.limits?.maxSubscriptions ?? Number.POSITIVE_INFINITY;
    const confirmed = replayOf(this.held, max, true);
    const rest = replayOf(withoutHeld(this.late, this.held), max, false);
    this.held = NO_SUBSCRIPTIONS;
    this.late = NO_SUBSCRIPTIONS;
    this.unanswered.clear();
    this.restoring.clear();
    for (const [op, subscription] of confirmed) this.request(op, subscription, true);
    for (const [op, subscription] of rest) this.request(op, subscription);
    // A send that failed is reported as an error, whose listener may have closed the client.
    if (this.closedMeanwhile()) return;
    this.emit("open", frame);
  }

  private event(frame: EventFrame): void {
    const state = this.state;
    if (state === undefined) {
      this.emit("error", { kind: "protocol", message: `event ${frame.seq} before any snapshot` });
      return;
    }
    if (frame.seq <= state.seq) return; // already applied
    if (frame.seq !== state.seq + 1) {
      this.emit("error", { kind: "gap", expectedSeq: state.seq + 1, receivedSeq: frame.seq });
      if (this.closedMeanwhile()) return;
      this.drop(`seq gap: expected ${state.seq + 1}, received ${frame.seq}`);
      return;
    }
    this.state = applyEvent(state, frame);
    this.emit("event", frame, this.state);
    if (this.closedMeanwhile()) return;
    this.emit("state", this.state, "event");
  }

  /** A summary computed before the state's last event is dropped: another follows that event. */
  private summary(frame: SummaryFrame): void {
    if (this.state === undefined || frame.seq < this.state.seq) return;
    const { balance, equity, marginUsed, freeMargin, marginLevel, unrealizedPnl, pricesMissing } = frame;
    const summary = { balance, equity, marginUsed, freeMargin, marginLevel, unrealizedPnl, pricesMissing };
    this.state = { ...this.state, summary };
    this.emit("state", this.state, "summary");
  }

  private subscribeFrame(subscription: Subscription, id: RequestId): ClientFrame {
    if (subscription.channel !== "private") return { op: "subscribe", id, ...subscription };
    return this.state === undefined
      ? { op: "subscribe", id, channel: "private" }
      : { op: "subscribe", id, channel: "private", since: this.state.seq };
  }

  /** Sends `frame` now if the allowance has room and nothing waits before it, else queues it. */
  private enqueue(frame: () => ClientFrame): void {
    this.queue.push(frame);
    if (this.queue.length === 1) this.sendQueued(this.generation);
  }

  /** A ping, unless one is waiting already: a queue behind the allowance needs no second. */
  private ping(generation: number): void {
    if (generation !== this.generation || this.queue.some((frame) => frame === this.pingFrame)) return;
    this.enqueue(this.pingFrame);
  }

  /** Sends what the allowance lets go now; the rest when it has refilled. */
  private sendQueued(generation: number): void {
    clearTimeout(this.queueTimer);
    this.queueTimer = undefined;
    while (this.queue.length > 0) {
      // A failed send is reported as an error, whose listener may have closed the client or dropped the connection.
      if (generation !== this.generation || this.closedMeanwhile()) return;
      const nowMs = monotonicMs();
      const waitMs = this.allowance.waitMs(nowMs);
      if (waitMs > 0) {
        this.queueTimer = setTimeout(() => this.sendQueued(generation), waitMs);
        return;
      }
      this.allowance.take(nowMs);
      this.send(this.queue.shift()!());
    }
  }

  /** Closed 4029: this client's frames arrived faster than the server allows. Later connections send at half that. */
  private overRate(): void {
    this.rateShare /= 2;
    const max = this.maxMessagesPerSec;
    const perSec = max === undefined ? undefined : max * this.rateShare;
    const message =
      max === undefined || perSec === undefined
        ? "closed 4029: more messages a second arrived from this client than the server allows (its welcome gave no rate)"
        : `closed 4029: more than ${max} messages a second arrived from this client; it sends at most ${perSec} a second from now on`;
    this.emit("error", { kind: "rate", message, maxMessagesPerSec: max ?? null, perSec: perSec ?? null });
  }

  private send(frame: ClientFrame): void {
    try {
      this.socket?.send(JSON.stringify(frame));
    } catch (error) {
      // A socket that is closing: its close event follows and reconnects.
      this.emit("error", { kind: "socket", message: messageOf(error) });
    }
  }

  /** (Re)arms the silence timer: nothing from the server for 2 × heartbeatMs, and the connection is dropped. */
  private watchSilence(generation: number): void {
    clearTimeout(this.silenceTimer);
    const silenceMs = 2 * this.heartbeatMs;
    const dueAtMs = monotonicMs() + silenceMs;
    this.silenceTimer = setTimeout(() => this.silenceDue(generation, dueAtMs), silenceMs);
  }

  /**
   * The silence timer ran. Late, it shows the thread was held up (a long task, a frozen or throttled tab), and frames
   * that arrived in time meanwhile may still wait to be read: in Node, overdue timers run before the sockets are read.
   * They get one more turn (SILENCE_GRACE_MS): any of them re-arms the timer (receive()), which cancels this one.
   * `dueAtMs` undefined: that turn has passed with nothing read.
   */
  private silenceDue(generation: number, dueAtMs: number | undefined): void {
    if (generation !== this.generation) return;
    if (dueAtMs !== undefined && monotonicMs() - dueAtMs > LATE_TIMER_MS) {
      this.silenceTimer = setTimeout(() => this.silenceDue(generation, undefined), SILENCE_GRACE_MS);
      return;
    }
    this.drop(`nothing received for ${2 * this.heartbeatMs} ms`);
  }

  /** Gives up on the current connection without waiting for its close handshake, and reconnects. */
  private drop(reason: string): void {
    this.abandonSocket(CLIENT_DROP_CODE, reason);
    this.retry(CLIENT_DROP_CODE, reason, 0);
  }

  /** Closes the current socket without waiting for its close handshake: none of its callbacks runs after this. */
  private abandonSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = undefined;
    this.generation++;
    if (socket !== undefined) abandon(socket, code, reason);
  }

  private retry(code: number, reason: string, atLeastMs: number): void {
    this.stopTimers();
    this.forgetConnection();
    this.generation++;
    const stable = this.welcomedAt !== undefined && monotonicMs() - this.welcomedAt >= this.backoff.stableMs;
    if (stable) this.failedAttempts = 0;
    this.welcomedAt = undefined;
    // A server going away closes all its sockets at once: the spread keeps its clients from coming back together. On
    // a connection that was not stable, 1001 is also a failed attempt, so a server in a restart loop, which goes away
    // again on every connection, is retried ever more slowly (up to maxMs), not every few seconds for ever.
    // Deployed, the clients of a stream task being replaced see no 1001: the load balancer cuts all its sockets at
    // once (1006), and a crashed server's go the same way. A stable connection cut so is spread likewise, from the
    // first step up; on one that was not, a cut is a failed attempt like any other.
    const goingAway = code === CLOSE_CODES.goingAway;
    const stepMs = goingAway && stable ? 0 : backoffDelayMs(this.failedAttempts, this.backoff, this.random);
    const spreadMs = goingAway
      ? goingAwayDelayMs(this.backoff, this.random)
      : code === ABNORMAL_CLOSURE && stable
        ? cutDelayMs(stepMs, this.backoff, this.random)
        : 0;
    const delayMs = Math.max(atLeastMs, spreadMs, stepMs);
    this.failedAttempts++;
    this.currentStatus = "reconnecting";
    this.emit("close", { code, reason, reconnectInMs: delayMs, sessionEnded: false });
    if (this.closedMeanwhile()) return;
    this.retryTimer = setTimeout(() => void this.attempt(), delayMs);
  }

  /** No more attempts: the session ended, or the API refuses the ticket request itself. */
  private end(code: number, reason: string, status: "ended" | "failed"): void {
    this.stopTimers();
    this.forgetConnection();
    this.generation++;
    this.currentStatus = status;
    this.emit("close", { code, reason, reconnectInMs: null, sessionEnded: status === "ended" });
  }

  /** A listener just called may have closed the client: then whatever was to follow is not done. */
  private closedMeanwhile(): boolean {
    return this.currentStatus === "closed";
  }

  private stopTimers(): void {
    clearInterval(this.pingTimer);
    clearTimeout(this.silenceTimer);
    clearTimeout(this.queueTimer);
    this.queue.length = 0;
  }

  private emit<K extends keyof StreamClientEvents>(name: K, ...args: Parameters<StreamClientEvents[K]>): void {
    // Only close() emits while closed: its final close goes to every listener. Any other event stops at the listener
    // that closed the client, which has already sent that final close to the rest: this one would follow it.
    const open = !this.closedMeanwhile();
    // Over a copy: iterating the live map, a listener that removes and adds itself again (re-arming) would be moved to
    // its end and called again for the same event, for ever, and one added by a listener would get the event that
    // added it (a "next event" promise would resolve with this one).
    const listeners = this.listeners[name];
    for (const [listener, registration] of [...listeners]) {
      if (listeners.get(listener) !== registration) continue; // removed meanwhile (and maybe added again)
      if (open && this.closedMeanwhile()) return;
      try {
        (listener as (...a: Parameters<StreamClientEvents[K]>) => void)(...args);
      } catch (error) {
        // A listener's bug must not stop the stream or the other listeners; it is still reported, as uncaught.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

/**
 * The time for durations (how long a connection stayed up, the send allowance's refill): monotonic, in browsers and
 * Node alike. The wall clock can be stepped back (NTP, a manual change) while a connection is up, and a stable
 * connection would then not count as one, its backoff growing on instead of starting over.
 */
function monotonicMs(): number {
  return performance.now();
}

/** A timer that runs this long after it was due was held up: an idle thread runs it within a few ms. */
const LATE_TIMER_MS = 20;

/**
 * How long a late silence timer waits for frames already there to be read. Not 0: in Node a timer of 0 (1 ms) can
 * still run in the same timers phase, before the sockets are read, if that phase took a millisecond.
 */
const SILENCE_GRACE_MS = 20;

/** Ticket requests refused as such, in a row, after which the client stops (status `failed`). */
const REFUSALS_BEFORE_FAILING = 3;

/**
 * A 4xx on the ticket request other than 408 (timeout) and 429 (too many): the request itself is wrong (a wrong
 * `apiUrl` gets 404), and the same one would be refused again.
 */
function refusedAsSuch(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

/** The most `assets` one subscribe or unsubscribe may name: the stream server's limit (docs/stream.md). */
const MAX_ASSETS = 64;

/** Why the server would refuse `subscription` whatever it holds (an asset or interval it does not list), if it would. */
function invalidSubscription(subscription: Subscription): string | undefined {
  const known = (asset: unknown) => (ASSET_SYMBOLS as readonly unknown[]).includes(asset);
  const listed = `expected one of ${ASSET_SYMBOLS.join(", ")}`;
  switch (subscription.channel) {
    case "quotes":
      if (subscription.assets?.length === 0)
        return "assets: expected at least one asset (or no assets: all), received [].";
      // The server's limit; it also keeps every frame this client sends far below maxFrameBytes (close 1009).
      if ((subscription.assets ?? []).length > MAX_ASSETS)
        return `assets: expected at most ${MAX_ASSETS} assets, received ${(subscription.assets ?? []).length}.`;
      for (const asset of subscription.assets ?? [])
        if (!known(asset)) return `assets: ${listed}, received ${JSON.stringify(asset)}.`;
      return undefined;
    case "candles":
      if (!known(subscription.asset)) return `asset: ${listed}, received ${JSON.stringify(subscription.asset)}.`;
      if (!(CANDLE_INTERVALS as readonly unknown[]).includes(subscription.interval))
        return `interval: expected one of ${CANDLE_INTERVALS.join(", ")}, received ${JSON.stringify(subscription.interval)}.`;
      return undefined;
    case "private":
      return undefined;
    default:
      return `channel: expected quotes, candles or private, received ${JSON.stringify((subscription as { channel: unknown }).channel)}.`;
  }
}
