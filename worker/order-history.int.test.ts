/**
 * The worker's guards for entry orders, trade updates and partial closes, on real Redis and Postgres, fed with
 * synthetic outputs that the contract accepts (engineOutputSchema.parse): each guard is shown holding against a
 * late older output (a replay or a batch claimed from a dead worker) and a replayed one.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  engineOutputSchema,
  type ClosedTradeView,
  type EngineOutput,
  type OrderView,
  type TradeView,
} from "../contract/messages.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { CLOSED_ORDER_COLUMNS, closedTradeView, type ClosedOrderRow } from "../functions/views.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { EVENT_SCRIPTS } from "./events.ts";
import { writeHistory } from "./history-writes.ts";
import { READ_MODEL_SCRIPTS } from "./read-models.ts";
import { ensureGroup, handleBatch } from "./worker.ts";

const log = createLogger("worker-test", { level: "error" });
let redis: Redis;
let pg: TestDatabase;
let prefix: string;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase();
  await migrate(pg.db, log);
  prefix = `test:${randomUUID()}:`;
  for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await redis.script("LOAD", script);
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

/** A fresh keyspace per test: its own stream, group and read models. */
async function space(name: string): Promise<Keyspace> {
  const keys = keyspace(`${prefix}${name}:`);
  await ensureGroup(redis, keys);
  return keys;
}

/** Puts `outputs` on the stream and has the worker handle them as one batch, as a group read delivers them. */
async function deliver(keys: Keyspace, outputs: EngineOutput[]): Promise<void> {
  for (const o of outputs) await redis.xadd(keys.output, "*", ...encodeFields(engineOutputSchema.parse(o)));
  const read = (await redis.xreadgroup("GROUP", keys.workerGroup, "w", "STREAMS", keys.output, ">")) as
    [string, [string, string[]][]][] | null;
  await handleBatch({ reader: redis, writer: redis, db: pg.db, keys, log, consumer: "w" }, read?.[0]?.[1] ?? []);
}

const at = (ms: number) => new Date(ms).toISOString();
const T0 = 1_800_000_000_000;

function order(id: string, change: Partial<OrderView> = {}): OrderView {
  return {
    id,
    asset: "ETH",
    side: "long",
    type: "limit",
    price: "1900",
    margin: "100",
    leverage: 10,
    stopLoss: "1800",
    takeProfit: null,
    trailingStop: { distance: "25", activationPrice: "2000" },
    expiresAt: null,
    ocoWith: null,
    status: "pending",
    placedAt: at(T0),
    updatedAt: at(T0),
    fillPrice: null,
    tradeId: null,
    reason: null,
    ...change,
  };
}

function trade(id: string, change: Partial<TradeView> = {}): TradeView {
  return {
    id,
    asset: "ETH",
    type: "long",
    margin: "100",
    leverage: 10,
    quantity: "0.5",
    openPrice: "2000",
    stopLoss: null,
    takeProfit: null,
    trailingStop: null,
    liquidationPrice: "1810",
    openedAt: at(T0),
    ...change,
  };
}

function closed(t: TradeView, change: Partial<ClosedTradeView>): ClosedTradeView {
  return {
    ...t,
    closeId: t.id,
    closePrice: "2100",
    pnl: "50",
    lossWaived: null,
    remainingQuantity: "0",
    closeReason: "manual",
    closedAt: at(T0 + 60_000),
    ...change,
  };
}

/**
 * Output `n` of input `ms`: ids the worker compares as (ms, 0, n); its seq grows with (ms, n) as the engine's would,
 * with gaps (these specs look at history and read models, not at the events store).
 */
const head = (ms: number, n: number) => ({ id: `${ms}-0:${n}`, inputId: `${ms}-0`, seq: (ms - T0) * 10 + n + 1 });
const orderUpdated = (ms: number, o: OrderView): EngineOutput => ({
  type: "order_updated",
  ...head(ms, 0),
  userId: "ann",
  order: o,
});
const tradeUpdated = (ms: number, t: TradeView): EngineOutput => ({
  type: "trade_updated",
  ...head(ms, 1),
  userId: "ann",
  change: "exits",
  trade: t,
});

