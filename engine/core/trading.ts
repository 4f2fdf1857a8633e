/**
 * Leveraged trades in hedging mode: every trade is its own isolated-margin position.
 *
 * Open: long fills at the ask, short at the bid; quantity = margin × leverage / price, rounded down to the step.
 * A stop-loss must sit between the price and the liquidation level (at the level is fine: the tie goes to it).
 * The margin leaves the free USD balance while the trade is open. Closing is settlement.ts.
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { Instruction } from "../../contract/messages.ts";
import { USD_DECIMALS, divFloor, formatUnits, mulWithin, toUnits } from "../../contract/money.ts";
import { liquidationTicks } from "./liquidation.ts";
import { isRejection, tradableQuote } from "./quotes.ts";
import { refuse, type Outcome } from "./receipts.ts";
import { closeTrade } from "./settlement.ts";
import { amountsOf, assetAt, makeTrade, tradeId, type Account, type EngineState } from "./state.ts";
import { emit, type Step } from "./step.ts";
import { indexTrade } from "./trigger-index.ts";
import { balancesView, tradeView } from "./views.ts";

type OpenTrade = Extract<Instruction, { kind: "open_trade" }>;

export function openTrade(state: EngineState, step: Step, account: Account, order: OpenTrade): Outcome {
  const p = state.params;
  const index = state.assetBySymbol.get(order.asset);
  if (index === undefined) return refuse("UNKNOWN_ASSET", `Supported: ${p.assets.map((a) => a.symbol).join(", ")}.`);
  const asset = assetAt(state, index);
  const isLong = order.side === "long";
  if (!Number.isInteger(order.leverage) || order.leverage < 1 || order.leverage > p.maxLeverage) {
    return refuse("INVALID_LEVERAGE", `Allowed: 1 to ${p.maxLeverage}.`);
  }
  const margin = toUnits(order.margin, USD_DECIMALS);
  if (margin <= 0) return refuse("INVALID_AMOUNT", `Margin must be a positive USD amount with at most ${USD_DECIMALS} decimals.`);
  const stopLoss = optionalPrice(order.stopLoss, asset.priceDecimals, asset.maxPriceTicks);
  if (stopLoss < 0) return refuse("INVALID_STOP_LOSS", `Use a positive price with at most ${asset.priceDecimals} decimals.`);
  const takeProfit = optionalPrice(order.takeProfit, asset.priceDecimals, asset.maxPriceTicks);
  if (takeProfit < 0) return refuse("INVALID_TAKE_PROFIT", `Use a positive price with at most ${asset.priceDecimals} decimals.`);

  const quote = tradableQuote(state, step, index);
  if (isRejection(quote)) return quote;
  if (account.openTrades.size >= p.maxOpenTradesPerUser) return refuse("TOO_MANY_OPEN_TRADES", `The limit is ${p.maxOpenTradesPerUser}.`);
  if (margin > account.usd) return refuse("INSUFFICIENT_BALANCE");
  const notional = mulWithin(margin, order.leverage, p.maxNotionalMicros);
  if (notional === undefined) return refuse("NOTIONAL_TOO_LARGE", `Margin × leverage may be at most ${p.maxNotionalMicros / 1e6} USD.`);

  const fillTicks = isLong ? quote.askTicks : quote.bidTicks;
  const k = microsPerTickStep(asset);
  const quantity = divFloor(notional, fillTicks * k);
  if (quantity === 0) return refuse("QUANTITY_TOO_SMALL");
  if (stopLoss !== 0 && (isLong ? stopLoss >= quote.bidTicks : stopLoss <= quote.askTicks)) {
    return refuse("INVALID_STOP_LOSS", isLong ? "A long's stop-loss must be below the bid." : "A short's stop-loss must be above the ask.");
  }
  if (takeProfit !== 0 && (isLong ? takeProfit <= quote.bidTicks : takeProfit >= quote.askTicks)) {
    return refuse("INVALID_TAKE_PROFIT", isLong ? "A long's take-profit must be above the bid." : "A short's take-profit must be below the ask.");
  }
  const liquidation = liquidationTicks(isLong, margin, fillTicks, quantity * k, p.maintenanceMarginPpm);
  if (liquidation !== 0 && (isLong ? quote.bidTicks <= liquidation : quote.askTicks >= liquidation)) {
    return refuse("WOULD_LIQUIDATE");
  }
  if (stopLoss !== 0 && liquidation !== 0 && (isLong ? stopLoss < liquidation : stopLoss > liquidation)) {
    const at = formatUnits(liquidation, asset.priceDecimals);
    return refuse("INVALID_STOP_LOSS", `It lies beyond the liquidation price ${at}, so it could never fire.`);
  }

  const seq = state.nextSeq++;
  const trade = makeTrade(account, {
    seq,
    id: tradeId(p.shard, seq),
    assetIndex: index,
    isLong,
    marginMicros: margin,
    leverage: order.leverage,
    quantitySteps: quantity,
    openPriceTicks: fillTicks,
    stopLossTicks: stopLoss,
    takeProfitTicks: takeProfit,
    liquidationTicks: liquidation,
    openedAtMs: step.nowMs,
  });
  account.usd -= margin;
  account.openTrades.set(trade.id, trade);
  indexTrade(state.books[index]!, trade);
  const amounts = amountsOf(account);
  const view = tradeView(state, trade);
  const balances = balancesView(state, amounts);
  emit(step, { type: "trade_opened", userId: account.userId, trade: view });
  emit(step, { type: "balances_changed", userId: account.userId, balances });
  return {
    receipt: { kind: "open_trade", trade, balances: amounts },
    answer: { ok: true, result: { kind: "open_trade", trade: view, balances } },
  };
}

export function closeTradeByUser(state: EngineState, step: Step, account: Account, id: string): Outcome {
  // Another user's trade is indistinguishable from a missing one.
  const trade = account.openTrades.get(id);
  if (trade === undefined) return refuse("TRADE_NOT_FOUND");
  const quote = tradableQuote(state, step, trade.assetIndex);
  if (isRejection(quote)) return quote;
  const { close, view, amounts, balances } = closeTrade(state, step, trade, trade.isLong ? quote.bidTicks : quote.askTicks, "manual");
  return {
    receipt: { kind: "close_trade", trade, close, balances: amounts },
    answer: { ok: true, result: { kind: "close_trade", trade: view, balances } },
  };
}

/** A price in ticks: 0 when absent, negative when invalid (malformed, too precise, zero or out of range). */
function optionalPrice(text: string | undefined, decimals: number, maxTicks: number): number {
  if (text === undefined) return 0;
  const ticks = toUnits(text, decimals, maxTicks);
  return ticks === 0 ? -1 : ticks;
}
