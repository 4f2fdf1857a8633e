/**
 * Leveraged trades in hedging mode: every trade is its own isolated-margin position.
 *
 * Open: long fills at the ask, short at the bid; quantity = margin × leverage / price, rounded down to the step.
 * A stop-loss must sit between the price and the liquidation level (at the level is fine: the tie goes to it); a
 * take-profit beyond both the price and the entry (checkLevels, shared with modify_trade in modify.ts).
 * The margin leaves the free USD balance while the trade is open. Sizing and opening at a fill price is opening.ts
 * (shared with pending orders' fills); closing is settlement.ts. An optional trailing stop is trailing.ts's.
 */
import type { AssetConfig } from "../../contract/markets.ts";
import type { Answer, Instruction } from "../../contract/messages.ts";
import { MAX_UNITS, USD_DECIMALS, formatUnits, formatUsd, toUnits } from "../../contract/money.ts";
import { leverageExpected } from "../../contract/rejections.ts";
import {
  refuseLiquidatable,
  refuseOpenTradeLimit,
  sizeTrade,
  startTrade,
  wouldLiquidate,
  type OpenOrder as SizedOrder,
} from "./opening.ts";
import { tradableQuote } from "./quotes.ts";
import {
  isRefusal,
  priceRule,
  refuse,
  refuseField,
  refuseTradeNotFound,
  refuseUnknownAsset,
  remembered,
  type Outcome,
} from "./receipts.ts";
import { closePart, stepsToClose } from "./partial-close.ts";
import { closeTrade } from "./settlement.ts";
import { checkTrailingTerms, readTrailingTerms, setTrailingStop, type TrailingTerms } from "./trailing.ts";
import { amountsOf, assetAt, factsOf, tradeSeq, type Account, type EngineState, type Quote } from "./state.ts";
import { emitBalancesChanged, type Step } from "./step.ts";
import { balancesView } from "./views.ts";

type OpenTrade = Extract<Instruction, { kind: "open_trade" }>;

/** The terms open_trade and a pending entry order share. */
export type OrderTerms = Pick<
  OpenTrade,
  "asset" | "side" | "margin" | "leverage" | "stopLoss" | "takeProfit" | "trailingStop"
>;

/** An open_trade instruction (or an entry order's terms) read into numbers, with its trailing stop's terms. */
interface OpenOrder extends SizedOrder {
  readonly trailing: TrailingTerms | null;
}

export function openTrade(state: EngineState, step: Step, account: Account, instruction: OpenTrade): Outcome {
  const order = readOrder(state, instruction);
  if (isRefusal(order)) return order;
  const quote = tradableQuote(state, step, order.assetIndex);
  if (isRefusal(quote)) return quote;
  const p = state.params;
  if (account.openTrades.size >= p.maxOpenTradesPerUser) return refuseOpenTradeLimit(state, account);
  if (order.marginMicros > account.usd) {
    const needs = `It needs ${formatUsd(order.marginMicros)} USD of margin; ${formatUsd(account.usd)} USD is free.`;
    return refuse("INSUFFICIENT_BALANCE", needs);
  }
  const fillTicks = order.isLong ? quote.askTicks : quote.bidTicks;
  const size = sizeTrade(state, order, fillTicks);
  if (isRefusal(size)) return size;
  const misplaced = checkLevels(assetAt(state, order.assetIndex), order, fillTicks, quote, size.liquidationTicks);
  if (misplaced !== undefined) return misplaced;
  const badTrailing = order.trailing === null ? undefined : checkTrailingTerms(state, order, order.trailing, quote);
  if (badTrailing !== undefined) return badTrailing;

  account.usd -= order.marginMicros;
  const trailing = order.trailing;
  const { trade, view } = startTrade(state, step, account, order, fillTicks, size, (t) => {
    if (trailing !== null) setTrailingStop(state, t, trailing, quote);
  });
  const amounts = amountsOf(account);
  const balances = balancesView(state, amounts);
  emitBalancesChanged(step, account, balances);
  const answer: Answer = { ok: true, result: { kind: "open_trade", trade: view, balances } };
  // A compact receipt has no trailing stop: a trade with one is remembered by its answer.
  if (trade.trailing !== null) return remembered(answer);
  // The receipt keeps the facts as opened: the trade itself shrinks if it is partly closed, its exits may move.
  return { receipt: { kind: "open_trade", trade: factsOf(trade), balances: amounts }, answer };
}

