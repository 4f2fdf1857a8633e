/**
 * Leveraged trades in hedging mode: every trade is its own isolated-margin position.
 *
 * Open: long fills at the ask, short at the bid; quantity = margin × leverage / price, rounded down to the step.
 * A stop-loss must sit between the price and the liquidation level (at the level is fine: the tie goes to it).
 * The margin leaves the free USD balance while the trade is open. Closing is settlement.ts.
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { Instruction, TradeView } from "../../contract/messages.ts";
import { USD_DECIMALS, divFloor, formatUnits, formatUsd, mulWithin, toUnits } from "../../contract/money.ts";
import { liquidationTicks } from "./liquidation.ts";
import { tradableQuote } from "./quotes.ts";
import { isRefusal, refuse, refuseUnknownAsset, type Outcome } from "./receipts.ts";
import { closeTrade } from "./settlement.ts";
import {
  amountsOf,
  assetAt,
  makeTrade,
  tradeSeq,
  type Account,
  type EngineState,
  type Quote,
  type Trade,
} from "./state.ts";
import { emit, emitBalancesChanged, nextOutputId, type Step } from "./step.ts";
import { indexTrade } from "./trigger-index.ts";
import { balancesView, tradeView } from "./views.ts";

type OpenTrade = Extract<Instruction, { kind: "open_trade" }>;

/** The terms open_trade and a pending entry order share. */
export type OrderTerms = Pick<OpenTrade, "asset" | "side" | "margin" | "leverage" | "stopLoss" | "takeProfit">;

/** An open_trade instruction (or an entry order's terms) read into numbers; 0 for an absent stop-loss or take-profit. */
export interface OpenOrder {
  readonly assetIndex: number;
  readonly isLong: boolean;
  readonly leverage: number;
  readonly marginMicros: number;
  readonly stopLossTicks: number;
  readonly takeProfitTicks: number;
}

export function openTrade(state: EngineState, step: Step, account: Account, instruction: OpenTrade): Outcome {
  const order = readOrder(state, instruction);
  if (isRefusal(order)) return order;
  const quote = tradableQuote(state, step, order.assetIndex);
  if (isRefusal(quote)) return quote;
  const p = state.params;
  if (account.openTrades.size >= p.maxOpenTradesPerUser)
    return refuse("TOO_MANY_OPEN_TRADES", `The limit is ${p.maxOpenTradesPerUser}.`);
  if (order.marginMicros > account.usd) {
    const needs = `It needs ${formatUsd(order.marginMicros)} USD of margin; ${formatUsd(account.usd)} USD is free.`;
    return refuse("INSUFFICIENT_BALANCE", needs);
  }
  const fillTicks = order.isLong ? quote.askTicks : quote.bidTicks;
  const size = sizeTrade(state, order, fillTicks);
  if (isRefusal(size)) return size;
  const misplaced = checkLevels(state, order, quote, size.liquidationTicks);
  if (misplaced !== undefined) return misplaced;

  account.usd -= order.marginMicros;
  const { trade, view } = startTrade(state, step, account, order, fillTicks, size);
  const amounts = amountsOf(account);
  const balances = balancesView(state, amounts);
  emitBalancesChanged(step, account.userId, balances);
  return {
    receipt: { kind: "open_trade", trade, balances: amounts },
    answer: { ok: true, result: { kind: "open_trade", trade: view, balances } },
  };
}

/** A trade's size at a fill price: quantity rounded down to the step, and its liquidation level. */
export interface TradeSize {
  readonly quantitySteps: number;
  readonly liquidationTicks: number;
}

/** Sizes a trade of this margin and leverage at `fillTicks`, or refuses (NOTIONAL_TOO_LARGE, QUANTITY_TOO_SMALL). */
export function sizeTrade(state: EngineState, order: OpenOrder, fillTicks: number): TradeSize | Outcome {
  const p = state.params;
  const notional = mulWithin(order.marginMicros, order.leverage, p.maxNotionalMicros);
  if (notional === undefined)
    return refuse("NOTIONAL_TOO_LARGE", `Margin × leverage may be at most ${formatUsd(p.maxNotionalMicros)} USD.`);
  const k = microsPerTickStep(assetAt(state, order.assetIndex));
  const quantity = divFloor(notional, fillTicks * k);
  if (quantity === 0) return refuse("QUANTITY_TOO_SMALL");
  const liquidation = liquidationTicks(
    order.isLong,
    order.marginMicros,
    fillTicks,
    quantity * k,
    p.maintenanceMarginPpm,
  );
  return { quantitySteps: quantity, liquidationTicks: liquidation };
}

/**
 * Opens a sized trade at `fillTicks` whose margin the caller has already taken from free USD (open_trade) or from
 * a reservation (a pending order's fill): files and indexes it and emits trade_opened. The caller emits the balances.
 */
export function startTrade(
  state: EngineState,
  step: Step,
  account: Account,
  order: OpenOrder,
  fillTicks: number,
  size: TradeSize,
): { trade: Trade; view: TradeView } {
  const seq = state.nextSeq++;
  const trade = makeTrade(account, {
    seq,
    assetIndex: order.assetIndex,
    isLong: order.isLong,
    marginMicros: order.marginMicros,
    leverage: order.leverage,
    quantitySteps: size.quantitySteps,
    openPriceTicks: fillTicks,
    stopLossTicks: order.stopLossTicks,
    takeProfitTicks: order.takeProfitTicks,
    liquidationTicks: size.liquidationTicks,
    openedAtMs: step.nowMs,
  });
  account.openTrades.set(seq, trade);
  indexTrade(state.books[order.assetIndex]!, trade);
  const view = tradeView(state, trade);
  emit(step, {
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "trade_opened",
    userId: account.userId,
    trade: view,
  });
  return { trade, view };
}