async function orderRow(id: string) {
  const { rows } = await pg.db.query<Record<string, unknown>>(
    `SELECT status, fill_price::text, trade_id, last_output_id, reason_code, trailing_stop::text FROM orders WHERE id = $1`,
    [id],
  );
  return rows[0];
}

describe("worker: entry orders", () => {
  it("keeps a pending order in the read model and its row in Postgres, then removes it on fill", async () => {
    const keys = await space("orders-life");
    // Given an order placed
    await deliver(keys, [orderUpdated(T0, order("P0-1"))]);
    // Then it is listed as pending, and its row is pending
    const listed = await redis.hgetall(keys.pendingOrdersKey("ann"));
    expect(Object.keys(listed)).toEqual(["P0-1"]);
    expect(JSON.parse(listed["P0-1"]!)).toEqual(order("P0-1"));
    expect(await orderRow("P0-1")).toEqual({
      status: "pending",
      fill_price: null,
      trade_id: null,
      last_output_id: `${T0}-0:0`,
      reason_code: null,
      trailing_stop: '{"distance": "25", "activationPrice": "2000"}',
    });
    // When it fills
    const filled = order("P0-1", { status: "filled", fillPrice: "1899.5", tradeId: "T0-9", updatedAt: at(T0 + 5) });
    await deliver(keys, [orderUpdated(T0 + 5, filled)]);
    // Then it leaves the read model and its row says filled, at what price, into which trade
    expect(await redis.hlen(keys.pendingOrdersKey("ann"))).toBe(0);
    expect(await orderRow("P0-1")).toMatchObject({
      status: "filled",
      fill_price: "1899.5000000000",
      trade_id: "T0-9",
      last_output_id: `${T0 + 5}-0:0`,
    });
  });

  it("never lets a late placement resurrect an order that left the book, nor overwrite its row", async () => {
    const keys = await space("orders-late");
    const placed = orderUpdated(T0 + 10, order("P0-2", { placedAt: at(T0 + 10), updatedAt: at(T0 + 10) }));
    const cancelled = orderUpdated(
      T0 + 20,
      order("P0-2", {
        status: "cancelled",
        placedAt: at(T0 + 10),
        updatedAt: at(T0 + 20),
        reason: { code: "USER_CANCELLED", message: "Cancelled by the user." },
      }),
    );
    // Given the cancel applied first (another worker took the newer batch; the older one is claimed later)
    await deliver(keys, [cancelled]);
    // When the older placement arrives
    await deliver(keys, [placed]);
    // Then the order stays off the book and its row stays cancelled
    expect(await redis.hlen(keys.pendingOrdersKey("ann"))).toBe(0);
    expect(await orderRow("P0-2")).toMatchObject({
      status: "cancelled",
      reason_code: "USER_CANCELLED",
      last_output_id: `${T0 + 20}-0:0`,
    });
    // And a replay of both, in one batch with the older copy last, changes nothing
    await deliver(keys, [cancelled, placed]);
    expect(await redis.hlen(keys.pendingOrdersKey("ann"))).toBe(0);
    expect(await orderRow("P0-2")).toMatchObject({ status: "cancelled", last_output_id: `${T0 + 20}-0:0` });
    expect((await pg.db.query("SELECT count(*)::int AS n FROM orders WHERE id = 'P0-2'")).rows[0]).toEqual({ n: 1 });
  });

  it("applies the newest of one batch's outputs for an order, whatever their order in the batch", async () => {
    const keys = await space("orders-batch");
    const placed = orderUpdated(T0 + 30, order("P0-3"));
    const expired = orderUpdated(T0 + 40, order("P0-3", { status: "expired", updatedAt: at(T0 + 40) }));
    // One batch holding the expiry, then a replayed copy of the placement
    await deliver(keys, [expired, placed]);
    expect(await redis.hlen(keys.pendingOrdersKey("ann"))).toBe(0);
    expect(await orderRow("P0-3")).toMatchObject({ status: "expired", last_output_id: `${T0 + 40}-0:0` });
  });
});

