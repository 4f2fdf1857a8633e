/**
 * Trailing stops: the rules around the index in trailing-book.ts (docs/trading-rules.md, "Trailing stops").
 *
 * Terms: exactly one of `distance` (a price at the asset's precision, > 0) or `percent` (> 0, < 100, at most 2
 * decimals); optional `activationPrice` (a price at the asset's precision). Without one, or when the price has
 * already reached it (long: bid ≥ it; short: ask ≤ it), the stop trails from the current quote at once.
 * A long trails the highest bid since activation and fires when the bid falls to its level, filling at that bid;
 * a short mirrors on the ask. The level only ever moves in the user's favour.
 * Same tick as the stop-loss or liquidation: the level the price reached first decides; at equal levels the
 * stop-loss beats the trailing stop, and the trailing stop beats liquidation.
 */
import type { CloseReason, TrailingStopSpec } from "../../contract/messages.ts";
import { formatUnits, toUnits } from "../../contract/money.ts";
import { priceRule, refuse, type Outcome } from "./receipts.ts";
import { closeTrade } from "./settlement.ts";
import { assetAt, type EngineState, type Quote, type Trade } from "./state.ts";
import { emitTradeUpdated, type Step } from "./step.ts";
import { activateReached, attachStop, detachStop, type TrailSide } from "./trailing-book.ts";
import { levelOf, newTrailingStop, PERCENT_DECIMALS, type TrailGroup, type TrailingStop } from "./trailing-stop.ts";
import { firesBefore, type TrailSystem } from "./trailing-system.ts";
import { tradeView } from "./views.ts";

/** Trailing terms read into numbers: `amount` in price ticks, or (byPercent) hundredths of a percent. */
export interface TrailingTerms {
  readonly byPercent: boolean;
  readonly amount: number;
  /** 0 when none. */
  readonly activationTicks: number;
}

/** Checks what needs no market: one kind of distance, each number positive at its precision. */
export function readTrailingTerms(
  state: EngineState,
  assetIndex: number,
  spec: TrailingStopSpec,
): TrailingTerms | Outcome {
  const asset = assetAt(state, assetIndex);
  const { priceDecimals, maxPriceTicks } = asset;
  const { distance, percent, activationPrice } = spec;
  if ((distance === undefined) === (percent === undefined)) {
    const received = distance === undefined ? "neither" : "both";
    return refuse("INVALID_TRAILING_STOP", `Give exactly one of distance and percent; received ${received}.`);
  }
  let activationTicks = 0;
  if (activationPrice !== undefined) {
    activationTicks = toUnits(activationPrice, priceDecimals, maxPriceTicks);
    if (activationTicks <= 0) {
      return refuse(
        "INVALID_TRAILING_STOP",
        `activationPrice must be ${priceRule(asset)}; received "${activationPrice}".`,
      );
    }
  }
  if (distance !== undefined) {
    const amount = toUnits(distance, priceDecimals, maxPriceTicks);
    if (amount <= 0) {
      return refuse("INVALID_TRAILING_STOP", `distance must be ${priceRule(asset)}; received "${distance}".`);
    }
    return { byPercent: false, amount, activationTicks };
  }
  const amount = toUnits(percent!, PERCENT_DECIMALS, 9_999);
  if (amount <= 0) {
    return refuse(
      "INVALID_TRAILING_STOP",
      `percent must be above 0 and below 100 with at most ${PERCENT_DECIMALS} decimals; received "${percent}".`,
    );
  }
  return { byPercent: true, amount, activationTicks };
}

/** Whether a trade's trailing stop has exactly these terms. */
export function sameTerms(stop: TrailingStop | null, terms: TrailingTerms | null): boolean {
  if (stop === null || terms === null) return stop === terms;
  return (
    stop.byPercent === terms.byPercent && stop.amount === terms.amount && stop.activationTicks === terms.activationTicks
  );
}