/** Whether a trade with this liquidation level would be liquidatable at once at this bid and ask. */
export function wouldLiquidate(isLong: boolean, bidTicks: number, askTicks: number, liquidation: number): boolean {
  return liquidation !== 0 && (isLong ? bidTicks <= liquidation : askTicks >= liquidation);
}

/** Checks what needs no market: the asset, leverage and amounts at their precision. */
export function readOrder(state: EngineState, order: OrderTerms): OpenOrder | Outcome {
  const assetIndex = state.assetBySymbol.get(order.asset);
  if (assetIndex === undefined) return refuseUnknownAsset(state);
  const { priceDecimals, maxPriceTicks } = assetAt(state, assetIndex);
  const maxLeverage = state.params.maxLeverage;
  if (!Number.isInteger(order.leverage) || order.leverage < 1 || order.leverage > maxLeverage) {
    return refuse("INVALID_LEVERAGE", `Allowed: 1 to ${maxLeverage}; received ${order.leverage}.`);
  }
  const marginMicros = toUnits(order.margin, USD_DECIMALS);
  if (marginMicros <= 0)
    return refuse("INVALID_AMOUNT", `Margin must be a positive USD amount with at most ${USD_DECIMALS} decimals.`);
  const stopLossTicks = optionalPrice(order.stopLoss, priceDecimals, maxPriceTicks);
  if (stopLossTicks < 0)
    return refuse("INVALID_STOP_LOSS", `Use a positive price with at most ${priceDecimals} decimals.`);
  const takeProfitTicks = optionalPrice(order.takeProfit, priceDecimals, maxPriceTicks);
  if (takeProfitTicks < 0)
    return refuse("INVALID_TAKE_PROFIT", `Use a positive price with at most ${priceDecimals} decimals.`);
  return {
    assetIndex,
    isLong: order.side === "long",
    leverage: order.leverage,
    marginMicros,
    stopLossTicks,
    takeProfitTicks,
  };
}

/**
 * Placement rules at the current quote: long SL < bid < TP, short TP < ask < SL; not already liquidatable; and a
 * stop-loss no further than the liquidation level (beyond it, it could never fire; at it, the tie goes to the stop).
 * Refusals name the level, the price it was checked against and the range it must lie in.
 */
function checkLevels(state: EngineState, order: OpenOrder, quote: Quote, liquidation: number): Outcome | undefined {
  const { isLong, stopLossTicks: sl, takeProfitTicks: tp } = order;
  if (sl !== 0 && (isLong ? sl >= quote.bidTicks : sl <= quote.askTicks)) {
    return misplaced(state, order, quote, liquidation, "stop-loss side");
  }
  if (tp !== 0 && (isLong ? tp <= quote.bidTicks : tp >= quote.askTicks)) {
    return misplaced(state, order, quote, liquidation, "take-profit side");
  }
  if (liquidation === 0) return undefined;
  if (wouldLiquidate(isLong, quote.bidTicks, quote.askTicks, liquidation)) return refuse("WOULD_LIQUIDATE");
  if (sl !== 0 && (isLong ? sl < liquidation : sl > liquidation)) {
    return misplaced(state, order, quote, liquidation, "stop-loss beyond liquidation");
  }
  return undefined;
}

/** The refusal of a misplaced level, in numbers. Apart from checkLevels so that an accepted open formats nothing. */
function misplaced(
  state: EngineState,
  order: OpenOrder,
  quote: Quote,
  liquidation: number,
  why: "stop-loss side" | "take-profit side" | "stop-loss beyond liquidation",
): Outcome {
  const { isLong, stopLossTicks: sl, takeProfitTicks: tp } = order;
  const price = (ticks: number) => formatUnits(ticks, assetAt(state, order.assetIndex).priceDecimals);
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
    return refuse(
      "INVALID_TAKE_PROFIT",
      isLong
        ? `A long's take-profit must be above the current bid ${bid}; takeProfit ${price(tp)} is not.`
        : `A short's take-profit must be below the current ask ${ask}; takeProfit ${price(tp)} is not.`,
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

export function closeTradeByUser(state: EngineState, step: Step, account: Account, id: string): Outcome {
  // Another user's trade is indistinguishable from a missing one.
  const trade = account.openTrades.get(tradeSeq(state.params.shard, id));
  if (trade === undefined) return refuse("TRADE_NOT_FOUND");
  const quote = tradableQuote(state, step, trade.assetIndex);
  if (isRefusal(quote)) return quote;
  const { close, view, amounts, balances } = closeTrade(
    state,
    step,
    trade,
    trade.isLong ? quote.bidTicks : quote.askTicks,
    "manual",
  );
  return {
    receipt: { kind: "close_trade", trade, close, balances: amounts },
    answer: { ok: true, result: { kind: "close_trade", trade: view, remaining: null, balances } },
  };
}

/** A price in ticks: 0 when absent, negative when invalid (malformed, too precise, zero or out of range). */
function optionalPrice(text: string | undefined, decimals: number, maxTicks: number): number {
  if (text === undefined) return 0;
  const ticks = toUnits(text, decimals, maxTicks);
  return ticks === 0 ? -1 : ticks;
}