/** Checks what needs no market: the asset, leverage and amounts at their precision. */
export function readOrder(state: EngineState, order: OrderTerms): OpenOrder | Outcome {
  const assetIndex = state.assetBySymbol.get(order.asset);
  if (assetIndex === undefined) return refuseUnknownAsset(state, order.asset);
  const asset = assetAt(state, assetIndex);
  const { priceDecimals, maxPriceTicks } = asset;
  const maxLeverage = state.params.maxLeverage;
  if (!Number.isInteger(order.leverage) || order.leverage < 1 || order.leverage > maxLeverage) {
    return refuseField("INVALID_LEVERAGE", "leverage", leverageExpected(maxLeverage), `${order.leverage}`);
  }
  const marginMicros = toUnits(order.margin, USD_DECIMALS);
  if (marginMicros <= 0) {
    return refuse(
      "INVALID_AMOUNT",
      `margin must be a positive USD amount up to ${formatUsd(MAX_UNITS)} with at most ${USD_DECIMALS} decimals; ` +
        `received ${JSON.stringify(order.margin)}.`,
    );
  }
  const stopLossTicks = optionalPrice(order.stopLoss, priceDecimals, maxPriceTicks);
  if (stopLossTicks < 0) return refuse("INVALID_STOP_LOSS", `Use ${priceRule(asset)}; received ${order.stopLoss}.`);
  const takeProfitTicks = optionalPrice(order.takeProfit, priceDecimals, maxPriceTicks);
  if (takeProfitTicks < 0)
    return refuse("INVALID_TAKE_PROFIT", `Use ${priceRule(asset)}; received ${order.takeProfit}.`);
  const trailing = order.trailingStop === undefined ? null : readTrailingTerms(state, assetIndex, order.trailingStop);
  if (trailing !== null && isRefusal(trailing)) return trailing;
  return {
    trailing,
    assetIndex,
    isLong: order.side === "long",
    leverage: order.leverage,
    marginMicros,
    stopLossTicks,
    takeProfitTicks,
  };
}

/**
 * The exit levels a placement rule looks at, in ticks (0: not set): an order's, or an open trade's after a change;
 * with the leverage, which a WOULD_LIQUIDATE refusal names.
 */
export interface ExitLevels {
  readonly isLong: boolean;
  readonly leverage: number;
  readonly stopLossTicks: number;
  readonly takeProfitTicks: number;
  /**
   * An open trade's stop-loss that the change leaves where it is: not held to the liquidation level, which a gapped
   * pending fill may have moved past it (the trade opens anyway), or no change that keeps it could ever be made.
   */
  readonly stopLossKept?: boolean;
  /**
   * An open trade's take-profit that the change leaves where it is: not held to the entry price, which a stop entry
   * filled through a gap may have passed (the trade opens anyway and the take-profit would close it at a loss), or no
   * change that keeps it could ever be made. It is still held to the current quote.
   */
  readonly takeProfitKept?: boolean;
}

/**
 * Placement rules for exits, at the current quote and the trade's entry price: long SL < bid, TP > bid and
 * TP > entry; short SL > ask, TP < ask and TP < entry (a take-profit on the losing side of the entry would close
 * as `take_profit` at a loss; a kept take-profit is spared the entry rule only); not already liquidatable; and a
 * stop-loss no further than the liquidation level (beyond it, it could never fire; at it, the tie goes to the stop),
 * unless it is a kept one. Refusals name the level, the prices it was checked against and the range it must lie in.
 * Used at open and by every later change of a trade's exits.
 */
export function checkLevels(
  asset: AssetConfig,
  levels: ExitLevels,
  entryTicks: number,
  quote: Quote,
  liquidation: number,
): Outcome | undefined {
  const { isLong, stopLossTicks: sl, takeProfitTicks: tp } = levels;
  if (sl !== 0 && (isLong ? sl >= quote.bidTicks : sl <= quote.askTicks)) {
    return misplaced(asset, levels, entryTicks, quote, liquidation, "stop-loss side");
  }
  const beyondEntry = levels.takeProfitKept === true || (isLong ? tp > entryTicks : tp < entryTicks);
  if (tp !== 0 && ((isLong ? tp <= quote.bidTicks : tp >= quote.askTicks) || !beyondEntry)) {
    return misplaced(asset, levels, entryTicks, quote, liquidation, "take-profit side");
  }
  if (liquidation === 0) return undefined;
  if (wouldLiquidate(isLong, quote.bidTicks, quote.askTicks, liquidation))
    return refuseLiquidatable(asset, levels, entryTicks, liquidation, quote);
  if (sl !== 0 && levels.stopLossKept !== true && (isLong ? sl < liquidation : sl > liquidation)) {
    return misplaced(asset, levels, entryTicks, quote, liquidation, "stop-loss beyond liquidation");
  }
  return undefined;
}

