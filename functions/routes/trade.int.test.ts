/**
 * Every trading and account step of docs/api.md, in-process against real Redis and Postgres with the real engine and
 * worker running (testing/api-stack.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toUnits } from "../../contract/money.ts";
import { createApp } from "../app.ts";
import { createEngineClient } from "../engine-client.ts";
import { ENGINE_TIMEOUT_WITH_KEY, ENGINE_TIMEOUT_WITHOUT_KEY } from "../errors.ts";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let alice: ReturnType<typeof client>;
let bob: ReturnType<typeof client>;
let bobToken: string;
let balancesBefore: Record<string, string> = {};

beforeAll(async () => {
  stack = await startApiStack();
  alice = client(stack.app, (await stack.signIn("alice@example.com")).token);
  bobToken = (await stack.signIn("bob@example.com")).token;
  bob = client(stack.app, bobToken);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
  await stack.setQuote("BTC_USDC_PERP", "60000", "60010.5");
});
afterAll(() => stack.close());

const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe("trading through the API", () => {
  it("opens a long at the ask: 201 with the Trade shape, margin leaves the USD balance", async () => {
    const res = await alice.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
      stopLoss: "1900",
      takeProfit: "2200",
    });
    expect(res.status).toBe(201);
    const trade = res.body.trade as Record<string, unknown>;
    expect(trade).toMatchObject({
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
      openPrice: "2001",
      quantity: "0.4997",
      stopLoss: "1900",
      takeProfit: "2200",
    });
    expect(trade.id).toMatch(/^T0-\d+$/);
    expect(trade.openedAt).toMatch(iso);
    expect((await alice.get("/api/v1/account/balance/usd")).body).toEqual({ asset: "USD", balance: "9900" });
  });

  it("lists open trades with the closing price and exact live PnL, and follows the quote", async () => {
    let open = await alice.get("/api/v1/trade/open");
    expect(open.status).toBe(200);
    let trades = open.body.trades as Record<string, string>[];
    expect(trades).toHaveLength(1);
    // long closes at the bid: (2000 − 2001) × 0.4997
    expect(trades[0]).toMatchObject({ currentPrice: "2000", unrealizedPnl: "-0.4997" });
    await stack.setQuote("ETH_USDC_PERP", "2100.37", "2100.5");
    open = await alice.get("/api/v1/trade/open");
    trades = open.body.trades as Record<string, string>[];
    expect(trades[0]).toMatchObject({ currentPrice: "2100.37", unrealizedPnl: "49.655189" }); // 99.37 × 0.4997
  });

  it("closes at the bid: 200 with the ClosedTrade, pnl is exactly what USD moved beyond the margin", async () => {
    const open = (await alice.get("/api/v1/trade/open")).body.trades as { id: string }[];
    const before = (await alice.get("/api/v1/account/balance/usd")).body.balance as string;
    const res = await alice.post("/api/v1/trade/close", { tradeId: open[0]!.id });
    expect(res.status).toBe(200);
    const trade = res.body.trade as Record<string, string>;
    expect(trade).toMatchObject({ id: open[0]!.id, closePrice: "2100.37", pnl: "49.655189", closeReason: "manual" });
    expect(trade.closedAt).toMatch(iso);
    const after = (await alice.get("/api/v1/account/balance/usd")).body.balance as string;
    expect(Math.round((Number(after) - Number(before)) * 1e6)).toBe(Math.round((100 + 49.655189) * 1e6));
    expect((await alice.get("/api/v1/trade/open")).body.trades).toEqual([]);
  });

  it("shows closed trades in the history from Postgres, newest first, with a working cursor", async () => {
    for (let i = 0; i < 3; i++) {
      const opened = await alice.post("/api/v1/trade/create", {
        asset: "BTC",
        type: "short",
        margin: "10",
        leverage: 2,
      });
      expect(opened.status).toBe(201);
      expect(
        (await alice.post("/api/v1/trade/close", { tradeId: (opened.body.trade as { id: string }).id })).status,
      ).toBe(200);
    }
    // Closed-order rows are written by the worker before it releases the close's answer.
    const first = await alice.get("/api/v1/trade/history?limit=2");
    expect(first.status).toBe(200);
    const page1 = first.body.trades as { id: string; closedAt: string; asset: string; pnl: string }[];
    expect(page1).toHaveLength(2);
    expect(typeof first.body.nextCursor).toBe("string");
    const second = await alice.get(`/api/v1/trade/history?limit=2&cursor=${String(first.body.nextCursor)}`);
    const page2 = second.body.trades as { id: string; asset: string }[];
    expect(page2).toHaveLength(2);
    expect(second.body.nextCursor).toBeNull();
    const ids = [...page1, ...page2].map((t) => t.id);
    expect(new Set(ids).size).toBe(4);
    expect(page2.at(-1)!.asset).toBe("ETH"); // the oldest close comes last
    // A short closes at the ask: (60000 − 60010.5) × quantity, quantity = 20 / 60000 rounded down to 0.00033
    expect(page1[0]).toMatchObject({ asset: "BTC", pnl: "-0.003465" });
  });

  it("reads a close and an order back from the history exactly as their answers gave them, key order too", async () => {
    const carol = client(stack.app, (await stack.signIn("carol@example.com")).token);
    const trailingStop = { distance: "25", activationPrice: "2050" };
    const opened = await carol.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "50",
      leverage: 5,
      stopLoss: "1900",
      trailingStop,
    });
    expect([opened.status, opened.body.error]).toEqual([201, undefined]);
    const closed = await carol.post("/api/v1/trade/close", { tradeId: (opened.body.trade as { id: string }).id });
    expect(closed.status).toBe(200);
    const history = (await carol.get("/api/v1/trade/history")).body.trades as unknown[];
    // JSON text, not deep equality: a client diffing answers, or a snapshot test, sees the order of keys.
    expect(JSON.stringify(history[0])).toBe(JSON.stringify(closed.body.trade));

    const order = {
      asset: "ETH",
      side: "long",
      type: "limit",
      price: "1500",
      margin: "20",
      leverage: 2,
      stopLoss: "1400",
    };
    const placed = await carol.post("/api/v1/trade/orders", order);
    expect([placed.status, placed.body.error]).toEqual([201, undefined]);
    const cancelled = await carol.post("/api/v1/trade/orders/cancel", {
      orderId: (placed.body.order as { id: string }).id,
    });
    expect(cancelled.status).toBe(200);
    const orders = (await carol.get("/api/v1/trade/orders/history")).body.orders as unknown[];
    expect(JSON.stringify(orders[0])).toBe(JSON.stringify(cancelled.body.order));
  });

  it("executes a spot buy at the ask and a sell at the bid, answering the order and all balances", async () => {
    const buy = await bob.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "0.5" });
    expect(buy.status).toBe(201);
    expect(buy.body.order).toMatchObject({
      asset: "ETH",
      side: "buy",
      quantity: "0.5",
      price: "2100.5",
      total: "1050.25",
    });
    expect((buy.body.order as { executedAt: string }).executedAt).toMatch(iso);
    expect(buy.body.balances).toEqual({ USD: "8949.75", ETH: "0.5", BTC: "0", SOL: "0", ADA: "0" });
    const sell = await bob.post("/api/v1/trade/order", { asset: "ETH", side: "sell", quantity: 0.25 });
    expect(sell.status).toBe(201);
    expect(sell.body.order).toMatchObject({ price: "2100.37", total: "525.0925" });
    expect((await bob.get("/api/v1/account/balance")).body).toEqual({
      balances: { USD: "9474.8425", ETH: "0.25", BTC: "0", SOL: "0", ADA: "0" },
    });
  });

  it("lists the assets with decimals and the latest quote", async () => {
    const res = await bob.get("/api/v1/account/assets");
    expect(res.status).toBe(200);
    const assets = res.body.assets as Record<string, unknown>[];
    expect(assets.map((a) => a.symbol)).toEqual(["ETH", "BTC", "SOL", "ADA"]);
    expect(assets[0]).toMatchObject({
      name: "Ethereum",
      market: "ETH_USDC_PERP",
      priceDecimals: 2,
      quantityDecimals: 4,
      bid: "2100.37",
      ask: "2100.5",
      source: "sim",
    });
    expect(assets[2]).toMatchObject({ symbol: "SOL", bid: null, ask: null, updatedAt: null });
  });

  it("answers engine refusals as 422 with the engine's code, and a trade that is not yours as 404", async () => {
    const tooBig = await bob.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "1000000",
      leverage: 1,
    });
    expect(tooBig.status).toBe(422);
    expect(tooBig.body.error?.code).toBe("INSUFFICIENT_BALANCE");
    const noPrice = await bob.post("/api/v1/trade/create", { asset: "SOL", type: "long", margin: "10", leverage: 1 });
    expect([noPrice.status, noPrice.body.error?.code]).toEqual([422, "NO_PRICE"]);
    const badStop = await bob.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "10",
      leverage: 2,
      stopLoss: "2500",
    });
    expect([badStop.status, badStop.body.error?.code]).toEqual([422, "INVALID_STOP_LOSS"]);
    const leverage = await bob.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "10",
      leverage: 101,
    });
    expect([leverage.status, leverage.body.error?.code]).toEqual([422, "INVALID_LEVERAGE"]);
    expect(leverage.body.error?.message).toBe("leverage: expected a whole number from 1 to 100, received 101.");

    const mine = await alice.post("/api/v1/trade/create", { asset: "ETH", type: "short", margin: "20", leverage: 3 });
    const id = (mine.body.trade as { id: string }).id;
    const stolen = await bob.post("/api/v1/trade/close", { tradeId: id });
    expect([stolen.status, stolen.body.error?.code]).toEqual([404, "TRADE_NOT_FOUND"]);
    expect(stolen.body.error?.message).toBe(
      `tradeId: expected the id of an open trade of this account, received "${id}".`,
    );
    expect(((await bob.get("/api/v1/trade/open")).body.trades as unknown[]).length).toBe(0);
    expect(((await alice.get("/api/v1/trade/open")).body.trades as { id: string }[]).map((t) => t.id)).toContain(id);
    expect((await alice.post("/api/v1/trade/close", { tradeId: "T0-999999" })).status).toBe(404);
  });

  it("Idempotency-Key: the same key and body act once and return the first answer; another body is a 409", async () => {
    const body = { asset: "ETH", type: "long", margin: "15", leverage: 5 };
    const key = { "idempotency-key": `open-${crypto.randomUUID()}` };
    const first = await bob.post("/api/v1/trade/create", body, key);
    const again = await bob.post("/api/v1/trade/create", { ...body, margin: 15 }, key); // the same amount as a number
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    const open = (await bob.get("/api/v1/trade/open")).body.trades as { id: string }[];
    expect(open.filter((t) => t.id === (first.body.trade as { id: string }).id)).toHaveLength(1);
    expect(open).toHaveLength(1);
    const other = await bob.post("/api/v1/trade/create", { ...body, margin: "16" }, key);
    expect([other.status, other.body.error?.code]).toEqual([409, "IDEMPOTENCY_CONFLICT"]);
    const elsewhere = await bob.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "0.1" }, key);
    expect(elsewhere.status).toBe(409);
    expect((await bob.post("/api/v1/trade/create", body, { "idempotency-key": "x".repeat(129) })).status).toBe(400);
    expect(((await bob.get("/api/v1/trade/open")).body.trades as unknown[]).length).toBe(1);
  });

  it("reads money sent as a JSON number by its decimal text, and refuses extra decimals with a 400", async () => {
    const exact = await bob.post("/api/v1/trade/order", '{"asset":"ETH","side":"buy","quantity":1e-4}');
    expect(exact.status).toBe(201);
    expect(exact.body.order).toMatchObject({ quantity: "0.0001" });
    const tooFine = await bob.post("/api/v1/trade/order", '{"asset":"ETH","side":"buy","quantity":0.00001}');
    expect([tooFine.status, tooFine.body.error?.code]).toEqual([400, "INVALID_AMOUNT"]);
    expect(tooFine.body.error?.message).toContain("quantity");
    const margin = await bob.post(
      "/api/v1/trade/create",
      '{"asset":"ETH","type":"long","margin":10.0000001,"leverage":1}',
    );
    expect([margin.status, margin.body.error?.code]).toEqual([400, "INVALID_AMOUNT"]);
  });

  it("answers 503 at once when no engine holds the lease, and 504 when the engine does not answer in time", async () => {
    balancesBefore = (await bob.get("/api/v1/account/balance")).body.balances as Record<string, string>;
    await stack.stopEngine();
    try {
      const down = await bob.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "0.1" });
      // Retry-After: the hot standby takes the lease over within a second (docs/api.md).
      expect([down.status, down.body.error?.code, down.headers.get("retry-after")]).toEqual([
        503,
        "ENGINE_UNAVAILABLE",
        "1",
      ]);
      expect(await stack.redis.xlen(stack.keys.input)).toBeGreaterThan(0);
      const lengthBefore = await stack.redis.xlen(stack.keys.input);
      await bob.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "0.1" });
      expect(await stack.redis.xlen(stack.keys.input)).toBe(lengthBefore); // nothing was written to the log
    } finally {
      await stack.startEngine();
    }
  });

  it("gives 504 when the engine holds the lease but does not answer; the retry with the same key gets the first answer", async () => {
    const impatient = client(
      createApp({ ...stack.deps, engine: createEngineClient(stack.deps.redis, stack.keys, 300) }),
      bobToken,
    );
    const key = { "idempotency-key": `slow-${crypto.randomUUID()}` };
    const order = { asset: "ETH", side: "buy", quantity: "0.01" };
    // A lease held by an engine that is stuck: the instruction goes into the log, and the API stops waiting in time.
    const slow = await stack.withStuckEngine(() => impatient.post("/api/v1/trade/order", order, key));
    expect([slow.status, slow.body.error]).toEqual([504, { code: "ENGINE_TIMEOUT", message: ENGINE_TIMEOUT_WITH_KEY }]);
    expect(slow.body.error?.message).toContain("Send it again with the same Idempotency-Key and body");
    const retried = await bob.post("/api/v1/trade/order", order, key);
    expect(retried.status).toBe(201);
    const again = await bob.post("/api/v1/trade/order", order, key);
    expect(again.body).toEqual(retried.body);
    const balances = (await bob.get("/api/v1/account/balance")).body.balances as Record<string, string>;
    // Bought once: the timed-out attempt and its two retries are one order.
    expect(toUnits(balances.ETH!, 4)).toBe(toUnits(balancesBefore.ETH!, 4) + 100);
  });

  it("gives a 504 without a key that does not say to retry: a retry would act twice, so it says to look first", async () => {
    const carol = client(
      createApp({ ...stack.deps, engine: createEngineClient(stack.deps.redis, stack.keys, 300) }),
      (await stack.signIn("carol@example.com")).token,
    );
    const trade = { asset: "ETH", type: "long", margin: "10", leverage: 2 };
    const slow = await stack.withStuckEngine(() => carol.post("/api/v1/trade/create", trade));
    expect([slow.status, slow.body.error]).toEqual([
      504,
      { code: "ENGINE_TIMEOUT", message: ENGINE_TIMEOUT_WITHOUT_KEY },
    ]);
    expect(slow.body.error?.message).not.toContain("same Idempotency-Key");
    expect(slow.body.error?.message).toContain("first look for its effect (GET /api/v1/trade/open");
    // And indeed the engine carried it out once it was back: a retry would have been a second trade.
    await stack.settled();
    expect(((await carol.get("/api/v1/trade/open")).body.trades as unknown[]).length).toBe(1);
  });
});
