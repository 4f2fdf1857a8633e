/**
 * Query answers built from the worker's read models (Redis) and the histories (Postgres): never the log.
 *
 * Live PnL is computed exactly, in integers: a long is worth (bid − open) × quantity and a short
 * (open − ask) × quantity (docs/api.md, open trades), in USD micros, never below −margin (a loss never exceeds the margin; the
 * engine liquidates before that, and a quote newer than the trade list must not show more).
 */
import { ACCOUNT_CURRENCY, ASSET_BY_SYMBOL, ASSETS, microsPerTickStep, type AssetConfig } from "../contract/markets.ts";
import {
  trailingStopSchema,
  trailingStopSpecSchema,
  type ClosedTradeView,
  type OrderView,
  type SpotOrderView,
  type TradeView,
  type TrailingStopSpec,
  type TrailingStopView,
} from "../contract/messages.ts";
import { decimalsWord, formatBigUnits, toUnits, trimDecimal, USD_DECIMALS } from "../contract/money.ts";

export interface Quote {
  readonly bid: string;
  readonly ask: string;
  readonly updatedAt: string;
  readonly source: "backpack" | "sim";
}

export function balancesView(stored: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { [ACCOUNT_CURRENCY]: stored[ACCOUNT_CURRENCY] ?? "0" };
  for (const a of ASSETS) out[a.symbol] = stored[a.symbol] ?? "0";
  return out;
}

export function quotesView(stored: Record<string, string>): Map<string, Quote> {
  const quotes = new Map<string, Quote>();
  for (const [asset, json] of Object.entries(stored)) {
    const q = JSON.parse(json) as Quote;
    quotes.set(asset, { bid: q.bid, ask: q.ask, updatedAt: q.updatedAt, source: q.source });
  }
  return quotes;
}

export function assetsView(quotes: Map<string, Quote>) {
  return ASSETS.map((a) => {
    const q = quotes.get(a.symbol);
    return {
      symbol: a.symbol,
      name: a.name,
      market: a.market,
      priceDecimals: a.priceDecimals,
      quantityDecimals: a.quantityDecimals,
      bid: q?.bid ?? null,
      ask: q?.ask ?? null,
      updatedAt: q?.updatedAt ?? null,
      source: q?.source ?? null,
    };
  });
}

/** Open trades, oldest first, each with the price it would close at now and its unrealized PnL. */
export function openTradesView(stored: Record<string, string>, quotes: Map<string, Quote>) {
  const trades = Object.values(stored).map((json) => JSON.parse(json) as TradeView);
  trades.sort((a, b) => (a.openedAt === b.openedAt ? compareIds(a.id, b.id) : a.openedAt < b.openedAt ? -1 : 1));
  return trades.map((t) => {
    const asset = ASSET_BY_SYMBOL.get(t.asset);
    const quote = quotes.get(t.asset);
    if (asset === undefined || quote === undefined) return { ...t, currentPrice: null, unrealizedPnl: null };
    const currentPrice = t.type === "long" ? quote.bid : quote.ask;
    return { ...t, currentPrice, unrealizedPnl: unrealizedPnl(asset, t, currentPrice) };
  });
}

export function unrealizedPnl(asset: AssetConfig, trade: TradeView, closePrice: string): string {
  return formatBigUnits(unrealizedPnlMicros(asset, trade, closePrice), USD_DECIMALS);
}

/**
 * The PnL of `trade` closed at `closePrice`, in USD micros, never below −margin (as settlement caps it). A figure
 * that does not parse at the asset's decimals (the engine's asset terms and this code's disagree: a release changed
 * them while trades were open) throws: a wrong PnL must not be shown as if it were right.
 */
export function unrealizedPnlMicros(asset: AssetConfig, trade: TradeView, closePrice: string): bigint {
  const units = (what: string, text: string, decimals: number) => {
    const parsed = toUnits(text, decimals, Number.MAX_SAFE_INTEGER);
    if (parsed < 0) {
      throw new Error(
        `read model: ${what} of ${trade.id} is not a ${asset.symbol} figure with ${decimalsWord(decimals)}: "${text}"`,
      );
    }
    return BigInt(parsed);
  };
  const open = units("openPrice", trade.openPrice, asset.priceDecimals);
  const close = units("the close price", closePrice, asset.priceDecimals);
  const quantity = units("quantity", trade.quantity, asset.quantityDecimals);
  const margin = units("margin", trade.margin, USD_DECIMALS);
  const perTick = trade.type === "long" ? close - open : open - close;
  const pnl = perTick * quantity * BigInt(microsPerTickStep(asset));
  return pnl < -margin ? -margin : pnl;
}

/**
 * Trade (order) ids are `T<shard>-<n>`: order by shard, then number, not as text ("T0-10" after "T0-9"). The tie-break
 * of the REST lists, and of the stream's snapshot, which lists them the same way.
 */
export function compareIds(a: string, b: string): number {
  const [sa, na] = a.slice(1).split("-").map(Number);
  const [sb, nb] = b.slice(1).split("-").map(Number);
  // Other id shapes (NaN above) fall back to text order.
  return sa! - sb! || na! - nb! || (a < b ? -1 : a > b ? 1 : 0);
}

// ---- history (Postgres) ------------------------------------------------------------------------------------------

