/**
 * One socket's private channel: the user's events strictly in seq order, no gap, no duplicate, whatever order the
 * fan-out's notifications come in. A notification for the next seq is sent at once; one further ahead means events
 * in between are missing here, and they are read from the store (worker/events.ts) from the last seq sent. A gap
 * the store does not hold yet (the worker stores a user's events out of order only after a crash) waits for a
 * later notification or the retry timer, which backs off to one read per RETRY_MAX_MS: a gap that never fills (an
 * output the worker refused to store, `bad_output_entry`) costs little, and is logged and counted for an operator
 * (docs/operations.md); a gap logged as waiting is logged again when it ends, so an operator sees which did.
 *
 * A client that subscribes without `since` gets a snapshot; with `since` the events after it, or a resync (a fresh
 * snapshot) when they are no longer kept or `since` is ahead of them. A snapshot or resync whose state is read in the
 * middle of an engine step waits, for at most STEP_WAIT_MAX_MS, for the step's next event to be stored.
 *
 * The channel keeps a mirror of the account (snapshot + events) for the account summary it sends after the events
 * it sends in one go, never after an event its engine step follows with another for the user, and, throttled by the
 * hub, as the quotes of the user's open-trade assets move. A summary carries the last seq sent and shows the account
 * as of that event (summaryReady): none goes out while the mirror is ahead of what was sent, as it is during a
 * resume's replay (the mirror is the account's current state, the client is still being sent the events before it)
 * and after a snapshot or resync that reflects events stored above a gap, until they have been sent.
 */
import type { OrderView, PrivateOutput, TradeView } from "../contract/messages.ts";
import { accountSummary, type AccountSummary } from "../functions/account-summary.ts";
import { balancesView, compareIds, type Quote } from "../functions/views.ts";
import type { Logger } from "../platform/log.ts";
import {
  insideStep,
  readPastStep,
  type EventsAfter,
  type PrivateState,
  type StepWaitLimits,
} from "../worker/events.ts";
import { CLOSE_CODES } from "../client/protocol.ts";
import type { StreamConnection } from "./connection.ts";
import type { StreamMetrics } from "./metrics.ts";

/** The events store as the stream reads it (worker/events.ts, bound to a Redis and keyspace). */
export interface PrivateStore {
  readState(userId: string): Promise<PrivateState>;
  readAfter(userId: string, since: number, limit?: number): Promise<EventsAfter>;
}

/** Events per store read while catching up. */
const READ_BATCH = 500;
/** How soon a gap the store did not hold yet (or a read that failed) is looked for again: doubling up to the max. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;
/** A gap still open after this long is logged (once), and then its end. */
const GAP_WARN_AFTER_MS = 5_000;
/**
 * How long a snapshot or resync waits for the engine step its state is read in the middle of. The step's next event
 * is in the batch after the one that stored the mark (a batch may end inside a step): a live worker stores it once
 * that batch's Postgres writes are done, well within this. A worker that died holding it leaves it to a claim, after
 * WORKER_CLAIM_IDLE_MS (30 s by default) and up to half that again for the next claim round: too long for a client
 * to go without its state, so the wait does not cover it. Past this the state goes out as read, logged
 * (`private_state_mid_step`); its summary shows the step half done, and no summary frame follows until the step's
 * next event has been sent (stepContinues).
 */
const STEP_WAIT_MAX_MS = 2_000;
/** The pauses between its reads double as a gap's retries do; a notification past the mark ends one sooner. */
const STEP_WAIT: StepWaitLimits = {
  firstPauseMs: RETRY_FIRST_MS,
  maxPauseMs: RETRY_MAX_MS,
  maxWaitMs: STEP_WAIT_MAX_MS,
};

export interface PrivateChannelDeps {
  readonly store: PrivateStore;
  readonly quotes: ReadonlyMap<string, Quote>;
  readonly log: Logger;
  readonly metrics: Pick<StreamMetrics, "gapWaiting">;
  /** The monotonic clock (clock.ts): every time here is a duration's start or end. */
  readonly now: () => number;
  /**
   * Sends the socket the quotes held back for it (quotes.ts) before a private event, snapshot or resync: a
   * stop-loss's close must not reach the client ahead of the quote that fired it, nor a summary ahead of its prices.
   */
  readonly flushQuotes: (nowMs: number) => void;
  /**
   * The open trades come to hold an asset (`held`) or no longer do: the hub indexes channels by asset, so that a
   * quote reaches only the channels whose summary it moves.
   */
  readonly holding?: (asset: string, held: boolean) => void;
}

