/**
 * Spot order history: each filled spot market order, taken from the engine's answer to it (an `order_response`
 * whose result is a `spot_order`), becomes a row of `spot_orders` (migrations/007_spot_orders.sql). A replayed
 * output, or an answer the engine repeats for a retried request id (new output id, same order id), inserts
 * nothing: ON CONFLICT DO NOTHING on the order id and the output id. The rows go in order id order, as every
 * multi-row write of the worker's goes in its key's order (key-order.ts says why).
 */
import type { EngineOutput, SpotOrderView } from "../contract/messages.ts";
import type { Queryable } from "../platform/postgres.ts";
import { sortedBy } from "./key-order.ts";

export type SpotOrderRow = SpotOrderView & { readonly userId: string; readonly outputId: string };

export function spotOrderRows(outputs: readonly EngineOutput[]): SpotOrderRow[] {
  return outputs.flatMap((x) =>
    x.type === "order_response" && x.answer.ok && x.answer.result.kind === "spot_order"
      ? [{ ...x.answer.result.order, userId: x.userId, outputId: x.id }]
      : [],
  );
}

export async function insertSpotOrders(db: Queryable, rows: readonly SpotOrderRow[]): Promise<void> {
  if (rows.length === 0) return;
  const params: unknown[] = [];
  const tuples = sortedBy(rows, (r) => [r.id]).map((r) => {
    const values = [r.id, r.userId, r.asset, r.side, r.quantity, r.price, r.total, r.executedAt, r.outputId];
    const start = params.length;
    params.push(...values);
    return `(${values.map((_, i) => `$${start + i + 1}`).join(", ")})`;
  });
  await db.query(
    `INSERT INTO spot_orders (id, user_id, asset, side, quantity, price, total, executed_at, output_id)
     VALUES ${tuples.join(", ")} ON CONFLICT DO NOTHING`,
    params,
  );
}
