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
 * level then age. A trade fires with the kind of exit it closes by: one whose trailing level the price reached
 * before its stop-loss or liquidation level (both crossed by this quote) fires with the trailing stops, at its
 * trailing level, not with the exits at its exit level.
 */
import type { EngineState, Quote, Trade } from "./state.ts";
import type { Step } from "./step.ts";
import { closeTrade } from "./settlement.ts";
import type { TriggerHeap } from "./trigger-heap.ts";
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
  fireExits(state, step, book.longExit, true, bid);
  fireTrailing(state, step, long, true, bid);
  while ((t = book.longProfit.peek()) !== undefined && t.takeProfitTicks <= bid) {
    closeTrade(state, step, t, bid, "take_profit");
  }
  fireExits(state, step, book.shortExit, false, ask);
  fireTrailing(state, step, short, false, ask);
  while ((t = book.shortProfit.peek()) !== undefined && t.takeProfitTicks >= ask) {
    closeTrade(state, step, t, ask, "take_profit");
  }
  activateTrailing(state, step, assetIndex, quote);
}

/**
 * Closes the trades of one side whose stop-loss / liquidation level `price` reached (long: bid ≤ level; short: ask
 * ≥ level), by that level, then age. A trade that closes by its trailing stop instead only leaves the exit heap
 * (O(log n)): its trailing level is at or beyond its exit level, so the price reached it too, and fireTrailing
 * closes it next, in its place among the trailing stops.
 */
function fireExits(state: EngineState, step: Step, heap: TriggerHeap, isLong: boolean, price: number): void {
  let t: Trade | undefined;
  while ((t = heap.peek()) !== undefined && (isLong ? t.exitTicks >= price : t.exitTicks <= price)) {
    const reason = stopReason(t);
    if (reason === "trailing_stop") heap.remove(t);
    else closeTrade(state, step, t, price, reason);
  }
}
