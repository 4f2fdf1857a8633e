/**
 * The API's Postgres routes on the deployed driver path: `neon()` over HTTP through the local Neon peer
 * (testing/neon-http-peer.ts) instead of the local WebSocket proxy. Sign-in (tokens in Postgres), the closed-trade
 * history and the candles all go through it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let carol: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack({ postgres: "neon-http" });
  carol = client(stack.app, (await stack.signIn("carol@example.com")).token);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
});
afterAll(() => stack.close());

describe("the API over Neon's HTTP path", () => {
  it("serves the closed-trade history from Postgres through neon() over HTTP", async () => {
    // Given a long opened at the ask 2001 with 100 × 10 and closed at the bid 2100.37
    const opened = await carol.post("/api/v1/trade/create", {
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
    });
    expect(opened.status).toBe(201);
    await stack.setQuote("ETH_USDC_PERP", "2100.37", "2100.5");
    const id = (opened.body.trade as { id: string }).id;
    expect((await carol.post("/api/v1/trade/close", { tradeId: id })).status).toBe(200);
    // When the history is read
    const before = stack.neonPeer!.requests.length;
    const history = await carol.get("/api/v1/trade/history");
    // Then it comes from Postgres over the peer: quantity 1000 / 2001 rounded down to 0.4997,
    // pnl (2100.37 − 2001) × 0.4997 = 49.655189
    expect(history.status).toBe(200);
    expect(history.body.trades).toHaveLength(1);
    expect((history.body.trades as Record<string, unknown>[])[0]).toMatchObject({
      id,
      asset: "ETH",
      openPrice: "2001",
      closePrice: "2100.37",
      quantity: "0.4997",
      pnl: "49.655189",
      closeReason: "manual",
    });
    expect(history.body.nextCursor).toBeNull();
    expect(stack.neonPeer!.requests.length).toBeGreaterThan(before);
    expect(stack.neonPeer!.requests.at(-1)).toEqual({ host: "api.us-east-2.aws.neon.tech", path: "/sql" });
  });

  it("serves candles merged in SQL through neon() over HTTP, times and prices as the local driver gives them", async () => {
    await stack.setQuote("ETH_USDC_PERP", "2000.5", "2001");
    const before = stack.neonPeer!.requests.length;
    const res = await client(stack.app).get("/api/v1/market/candles?asset=ETH&interval=1d");
    expect(res.status).toBe(200);
    const list = res.body.candles as { openTime: string; close: string }[];
    expect(list.at(-1)).toMatchObject({ close: "2000.5" });
    expect(list.at(-1)!.openTime).toMatch(/^\d{4}-\d\d-\d\dT00:00:00\.000Z$/);
    expect(stack.neonPeer!.requests.length).toBeGreaterThan(before);
  });
});
