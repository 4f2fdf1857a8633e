/**
 * The account summary through the API, against real Redis and Postgres with the real engine and worker running
 * (testing/api-stack.ts). One test fills the pending orders' read model by hand.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let alice: ReturnType<typeof client>;
let aliceId: string;
let bob: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack();
  const signedIn = await stack.signIn("alice@example.com");
  alice = client(stack.app, signedIn.token);
  aliceId = signedIn.user.id;
  bob = client(stack.app, (await stack.signIn("bob@example.com")).token);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
  await stack.setQuote("BTC_USDC_PERP", "60000", "60010.5");
});
afterAll(() => stack.close());

describe("GET /api/v1/account/summary", () => {
  it("given a new account: the starting balance everywhere, no margin level", async () => {
    const res = await alice.get("/api/v1/account/summary");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      summary: {
        balance: "10000",
        equity: "10000",
        marginUsed: "0",
        freeMargin: "10000",
        marginLevel: null,
        unrealizedPnl: "0",
        pricesMissing: [],
      },
    });
  });

  it("follows open trades and the quotes: margin in the balance, PnL at the bid (long) and the ask (short)", async () => {
    const long = await alice.post("/api/v1/trade/create", { asset: "ETH", type: "long", margin: "100", leverage: 10 });
    const short = await alice.post("/api/v1/trade/create", { asset: "BTC", type: "short", margin: "200", leverage: 2 });
    expect([long.status, short.status]).toEqual([201, 201]);
    // Quantities: 1000 / 2001 → 0.4997 ETH at 2001; 400 / 60000 → 0.00666 BTC at 60000 (rounded down to the step).
    expect([long.body.trade, short.body.trade]).toMatchObject([{ quantity: "0.4997" }, { quantity: "0.00666" }]);
    await stack.setQuote("ETH_USDC_PERP", "2100.37", "2100.5");
    await stack.setQuote("BTC_USDC_PERP", "59000", "59010.5");
    expect((await alice.get("/api/v1/account/summary")).body.summary).toEqual({
      balance: "10000", // 9700 free + 300 in trades
      marginUsed: "300",
      unrealizedPnl: "56.245259", // (2100.37 − 2001) × 0.4997 = 49.655189; (60000 − 59010.5) × 0.00666 = 6.59007
      equity: "10056.245259",
      freeMargin: "9756.245259",
      marginLevel: "3352.08", // 10056.245259 / 300 × 100 = 3352.0817…, rounded down
      pricesMissing: [],
    });
  });

  it("counts the margin reserved by pending orders (their read model filled by hand)", async () => {
    // The only test that writes this hash itself: the worker will keep it once pending orders exist.
    await stack.redis.hset(
      stack.keys.pendingOrdersKey(aliceId),
      "P0-1",
      JSON.stringify({ id: "P0-1", asset: "ETH", margin: "50", ocoWith: null }),
      "P0-2",
      JSON.stringify({ id: "P0-2", asset: "BTC", margin: "0.000001", ocoWith: null }),
    );
    expect((await alice.get("/api/v1/account/summary")).body.summary).toEqual({
      balance: "10050.000001", // 9700 free (the hand-filled orders reserved nothing from it) + 300 + 50.000001
      marginUsed: "350.000001",
      unrealizedPnl: "56.245259",
      equity: "10106.24526",
      freeMargin: "9756.245259",
      marginLevel: "2887.49", // 10106.24526 / 350.000001 × 100 = 2887.4986…, rounded down
      pricesMissing: [],
    });
  });

  it("shows another user only their own account, and nothing without a session", async () => {
    expect((await bob.get("/api/v1/account/summary")).body.summary).toMatchObject({
      balance: "10000",
      marginUsed: "0",
      marginLevel: null,
    });
    const anonymous = await client(stack.app).get("/api/v1/account/summary");
    expect([anonymous.status, anonymous.body.error?.code]).toEqual([401, "UNAUTHENTICATED"]);
  });
});
