/**
 * Prices: a `price_update` replaces the market's quote and fires every trade whose trigger it crossed. A quote
 * that is malformed, crossed, out of range, for an unknown market, from too far in the future or too far behind
 * the market's newest evidence is counted and ignored. Whether a quote may be traded on is judged by the exchange's
 * time of the market's newest evidence of life (freshness.ts).
 */
import type { PriceUpdate } from "../../contract/messages.ts";
import { formatUnits, toUnits } from "../../contract/money.ts";
import { refuse, type Outcome } from "./receipts.ts";
import { behindNewest, compareDigits, fromTheFuture, liveAsOfMs } from "./freshness.ts";
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
  if (
    bid <= 0 ||
    ask <= 0 ||
    bid > ask ||
    fromTheFuture(update.exchangeTimeUs, step.nowMs, state.params.staleQuoteMs)
  ) {
    state.ignoredPriceUpdates++;
    return;
  }
  const last = state.quotes[index];
  const newEvidence = last === undefined || compareDigits(update.exchangeTimeUs, last.exchangeTimeUs) > 0;
  // A repeat that brings neither a new price nor a newer exchange time says nothing: it must not refresh.
  if (!newEvidence && last.bidTicks === bid && last.askTicks === ask) return;
  // A different price far older than what the market has shown is a late write, not news: taking it would move
  // the market back to a price it has left and fire triggers there.
  if (!newEvidence && behindNewest(update.exchangeTimeUs, last.exchangeTimeUs, state.params.staleQuoteMs)) {
    state.ignoredPriceUpdates++;
    return;
  }
  const quote: Quote = {
    bidTicks: bid,
    askTicks: ask,
    atMs: newEvidence ? step.nowMs : last.atMs,
    exchangeTimeUs: newEvidence ? update.exchangeTimeUs : last.exchangeTimeUs,
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
  if (quote === undefined) {
    return refuse("NO_PRICE", `No quote for ${marketOf(state, assetIndex)} has reached the engine.`);
  }
  const ageMs = step.nowMs - liveAsOfMs(quote);
  const limitMs = state.params.staleQuoteMs;
  if (ageMs > limitMs) {
    return refuse(
      "STALE_PRICE",
      `The exchange last showed ${marketOf(state, assetIndex)} live ${ageMs} ms ago; the limit is ${limitMs} ms.`,
    );
  }
  return quote;
}

/** A market as a refusal names it: its exchange name and the asset traded on it, "ETH_USDC_PERP (ETH)". */
function marketOf(state: EngineState, assetIndex: number): string {
  const asset = assetAt(state, assetIndex);
  return `${asset.market} (${asset.symbol})`;
}
