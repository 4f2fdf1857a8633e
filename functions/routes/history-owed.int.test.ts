/**
 * A cancel, close or modify whose target moved on while the worker could not write Postgres. The engine refuses it
 * as unknown (ORDER_NOT_FOUND, TRADE_NOT_FOUND); the history that makes such a refusal a 409 is owed in the Postgres
 * backlog (worker/postgres-backlog.ts) until the worker reaches Postgres again. Meanwhile the answer is 503
 * UNAVAILABLE with Retry-After, never the 404 that tells users their own order or trade was never theirs; once the
 * backlog is written, the 409. Only the worker's Postgres is cut (its own proxy): the API reads Postgres throughout,
 * as when Postgres is back for the API before the worker tries it again. On both of the API's Redis adapters.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUpstashApiRedis } from "../redis/upstash-api-redis.ts";
import { client, type Call } from "../testing/http.ts";
import { REDIS_URL, startApiStack, type ApiStack } from "../testing/api-stack.ts";
import { startUpstashBridge, type UpstashBridge } from "../testing/upstash-bridge.ts";

/** Polls `read` until `check` holds. */
async function until<T>(read: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = await read();
    if (check(value)) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("timed out waiting");
}

function expectHistoryNotWritten(res: Call, target: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(503);
  expect(res.headers.get("retry-after")).toBe("5");
  expect(res.body.error).toEqual({
    code: "UNAVAILABLE",
    message:
      `${target}, and the history that says what became of it is still being written after a database outage; ` +
      "try again after Retry-After seconds.",
  });
}

describe.each(["ioredis", "upstash"] as const)("a refusal whose history is owed, on %s", (adapter) => {
  let bridge: UpstashBridge | undefined;
  let stack: ApiStack;

  beforeAll(async () => {
    if (adapter === "upstash") bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: "owed-token" });
    stack = await startApiStack({
      cuttableWorkerPostgres: true,
      ...(bridge && { apiRedis: createUpstashApiRedis({ url: bridge.url, token: bridge.token }) }),
    });
  });
  afterAll(async () => {
    await stack.close();
    await bridge?.close();
  });

  it("answers 503 with Retry-After while the fill and the close are owed, then 409 with them", async () => {
    const ann = client(stack.app, (await stack.signIn("ann@example.com")).token);
    await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
    await stack.setQuote("BTC_USDC_PERP", "60000", "60010");
    // Given a pending ETH limit and an open BTC trade, both in Postgres
    const placed = await ann.post("/api/v1/trade/orders", {
      asset: "ETH",
      side: "long",
      type: "limit",
      price: "1990",
      margin: "100",
      leverage: 10,
    });
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    const orderId = (placed.body.order as { id: string }).id;
    const opened = await ann.post("/api/v1/trade/create", { asset: "BTC", type: "long", margin: "100", leverage: 10 });
    expect(opened.status, JSON.stringify(opened.body)).toBe(201);
    const tradeId = (opened.body.trade as { id: string }).id;
    const orderStatus = async () =>
      (await stack.pg.db.query<{ status: string }>("SELECT status FROM orders WHERE id = $1", [orderId])).rows[0]
        ?.status;
    await until(orderStatus, (status) => status === "pending");

    // When the worker loses Postgres, the order fills and the trade is closed: answered, the history owed
    await stack.workerPostgres!.cut();
    await stack.setQuote("ETH_USDC_PERP", "1989", "1989.5");
    await until(
      () => ann.get("/api/v1/trade/orders"),
      (res) => (res.body.orders as unknown[]).length === 0,
    );
    const closed = await ann.post("/api/v1/trade/close", { tradeId });
    expect(closed.status, JSON.stringify(closed.body)).toBe(200);
    expect(await stack.redis.exists(stack.keys.postgresBacklog)).toBe(1);
    expect(await orderStatus()).toBe("pending");

    // Then the cancel, close and modify are refused by the engine, and the API cannot tell whose they were yet
    expectHistoryNotWritten(
      await ann.post("/api/v1/trade/orders/cancel", { orderId }),
      `Order ${orderId} is not pending`,
    );
    expectHistoryNotWritten(await ann.post("/api/v1/trade/close", { tradeId }), `Trade ${tradeId} is not open`);
    expectHistoryNotWritten(
      await ann.post("/api/v1/trade/modify", { tradeId, stopLoss: null }),
      `Trade ${tradeId} is not open`,
    );

    // Once the worker has written what it owed: 409 with the order and the close
    await stack.workerPostgres!.mend();
    await until(
      () => stack.redis.exists(stack.keys.postgresBacklog),
      (exists) => exists === 0,
    );
    const cancel = await ann.post("/api/v1/trade/orders/cancel", { orderId });
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(409);
    expect(cancel.body.error?.code).toBe("ORDER_NOT_PENDING");
    expect(cancel.body.order).toMatchObject({ id: orderId, status: "filled", fillPrice: "1989.5" });
    const close = await ann.post("/api/v1/trade/close", { tradeId });
    expect(close.status, JSON.stringify(close.body)).toBe(409);
    expect(close.body.error?.code).toBe("TRADE_CLOSED");
    expect(close.body.trade).toMatchObject({ id: tradeId, remainingQuantity: "0", closeReason: "manual" });
    // And an order that was never the user's is the plain 404 again
    const unknown = await ann.post("/api/v1/trade/orders/cancel", { orderId: "P0-999999" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error?.code).toBe("ORDER_NOT_FOUND");
  });
});