export class PrivateChannel {
  /** The last seq sent to the client. */
  private lastSeq = 0;
  private highestNotified = 0;
  private state: "starting" | "live" | "filling" | "stopped" = "starting";
  private retry: NodeJS.Timeout | undefined;
  private retryDelayMs = RETRY_FIRST_MS;
  /** The last read failed: read again on the retry timer, gap or not. */
  private readFailed = false;
  /** A recheck came while the channel was starting or reading: read (again) once that is done. */
  private recheckPending = false;
  /**
   * A notification past the last seq sent came while the store was being read: the read may have been made before
   * the store held that event, so a read that brought nothing does not mean a gap.
   */
  private notifiedWhileReading = false;
  /** The seq the store is awaited for, since when, and whether that was logged. */
  private gap: { seq: number; sinceMs: number; logged: boolean } | undefined;
  /** A snapshot's or resync's state read under way (readWholeState): what notify() tells it. */
  private stepWait: StepWait | undefined;
  private readonly mirror: Mirror;
  /**
   * The seqs notified or read as followed by another event of the same engine step (the fan-out's `more`, or the
   * store's), not yet sent or the last sent: while the last one sent is among them, the mirror is between two halves
   * of one change (a trade opened, its margin not yet paid) and no summary goes out, even when nothing after it is
   * stored yet. The seq the channel starts from counts too (a snapshot's or resync's mark, a resume's `since`, read
   * with the store's `more`): its fan-out came before the channel listened, or went to the socket before.
   */
  private readonly stepContinues = new Set<number>();
  /** A price-driven summary is owed (an open trade's asset moved); the hub's tick sends it. */
  summaryDue = false;
  /** On the monotonic clock; none sent yet: the first is never held back for the throttle. */
  lastSummaryMs = -Infinity;

  constructor(
    private readonly conn: StreamConnection,
    private readonly deps: PrivateChannelDeps,
  ) {
    this.mirror = new Mirror(deps.holding);
  }

  /** Snapshot (no `since`) or resume from `since`; then live. */
  async start(since: number | undefined): Promise<void> {
    // A resume's client has its state already: only what it is sent now must not be mid-step (stepContinues below).
    const snapshot =
      since === undefined ? await this.readWholeState() : await this.deps.store.readState(this.conn.userId);
    if (snapshot === undefined || this.stopped) return;
    this.mirror.reset(snapshot);
    // Events stored above a gap were fanned out before this channel listened: no notification will name them, and
    // the one that fills the gap is read from the store only if the channel knows more follow it.
    if (snapshot.aheadSeq > this.highestNotified) this.highestNotified = snapshot.aheadSeq;
    // The mark may sit inside a step whose next event is not stored yet (a worker's batch ended there), and no
    // notification will say so: its fan-out came before this channel listened. Known now, not after the first read,
    // so a summary cannot go out between the two on a resume from the mark.
    if (snapshot.markContinues) this.stepContinues.add(snapshot.seq);
    if (since === undefined) {
      this.lastSeq = snapshot.seq;
      this.sendState("snapshot", undefined);
      if (this.stopped) return; // the snapshot closed the socket (too slow, connection.ts): nothing more on it
    } else this.lastSeq = since;
    this.state = "live";
    if (since !== undefined || this.highestNotified > this.lastSeq || this.recheckPending) await this.fill();
  }

  /**
   * A fan-out notification of one of this user's events; `more`: the same engine step has another event for the
   * user after it.
   */
  notify(event: PrivateOutput, more = false): void {
    if (event.seq > this.highestNotified) this.highestNotified = event.seq;
    const wait = this.stepWait;
    if (wait !== undefined) {
      if (event.seq > wait.notified) wait.notified = event.seq;
      if (event.seq > wait.mark) wait.wake?.(); // stored before its fan-out: the state can be read past the mark now
    }
    if (more && event.seq >= this.lastSeq) this.stepContinues.add(event.seq);
    if (this.state === "filling" && event.seq > this.lastSeq) this.notifiedWhileReading = true;
    if (this.state !== "live" || event.seq <= this.lastSeq) return; // a fill running or to come picks it up
    if (event.seq === this.lastSeq + 1) this.deliver([event]);
    // Past a gap, or the event that closes one with later ones notified before it: those are in the store.
    if (this.state === "live" && this.highestNotified > this.lastSeq) void this.fill();
  }

