/**
 * The worker's Postgres writes, each idempotent so that a replayed or claimed batch can be applied again:
 * - closed_orders: one row per close (a partial close included), keyed by its closeId; a duplicate output inserts
 *   nothing (ON CONFLICT DO NOTHING);
 * - orders: one row per entry order, replaced by each newer order_updated and never by an older one (the row keeps
 *   the output id it was last written from, in comparable parts; migrations/008_orders.sql).
 * Each statement takes its rows in the order of their key (close id, order id; key-order.ts says why).
 */
import type { ClosedTradeView, EngineOutput, OrderView, OutputOf } from "../contract/messages.ts";
import type { Queryable } from "../platform/postgres.ts";
import { sortedBy } from "./key-order.ts";
import { outputIdParts } from "./read-models.ts";
import { insertSpotOrders, spotOrderRows } from "./spot-orders.ts";

/** What a batch writes to Postgres, in one call each. */
export async function writeHistory(db: Queryable, outputs: readonly EngineOutput[]): Promise<boolean> {
  const closed = outputs.flatMap((x) => (x.type === "closed_order" ? [x] : []));
  const orders = outputs.flatMap((x) => (x.type === "order_updated" ? [x] : []));
  const spot = spotOrderRows(outputs);
  if (closed.length > 0) await insertClosedOrders(db, closed);
  if (orders.length > 0) await upsertOrders(db, newestPerOrder(orders));
  if (spot.length > 0) await insertSpotOrders(db, spot);
  return closed.length > 0 || orders.length > 0 || spot.length > 0;
}

const CLOSED_COLUMNS = [
  "close_id",
  "id",
  "user_id",
  "asset",
  "type",
  "margin",
  "leverage",
  "quantity",
  "open_price",
  "close_price",
  "stop_loss",
  "take_profit",
  "trailing_stop",
  "liquidation_price",
  "pnl",
  "loss_waived",
  "remaining_quantity",
  "close_reason",
  "opened_at",
  "closed_at",
  "output_id",
] as const;

function closedValues(o: OutputOf<"closed_order">): unknown[] {
  const t: ClosedTradeView = o.trade;
  return [
    t.closeId,
    t.id,
    o.userId,
    t.asset,
    t.type,
    t.margin,
    t.leverage,
    t.quantity,
    t.openPrice,
    t.closePrice,
    t.stopLoss,
    t.takeProfit,
    t.trailingStop === null ? null : JSON.stringify(t.trailingStop),
    t.liquidationPrice,
    t.pnl,
    t.lossWaived,
    t.remainingQuantity,
    t.closeReason,
    t.openedAt,
    t.closedAt,
    o.id,
  ];
}

async function insertClosedOrders(db: Queryable, outputs: readonly OutputOf<"closed_order">[]): Promise<void> {
  const { tuples, params } = valuesList(sortedBy(outputs, (o) => [o.trade.closeId]).map(closedValues));
  await db.query(
    `INSERT INTO closed_orders (${CLOSED_COLUMNS.join(", ")}) VALUES ${tuples} ON CONFLICT DO NOTHING`,
    params,
  );
}

const ORDER_COLUMNS = [
  "id",
  "user_id",
  "asset",
  "side",
  "type",
  "price",
  "margin",
  "leverage",
  "stop_loss",
  "take_profit",
  "trailing_stop",
  "expires_at",
  "oco_with",
  "status",
  "reason_code",
  "reason_message",
  "fill_price",
  "trade_id",
  "placed_at",
  "updated_at",
  "last_output_id",
  "last_output_ms",
  "last_output_seq",
  "last_output_n",
] as const;

function orderValues(o: OutputOf<"order_updated">): unknown[] {
  const v: OrderView = o.order;
  return [
    v.id,
    o.userId,
    v.asset,
    v.side,
    v.type,
    v.price,
    v.margin,
    v.leverage,
    v.stopLoss,
    v.takeProfit,
    v.trailingStop === null ? null : JSON.stringify(v.trailingStop),
    v.expiresAt,
    v.ocoWith,
    v.status,
    v.reason?.code ?? null,
    v.reason?.message ?? null,
    v.fillPrice,
    v.tradeId,
    v.placedAt,
    v.updatedAt,
    o.id,
    ...outputIdParts(o.id),
  ];
}

/**
 * Upserts each order's view; an existing row is replaced only by a strictly newer output. One statement cannot
 * touch a row twice, so the caller passes one output per order (newestPerOrder).
 */
async function upsertOrders(db: Queryable, outputs: readonly OutputOf<"order_updated">[]): Promise<void> {
  const { tuples, params } = valuesList(sortedBy(outputs, (o) => [o.order.id]).map(orderValues));
  const updated = ORDER_COLUMNS.filter((c) => c !== "id" && c !== "user_id" && c !== "placed_at");
  await db.query(
    `INSERT INTO orders (${ORDER_COLUMNS.join(", ")}) VALUES ${tuples}
     ON CONFLICT (id) DO UPDATE SET ${updated.map((c) => `${c} = EXCLUDED.${c}`).join(", ")}
     WHERE (orders.last_output_ms, orders.last_output_seq, orders.last_output_n)
         < (EXCLUDED.last_output_ms, EXCLUDED.last_output_seq, EXCLUDED.last_output_n)`,
    params,
  );
}

/** Of a batch's outputs for one order, the newest: a batch may hold a replay's older copy after a newer one. */
export function newestPerOrder(outputs: readonly OutputOf<"order_updated">[]): OutputOf<"order_updated">[] {
  const newest = new Map<string, OutputOf<"order_updated">>();
  for (const o of outputs) {
    const seen = newest.get(o.order.id);
    if (seen === undefined || compareOutputIds(o.id, seen.id) > 0) newest.set(o.order.id, o);
  }
  return [...newest.values()];
}

export function compareOutputIds(a: string, b: string): number {
  const [am, as, an] = outputIdParts(a).map(BigInt) as [bigint, bigint, bigint];
  const [bm, bs, bn] = outputIdParts(b).map(BigInt) as [bigint, bigint, bigint];
  return am !== bm ? (am < bm ? -1 : 1) : as !== bs ? (as < bs ? -1 : 1) : an === bn ? 0 : an < bn ? -1 : 1;
}

function valuesList(rows: readonly unknown[][]): { tuples: string; params: unknown[] } {
  const params: unknown[] = [];
  const tuples = rows.map((values) => {
    const start = params.length;
    params.push(...values);
    return `(${values.map((_, i) => `$${start + i + 1}`).join(", ")})`;
  });
  return { tuples: tuples.join(", "), params };
}
