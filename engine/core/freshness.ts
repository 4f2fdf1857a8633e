/**
 * Staleness judged from the exchange's side. A market is live as of the exchange's own time of its newest
 * evidence of life (a `price_update`'s `exchangeTimeUs`: a book change, or a heartbeat repeating the top of the
 * book), not as of when that evidence reached the log: a feed that keeps re-sending an old quote, or a market
 * whose stream halted while others flow, does not stay tradable.
 *
 * Rules (all in whole milliseconds; an exchange time is truncated from µs to ms):
 * - a market's "live as of" time is min(exchange ms of its newest evidence, log ms at which that evidence arrived):
 *   an exchange clock running ahead of the log's buys no extra freshness;
 * - an order may use the quote while log time − "live as of" ≤ staleQuoteMs;
 * - an update claiming an exchange time more than staleQuoteMs ahead of log time is a broken (or hostile) clock:
 *   it is ignored and counted, so it cannot pin a market fresh. One up to staleQuoteMs ahead is kept as the
 *   newest evidence, so later updates count again once they pass it: by then (about its lead after it arrived)
 *   the market is still inside its limit, unless the lead was nearly the whole limit;
 * - only a strictly newer exchange time is new evidence. A repeat of the same quote with no newer time changes
 *   nothing; a different bid/ask with an older time (another stream's clock, slightly behind) still replaces the
 *   prices but not the evidence, unless it is more than staleQuoteMs older than the newest evidence: then it is
 *   old news arriving late (a write the poller gave up on that reached the log after newer ones), not another
 *   clock, and it is ignored and counted, so a price the market has left fires no trigger.
 */
import type { Quote } from "./state.ts";

/** Exchange µs digits → ms, truncated. Deterministic for any digit string (above 2^53 ms it is far future anyway). */
export function exchangeMs(exchangeTimeUs: string): number {
  return exchangeTimeUs.length > 3 ? Number(exchangeTimeUs.slice(0, -3)) : 0;
}

/** The log time (ms) the market was last known live at. */
export function liveAsOfMs(quote: Quote): number {
  return Math.min(exchangeMs(quote.exchangeTimeUs), quote.atMs);
}

/** True when an update's exchange time is further ahead of log time than any sane clock skew. */
export function fromTheFuture(exchangeTimeUs: string, nowMs: number, staleQuoteMs: number): boolean {
  return exchangeMs(exchangeTimeUs) - nowMs > staleQuoteMs;
}

/** True when an update's exchange time is further behind the market's newest evidence than any clock skew. */
export function behindNewest(exchangeTimeUs: string, newestUs: string, staleQuoteMs: number): boolean {
  return exchangeMs(newestUs) - exchangeMs(exchangeTimeUs) > staleQuoteMs;
}

/** Compares two digit strings as whole numbers (leading zeros allowed), without allocating a BigInt per tick. */
export function compareDigits(a: string, b: string): number {
  const x = a[0] === "0" ? a.replace(/^0+(?=\d)/, "") : a;
  const y = b[0] === "0" ? b.replace(/^0+(?=\d)/, "") : b;
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}
