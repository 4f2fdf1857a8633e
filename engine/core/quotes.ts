/**
 * Prices: a `price_update` replaces the market's quote and fires every trade whose trigger it crossed. A quote
 * that is malformed, crossed, out of range or for an unknown market is counted and ignored.
 */
import type { PriceUpdate } from "../../contract/messages.ts";
import { formatUnits, parseUnits } from "../../contract/money.ts";
import { rejection, type Rejection } from "../../contract/rejections.ts";
import { assetAt, type EngineState, type Quote } from "./state.ts";
import { emit, isoTime, type Step } from "./step.ts";
import { fireTriggers } from "./triggers.ts";

export function applyPriceUpdate(state: EngineState, step: Step, update: PriceUpdate): void {
  const index = state.assetByMarket.get(update.market);
  if (index === undefined) {
    state.ignoredPriceUpdates++;
    return;
  }
  const asset = assetAt(state, index);
  const bid = parseUnits(update.bid, asset.priceDecimals, asset.maxPriceTicks);
  const ask = parseUnits(update.ask, asset.priceDecimals, asset.maxPriceTicks);
  if (!bid.ok || !ask.ok || bid.units === 0 || bid.units > ask.units) {
    state.ignoredPriceUpdates++;
    return;
  }
  const quote: Quote = {
    bidTicks: bid.units,
    askTicks: ask.units,
    atMs: step.nowMs,
    exchangeTimeUs: update.exchangeTimeUs,
    source: update.source,
  };
  state.quotes[index] = quote;
  emit(step, {
    type: "quote_updated",
    asset: asset.symbol,
    market: asset.market,
    bid: formatUnits(bid.units, asset.priceDecimals),
    ask: formatUnits(ask.units, asset.priceDecimals),
    updatedAt: isoTime(step.nowMs),
    source: update.source,
  });
  fireTriggers(state, step, index, quote);
}

/** The quote an order may execute on, or why there is none. */
export function tradableQuote(state: EngineState, step: Step, assetIndex: number): Quote | Rejection {
  const quote = state.quotes[assetIndex];
  if (quote === undefined) return rejection("NO_PRICE");
  const ageMs = step.nowMs - quote.atMs;
  if (ageMs > state.params.staleQuoteMs) {
    return rejection("STALE_PRICE", `Last quote is ${ageMs} ms old; the limit is ${state.params.staleQuoteMs} ms.`);
  }
  return quote;
}

export function isRejection(x: object): x is Rejection {
  return "code" in x;
}