describe("worker: trade updates and partial closes", () => {
  it("never lets an older trade update overwrite a newer one, nor resurrect a closed trade", async () => {
    const keys = await space("trade-updates");
    const opened: EngineOutput = { type: "trade_opened", ...head(T0, 0), userId: "ann", trade: trade("T0-20") };
    const first = tradeUpdated(T0 + 1, trade("T0-20", { stopLoss: "1950" }));
    const second = tradeUpdated(T0 + 2, trade("T0-20", { stopLoss: "1975", takeProfit: "2200" }));
    // Given the open and the second move applied, the first move arriving last (a claimed batch)
    await deliver(keys, [opened, second]);
    await deliver(keys, [first]);
    // Then the trade shows the second move
    const shown = JSON.parse((await redis.hget(keys.openTradesKey("ann"), "T0-20"))!) as TradeView;
    expect([shown.stopLoss, shown.takeProfit]).toEqual(["1975", "2200"]);
    // And a late open (a replay) does not put the original exits back
    await deliver(keys, [opened]);
    const again = JSON.parse((await redis.hget(keys.openTradesKey("ann"), "T0-20"))!) as TradeView;
    expect(again.stopLoss).toBe("1975");
    // When the trade closes, then a late update arrives
    const close: EngineOutput = {
      type: "closed_order",
      ...head(T0 + 3, 0),
      userId: "ann",
      trade: closed(trade("T0-20", { stopLoss: "1975" }), {
        closeReason: "stop_loss",
        closePrice: "1975",
        pnl: "-12.5",
      }),
    };
    await deliver(keys, [close]);
    await deliver(keys, [second]);
    // Then it stays closed
    expect(await redis.hlen(keys.openTradesKey("ann"))).toBe(0);
  });

  it("writes one closed row per close and removes the trade only when nothing remains", async () => {
    const keys = await space("partial");
    const t = trade("T0-30", {
      quantity: "1",
      trailingStop: {
        distance: "20",
        percent: null,
        activationPrice: null,
        activated: true,
        bestPrice: "2150",
        level: "2130",
      },
    });
    const opened: EngineOutput = { type: "trade_opened", ...head(T0, 0), userId: "ann", trade: t };
    // Given a partial close of 0.4 at 2100: pnl (2100 − 2000) × 0.4 = 40, margin 100 × 0.4 = 40
    const part: EngineOutput = {
      type: "closed_order",
      ...head(T0 + 10, 0),
      userId: "ann",
      trade: closed(t, { closeId: "T0-30.1", quantity: "0.4", margin: "40", pnl: "40", remainingQuantity: "0.6" }),
    };
    const rest = trade("T0-30", { quantity: "0.6", margin: "60", trailingStop: t.trailingStop });
    const partUpdate: EngineOutput = {
      type: "trade_updated",
      ...head(T0 + 10, 1),
      userId: "ann",
      change: "partial_close",
      trade: rest,
    };
    await deliver(keys, [opened, part, partUpdate]);
    // Then the trade stays open with what remains, and one closed row exists
    const open = JSON.parse((await redis.hget(keys.openTradesKey("ann"), "T0-30"))!) as TradeView;
    expect([open.quantity, open.margin]).toEqual(["0.6", "60"]);
    // When the rest closes by its trailing stop at 2130, with a loss waived elsewhere in the row's fields
    const final: EngineOutput = {
      type: "closed_order",
      ...head(T0 + 20, 0),
      userId: "ann",
      trade: closed(rest, {
        closePrice: "2130",
        pnl: "78",
        closeReason: "trailing_stop",
        closedAt: at(T0 + 120_000),
      }),
    };
    await deliver(keys, [final]);
    expect(await redis.hlen(keys.openTradesKey("ann"))).toBe(0);
    // And replaying every output inserts nothing more and reopens nothing
    await deliver(keys, [opened, part, partUpdate, final]);
    expect(await redis.hlen(keys.openTradesKey("ann"))).toBe(0);
    const { rows } = await pg.db.query<ClosedOrderRow>(
      `SELECT ${CLOSED_ORDER_COLUMNS} FROM closed_orders WHERE id = 'T0-30' ORDER BY closed_at DESC, close_id DESC`,
    );
    const views = rows.map(closedTradeView);
    expect(views.map((v) => [v.closeId, v.quantity, v.margin, v.pnl, v.remainingQuantity, v.closeReason])).toEqual([
      ["T0-30", "0.6", "60", "78", "0", "trailing_stop"],
      ["T0-30.1", "0.4", "40", "40", "0.6", "manual"],
    ]);
    // The history view shows every field as the engine wrote it
    expect(views[1]).toEqual(part.type === "closed_order" ? part.trade : undefined);
  });

  it("records the loss waived by negative balance protection", async () => {
    const keys = await space("waived");
    // A long of 0.5 from 2000 closed at 1700: loss 150 on a margin of 100, so 50 waived and pnl −100
    const gap: EngineOutput = {
      type: "closed_order",
      ...head(T0 + 50, 0),
      userId: "ann",
      trade: closed(trade("T0-40"), {
        closePrice: "1700",
        pnl: "-100",
        lossWaived: "50",
        closeReason: "liquidation",
      }),
    };
    await deliver(keys, [gap]);
    const { rows } = await pg.db.query<ClosedOrderRow>(
      `SELECT ${CLOSED_ORDER_COLUMNS} FROM closed_orders WHERE close_id = 'T0-40'`,
    );
    expect(closedTradeView(rows[0]!)).toMatchObject({ pnl: "-100", lossWaived: "50", closeReason: "liquidation" });
  });
});

