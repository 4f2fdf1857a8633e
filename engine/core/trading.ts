/**
 * Leveraged trades in hedging mode: every trade is its own isolated-margin position.
 *
 * Open: long fills at the ask, short at the bid; quantity = margin × leverage / price, rounded down to the step.
 * The margin leaves the free USD balance while the trade is open. Close (by the user or a trigger): long at the
 * bid, short at the ask; the margin plus the PnL returns to USD, never less than zero (a loss is capped at the
 * trade's margin) and the house takes the other side of every amount.
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { Answer, CloseReason, Instruction } from "../../contract/messages.ts";
import { MAX_UNITS, USD_DECIMALS, divFloor, mulWithin, parseUnits } from "../../contract/money.ts";
import { rejection, type Rejection } from "../../contract/rejections.ts";
import { isRejection, tradableQuote } from "./quotes.ts";
import { assetAt, type Account, type EngineState, type Trade } from "./state.ts";
import { emit, type Step } from "./step.ts";
import { indexTrade, unindexTrade } from "./triggers.ts";
import { balancesView, closedTradeView, tradeView } from "./views.ts";

type OpenTrade = Extract<Instruction, { kind: "open_trade" }>;

const fail = (r: Rejection): Answer => ({ ok: false, error: r });

export function openTrade(state: EngineState, step: Step, account: Account, order: OpenTrade): Answer {
  const p = state.params;
  const index = state.assetBySymbol.get(order.asset);
  if (index === undefined) return fail(rejection("UNKNOWN_ASSET", `Supported: ${p.assets.map((a) => a.symbol).join(", ")}.`));
  const asset = assetAt(state, index);
  const isLong = order.side === "long";
  if (!Number.isInteger(order.leverage) || order.leverage < 1 || order.leverage > p.maxLeverage) {
    return fail(rejection("INVALID_LEVERAGE", `Allowed: 1 to ${p.maxLeverage}.`));
  }
  const margin = parseUnits(order.margin, USD_DECIMALS);
  if (!margin.ok || margin.units === 0) return fail(rejection("INVALID_AMOUNT", `Margin must be a positive USD amount with at most ${USD_DECIMALS} decimals.`));
  const stopLoss = optionalPrice(order.stopLoss, asset.priceDecimals, asset.maxPriceTicks);
  if (stopLoss === undefined) return fail(rejection("INVALID_STOP_LOSS", `Use a positive price with at most ${asset.priceDecimals} decimals.`));
  const takeProfit = optionalPrice(order.takeProfit, asset.priceDecimals, asset.maxPriceTicks);
  if (takeProfit === undefined) return fail(rejection("INVALID_TAKE_PROFIT", `Use a positive price with at most ${asset.priceDecimals} decimals.`));

  const quote = tradableQuote(state, step, index);
  if (isRejection(quote)) return fail(quote);
  if (account.openTrades.size >= p.maxOpenTradesPerUser) return fail(rejection("TOO_MANY_OPEN_TRADES", `The limit is ${p.maxOpenTradesPerUser}.`));
  if (margin.units > account.usd) return fail(rejection("INSUFFICIENT_BALANCE"));
  const notional = mulWithin(margin.units, order.leverage, p.maxNotionalMicros);
  if (notional === undefined) return fail(rejection("NOTIONAL_TOO_LARGE", `Margin × leverage may be at most ${p.maxNotionalMicros / 1e6} USD.`));

  const fillTicks = isLong ? quote.askTicks : quote.bidTicks;
  const k = microsPerTickStep(asset);
  const quantity = divFloor(notional, fillTicks * k);
  if (quantity === 0) return fail(rejection("QUANTITY_TOO_SMALL"));
  if (isLong ? stopLoss !== 0 && stopLoss >= quote.bidTicks : stopLoss !== 0 && stopLoss <= quote.askTicks) {
    return fail(rejection("INVALID_STOP_LOSS", isLong ? "A long's stop-loss must be below the bid." : "A short's stop-loss must be above the ask."));
  }
  if (isLong ? takeProfit !== 0 && takeProfit <= quote.bidTicks : takeProfit !== 0 && takeProfit >= quote.askTicks) {
    return fail(rejection("INVALID_TAKE_PROFIT", isLong ? "A long's take-profit must be above the bid." : "A short's take-profit must be below the ask."));
  }
  const liquidation = liquidationTicks(isLong, margin.units, fillTicks, quantity * k, p.maintenanceMarginPpm);
  if (liquidation !== 0 && (isLong ? quote.bidTicks <= liquidation : quote.askTicks >= liquidation)) {
    return fail(rejection("WOULD_LIQUIDATE"));
  }

  const seq = state.nextSeq++;
  const trade: Trade = {
    seq,
    id: `T${p.shard}-${seq}`,
    account,
    assetIndex: index,
    isLong,
    marginMicros: margin.units,
    leverage: order.leverage,
    quantitySteps: quantity,
    openPriceTicks: fillTicks,
    stopLossTicks: stopLoss,
    takeProfitTicks: takeProfit,
    liquidationTicks: liquidation,
    exitTicks: exitLevel(isLong, stopLoss, liquidation),
    openedAtMs: step.nowMs,
    exitPos: -1,
    profitPos: -1,
  };
  account.usd -= margin.units;
  account.openTrades.set(trade.id, trade);
  indexTrade(state.books[index]!, trade);
  const view = tradeView(state, trade);
  const balances = balancesView(state, account);
  emit(step, { type: "trade_opened", userId: account.userId, trade: view });
  emit(step, { type: "balances_changed", userId: account.userId, balances });
  return { ok: true, result: { kind: "open_trade", trade: view, balances } };
}

export function closeTradeByUser(state: EngineState, step: Step, account: Account, tradeId: string): Answer {
  // Another user's trade is indistinguishable from a missing one.
  const trade = account.openTrades.get(tradeId);
  if (trade === undefined) return fail(rejection("TRADE_NOT_FOUND"));
  const quote = tradableQuote(state, step, trade.assetIndex);
  if (isRejection(quote)) return fail(quote);
  const view = closeTrade(state, step, trade, trade.isLong ? quote.bidTicks : quote.askTicks, "manual");
  return { ok: true, result: { kind: "close_trade", trade: view, balances: balancesView(state, account) } };
}

/** Closes a trade at `priceTicks`: settles margin and PnL against the house, unindexes it, emits the facts. */
export function closeTrade(state: EngineState, step: Step, trade: Trade, priceTicks: number, reason: CloseReason) {
  const account = trade.account;
  const asset = assetAt(state, trade.assetIndex);
  const diff = trade.isLong ? priceTicks - trade.openPriceTicks : trade.openPriceTicks - priceTicks;
  const rawPnl = clampUnits(diff * trade.quantitySteps * microsPerTickStep(asset));
  // Negative balance protection: the loss stops at the margin. A payout is also capped so no balance can leave
  // the exact range (MAX_UNITS, a billion USD): unreachable under the per-order limits, but never unchecked.
  const payout = Math.min(Math.max(0, trade.marginMicros + rawPnl), MAX_UNITS - account.usd);
  const pnl = payout - trade.marginMicros;
  account.usd += payout;
  state.house.usd += trade.marginMicros - payout;
  account.openTrades.delete(trade.id);
  unindexTrade(state.books[trade.assetIndex]!, trade);
  const view = closedTradeView(state, trade, priceTicks, pnl, reason, step.nowMs);
  emit(step, { type: "closed_order", userId: account.userId, trade: view });
  emit(step, { type: "balances_changed", userId: account.userId, balances: balancesView(state, account) });
  return view;
}