  /** After the fan-out reader lost entries (a Redis error, or the trim passed it): look for anything missed. */
  recheck(): void {
    if (this.state === "live") void this.fill();
    else if (this.state !== "stopped") this.recheckPending = true; // the read under way may have missed them
  }

  stop(): void {
    this.state = "stopped";
    clearTimeout(this.retry);
    this.stepWait?.wake?.();
    this.endGap("channel_closed");
  }

  /** A method, not a field test: TypeScript would keep its narrowing across the awaits that may change it. */
  private get stopped(): boolean {
    return this.state === "stopped";
  }

  /** The last event sent is not its engine step's last: a summary now would show the account half changed. */
  get midStep(): boolean {
    return this.stepContinues.has(this.lastSeq);
  }

  /** Whether a summary now shows the account as of the last event sent: not mid-step, nor ahead of the client. */
  get summaryReady(): boolean {
    return !this.midStep && this.mirror.showsExactly(this.lastSeq);
  }

  /** The open trades' assets: a quote of one moves the summary. */
  heldAssets(): Iterable<string> {
    return this.mirror.assets.keys();
  }

  sendSummary(nowMs: number): void {
    this.summaryDue = false;
    this.lastSummaryMs = nowMs;
    this.conn.send({ type: "summary", seq: this.lastSeq, ...this.summary() }, nowMs);
  }

  /** Reads and sends what the store holds after the last seq sent; resyncs when it cannot. */
  private async fill(): Promise<void> {
    if (this.state !== "live") return;
    this.state = "filling";
    this.recheckPending = false;
    clearTimeout(this.retry);
    this.retry = undefined;
    try {
      for (;;) {
        this.notifiedWhileReading = false;
        const after = await this.deps.store.readAfter(this.conn.userId, this.lastSeq, READ_BATCH);
        if (this.stopped) return;
        this.readFailed = false;
        if (!after.ok) {
          const snapshot = await this.readWholeState();
          if (snapshot === undefined || this.stopped) return;
          this.resync(snapshot, after.reason);
          // Events notified while the state was read, and not in it, are stored: read them now. Left to the retry
          // timer they would wait its 250 ms and count as a gap that never was.
          if (this.stopped || this.conn.closed || this.highestNotified <= this.lastSeq) break;
          continue;
        }
        // The read's `since` (the last seq sent) included: a resume at a step's first event is mid-step.
        for (const seq of after.continued) if (seq >= this.lastSeq) this.stepContinues.add(seq);
        // Events stored above a gap whose notifications this replica lost (a recheck after the fan-out reader missed
        // entries): the one that fills the gap is notified alone, so the channel must know more follow it.
        if (after.aheadSeq > this.highestNotified) this.highestNotified = after.aheadSeq;
        this.deliver(after.events);
        if (this.conn.closed) break;
        // More to read: a full batch, or notifications past what was sent that came while this one was read (read
        // again now rather than on the retry timer). A read that brings nothing, with no notification during it,
        // means the store does not hold them yet; one made as a notification came may just have been too early.
        const more =
          after.events.length === READ_BATCH ||
          (this.highestNotified > this.lastSeq && (after.events.length > 0 || this.notifiedWhileReading));
        if (!more) break;
      }
    } catch (error) {
      this.deps.log.warn("private_read_failed", { userId: this.conn.userId, error });
      this.readFailed = true;
    } finally {
      if (this.state === "filling") this.state = "live";
    }
    if (this.state !== "live") return;
    if (this.recheckPending) void this.fill();
    else this.scheduleRetry();
  }

