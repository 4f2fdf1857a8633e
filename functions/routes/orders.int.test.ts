/**
 * Entry orders, OCO, cancel, modify and partial close through the API, in-process against real Redis and Postgres
 * with the real engine and worker running (testing/api-stack.ts). Each scenario trades its own asset, so one
 * scenario's quotes cannot fill another's orders. Amounts in comments are worked by hand from docs/trading-rules.md.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { client, type Call } from "../testing/http.ts";
import { answersOffDocument } from "../testing/redocly.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let ann: ReturnType<typeof client>;
let bob: ReturnType<typeof client>;
let cy: ReturnType<typeof client>;
let dee: ReturnType<typeof client>;
let eve: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack();
  ann = client(stack.app, (await stack.signIn("ann@example.com")).token);
  bob = client(stack.app, (await stack.signIn("bob@example.com")).token);
  cy = client(stack.app, (await stack.signIn("cy@example.com")).token);
  dee = client(stack.app, (await stack.signIn("dee@example.com")).token);
  eve = client(stack.app, (await stack.signIn("eve@example.com")).token);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
  await stack.setQuote("BTC_USDC_PERP", "60000", "60010");
  await stack.setQuote("SOL_USDC_PERP", "150", "150.1");
  await stack.setQuote("ADA_USDC_PERP", "0.5", "0.5001");
});
afterAll(() => stack.close());

type Order = Record<string, unknown> & { id: string; status: string };

/** Polls a read until `check` holds: a fill lands in the read models a moment after the quote that caused it. */
async function until(read: () => Promise<Call>, check: (c: Call) => boolean): Promise<Call> {
  for (let i = 0; i < 200; i++) {
    const res = await read();
    if (check(res)) return res;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("timed out waiting for the read model");
}

const usd = async (who: ReturnType<typeof client>) =>
  (await who.get("/api/v1/account/balance/usd")).body.balance as string;

describe("entry orders through the API", () => {
  let filledId = "";

  it("places a long limit, lists it, fills it when the ask reaches its price, and keeps its life in the history", async () => {
    // Given ETH at 2000 / 2001, when ann places a long limit at 1990 with 100 USD × 10
    const placed = await ann.post("/api/v1/trade/orders", {
      asset: "ETH",
      side: "long",
      type: "limit",
      price: "1990",
      margin: "100",
      leverage: 10,
      stopLoss: "1900",
    });
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    const order = placed.body.order as Order;
    expect(order).toMatchObject({ side: "long", type: "limit", price: "1990", status: "pending", stopLoss: "1900" });
    // Then its margin is reserved and it is listed as pending
    expect((placed.body.balances as Record<string, string>).USD).toBe("9900");
    const listed = await ann.get("/api/v1/trade/orders");
    expect((listed.body.orders as Order[]).map((o) => o.id)).toEqual([order.id]);

    // When the ask falls to 1989.5 (a limit fills at its price or better: at the quote)
    await stack.setQuote("ETH_USDC_PERP", "1989", "1989.5");
    const open = await until(
      () => ann.get("/api/v1/trade/open"),
      (r) => (r.body.trades as unknown[]).length === 1,
    );
    // Then a trade opened at 1989.5 with quantity 1000 / 1989.5 = 0.50263… → 0.5026, the order's stop-loss on it
    const trade = (open.body.trades as Record<string, string>[])[0]!;
    expect(trade).toMatchObject({
      asset: "ETH",
      openPrice: "1989.5",
      quantity: "0.5026",
      margin: "100",
      stopLoss: "1900",
    });
    expect((await ann.get("/api/v1/trade/orders")).body.orders).toEqual([]);
    expect(await usd(ann)).toBe("9900"); // the reservation became the trade's margin
    const history = await ann.get("/api/v1/trade/orders/history");
    expect(history.status).toBe(200);
    expect(history.body.orders).toEqual([
      expect.objectContaining({ id: order.id, status: "filled", fillPrice: "1989.5", tradeId: trade.id }),
    ]);
    filledId = order.id;
  });

  it("cancels a pending order: its margin comes back, the history says cancelled", async () => {
    // Good till a day from now, to the second, with an offset: sent as ISO 8601, answered in UTC
    const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 86_400_000)
      .toISOString()
      .replace(".000Z", "+00:00");
    const placed = await ann.post("/api/v1/trade/orders", {
      asset: "ETH",
      side: "short",
      type: "limit",
      price: "2100",
      margin: "40",
      leverage: 5,
      expiresAt,
    });
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    const order = placed.body.order as Order;
    expect(order.expiresAt).toBe(new Date(expiresAt).toISOString());
    expect(await usd(ann)).toBe("9860");
    const cancelled = await ann.post("/api/v1/trade/orders/cancel", { orderId: order.id });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body.order).toMatchObject({ id: order.id, status: "cancelled" });
    expect((cancelled.body.balances as Record<string, string>).USD).toBe("9900");
    expect((await ann.get("/api/v1/trade/orders")).body.orders).toEqual([]);
    const history = (await ann.get("/api/v1/trade/orders/history?limit=1")).body;
    expect(history.orders).toEqual([expect.objectContaining({ id: order.id, status: "cancelled" })]);
    // Newest placed first: the filled order is on the next page
    const next = await ann.get(`/api/v1/trade/orders/history?limit=1&cursor=${String(history.nextCursor)}`);
    expect((next.body.orders as Order[]).map((o) => [o.id, o.status])).toEqual([[filledId, "filled"]]);
    expect(next.body.nextCursor).toBeNull();
  });

  it("expires an order at its time, decided by the log: the next input after it takes it off the book", async () => {
    // Good till 2.5 s from now, on BTC (at 60000 / 60010; a long limit at 59000 waits)
    const expiresAt = new Date(Date.now() + 2500).toISOString();
    const placed = await dee.post("/api/v1/trade/orders", {
      asset: "BTC",
      side: "long",
      type: "limit",
      price: "59000",
      margin: "30",
      leverage: 3,
      expiresAt,
    });
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    const id = (placed.body.order as Order).id;
    expect(await usd(dee)).toBe("9970");
    // When time passes its expiry and the next input (a quote that does not fill it) reaches the engine
    await new Promise((r) => setTimeout(r, 2600));
    await stack.setQuote("BTC_USDC_PERP", "60001", "60010");
    await stack.setQuote("BTC_USDC_PERP", "60000", "60010"); // back, for the partial-close scenario
    // Then it is off the book, its margin back, and its row says expired at its own time
    const history = await until(
      () => dee.get("/api/v1/trade/orders/history"),
      (r) => (r.body.orders as Order[]).some((o) => o.id === id && o.status === "expired"),
    );
    expect((history.body.orders as Order[]).find((o) => o.id === id)).toMatchObject({
      status: "expired",
      updatedAt: expiresAt,
      reason: { code: "EXPIRED" },
    });
    expect((await dee.get("/api/v1/trade/orders")).body.orders).toEqual([]);
    expect(await usd(dee)).toBe("10000");
  });

  it("answers a cancel after the fill with 409 ORDER_NOT_PENDING and the order as it is now", async () => {
    const res = await ann.post("/api/v1/trade/orders/cancel", { orderId: filledId });
    expect(res.status).toBe(409);
    expect(res.body.error?.code).toBe("ORDER_NOT_PENDING");
    expect(res.body.order).toMatchObject({ id: filledId, status: "filled", fillPrice: "1989.5" });
    // Someone else's order (or none) stays a plain 404
    const other = await bob.post("/api/v1/trade/orders/cancel", { orderId: filledId });
    expect(other.status).toBe(404);
    expect(other.body.error?.code).toBe("ORDER_NOT_FOUND");
    expect(other.body.error?.message).toBe(
      `orderId: expected the id of a pending order of this account, received "${filledId}".`,
    );
    expect(other.body.order).toBeUndefined();
  });

  it("places an OCO pair on SOL: the pair reserves the larger margin, one fill cancels the other", async () => {
    const before = await usd(cy);
    expect(before).toBe("10000");
    const res = await cy.post("/api/v1/trade/orders/oco", {
      legs: [
        { asset: "SOL", side: "long", type: "stop", price: "160", margin: "50", leverage: 5 },
        { asset: "SOL", side: "short", type: "stop", price: "140", margin: "80", leverage: 2 },
      ],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const [up, down] = res.body.orders as Order[];
    expect(up!.ocoWith).toBe(down!.id);
    expect(down!.ocoWith).toBe(up!.id);
    expect((res.body.balances as Record<string, string>).USD).toBe("9920"); // 10000 − max(50, 80)
    // The summary counts the pair's reservation once, as the engine does: 80 used, nothing made out of nothing
    expect((await cy.get("/api/v1/account/summary")).body.summary).toEqual({
      balance: "10000",
      equity: "10000",
      marginUsed: "80",
      freeMargin: "9920",
      marginLevel: "12500", // 10000 / 80 × 100
      unrealizedPnl: "0",
      pricesMissing: [],
    });
    // When the ask rises through 160 (a stop gapped past its price fills at the quote)
    await stack.setQuote("SOL_USDC_PERP", "160.4", "160.5");
    await until(
      () => cy.get("/api/v1/trade/open"),
      (r) => (r.body.trades as unknown[]).length === 1,
    );
    // Then the long opened at 160.5 (quantity 250 / 160.5 = 1.557… → 1.55) and the short leg was cancelled
    const trades = (await cy.get("/api/v1/trade/open")).body.trades as Record<string, string>[];
    expect(trades[0]).toMatchObject({ type: "long", openPrice: "160.5", quantity: "1.55", margin: "50" });
    expect((await cy.get("/api/v1/trade/orders")).body.orders).toEqual([]);
    const history = (await cy.get("/api/v1/trade/orders/history")).body.orders as Order[];
    expect(Object.fromEntries(history.map((o) => [o.id, o.status]))).toEqual({
      [up!.id]: "filled",
      [down!.id]: "cancelled",
    });
    expect(history.find((o) => o.id === down!.id)!.reason).toMatchObject({ code: "OCO_CANCELLED" });
    expect(await usd(cy)).toBe("9950"); // the fill's 50 locked, the other 30 of the reservation back
  });
});

describe("partial close and trades already closed", () => {
  it("closes half a BTC trade, then the rest: two closed rows for one trade, then 409 TRADE_CLOSED", async () => {
    // Given a long of 100 USD × 10 at the ask 60010: quantity 1000 / 60010 = 0.016663… → 0.01666
    const opened = await bob.post("/api/v1/trade/create", { asset: "BTC", type: "long", margin: "100", leverage: 10 });
    expect(opened.status).toBe(201);
    const id = (opened.body.trade as { id: string; quantity: string }).id;
    expect((opened.body.trade as { quantity: string }).quantity).toBe("0.01666");
    // A quantity finer than BTC's 5 decimals is a 400 naming the field
    const fine = await bob.post("/api/v1/trade/close", { tradeId: id, quantity: "0.000001" });
    expect(fine.status).toBe(400);
    expect(fine.body.error).toEqual({
      code: "INVALID_AMOUNT",
      message: 'quantity: expected at most 5 decimals (BTC quantities are in steps of 0.00001), received "0.000001".',
    });
    // When half is closed at the bid 60000: 0.00833 closed, 0.00833 stays
    const half = await bob.post("/api/v1/trade/close", { tradeId: id, percent: "50" });
    expect(half.status, JSON.stringify(half.body)).toBe(200);
    // pnl (60000 − 60010) × 0.00833 = −0.0833; margin released 100 × 833 / 1666 = 50
    const partId = (half.body.trade as { closeId: string }).closeId;
    expect(partId).toMatch(new RegExp(`^${id}\\.\\d+$`));
    expect(half.body.trade).toMatchObject({
      id,
      quantity: "0.00833",
      margin: "50",
      pnl: "-0.0833",
      remainingQuantity: "0.00833",
      closeReason: "manual",
    });
    expect(half.body.remaining).toMatchObject({ id, quantity: "0.00833", margin: "50", openPrice: "60010" });
    expect(await usd(bob)).toBe("9949.9167"); // 9900 + 50 − 0.0833
    const stillOpen = (await bob.get("/api/v1/trade/open")).body.trades as { id: string; quantity: string }[];
    expect(stillOpen.map((t) => [t.id, t.quantity])).toEqual([[id, "0.00833"]]);

    // And then the rest by quantity
    const rest = await bob.post("/api/v1/trade/close", { tradeId: id, quantity: "0.00833" });
    expect(rest.status, JSON.stringify(rest.body)).toBe(200);
    expect(rest.body.trade).toMatchObject({ id, closeId: id, quantity: "0.00833", remainingQuantity: "0" });
    expect(rest.body.remaining).toBeNull();
    expect((await bob.get("/api/v1/trade/open")).body.trades).toEqual([]);
    const history = (await bob.get("/api/v1/trade/history")).body.trades as Record<string, string>[];
    expect(history.map((t) => [t.id, t.closeId, t.quantity, t.remainingQuantity])).toEqual([
      [id, id, "0.00833", "0"],
      [id, partId, "0.00833", "0.00833"],
    ]);

    // A close of the closed trade: 409 with its close
    const again = await bob.post("/api/v1/trade/close", { tradeId: id });
    expect(again.status).toBe(409);
    expect(again.body.error?.code).toBe("TRADE_CLOSED");
    expect(again.body.trade).toMatchObject({ id, closeId: id, remainingQuantity: "0", closeReason: "manual" });

    // Each answer matches its schema in the served OpenAPI document: `remaining` a Trade, then null
    const served = (await client(stack.app).get("/api/v1/openapi.json")).body;
    const close = "POST /api/v1/trade/close";
    const answers = [
      { operation: "POST /api/v1/trade/create", status: 201, name: "opened", body: opened.body },
      { operation: close, status: 200, name: "partialClose", body: half.body },
      { operation: close, status: 200, name: "fullClose", body: rest.body },
      { operation: close, status: 409, name: "closedAlready", body: again.body },
    ];
    expect(await answersOffDocument(served, answers)).toEqual([]);
  });

  it("modifies an ADA trade's exits (absent unchanged, null removed), then 409 TRADE_CLOSED once it is closed", async () => {
    const opened = await dee.post("/api/v1/trade/create", {
      asset: "ADA",
      type: "long",
      margin: "100",
      leverage: 2,
      stopLoss: "0.4",
      takeProfit: "0.6",
    });
    expect(opened.status).toBe(201);
    const id = (opened.body.trade as { id: string }).id;
    const moved = await dee.post("/api/v1/trade/modify", { tradeId: id, stopLoss: "0.45", takeProfit: null });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.trade).toMatchObject({ id, stopLoss: "0.45", takeProfit: null });
    const open = (await dee.get("/api/v1/trade/open")).body.trades as Record<string, unknown>[];
    expect(open[0]).toMatchObject({ id, stopLoss: "0.45", takeProfit: null });
    // A stop-loss above the bid is refused by the engine
    const wrong = await dee.post("/api/v1/trade/modify", { tradeId: id, stopLoss: "0.55" });
    expect(wrong.status).toBe(422);
    expect(wrong.body.error?.code).toBe("INVALID_STOP_LOSS");
    expect((await dee.post("/api/v1/trade/close", { tradeId: id })).status).toBe(200);
    const late = await dee.post("/api/v1/trade/modify", { tradeId: id, stopLoss: "0.42" });
    expect(late.status).toBe(409);
    expect(late.body.error?.code).toBe("TRADE_CLOSED");
    expect(late.body.trade).toMatchObject({ id, stopLoss: "0.45", takeProfit: null, remainingQuantity: "0" });
  });

  it("opens an ETH long with a trailing stop that follows the bid up and closes it as trailing_stop", async () => {
    // Given ETH at 1989 / 1989.5 (the first scenario's fill quote), a long trailing 10 below the best bid
    const opened = await eve.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
      trailingStop: { distance: "10" },
    });
    expect(opened.status, JSON.stringify(opened.body)).toBe(201);
    const trade = opened.body.trade as { id: string; quantity: string; trailingStop: unknown };
    expect(trade.quantity).toBe("0.5026"); // 1000 / 1989.5 = 0.50263… → 0.5026
    expect(trade.trailingStop).toEqual({
      distance: "10",
      percent: null,
      activationPrice: null,
      activated: true,
      bestPrice: "1989",
      level: "1979",
    });
    // When the bid makes a new high at 2010 (the stop moves to 2000), then falls to 1999
    await stack.setQuote("ETH_USDC_PERP", "2010", "2010.5");
    await stack.setQuote("ETH_USDC_PERP", "1999", "1999.5");
    const history = await until(
      () => eve.get("/api/v1/trade/history"),
      (r) => (r.body.trades as unknown[]).length === 1,
    );
    // Then it closed at that bid: pnl (1999 − 1989.5) × 0.5026 = 4.7747, the stop as it stood kept in the row
    expect((history.body.trades as Record<string, unknown>[])[0]).toMatchObject({
      id: trade.id,
      closeReason: "trailing_stop",
      closePrice: "1999",
      pnl: "4.7747",
      trailingStop: { distance: "10", activated: true, bestPrice: "2010", level: "2000" },
    });
    expect((await eve.get("/api/v1/trade/open")).body.trades).toEqual([]);
  });
});
