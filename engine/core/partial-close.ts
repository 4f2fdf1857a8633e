/**
 * Partial close: `close_trade` with `quantity` (at the asset's quantity precision) or `percent` (of the current
 * quantity, 0 < p ≤ 100 with at most 2 decimals, rounded DOWN to the step), never both. It closes at the quote like
 * a full close (long at the bid, short at the ask); closing the whole quantity is a full close.
 *
 * Money, for c of the trade's q steps closed, with margin M:
 * - PnL = price difference × c × micros per tick·step: a product of integers (priceDecimals + quantityDecimals ≤
 *   6), exact, no rounding at all.
 * - Released margin = ⌊M × c / q⌋; the remainder M − ⌊M × c / q⌋ stays with the open part, so every micro is in
 *   exactly one place. Closing all but the last step releases ⌊M × (q − 1) / q⌋ and leaves ⌈M / q⌉.
 * - Negative balance protection applies to the part alone: its loss stops at its released margin.
 *
 * The rest keeps its entry price, leverage and exits. Its liquidation price is computed again from what it keeps
 * (margin M − ⌊M·c/q⌋ on q − c steps), by the one formula (liquidation.ts), so the rest is liquidated exactly where
 * the maintenance rule holds for it, as a trade opened with those figures would be. Keeping the old level would not
 * do: the rest's margin per unit, ⌈M·(q−c)/q⌉ / (q−c), is up to a micro per close above M / q, and over several
 * closes the equity at the old level climbs past the rest's maintenance margin (liquidated a tick early). The
 * level depends on margin per unit only, which a close never lowers, so the new level is never nearer the price
 * than the old one (long: ≤, short: ≥) and the trade cannot have become liquidatable; it is re-filed in the trigger
 * heaps as modify_trade re-files moved exits (its exit is its stop-loss or the new level, whichever comes first).
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { Instruction } from "../../contract/messages.ts";
import { decimalsWord, formatUnits, mulDivFloor, toUnits } from "../../contract/money.ts";
import { liquidationTicks } from "./liquidation.ts";
import { refuse, remembered, type CloseFacts, type Outcome } from "./receipts.ts";
import { settle } from "./settlement.ts";
import { amountsOf, assetAt, factsOf, type EngineState, type Trade } from "./state.ts";
import { emitBalancesChanged, emitClosedOrder, emitTradeUpdated, type Step } from "./step.ts";
import { moveExits } from "./trigger-index.ts";
import { balancesView, closedTradeView, tradeView } from "./views.ts";

type CloseTrade = Extract<Instruction, { kind: "close_trade" }>;

/** A percent to close is read in hundredths: "12.5" is 1250, "100" is 10000. */
const PERCENT_DECIMALS = 2;
const HUNDRED_PERCENT = 10_000;

/** How many steps the instruction closes (all of them without `quantity` or `percent`), or why it cannot. */
export function stepsToClose(state: EngineState, trade: Trade, instruction: CloseTrade): number | Outcome {
  const { quantity, percent } = instruction;
  const q = trade.quantitySteps;
  if (quantity === undefined && percent === undefined) return q;
  const asset = assetAt(state, trade.assetIndex);
  const amount = (steps: number) => `${formatUnits(steps, asset.quantityDecimals)} ${asset.symbol}`;
  let steps: number;
  if (quantity !== undefined && percent !== undefined) {
    return refuse(
      "INVALID_CLOSE_QUANTITY",
      `Give quantity or percent, not both; received quantity ${JSON.stringify(quantity)} and percent ` +
        `${JSON.stringify(percent)}.`,
    );
  } else if (quantity !== undefined) {
    steps = toUnits(quantity, asset.quantityDecimals);
    if (steps <= 0) {
      return refuse(
        "INVALID_CLOSE_QUANTITY",
        `quantity must be a positive amount of ${asset.symbol} with at most ${decimalsWord(asset.quantityDecimals)}; ` +
          `received ${JSON.stringify(quantity)}.`,
      );
    }
    if (steps > q)
      return refuse("INVALID_CLOSE_QUANTITY", `quantity ${quantity} is more than the trade's ${amount(q)}.`);
  } else {
    const hundredths = toUnits(percent!, PERCENT_DECIMALS, HUNDRED_PERCENT);
    if (hundredths <= 0) {
      return refuse(
        "INVALID_CLOSE_QUANTITY",
        `percent must be more than 0 and at most 100, with at most ${PERCENT_DECIMALS} decimals; received ` +
          `${JSON.stringify(percent)}.`,
      );
    }
    // Rounded down to the step: a percent never closes more than it says.
    steps = mulDivFloor(q, hundredths, HUNDRED_PERCENT);
    if (steps === 0) {
      return refuse(
        "INVALID_CLOSE_QUANTITY",
        `percent ${percent} of the trade's ${amount(q)} is less than one step (${amount(1)}).`,
      );
    }
  }
  const rest = q - steps;
  if (rest > 0 && rest < asset.minQuantitySteps) {
    return refuse(
      "REMAINDER_TOO_SMALL",
      `Closing ${amount(steps)} of ${amount(q)} would leave ${amount(rest)} open; the minimum is ` +
        `${amount(asset.minQuantitySteps)}. Close all of it, or less.`,
    );
  }
  return steps;
}

/**
 * Closes `steps` (fewer than all) of the trade at `priceTicks`. Outputs: `closed_order` for the part (its close id
 * `<trade id>.<n>`, n from the shard's sequence), `trade_updated` with what stays open, `balances_changed`. The
 * receipt is the answer itself: partial closes are rare next to opens and full closes.
 */
export function closePart(state: EngineState, step: Step, trade: Trade, steps: number, priceTicks: number): Outcome {
  const account = trade.account;
  const released = mulDivFloor(trade.marginMicros, steps, trade.quantitySteps);
  // The part closed, with the trailing stop the trade had (its view shows it, as a full close's does).
  const part = { ...factsOf(trade), quantitySteps: steps, marginMicros: released, trailing: trade.trailing };
  const pnlMicros = settle(state, trade, steps, released, priceTicks);
  trade.quantitySteps -= steps;
  trade.marginMicros -= released;
  const asset = assetAt(state, trade.assetIndex);
  trade.liquidationTicks = liquidationTicks(
    trade.isLong,
    trade.marginMicros,
    trade.openPriceTicks,
    trade.quantitySteps * microsPerTickStep(asset),
    state.params.maintenanceMarginPpm,
  );
  // Its exit level may move with it; its stop-loss and take-profit stay.
  moveExits(state.books[trade.assetIndex]!, trade, trade.stopLossTicks, trade.takeProfitTicks);
  const close: CloseFacts = { priceTicks, pnlMicros, reason: "manual", atMs: step.nowMs };
  const closed = closedTradeView(state, part, close, {
    closeSeq: state.nextSeq++,
    remainingSteps: trade.quantitySteps,
  });
  const remaining = tradeView(state, trade);
  const balances = balancesView(state, amountsOf(account));
  emitClosedOrder(step, account, closed);
  emitTradeUpdated(step, account, "partial_close", remaining);
  emitBalancesChanged(step, account, balances);
  return remembered({ ok: true, result: { kind: "close_trade", trade: closed, remaining, balances } });
}