  /**
   * The account for a snapshot or resync, read again while it is inside an engine step (`insideStep`: the step's next
   * event is not stored yet, after the mark or after the newest event stored above a gap), for at most
   * STEP_WAIT_MAX_MS: a snapshot read there would carry a summary of money that never was (a trade open, its margin
   * not yet paid from the balance), and the client shows it. Each wait ends with a notification past the mark (its
   * event is stored by then), or after the retry delay, doubling as a gap's does. Events notified meanwhile are read
   * after the state's seq as usual: the state read last decides what is sent again and what is not. Undefined when
   * the channel stopped meanwhile (unsubscribe, the socket closed).
   */
  private async readWholeState(): Promise<PrivateState | undefined> {
    const wait: StepWait = { mark: Infinity, notified: 0, wake: undefined };
    this.stepWait = wait;
    try {
      const read = await readPastStep(
        STEP_WAIT,
        this.deps.now,
        async () => {
          if (this.stopped) return undefined;
          [wait.mark, wait.notified] = [Infinity, 0];
          const state = await this.deps.store.readState(this.conn.userId);
          return this.stopped ? undefined : state;
        },
        (state) => insideStep(state) && !this.conn.closed,
        (state, ms) => {
          // Notified past the mark while the state was read: that event may have been stored after the read. Each
          // read again this way needs another notification, so it cannot spin.
          if (wait.notified > state.seq) return Promise.resolve();
          wait.mark = state.seq;
          return new Promise<void>((resolve) => {
            const wake = () => {
              clearTimeout(timer);
              wait.wake = undefined;
              resolve();
            };
            const timer = setTimeout(wake, ms);
            wait.wake = wake;
          });
        },
      );
      if (read?.waitedMs !== undefined)
        this.deps.log.warn("private_state_mid_step", {
          userId: this.conn.userId,
          seq: read.state.seq,
          aheadSeq: read.state.aheadSeq,
          waitedMs: read.waitedMs,
        });
      return read?.state;
    } finally {
      this.stepWait = undefined;
    }
  }

