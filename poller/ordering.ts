/**
 * Per-market ordering and change filter between the parser and the publisher.
 *
 * - `future`: a frame stamped further ahead of now than the engine accepts (`aheadOfEngine`) is dropped before
 *   anything else sees it. The engine would ignore it, so publishing it would make the correct frame that follows
 *   look `unchanged`, and its time would hold back every heartbeat of the market (heartbeat.ts) for as long as
 *   its lead.
 * - A frame is in sequence when its update id follows the last accepted one of its market: greater, by at most
 *   `MAX_IDS_PER_SECOND` per second of exchange time (`T`) between the two, plus one second's worth. Ids are digit
 *   strings compared as big integers (a JS number loses digits above 2^53). The bound: Backpack's docs give the
 *   bookTicker `u` as the "Update ID of the event" and the depth stream's ids as consecutive (`U` = the previous
 *   `u` + 1), so ids count a market's book updates (https://docs.backpack.exchange/#tag/Streams, transcribed in
 *   github.com/api-evangelist/backpack asyncapi/backpack-asyncapi.yml); the recorded frames in testdata/ advance
 *   by tens a second. A million a second is far beyond any one book, so a larger jump is a broken frame, not news.
 * - `stale`: a frame whose id is not greater than the last accepted one is older news (or a duplicate);
 *   `implausible`: one whose id jumps further than the bound. Both are dropped, and neither moves the baseline, so
 *   one bad id cannot make every later frame look old.
 * - A sequence reset: two frames that are both out of sequence with the last accepted one and stamped later than
 *   it, the second in sequence with the first, mean the market's ids started over (an exchange-side reset, or a
 *   bad id accepted as the baseline of a connection). The second is accepted and becomes the baseline
 *   (`onReset`). One such frame alone may be the broken one; waiting for a second costs one book change, which the
 *   second supersedes anyway. Out-of-sequence frames stamped no later than the last accepted one are older news and
 *   never reset anything, however many come. A refused frame stamped later than the last accepted one says the
 *   top moved (`laterThanAccepted`): the market's heartbeats stop at once until a frame is accepted (heartbeat.ts),
 *   so waiting for the second frame of a reset costs no trading on the old top. While a market's frames are
 *   refused, its book shows nothing, so it goes stale in the engine rather than trade on a frozen quote.
 * - `unchanged`: an in-sequence frame with the same bid and ask as the last published quote adds nothing to the
 *   log (the engine keys on bid/ask; Backpack also sends a frame when only the sizes change).
 *
 * Ids are compared within one connection only (`newConnection`); exchange times across connections. Until a
 * connection has a baseline for a market, a frame stamped earlier than the market's last accepted one (on any
 * connection) is `stale`: nothing promises that a fresh subscription starts from a book no older than what came
 * before (a lagging gateway node, a cached snapshot), and the engine takes any bid/ask that differs up to 5 s
 * (staleQuoteMs) behind the market's newest, so such a frame would take the market back in time. A frame stamped
 * no earlier is the new baseline (an equal time is the same moment, not the past). The last published bid/ask
 * survives reconnects, so a resubscription does not republish an unchanged quote.
 *
 * A restart is a new connection too (every deploy restarts the poller), with nothing accepted yet: a live start
 * takes, per market, the log's last live top (`loggedBefore`, start-quotes.ts) as the last published quote, and the
 * exchange time from which it stood as that of an accepted frame. So a first frame stamped earlier is `stale`, and one
 * with the same top is `unchanged`, as after a reconnect: a halted book's frozen top, answered to the new SUBSCRIBE
 * and stamped now, is not published as fresh (feed-client.ts). The floor is not the log's last entry's time: a
 * heartbeat is stamped with a mark price's time, which can be later than the book's own frames, so flooring on it
 * would refuse a correct snapshot of an unchanged book.
 */
import { fromTheFuture } from "../engine/core/freshness.ts";
import { makeParams } from "../engine/core/params.ts";
import type { FeedQuote } from "./frames.ts";

export const GATE_DROP_REASONS = ["future", "stale", "implausible", "unchanged"] as const;
export type GateDropReason = (typeof GATE_DROP_REASONS)[number];

/** The most update ids one market's book can plausibly use per second of exchange time (see above). */
export const MAX_IDS_PER_SECOND = 1_000_000n;

/** The engine's limit on an exchange time ahead of log time (`staleQuoteMs`, a parameter with no setting). */
const ENGINE_LEAD_LIMIT_MS = makeParams().staleQuoteMs;

/**
 * True when the engine ignores an update stamped `exchangeTimeUs` that reaches the log at `nowMs` (freshness.ts).
 * The one place the poller asks: for frames as they arrive, and for the log's entries when a sim starts.
 */
