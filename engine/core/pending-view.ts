/** The wire view of a pending entry order at a change of its life (contract orderSchema). */
import type { OrderStatus, OrderView } from "../../contract/messages.ts";
import { formatUnits, formatUsd } from "../../contract/money.ts";
import { assetAt, pendingOrderId, tradeId, type EngineState, type PendingOrder } from "./state.ts";
import { isoTime } from "./step.ts";

/** What changed: the new status, when (log time), and for a fill its price and trade, else why it left. */
export interface OrderChange {
  readonly status: OrderStatus;
  readonly atMs: number;
  readonly fillPriceTicks?: number;
  readonly tradeSeq?: number;
  readonly reason?: { readonly code: string; readonly message: string };
}

export function orderView(state: EngineState, o: PendingOrder, change: OrderChange): OrderView {
  const a = assetAt(state, o.assetIndex);
  const d = a.priceDecimals;
  const shard = state.params.shard;
  return {
    id: pendingOrderId(shard, o.seq),
    asset: a.symbol,
    side: o.isLong ? "long" : "short",
    type: o.isStop ? "stop" : "limit",
    price: formatUnits(o.priceTicks, d),
    margin: formatUsd(o.marginMicros),
    leverage: o.leverage,
    stopLoss: o.stopLossTicks === 0 ? null : formatUnits(o.stopLossTicks, d),
    takeProfit: o.takeProfitTicks === 0 ? null : formatUnits(o.takeProfitTicks, d),
    trailingStop: null,
    expiresAt: o.expiresAtMs === 0 ? null : isoTime(o.expiresAtMs),
    ocoWith: o.oco === undefined ? null : pendingOrderId(shard, o.oco.seq),
    status: change.status,
    placedAt: isoTime(o.placedAtMs),
    updatedAt: isoTime(change.atMs),
    fillPrice: change.fillPriceTicks === undefined ? null : formatUnits(change.fillPriceTicks, d),
    tradeId: change.tradeSeq === undefined ? null : tradeId(shard, change.tradeSeq),
    reason: change.reason === undefined ? null : { code: change.reason.code, message: change.reason.message },
  };
}