  /** After a read: a gap still open, or a failed read, is looked for again later, each time a little later. */
  private scheduleRetry(): void {
    const waiting = this.highestNotified > this.lastSeq;
    if (!waiting) this.endGap("filled");
    else if (this.gap?.seq !== this.lastSeq + 1) this.startGap();
    else if (!this.gap.logged && this.deps.now() - this.gap.sinceMs >= GAP_WARN_AFTER_MS) {
      this.gap.logged = true;
      this.deps.log.warn("private_gap_waiting", {
        userId: this.conn.userId,
        missingSeq: this.gap.seq,
        notifiedSeq: this.highestNotified,
        waitedMs: this.deps.now() - this.gap.sinceMs,
      });
    }
    if (!waiting && !this.readFailed) {
      this.retryDelayMs = RETRY_FIRST_MS;
      return;
    }
    if (this.retry !== undefined) return;
    const delayMs = this.retryDelayMs;
    this.retryDelayMs = Math.min(RETRY_MAX_MS, delayMs * 2);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.fill();
    }, delayMs);
  }

  private startGap(): void {
    // Past the gap before (a resync ended it already): its events came, and the channel waits for later ones.
    this.endGap("filled");
    this.gap = { seq: this.lastSeq + 1, sinceMs: this.deps.now(), logged: false };
    this.retryDelayMs = RETRY_FIRST_MS;
    this.deps.metrics.gapWaiting(1);
  }

  /**
   * The gap is no longer waited on: its events came (`filled`), a resync skipped it, or the channel closed with it
   * open. Logged only after `private_gap_waiting` was: a gap shorter than GAP_WARN_AFTER_MS is no news.
   */
  private endGap(how: "filled" | "resync" | "channel_closed"): void {
    if (this.gap === undefined) return;
    const { seq, sinceMs, logged } = this.gap;
    this.gap = undefined;
    this.deps.metrics.gapWaiting(-1);
    if (logged)
      this.deps.log.info("private_gap_closed", {
        userId: this.conn.userId,
        missingSeq: seq,
        how,
        waitedMs: this.deps.now() - sinceMs,
      });
  }

  /**
   * Replaces the account with `snapshot` and sends it as a resync. A bug met on the way (an exception: a read model
   * the summary cannot read) closes the socket as a delivery's does: the last seq has moved past events the client
   * never got, and the next read would go on from there as if the resync had reached it.
   */
  private resync(snapshot: PrivateState, reason: string): void {
    this.endGap("resync");
    try {
      this.mirror.reset(snapshot);
      this.lastSeq = snapshot.seq;
      if (snapshot.markContinues) this.stepContinues.add(snapshot.seq);
      // As on start: events stored above a gap are read once it fills, though no notification will name them.
      if (snapshot.aheadSeq > this.highestNotified) this.highestNotified = snapshot.aheadSeq;
      this.sendState("resync", reason);
    } catch (error) {
      this.fail(error, snapshot.seq);
    }
  }

  /**
   * Sends the events that follow the last seq sent. A bug met on the way (an exception) closes the socket with 1011
   * rather than leave the channel retrying the same event for ever: the client resumes from its last seq.
   */
  private deliver(events: readonly PrivateOutput[]): void {
    const nowMs = this.deps.now();
    let sent: number;
    try {
      this.deps.flushQuotes(nowMs);
      sent = this.send(events, nowMs);
    } catch (error) {
      this.fail(error, this.lastSeq + 1);
      return;
    }
    for (const seq of this.stepContinues) if (seq < this.lastSeq) this.stepContinues.delete(seq);
    if (sent === 0 || this.stopped) return;
    if (this.summaryReady) {
      try {
        this.sendSummary(nowMs);
      } catch (error) {
        // The events went out; only the summary is missing, and the next event or quote tries again.
        this.deps.log.warn("summary_failed", { userId: this.conn.userId, seq: this.lastSeq, error });
      }
    }
    // Now, not at the socket's turn after a quote burst to every socket (connection.ts, corkUntilTurn).
    this.conn.flush();
  }

  /** Closes the socket with 1011 after a bug met sending `seq`: the client reconnects and resumes from its last seq. */
  private fail(error: unknown, seq: number): void {
    this.deps.log.error("private_channel_failed", { userId: this.conn.userId, seq, error });
    this.stop();
    this.conn.close(CLOSE_CODES.internalError, "internal error: reconnect and resume");
  }

  /** How many of `events` went out, in seq order, up to a gap or the socket's close. */
  private send(events: readonly PrivateOutput[], nowMs: number): number {
    let sent = 0;
    for (const event of events) {
      if (event.seq !== this.lastSeq + 1) {
        if (event.seq <= this.lastSeq) continue;
        break; // never past a gap
      }
      // An event type this stream does not know (an engine newer than it) still goes out, so the client's seqs stay
      // contiguous; only the summary cannot reflect it.
      if (!this.mirror.apply(event))
        this.deps.log.warn("private_event_unknown", {
          userId: this.conn.userId,
          seq: event.seq,
          type: (event as { type: unknown }).type,
        });
      this.lastSeq = event.seq;
      this.conn.sendRaw(eventFrame(event), "event", nowMs);
      sent++;
      if (this.conn.closed) break; // too slow (the send buffer's cap, connection.ts): it resumes from its last seq
    }
    return sent;
  }

  private sendState(type: "snapshot" | "resync", reason: string | undefined): void {
    const m = this.mirror;
    const nowMs = this.deps.now();
    // Its summary is priced at the latest quotes: a client held back from one gets it first, as before an event.
    this.deps.flushQuotes(nowMs);
    this.conn.send(
      {
        type,
        ...(reason === undefined ? {} : { reason }),
        seq: this.lastSeq,
        balances: balancesView(m.balances),
        trades: oldestFirst(
          [...m.trades.values()].map((json) => JSON.parse(json) as TradeView),
          (t) => t.openedAt,
        ),
        orders: oldestFirst(
          [...m.orders.values()].map((json) => JSON.parse(json) as OrderView),
          (o) => o.placedAt,
        ),
        summary: this.summary(),
      },
      nowMs,
    );
    this.lastSummaryMs = nowMs;
  }

  private summary(): AccountSummary {
    const m = this.mirror;
    return accountSummary(
      {
        balances: m.balances,
        openTrades: Object.fromEntries(m.trades),
        pendingOrders: Object.fromEntries(m.orders),
      },
      this.deps.quotes,
    );
  }
}

/**
 * A state read waiting out an engine step: `mark` the seq it read (Infinity while the read is under way), `notified`
 * the highest seq notified during the read, `wake` ends the wait.
 */
interface StepWait {
  mark: number;
  notified: number;
  wake: (() => void) | undefined;
}

