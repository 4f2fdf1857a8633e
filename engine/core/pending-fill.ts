/**
 * Filling pending entry orders on a price update, and expiring them by log time.
 *
 * Within one price update (quotes.ts): the exits of trades already open fire first (triggers.ts), then pending
 * orders fill, then the exits of the trades those fills opened — so an order whose fill quote is already past its
 * own stop-loss or take-profit opens and closes on the same tick, by that rule. Orders fill heap by heap: long
 * limits, long stops, short limits, short stops, each by price (the one the market reached first) then sequence.
 * Each looks only at heap tops: a tick that fills nothing costs O(1) per heap.
 *
 * An order fills at the quote that triggered it (long at the ask, short at the bid), sized as a market trade at
 * that price with its reserved margin, so it never fails for funds. If the trade cannot open there (a quantity
 * below one step at a gapped price, liquidatable at once, the open-trade limit reached) the order is `rejected`
 * with that code and its reservation returns. Its exits are not re-checked against the fill quote: one already
 * crossed fires at once, as above.
 *
 * OCO precedence: when one quote would fill both legs of a pair, the leg placed first (listed first in
 * place_oco: the lower sequence) fills, and the other is cancelled; if that first leg is rejected at fill, the
 * other stays pending alone and may then fill on the same quote.
 */
import { fillsAt, leaveFilled, leaveUnfilled } from "./pending-book.ts";
import { orderView } from "./pending-view.ts";
import type { PositionedHeap } from "./positioned-heap.ts";
import { isRefusal, type Outcome } from "./receipts.ts";
import { amountsOf, assetAt, type EngineState, type PendingOrder, type Quote } from "./state.ts";
import { emitBalancesChanged, emitOrderUpdated, type Step } from "./step.ts";
import {
  refuseLiquidatable,
  refuseOpenTradeLimit,
  sizeTrade,
  startTrade,
  wouldLiquidate,
  type TradeSize,
} from "./opening.ts";
import { balancesView } from "./views.ts";

/** Fills every pending order of this market the quote reaches; true when at least one trade opened. */
export function firePending(state: EngineState, step: Step, assetIndex: number, quote: Quote): boolean {
  const book = state.pendingBooks[assetIndex]!;
  // Four calls, not a loop over a new array: this runs on every price update.
  const a = fillFrom(state, step, book.longLimit, quote);
  const b = fillFrom(state, step, book.longStop, quote);
  const c = fillFrom(state, step, book.shortLimit, quote);
  const d = fillFrom(state, step, book.shortStop, quote);
  return a || b || c || d;
}

function fillFrom(state: EngineState, step: Step, heap: PositionedHeap<PendingOrder>, quote: Quote): boolean {
  const { bidTicks: bid, askTicks: ask } = quote;
  let opened = false;
  let o: PendingOrder | undefined;
  while ((o = heap.peek()) !== undefined && fillsAt(o, bid, ask)) {
    const p = o.oco;
    // OCO precedence: the leg placed first fills when this quote fills both.
    const first = p !== undefined && p.seq < o.seq && p.assetIndex === o.assetIndex && fillsAt(p, bid, ask) ? p : o;
    if (fill(state, step, first, quote)) opened = true;
  }
  return opened;
}

/** Opens the order's trade at the quote, or rejects it with the reason it cannot open; true when it opened. */
function fill(state: EngineState, step: Step, o: PendingOrder, quote: Quote): boolean {
  const account = o.account;
  const fillTicks = o.isLong ? quote.askTicks : quote.bidTicks;
  const size = sizeAtFill(state, o, quote, fillTicks);
  if (isRefusal(size)) {
    if (size.answer.ok) throw new Error("a refusal that is not a rejection");
    leaveUnfilled(state, step, o, { status: "rejected", atMs: step.nowMs, reason: size.answer.error });
    return false;
  }
  // Built before the order leaves its pair, so it still names the other leg; the trade takes the next sequence.
  const filled = orderView(state, o, {
    status: "filled",
    atMs: step.nowMs,
    fillPriceTicks: fillTicks,
    tradeSeq: state.nextSeq,
  });
  const cancelled = leaveFilled(state, step, o);
  startTrade(state, step, account, o, fillTicks, size);
  emitOrderUpdated(step, account, filled);
  if (cancelled !== undefined) emitOrderUpdated(step, account, cancelled);
  emitBalancesChanged(step, account, balancesView(state, amountsOf(account)));
  return true;
}

/** The trade's size at the fill, or why it cannot open there. */
function sizeAtFill(state: EngineState, o: PendingOrder, quote: Quote, fillTicks: number): TradeSize | Outcome {
  if (o.account.openTrades.size >= state.params.maxOpenTradesPerUser) return refuseOpenTradeLimit(state, o.account);
  const size = sizeTrade(state, o, fillTicks);
  if (isRefusal(size)) return size;
  const liquidation = size.liquidationTicks;
  if (wouldLiquidate(o.isLong, quote.bidTicks, quote.askTicks, liquidation))
    return refuseLiquidatable(assetAt(state, o.assetIndex), o, fillTicks, liquidation, quote);
  return size;
}

/**
 * Expires, before an input is applied, every order whose expiry is at or before the input's log time: an order
 * with `expiresAtMs` T fills on inputs before T, never on one at T. Only the expiry heap's top is looked at, so an
 * input with nothing to expire costs O(1).
 */
export function expireOrders(state: EngineState, step: Step): void {
  let o: PendingOrder | undefined;
  while ((o = state.expiries.peek()) !== undefined && o.expiresAtMs <= step.nowMs) {
    leaveUnfilled(state, step, o, {
      status: "expired",
      atMs: o.expiresAtMs,
      reason: { code: "EXPIRED", message: "The order reached its expiry time unfilled." },
    });
  }
}
