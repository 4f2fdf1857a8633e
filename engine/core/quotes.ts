/**
 * Prices: a `price_update` replaces the market's quote and fires every trade whose trigger it crossed. A quote
 * that is malformed, crossed, out of range or for an unknown market is counted and ignored.
 */
import type { PriceUpdate } from "../../contract/messages.ts";
import { formatUnits, toUnits } from "../../contract/money.ts";
import { refuse, type Outcome } from "./receipts.ts";
import { assetAt, type EngineState, type Quote } from "./state.ts";
import { emit, nextOutputId, isoTime, type Step } from "./step.ts";
import { firePending } from "./pending-fill.ts";
import { fireTriggers } from "./triggers.ts";

export function applyPriceUpdate(state: EngineState, step: Step, update: PriceUpdate): void {
  const index = state.assetByMarket.get(update.market);
  if (index === undefined) {
    state.ignoredPriceUpdates++;
    return;
  }
  const asset = assetAt(state, index);
  const bid = toUnits(update.bid, asset.priceDecimals, asset.maxPriceTicks);
  const ask = toUnits(update.ask, asset.priceDecimals, asset.maxPriceTicks);
  if (bid <= 0 || ask <= 0 || bid > ask) {
    state.ignoredPriceUpdates++;
    return;
  }
  const quote: Quote = {
    bidTicks: bid,
    askTicks: ask,
    atMs: step.nowMs,
    exchangeTimeUs: update.exchangeTimeUs,
    source: update.source,
  };
  state.quotes[index] = quote;
  emit(step, {
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "quote_updated",
    asset: asset.symbol,
    market: asset.market,
    bid: formatUnits(bid, asset.priceDecimals),
    ask: formatUnits(ask, asset.priceDecimals),
    updatedAt: isoTime(step.nowMs),
    source: update.source,
  });
  fireTriggers(state, step, index, quote);
  // Pending fills after the open trades' exits; then the exits of the trades those fills just opened.
  if (firePending(state, step, index, quote)) fireTriggers(state, step, index, quote);
}

/** The quote an order may execute on, or why there is none. */
export function tradableQuote(state: EngineState, step: Step, assetIndex: number): Quote | Outcome {
  const quote = state.quotes[assetIndex];
  if (quote === undefined) return refuse("NO_PRICE");
  const ageMs = step.nowMs - quote.atMs;
  if (ageMs > state.params.staleQuoteMs) {
    return refuse("STALE_PRICE", `Last quote is ${ageMs} ms old; the limit is ${state.params.staleQuoteMs} ms.`);
  }
  return quote;
}