/** The refusal of a misplaced level, in numbers. Apart from checkLevels so that an accepted open formats nothing. */
function misplaced(
  asset: AssetConfig,
  levels: ExitLevels,
  entryTicks: number,
  quote: Quote,
  liquidation: number,
  why: "stop-loss side" | "take-profit side" | "stop-loss beyond liquidation",
): Outcome {
  const { isLong, stopLossTicks: sl, takeProfitTicks: tp } = levels;
  const price = (ticks: number) => formatUnits(ticks, asset.priceDecimals);
  const bid = price(quote.bidTicks);
  const ask = price(quote.askTicks);
  if (why === "stop-loss side") {
    return refuse(
      "INVALID_STOP_LOSS",
      isLong
        ? `A long's stop-loss must be below the current bid ${bid}; stopLoss ${price(sl)} is not.`
        : `A short's stop-loss must be above the current ask ${ask}; stopLoss ${price(sl)} is not.`,
    );
  }
  if (why === "take-profit side") {
    const entry = price(entryTicks);
    return refuse(
      "INVALID_TAKE_PROFIT",
      isLong
        ? `A long's take-profit must be above its entry price ${entry} and the current bid ${bid}; ` +
            `takeProfit ${price(tp)} is not.`
        : `A short's take-profit must be below its entry price ${entry} and the current ask ${ask}; ` +
            `takeProfit ${price(tp)} is not.`,
    );
  }
  const at = price(liquidation);
  return refuse(
    "INVALID_STOP_LOSS",
    isLong
      ? `stopLoss ${price(sl)} is below this long's liquidation price ${at}, so it could never fire: a long's ` +
          `stop-loss must be at or above the liquidation price ${at} and below the current bid ${bid}.`
      : `stopLoss ${price(sl)} is above this short's liquidation price ${at}, so it could never fire: a short's ` +
          `stop-loss must be above the current ask ${ask} and at or below the liquidation price ${at}.`,
  );
}

type CloseTrade = Extract<Instruction, { kind: "close_trade" }>;

/** Closes all of a trade, or with `quantity` or `percent` part of it (partial-close.ts), at the quote. */
export function closeTradeByUser(state: EngineState, step: Step, account: Account, instruction: CloseTrade): Outcome {
  // Another user's trade is indistinguishable from a missing one.
  const trade = account.openTrades.get(tradeSeq(state.params.shard, instruction.tradeId));
  if (trade === undefined) return refuseTradeNotFound(instruction.tradeId);
  const steps = stepsToClose(state, trade, instruction);
  if (typeof steps !== "number") return steps;
  const quote = tradableQuote(state, step, trade.assetIndex);
  if (isRefusal(quote)) return quote;
  const priceTicks = trade.isLong ? quote.bidTicks : quote.askTicks;
  if (steps < trade.quantitySteps) return closePart(state, step, trade, steps, priceTicks);
  const { close, view, amounts, balances } = closeTrade(state, step, trade, priceTicks, "manual");
  // A compact receipt has no trailing stop: a trade with one is remembered by its answer.
  if (trade.trailing !== null)
    return remembered({ ok: true, result: { kind: "close_trade", trade: view, remaining: null, balances } });
  return {
    receipt: { kind: "close_trade", trade, close, balances: amounts },
    answer: { ok: true, result: { kind: "close_trade", trade: view, remaining: null, balances } },
  };
}

/** A price in ticks: 0 when absent, negative when invalid (malformed, too precise, zero or out of range). */
export function optionalPrice(text: string | undefined, decimals: number, maxTicks: number): number {
  if (text === undefined) return 0;
  const ticks = toUnits(text, decimals, maxTicks);
  return ticks === 0 ? -1 : ticks;
}
