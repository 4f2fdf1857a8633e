/**
 * A new user's whole journey through the real processes, as they run in production: the engine, worker, poller and
 * API as separate Node processes on real Redis and Postgres, prices from a Backpack-protocol feed (the sim feed,
 * scripted), sign-in email through the real `resend` client to a local Resend-compatible recorder. Then every
 * process is killed with SIGKILL and started again: nothing is lost.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../platform/testing/processes.ts";
import { createProcessStack, type ProcessStack } from "./testing/process-stack.ts";

/** The parts of API answers this test reads. */
interface ApiBody {
  [field: string]: unknown;
  trade: { id: string; [field: string]: unknown };
  trades: Record<string, string>[];
  error: { code: string; message: string };
}

let stack: ProcessStack;
const http = (method: string, path: string, options: { token?: string; body?: unknown } = {}) =>
  stack.http<ApiBody>(method, path, options);
const signIn = (email: string) => stack.signIn(email);
const quote = (market: string, bid: string, ask: string) => stack.quote(market, bid, ask);
const start = (name: "api" | "engine" | "worker" | "poller") => stack.start(name);

let alice: string;

beforeAll(async () => {
  stack = await createProcessStack(`test:journey:${randomUUID()}:`);
  // The API first: it runs the migrations the others also run; then the engine must be live before sign-in.
  await start("api");
  await Promise.all([start("engine"), start("worker"), start("poller")]);
}, 120_000);

afterAll(() => stack.stop(), 60_000);

describe("a new user's journey through the real processes", () => {
  it("signs in by email, trades on feed prices, hits a stop-loss, buys spot, and is kept apart from another user", async () => {
    expect((await http("GET", "/health")).body).toMatchObject({
      status: "ok",
      redis: true,
      postgres: true,
      engine: true,
    });
    alice = await signIn("alice@example.com");
    expect((await http("GET", "/api/v1/account/balance/usd", { token: alice })).body).toEqual({
      asset: "USD",
      balance: "10000",
    });

    await quote("ETH_USDC_PERP", "3000", "3000.5");
    const assets = (await http("GET", "/api/v1/account/assets", { token: alice })).body.assets as {
      symbol: string;
      source: string;
    }[];
    expect(assets.find((a) => a.symbol === "ETH")?.source).toBe("backpack");
    const long = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "long", margin: "200", leverage: 5, stopLoss: "2900", takeProfit: "3300" },
    });
    expect(long.status).toBe(201);
    expect(long.body.trade).toMatchObject({ openPrice: "3000.5", quantity: "0.3332", stopLoss: "2900" });
    const short = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "short", margin: "100", leverage: 2 },
    });
    expect(short.status).toBe(201);

    // The bid falls through the stop-loss: the long closes at that bid by itself.
    await quote("ETH_USDC_PERP", "2890", "2890.5");
    const history = await until(
      async () => {
        const h = await http("GET", "/api/v1/trade/history", { token: alice });
        return (h.body.trades as unknown[]).length === 1 ? h.body.trades : undefined;
      },
      10_000,
      "the stop-loss in the history",
    );
    expect(history[0]).toMatchObject({
      id: long.body.trade.id,
      closeReason: "stop_loss",
      closePrice: "2890",
      pnl: "-36.8186",
    }); // (2890 − 3000.5) × 0.3332
    const open = (await http("GET", "/api/v1/trade/open", { token: alice })).body.trades;
    expect(open.map((t) => t.id)).toEqual([short.body.trade.id]);
    expect(open[0]).toMatchObject({ quantity: "0.0666", currentPrice: "2890.5", unrealizedPnl: "7.2927" }); // (3000 − 2890.5) × 0.0666
    const spot = await http("POST", "/api/v1/trade/order", {
      token: alice,
      body: { asset: "ETH", side: "buy", quantity: "0.1" },
    });
    expect(spot.status).toBe(201);
    expect(spot.body.order).toMatchObject({ price: "2890.5", total: "289.05" });

    const bad = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "long", margin: "1.0000001", leverage: 5 },
    });
    expect([bad.status, bad.body.error.code]).toEqual([400, "INVALID_AMOUNT"]);
    const bob = await signIn("bob@example.com");
    expect(
      (await http("POST", "/api/v1/trade/close", { token: bob, body: { tradeId: short.body.trade.id } })).status,
    ).toBe(404);
    expect((await http("GET", "/api/v1/trade/open", { token: bob })).body.trades).toEqual([]);
  });

  it("survives kill -9 of every process: restarted, it has the same state and keeps trading", async () => {
    const before = {
      balances: (await http("GET", "/api/v1/account/balance", { token: alice })).body,
      open: (await http("GET", "/api/v1/trade/open", { token: alice })).body,
      history: (await http("GET", "/api/v1/trade/history", { token: alice })).body,
    };
    // Let the engine snapshot once at least, so the restart exercises snapshot + log replay.
    await new Promise((r) => setTimeout(r, 800));
    for (const name of ["engine", "worker", "poller", "api"] as const) await stack.children.get(name)!.stop("SIGKILL");
    await start("api");
    await Promise.all([start("engine"), start("worker"), start("poller")]);
    expect((await http("GET", "/api/v1/account/balance", { token: alice })).body).toEqual(before.balances);
    expect((await http("GET", "/api/v1/trade/open", { token: alice })).body).toEqual(before.open);
    expect((await http("GET", "/api/v1/trade/history", { token: alice })).body).toEqual(before.history);
    await quote("ETH_USDC_PERP", "2800", "2800.5");
    const open = (before.open.trades as { id: string }[])[0]!;
    const closed = await http("POST", "/api/v1/trade/close", { token: alice, body: { tradeId: open.id } });
    expect(closed.status).toBe(200);
    expect(closed.body.trade).toMatchObject({ closePrice: "2800.5", closeReason: "manual" });
  });
});