/** The account as of `seq`: what the summary is computed from. Views kept as JSON, as the read models keep them. */
class Mirror {
  /** The state's seq (its contiguous mark), then each later event's as it is applied. */
  seq = 0;
  /**
   * The highest seq the state it was reset from may reflect: its mark, or the highest event stored above a gap (the
   * worker writes each event in the same script as its read-model change, worker/events.ts).
   */
  private reflectsSeq = 0;
  balances: Record<string, string> = {};
  readonly trades = new Map<string, string>();
  readonly orders = new Map<string, string>();
  /** Open trades per asset. */
  readonly assets = new Map<string, number>();
  private readonly tradeAsset = new Map<string, string>();

  constructor(private readonly holding: (asset: string, held: boolean) => void = () => undefined) {}

  reset(state: PrivateState): void {
    this.seq = state.seq;
    this.reflectsSeq = Math.max(state.seq, state.aheadSeq);
    this.balances = { ...state.balances };
    this.trades.clear();
    this.orders.clear();
    for (const asset of this.assets.keys()) this.holding(asset, false);
    this.assets.clear();
    this.tradeAsset.clear();
    for (const t of state.trades) this.putTrade(t);
    for (const o of state.orders) this.orders.set(o.id, JSON.stringify(o));
  }

  /**
   * Whether it shows the account as of event `seq`, no earlier and no later: every event up to `seq` applied (the
   * channel applies them in order, from the state's mark on), and nothing the state reflects is newer. Not so while a
   * resume replays the events up to the state's mark, nor after a state that reflects events above a gap until they
   * have been applied too, nor on a resume from a seq past the state's mark (the resync that follows resets it).
   */
  showsExactly(seq: number): boolean {
    return this.seq === seq && seq >= this.reflectsSeq;
  }

  /**
   * An event newer than the state (one the state already reflects changes nothing). False when its type is not one
   * this code knows: the fan-out and the store do not validate what the engine wrote.
   */
  apply(event: PrivateOutput): boolean {
    if (event.seq <= this.seq) return true;
    this.seq = event.seq;
    switch (event.type) {
      case "balances_changed":
        this.balances = { ...event.balances };
        return true;
      case "trade_opened":
      case "trade_updated":
        this.putTrade(event.trade);
        return true;
      case "closed_order":
        if (event.trade.remainingQuantity === "0") this.dropTrade(event.trade.id);
        return true;
      case "order_updated":
        if (event.order.status === "pending") this.orders.set(event.order.id, JSON.stringify(event.order));
        else this.orders.delete(event.order.id);
        return true;
      default:
        return unknownType(event);
    }
  }

  private putTrade(trade: TradeView): void {
    if (!this.tradeAsset.has(trade.id)) {
      this.tradeAsset.set(trade.id, trade.asset);
      const held = this.assets.get(trade.asset) ?? 0;
      this.assets.set(trade.asset, held + 1);
      if (held === 0) this.holding(trade.asset, true);
    }
    this.trades.set(trade.id, JSON.stringify(trade));
  }

  private dropTrade(id: string): void {
    const asset = this.tradeAsset.get(id);
    if (asset === undefined) return;
    this.tradeAsset.delete(id);
    this.trades.delete(id);
    const left = (this.assets.get(asset) ?? 1) - 1;
    if (left === 0) {
      this.assets.delete(asset);
      this.holding(asset, false);
    } else this.assets.set(asset, left);
  }
}

/** Takes `never`: a private output type added to the contract and not handled above fails to compile. */
function unknownType(_event: never): false {
  return false;
}

/** Oldest first, as the REST lists are; ties by id as they break them ("T0-9" before "T0-10"). */
function oldestFirst<T extends { id: string }>(items: T[], time: (item: T) => string): T[] {
  return items.sort((a, b) => (time(a) === time(b) ? compareIds(a.id, b.id) : time(a) < time(b) ? -1 : 1));
}

/** `{"type":"event","seq","event","time", ...payload}`: the output without its ids and user. */
export function eventFrame(event: PrivateOutput): string {
  const payload: Record<string, unknown> = { ...event };
  for (const key of ["type", "seq", "id", "inputId", "userId"]) delete payload[key];
  const ms = Number(event.id.slice(0, event.id.indexOf("-")));
  return JSON.stringify({
    type: "event",
    seq: event.seq,
    event: event.type,
    time: new Date(ms).toISOString(),
    ...payload,
  });
}
