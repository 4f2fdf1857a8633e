/** Wire views of engine state: decimal strings at each asset's scale, as the contract and the API show them. */
import { ACCOUNT_CURRENCY } from "../../contract/markets.ts";
import type { Balances, ClosedTradeView, CloseReason, TradeView } from "../../contract/messages.ts";
import { formatUnits, formatUsd } from "../../contract/money.ts";
import { assetAt, type Account, type EngineState, type Trade } from "./state.ts";
import { isoTime } from "./step.ts";

export function balancesView(state: EngineState, account: Account): Balances {
  const view: Balances = { [ACCOUNT_CURRENCY]: formatUsd(account.usd) };
  const assets = state.params.assets;
  for (let i = 0; i < assets.length; i++) {
    const a = assets[i]!;
    view[a.symbol] = formatUnits(account.holdings[i]!, a.quantityDecimals);
  }
  return view;
}

export function tradeView(state: EngineState, t: Trade): TradeView {
  const a = assetAt(state, t.assetIndex);
  const price = (ticks: number) => (ticks === 0 ? null : formatUnits(ticks, a.priceDecimals));
  return {
    id: t.id,
    asset: a.symbol,
    type: t.isLong ? "long" : "short",
    margin: formatUsd(t.marginMicros),
    leverage: t.leverage,
    quantity: formatUnits(t.quantitySteps, a.quantityDecimals),
    openPrice: formatUnits(t.openPriceTicks, a.priceDecimals),
    stopLoss: price(t.stopLossTicks),
    takeProfit: price(t.takeProfitTicks),
    liquidationPrice: price(t.liquidationTicks),
    openedAt: isoTime(t.openedAtMs),
  };
}

export function closedTradeView(
  state: EngineState,
  t: Trade,
  closePriceTicks: number,
  pnlMicros: number,
  reason: CloseReason,
  closedAtMs: number,
): ClosedTradeView {
  const a = assetAt(state, t.assetIndex);
  return {
    ...tradeView(state, t),
    closePrice: formatUnits(closePriceTicks, a.priceDecimals),
    pnl: formatUsd(pnlMicros),
    closeReason: reason,
    closedAt: isoTime(closedAtMs),
  };
}