/** A closed_orders row as the history query selects it (numerics and jsonb as text). */
export interface ClosedOrderRow {
  id: string;
  close_id: string;
  asset: string;
  type: "long" | "short";
  margin: string;
  leverage: number;
  quantity: string;
  open_price: string;
  close_price: string;
  stop_loss: string | null;
  take_profit: string | null;
  liquidation_price: string | null;
  trailing_stop: string | null;
  pnl: string;
  loss_waived: string | null;
  remaining_quantity: string;
  close_reason: ClosedTradeView["closeReason"];
  opened_at: Date;
  closed_at: Date;
}

export function closedTradeView(r: ClosedOrderRow): ClosedTradeView {
  return {
    id: r.id,
    asset: r.asset,
    type: r.type,
    margin: trimDecimal(r.margin),
    leverage: r.leverage,
    quantity: trimDecimal(r.quantity),
    openPrice: trimDecimal(r.open_price),
    stopLoss: nullable(r.stop_loss),
    takeProfit: nullable(r.take_profit),
    trailingStop: r.trailing_stop === null ? null : inShapeOrder<TrailingStopView>(trailingStopSchema, r.trailing_stop),
    liquidationPrice: nullable(r.liquidation_price),
    openedAt: r.opened_at.toISOString(),
    closeId: r.close_id,
    closePrice: trimDecimal(r.close_price),
    pnl: trimDecimal(r.pnl),
    lossWaived: nullable(r.loss_waived),
    remainingQuantity: trimDecimal(r.remaining_quantity),
    closeReason: r.close_reason,
    closedAt: r.closed_at.toISOString(),
  };
}

export interface SpotOrderRow {
  id: string;
  asset: string;
  side: "buy" | "sell";
  quantity: string;
  price: string;
  total: string;
  executed_at: Date;
}

export function spotOrderRowView(r: SpotOrderRow): SpotOrderView {
  return {
    id: r.id,
    asset: r.asset,
    side: r.side,
    quantity: trimDecimal(r.quantity),
    price: trimDecimal(r.price),
    total: trimDecimal(r.total),
    executedAt: r.executed_at.toISOString(),
  };
}

/** The history query's columns, in the shape ClosedOrderRow names. */
export const CLOSED_ORDER_COLUMNS = `id, close_id, asset, type, margin::text, leverage, quantity::text, open_price::text,
  close_price::text, stop_loss::text, take_profit::text, trailing_stop::text, liquidation_price::text, pnl::text,
  loss_waived::text, remaining_quantity::text, close_reason, opened_at, closed_at`;

// ---- entry orders (Postgres, and the pending-orders read model) ----------------------------------------------------

/** An orders row as ORDER_COLUMNS selects it (numerics and jsonb as text). */
export interface OrderRow {
  id: string;
  asset: string;
  side: OrderView["side"];
  type: OrderView["type"];
  price: string;
  margin: string;
  leverage: number;
  stop_loss: string | null;
  take_profit: string | null;
  trailing_stop: string | null;
  expires_at: Date | null;
  oco_with: string | null;
  status: OrderView["status"];
  reason_code: string | null;
  reason_message: string | null;
  fill_price: string | null;
  trade_id: string | null;
  placed_at: Date;
  updated_at: Date;
}

export const ORDER_COLUMNS = `id, asset, side, type, price::text, margin::text, leverage, stop_loss::text,
  take_profit::text, trailing_stop::text, expires_at, oco_with, status, reason_code, reason_message,
  fill_price::text, trade_id, placed_at, updated_at`;

export function orderView(r: OrderRow): OrderView {
  return {
    id: r.id,
    asset: r.asset,
    side: r.side,
    type: r.type,
    price: trimDecimal(r.price),
    margin: trimDecimal(r.margin),
    leverage: r.leverage,
    stopLoss: nullable(r.stop_loss),
    takeProfit: nullable(r.take_profit),
    trailingStop:
      r.trailing_stop === null ? null : inShapeOrder<TrailingStopSpec>(trailingStopSpecSchema, r.trailing_stop),
    expiresAt: r.expires_at === null ? null : r.expires_at.toISOString(),
    ocoWith: r.oco_with,
    status: r.status,
    placedAt: r.placed_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    fillPrice: nullable(r.fill_price),
    tradeId: r.trade_id,
    reason: r.reason_code === null ? null : { code: r.reason_code, message: r.reason_message ?? "" },
  };
}

/** Pending orders from the read model, oldest placed first (ties by id, as trade ids are ordered). */
export function pendingOrdersView(stored: Record<string, string>): OrderView[] {
  const orders = Object.values(stored).map((json) => JSON.parse(json) as OrderView);
  return orders.sort((a, b) => (a.placedAt === b.placedAt ? compareIds(a.id, b.id) : a.placedAt < b.placedAt ? -1 : 1));
}

/**
 * A jsonb column's object with its keys in the order of its contract schema, as the engine's outputs (the stream,
 * the write answers) have them: jsonb keeps keys sorted by length, then bytes, so a close read back from the history
 * would otherwise look different from the same close in its answer.
 */
function inShapeOrder<T>(schema: { shape: Record<string, unknown> }, json: string): T {
  const stored = JSON.parse(json) as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) if (key in stored) ordered[key] = stored[key];
  for (const key of Object.keys(stored)) if (!(key in ordered)) ordered[key] = stored[key];
  return ordered as T;
}

function nullable(text: string | null): string | null {
  return text === null ? null : trimDecimal(text);
}