export function aheadOfEngine(exchangeTimeUs: string, nowMs: number): boolean {
  return fromTheFuture(exchangeTimeUs, nowMs, ENGINE_LEAD_LIMIT_MS);
}

/** A frame's place in its market's sequence: its update id and exchange time (µs). */
interface SequencePoint {
  readonly id: bigint;
  readonly timeUs: bigint;
}

/** True when `next` follows `prev`: a greater id, by no more than the book can use in the time between them. */
function follows(prev: SequencePoint, next: SequencePoint): boolean {
  if (next.id <= prev.id) return false;
  const elapsedUs = next.timeUs > prev.timeUs ? next.timeUs - prev.timeUs : 0n;
  return next.id - prev.id <= ((elapsedUs + 1_000_000n) * MAX_IDS_PER_SECOND) / 1_000_000n;
}

/** Told when a market's sequence started over: the last accepted id, and the id accepted as the new baseline. */
export type SequenceReset = (market: string, fromId: string, toId: string) => void;

/** A market's last top in the log before this process started, and the exchange time (µs) from which it stood. */
export interface LoggedTop {
  readonly bid: string;
  readonly ask: string;
  readonly sinceUs: string;
}

export class QuoteGate {
  /** Per market, the last frame accepted in sequence on this connection. */
  private readonly last = new Map<string, SequencePoint>();
  /** Per market, the last out-of-sequence frame stamped later than `last`: the start of a new sequence, maybe. */
  private readonly restart = new Map<string, SequencePoint>();
  private readonly lastPublished = new Map<string, { bid: string; ask: string }>();
  /** Per market, the latest exchange time of a frame accepted in sequence on any connection. */
  private readonly acceptedAtUs = new Map<string, bigint>();

  constructor(private readonly onReset?: SequenceReset) {}

  /** "accept" when the quote should be published; it then becomes the market's last one. */
  admit(quote: FeedQuote): "accept" | Exclude<GateDropReason, "future"> {
    const next = { id: BigInt(quote.updateId), timeUs: BigInt(quote.exchangeTimeUs) };
    const last = this.last.get(quote.market);
    if (last === undefined) {
      const acceptedAtUs = this.acceptedAtUs.get(quote.market);
      if (acceptedAtUs !== undefined && next.timeUs < acceptedAtUs) return "stale"; // older than what was taken
    } else if (!follows(last, next)) {
      const refused = next.id <= last.id ? "stale" : "implausible";
      if (next.timeUs <= last.timeUs) return refused; // older news
      const restart = this.restart.get(quote.market);
      if (restart === undefined || !follows(restart, next)) {
        this.restart.set(quote.market, next);
        return refused;
      }
      this.onReset?.(quote.market, String(last.id), quote.updateId);
    }
    this.last.set(quote.market, next);
    this.restart.delete(quote.market);
    const acceptedAtUs = this.acceptedAtUs.get(quote.market);
    if (acceptedAtUs === undefined || next.timeUs > acceptedAtUs) this.acceptedAtUs.set(quote.market, next.timeUs);
    const published = this.lastPublished.get(quote.market);
    if (published !== undefined && published.bid === quote.bid && published.ask === quote.ask) return "unchanged";
    this.lastPublished.set(quote.market, { bid: quote.bid, ask: quote.ask });
    return "accept";
  }

  /**
   * The market's last top in the log, written before this process started (start-quotes.ts): it counts as the last
   * published quote, and the time from which it stood (`sinceUs`) as that of an accepted frame, so a first frame
   * stamped earlier is `stale` and one with the same bid and ask `unchanged`.
   */
  loggedBefore(market: string, top: LoggedTop): void {
    const atUs = BigInt(top.sinceUs);
    const acceptedAtUs = this.acceptedAtUs.get(market);
    if (acceptedAtUs === undefined || atUs > acceptedAtUs) this.acceptedAtUs.set(market, atUs);
    if (!this.lastPublished.has(market)) this.lastPublished.set(market, { bid: top.bid, ask: top.ask });
  }

  /** True when `exchangeTimeUs` is later than the market's last accepted frame (false for a market with none). */
  laterThanAccepted(market: string, exchangeTimeUs: string): boolean {
    const acceptedAtUs = this.acceptedAtUs.get(market);
    return acceptedAtUs !== undefined && BigInt(exchangeTimeUs) > acceptedAtUs;
  }

  /** Forget update ids (not quotes, nor exchange times): called when a new connection is opened. */
  newConnection(): void {
    this.last.clear();
    this.restart.clear();
  }
}
