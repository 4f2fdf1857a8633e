/**
 * Settlement: closing a trade, by the user or a trigger. Long closes at the bid, short at the ask; the margin plus
 * the PnL returns to free USD, never less than zero (negative balance protection caps a loss at the margin), a
 * profit at most up to the account limit (account-limit.ts), and the house takes the other side of every amount.
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { CloseReason, ClosedTradeView } from "../../contract/messages.ts";
import { MAX_UNITS } from "../../contract/money.ts";
import { roomMicros } from "./account-limit.ts";
import type { CloseFacts } from "./receipts.ts";
import { amountsOf, assetAt, type EngineState, type Trade } from "./state.ts";
import { emitBalancesChanged, emitClosedOrder, type Step } from "./step.ts";
import { unindexTrade } from "./trigger-index.ts";
import { balancesView, closedTradeView } from "./views.ts";

/** Closes a trade at `priceTicks`: settles margin and PnL against the house, unindexes it, emits the facts. */
export function closeTrade(state: EngineState, step: Step, trade: Trade, priceTicks: number, reason: CloseReason) {
  const account = trade.account;
  const pnlMicros = settle(state, trade, trade.quantitySteps, trade.marginMicros, priceTicks);
  account.openTrades.delete(trade.seq);
  unindexTrade(state.books[trade.assetIndex]!, trade);
  const close: CloseFacts = { priceTicks, pnlMicros, reason, atMs: step.nowMs };
  const view: ClosedTradeView = closedTradeView(state, trade, close);
  const amounts = amountsOf(account);
  const balances = balancesView(state, amounts);
  emitClosedOrder(step, account, view);
  emitBalancesChanged(step, account, balances);
  return { close, view, amounts, balances };
}

/**
 * Pays `marginMicros` (released from the trade: all of its margin, or a partial close's part) plus the PnL of
 * `quantitySteps` of the trade closed at `priceTicks` into the owner's free USD, the house taking the other side;
 * returns the PnL paid (payout − margin). The PnL is price difference × steps × micros per tick·step: a product of
 * integers, exact, never rounded.
 */
export function settle(
  state: EngineState,
  trade: Trade,
  quantitySteps: number,
  marginMicros: number,
  priceTicks: number,
): number {
  const account = trade.account;
  const asset = assetAt(state, trade.assetIndex);
  const diff = trade.isLong ? priceTicks - trade.openPriceTicks : trade.openPriceTicks - priceTicks;
  const rawPnl = clampUnits(diff * quantitySteps * microsPerTickStep(asset));
  // The margin leaves the trade here: it counted against the account limit already, so only the profit is capped
  // (account-limit.ts), and a close with a PnL of zero or more always pays the margin back. Negative balance
  // protection: the loss stops at the margin.
  account.openMarginMicros -= marginMicros;
  const payout = Math.max(0, marginMicros + Math.min(rawPnl, roomMicros(account) - marginMicros));
  account.usd += payout;
  state.house.usd += BigInt(marginMicros - payout);
  return payout - marginMicros;
}

function clampUnits(x: number): number {
  return x > MAX_UNITS ? MAX_UNITS : x < -MAX_UNITS ? -MAX_UNITS : x;
}
