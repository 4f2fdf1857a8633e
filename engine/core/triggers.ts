/**
 * Automatic exits. Each market keeps four heaps (state.ts, TriggerBook) whose tops are the next trades to fire,
 * so a tick costs O(1) when nothing fires and O(log n) per trade that does, never a scan of open trades.
 *
 * Rules (docs/trading-rules.md): long SL/liquidation when bid ≤ level, TP when bid ≥ TP; short SL/liquidation when
 * ask ≥ level, TP when ask ≤ TP. An exit fills at the quote that triggered it. When stop-loss and liquidation
 * are crossed by the same move, the one the price reached first wins (a tie goes to the stop-loss).
 * Trailing stops (trailing.ts) first take the quote as their new best price where it is one, then fire with the
 * exits; a stop whose activation price the quote reached activates after every close, so it trails from this quote.
 * Trades fire in a fixed order: long exits, long trailing stops, long profits, then the same for shorts, each by
 * level then age.
 */
import type { EngineState, Quote, Trade } from "./state.ts";
import type { Step } from "./step.ts";
import { closeTrade } from "./settlement.ts";
import { activateTrailing, fireTrailing, stopReason } from "./trailing.ts";

export function fireTriggers(state: EngineState, step: Step, assetIndex: number, quote: Quote): void {
  const book = state.books[assetIndex]!;
  const { bidTicks: bid, askTicks: ask } = quote;
  const { long, short } = book.trailing;
  long.byDistance.onPrice(bid);
  long.byPercent.onPrice(bid);
  short.byDistance.onPrice(ask);
  short.byPercent.onPrice(ask);
  let t: Trade | undefined;
  while ((t = book.longExit.peek()) !== undefined && t.exitTicks >= bid) {
    closeTrade(state, step, t, bid, stopReason(t));
  }
  fireTrailing(state, step, long, true, bid);
  while ((t = book.longProfit.peek()) !== undefined && t.takeProfitTicks <= bid) {
    closeTrade(state, step, t, bid, "take_profit");
  }
  while ((t = book.shortExit.peek()) !== undefined && t.exitTicks <= ask) {
    closeTrade(state, step, t, ask, stopReason(t));
  }
  fireTrailing(state, step, short, false, ask);
  while ((t = book.shortProfit.peek()) !== undefined && t.takeProfitTicks >= ask) {
    closeTrade(state, step, t, ask, "take_profit");
  }
  activateTrailing(state, step, assetIndex, quote);
}