/** Gives an open trade these trailing terms (null: none), replacing any it had; it trails from `quote`. */
export function setTrailingStop(state: EngineState, trade: Trade, terms: TrailingTerms | null, quote: Quote): void {
  const book = state.books[trade.assetIndex]!.trailing;
  if (trade.trailing !== null) detachStop(book, trade.trailing);
  trade.trailing = null;
  if (terms === null) return;
  const stop = newTrailingStop(trade, terms.byPercent, terms.amount, terms.activationTicks);
  trade.trailing = stop;
  attachStop(book, stop, quote.bidTicks, quote.askTicks);
}

/**
 * The close reason of a trade whose stop-loss / liquidation level (`exitTicks`) or trailing level the price
 * reached: the level reached first (long: the higher; short: the lower); at a tie, stop-loss, then trailing stop,
 * then liquidation.
 */
export function stopReason(t: Trade): CloseReason {
  const exit: CloseReason = t.stopLossTicks !== 0 && t.exitTicks === t.stopLossTicks ? "stop_loss" : "liquidation";
  const stop = t.trailing;
  if (stop === null || !stop.activated) return exit;
  if (t.exitTicks === 0) return "trailing_stop";
  const level = levelOf(stop);
  if (level === t.exitTicks) return exit === "stop_loss" ? exit : "trailing_stop";
  return (t.isLong ? level > t.exitTicks : level < t.exitTicks) ? "trailing_stop" : exit;
}

/**
 * Closes the trades of one side whose trailing level `price` reached (long: bid ≤ level; short: ask ≥ level), by
 * level, then by age, across both kinds of distance: the order of their events is the documented one.
 */
export function fireTrailing(state: EngineState, step: Step, side: TrailSide, isLong: boolean, price: number): void {
  for (;;) {
    const byDistance = reached(side.byDistance, isLong, price);
    const byPercent = reached(side.byPercent, isLong, price);
    const g =
      byDistance === undefined || (byPercent !== undefined && firesBefore(byPercent, byDistance, isLong))
        ? byPercent
        : byDistance;
    if (g === undefined) return;
    const t = g.root!.trade;
    closeTrade(state, step, t, price, stopReason(t));
  }
}

/** The system's next group to fire, if `price` reached its level. */
function reached(system: TrailSystem, isLong: boolean, price: number): TrailGroup | undefined {
  const g = system.peek();
  return g !== undefined && (isLong ? price <= g.level : price >= g.level) ? g : undefined;
}

/** Activates the stops a quote reached, each with a `trade_updated` ("trailing_activated"). */
export function activateTrailing(state: EngineState, step: Step, assetIndex: number, quote: Quote): void {
  const book = state.books[assetIndex]!.trailing;
  const longs = activateReached(book, true, quote.bidTicks);
  if (longs !== undefined) emitActivated(state, step, longs);
  const shorts = activateReached(book, false, quote.askTicks);
  if (shorts !== undefined) emitActivated(state, step, shorts);
}

function emitActivated(state: EngineState, step: Step, stops: readonly TrailingStop[]): void {
  for (const stop of stops) {
    emitTradeUpdated(step, stop.trade.account, "trailing_activated", tradeView(state, stop.trade));
  }
}

/**
 * Checks terms against the quote the stop would trail from: a long's distance must stay below the price it starts
 * trailing at (its activation price, or the current bid when it trails at once), so its level is a price.
 */
export function checkTrailingTerms(
  state: EngineState,
  trade: { readonly assetIndex: number; readonly isLong: boolean },
  terms: TrailingTerms,
  quote: Quote,
): Outcome | undefined {
  if (terms.byPercent || !trade.isLong) return undefined;
  const atOnce = terms.activationTicks <= quote.bidTicks;
  const from = atOnce ? quote.bidTicks : terms.activationTicks;
  if (terms.amount < from) return undefined;
  const price = (ticks: number) => formatUnits(ticks, assetAt(state, trade.assetIndex).priceDecimals);
  const what = atOnce ? `the current bid ${price(from)}` : `its activation price ${price(from)}`;
  return refuse(
    "INVALID_TRAILING_STOP",
    `A long's trailing distance must be below the price it trails from, ${what}; distance ${price(terms.amount)} is not.`,
  );
}
