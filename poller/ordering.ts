/**
 * Per-market ordering and change filter between the parser and the publisher.
 *
 * - `future`: a frame stamped further ahead of now than the engine accepts (`aheadOfEngine`) is dropped before
 *   anything else sees it. The engine would ignore it, so publishing it would make the correct frame that follows
 *   look `unchanged`, and its time would hold back every heartbeat of the market (heartbeat.ts) for as long as
 *   its lead.
 * - `stale`: a frame whose update id is not greater than the last accepted one for its market is older news (or a
 *   duplicate) and is dropped. Ids are digit strings compared as big integers: Backpack's exceed 2^53.
 * - `unchanged`: a newer frame with the same bid and ask as the last published quote adds nothing to the log (the
 *   engine keys on bid/ask; Backpack also sends a frame when only the sizes change).
 *
 * Ids are compared within one connection only (`newConnection`): a fresh subscription starts from the exchange's
 * current book, so it is never older than what came before, and a feed whose sequence restarts (a restarted
 * simulator, an exchange-side reset) cannot wedge a market forever. The last published bid/ask survives
 * reconnects, so a resubscription does not republish an unchanged quote.
 */
import { fromTheFuture } from "../engine/core/freshness.ts";
import { makeParams } from "../engine/core/params.ts";
import type { FeedQuote } from "./frames.ts";

export const GATE_DROP_REASONS = ["future", "stale", "unchanged"] as const;
export type GateDropReason = (typeof GATE_DROP_REASONS)[number];

/** The engine's limit on an exchange time ahead of log time (`staleQuoteMs`, a parameter with no setting). */
const ENGINE_LEAD_LIMIT_MS = makeParams().staleQuoteMs;

/**
 * True when the engine ignores an update stamped `exchangeTimeUs` that reaches the log at `nowMs` (freshness.ts).
 * The one place the poller asks: for frames as they arrive, and for the log's entries when a sim starts.
 */
export function aheadOfEngine(exchangeTimeUs: string, nowMs: number): boolean {
  return fromTheFuture(exchangeTimeUs, nowMs, ENGINE_LEAD_LIMIT_MS);
}

export class QuoteGate {
  private readonly lastUpdateId = new Map<string, bigint>();
  private readonly lastPublished = new Map<string, { bid: string; ask: string }>();

  /** "accept" when the quote should be published; it then becomes the market's last one. */
  admit(quote: FeedQuote): "accept" | Exclude<GateDropReason, "future"> {
    const id = BigInt(quote.updateId);
    const last = this.lastUpdateId.get(quote.market);
    if (last !== undefined && id <= last) return "stale";
    this.lastUpdateId.set(quote.market, id);
    const published = this.lastPublished.get(quote.market);
    if (published !== undefined && published.bid === quote.bid && published.ask === quote.ask) return "unchanged";
    this.lastPublished.set(quote.market, { bid: quote.bid, ask: quote.ask });
    return "accept";
  }

  /** Forget update ids (not quotes): called when a new connection is opened. */
  newConnection(): void {
    this.lastUpdateId.clear();
  }
}