describe("worker: history written by two workers at once", () => {
  it("two workers writing one batch's orders, closes and spot orders in opposite orders do not deadlock", async () => {
    // A batch claimed while the worker that read it first is still writing it: each statement locks its rows in the
    // order given, so the two would deadlock unless both give them in one order.
    const batch = (round: number): EngineOutput[] =>
      ["a", "b", "c", "d"].flatMap((k, n): EngineOutput[] => {
        const ms = T0 + 1_000_000 + round;
        return [
          { type: "order_updated", ...head(ms, n), userId: "ann", order: order(`P9-${k}`) },
          {
            type: "closed_order",
            ...head(ms, 10 + n),
            userId: "ann",
            trade: closed(trade(`T9-${round}-${k}`), {}),
          },
          {
            type: "order_response",
            id: `${ms}-0:${20 + n}`,
            inputId: `${ms}-0`,
            requestId: `r-${round}-${k}`,
            userId: "ann",
            answer: {
              ok: true,
              result: {
                kind: "spot_order",
                order: {
                  id: `S9-${round}-${k}`,
                  asset: "SOL",
                  side: "buy",
                  quantity: "1",
                  price: "150",
                  total: "150",
                  executedAt: at(ms),
                },
                balances: {},
              },
            },
          },
        ];
      });
    const errors: unknown[] = [];
    const loop = async (reversed: boolean) => {
      for (let round = 0; round < 1_000 && errors.length === 0; round++) {
        const outputs = reversed ? batch(round).reverse() : batch(round);
        await writeHistory(pg.db, outputs).catch((err: unknown) => errors.push(err));
      }
    };
    await Promise.all([loop(false), loop(true)]);
    expect(errors).toEqual([]);
    // Not even one statement sent again (platform/postgres.ts): the writers never met in a deadlock at all.
    expect(pg.logLines.filter((line) => line.event === "postgres_statement_retried")).toEqual([]);
  });
});