/**
 * The price at which equity (margin + unrealized PnL) falls to maintenance margin (mmr × notional at that
 * price), in ticks, rounded so the rule holds exactly when it fires; 0 when the price can never reach it.
 *   long:  M + (p − e)·q ≤ mmr·q·p  ⇔  p ≤ (e·q − M) / (q·(1 − mmr))
 *   short: M + (e − p)·q ≤ mmr·q·p  ⇔  p ≥ (M + e·q) / (q·(1 + mmr))
 * with q in USD micros per tick (quantity × k). Intermediate products exceed 2^53, hence bigint.
 */
export function liquidationTicks(isLong: boolean, marginMicros: number, entryTicks: number, qMicrosPerTick: number, mmrPpm: number): number {
  const M = BigInt(marginMicros);
  const eq = BigInt(entryTicks) * BigInt(qMicrosPerTick);
  const million = 1_000_000n;
  if (isLong) {
    const num = million * (eq - M);
    if (num <= 0n) return 0;
    return Number(num / (BigInt(qMicrosPerTick) * (million - BigInt(mmrPpm))));
  }
  const num = million * (M + eq);
  const den = BigInt(qMicrosPerTick) * (million + BigInt(mmrPpm));
  return Number((num + den - 1n) / den);
}

function exitLevel(isLong: boolean, stopLoss: number, liquidation: number): number {
  if (stopLoss === 0) return liquidation;
  if (liquidation === 0) return stopLoss;
  return isLong ? Math.max(stopLoss, liquidation) : Math.min(stopLoss, liquidation);
}

/** A price in ticks: 0 when absent, undefined when invalid (malformed, too precise, zero or out of range). */
function optionalPrice(text: string | undefined, decimals: number, maxTicks: number): number | undefined {
  if (text === undefined) return 0;
  const r = parseUnits(text, decimals, maxTicks);
  return r.ok && r.units > 0 ? r.units : undefined;
}

function clampUnits(x: number): number {
  return x > MAX_UNITS ? MAX_UNITS : x < -MAX_UNITS ? -MAX_UNITS : x;
}
