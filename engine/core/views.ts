/** Wire views of engine facts: decimal strings at each asset's scale, as the contract and the API show them. */
import { ACCOUNT_CURRENCY, microsPerTickStep } from "../../contract/markets.ts";
import type { Balances, ClosedTradeView, SpotOrderView, TradeView, TrailingStopView } from "../../contract/messages.ts";
import { formatBigUnits, formatUnits, formatUsd, USD_DECIMALS } from "../../contract/money.ts";
import type { CloseFacts, SpotFacts } from "./receipts.ts";
import { assetAt, orderId, tradeId, type EngineState, type TradeFacts } from "./state.ts";
import { isoTime } from "./step.ts";
import { PERCENT_DECIMALS, bestOf, levelAt, type TrailingStop } from "./trailing-stop.ts";

/** `amounts` is [free USD, ...holdings per asset index]. */
export function balancesView(state: EngineState, amounts: readonly number[]): Balances {
  const view: Balances = { [ACCOUNT_CURRENCY]: formatUsd(amounts[0]!) };
  const assets = state.params.assets;
  for (let i = 0; i < assets.length; i++) {
    const a = assets[i]!;
    view[a.symbol] = formatUnits(amounts[i + 1]!, a.quantityDecimals);
  }
  return view;
}

/** A trade's view; `trailing` is an open trade's trailing stop (facts kept in a receipt have none). */
export function tradeView(state: EngineState, t: TradeFacts & { readonly trailing?: TrailingStop | null }): TradeView {
  const a = assetAt(state, t.assetIndex);
  const d = a.priceDecimals;
  return {
    id: tradeId(state.params.shard, t.seq),
    asset: a.symbol,
    type: t.isLong ? "long" : "short",
    margin: formatUsd(t.marginMicros),
    leverage: t.leverage,
    quantity: formatUnits(t.quantitySteps, a.quantityDecimals),
    openPrice: formatUnits(t.openPriceTicks, d),
    stopLoss: t.stopLossTicks === 0 ? null : formatUnits(t.stopLossTicks, d),
    takeProfit: t.takeProfitTicks === 0 ? null : formatUnits(t.takeProfitTicks, d),
    trailingStop: t.trailing === undefined || t.trailing === null ? null : trailingStopView(t.trailing, d),
    liquidationPrice: t.liquidationTicks === 0 ? null : formatUnits(t.liquidationTicks, d),
    openedAt: isoTime(t.openedAtMs),
  };
}

/** A trailing stop as it stands at this output: best price and level move between outputs without one. */
function trailingStopView(stop: TrailingStop, decimals: number): TrailingStopView {
  const best = stop.activated ? bestOf(stop) : 0;
  return {
    distance: stop.byPercent ? null : formatUnits(stop.amount, decimals),
    percent: stop.byPercent ? formatUnits(stop.amount, PERCENT_DECIMALS) : null,
    activationPrice: stop.activationTicks === 0 ? null : formatUnits(stop.activationTicks, decimals),
    activated: stop.activated,
    bestPrice: stop.activated ? formatUnits(best, decimals) : null,
    level: stop.activated ? formatUnits(levelAt(stop.trade.isLong, stop.byPercent, stop.amount, best), decimals) : null,
  };
}

/** What a partial close adds to its view: the number in its close id and what stays open. */
export interface PartFacts {
  readonly closeSeq: number;
  readonly remainingSteps: number;
}

/**
 * A close of the whole trade, or with `part` of part of it (`t` then holds the quantity and margin closed).
 * `lossWaived` is derived, not stored: the loss at the close price (exact, in micros) on the quantity closed beyond
 * the margin closed, which the settlement did not charge (negative balance protection).
 */
export function closedTradeView(
  state: EngineState,
  t: TradeFacts & { readonly trailing?: TrailingStop | null },
  close: CloseFacts,
  part?: PartFacts,
): ClosedTradeView {
  const view = tradeView(state, t) as ClosedTradeView;
  const asset = assetAt(state, t.assetIndex);
  const diff = t.isLong ? close.priceTicks - t.openPriceTicks : t.openPriceTicks - close.priceTicks;
  const pnlAtClose = diff * t.quantitySteps * microsPerTickStep(asset);
  view.closeId = part === undefined ? view.id : `${view.id}.${part.closeSeq}`;
  view.closePrice = formatUnits(close.priceTicks, asset.priceDecimals);
  view.pnl = formatUsd(close.pnlMicros);
  view.lossWaived =
    pnlAtClose >= -t.marginMicros
      ? null
      : Number.isSafeInteger(pnlAtClose)
        ? formatUsd(-pnlAtClose - t.marginMicros)
        : // A gap of a large trade passes 2^53 micros (settle clamps what it pays, the record stays exact).
          formatBigUnits(
            -BigInt(diff) * BigInt(t.quantitySteps) * BigInt(microsPerTickStep(asset)) - BigInt(t.marginMicros),
            USD_DECIMALS,
          );
  view.remainingQuantity = part === undefined ? "0" : formatUnits(part.remainingSteps, asset.quantityDecimals);
  view.closeReason = close.reason;
  view.closedAt = isoTime(close.atMs);
  return view;
}

export function spotOrderView(state: EngineState, o: SpotFacts): SpotOrderView {
  const a = assetAt(state, o.assetIndex);
  return {
    id: orderId(state.params.shard, o.seq),
    asset: a.symbol,
    side: o.buy ? "buy" : "sell",
    quantity: formatUnits(o.quantitySteps, a.quantityDecimals),
    price: formatUnits(o.priceTicks, a.priceDecimals),
    total: formatUsd(o.totalMicros),
    executedAt: isoTime(o.atMs),
  };
}
