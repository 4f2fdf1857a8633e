/**
 * Spot order history through the API, against real Redis and Postgres with the real engine and worker running
 * (testing/api-stack.ts): the worker writes each filled spot order into Postgres before its answer goes out.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeOutputFields } from "../../contract/stream-fields.ts";
import { groupBacklog } from "../../worker/worker.ts";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let alice: ReturnType<typeof client>;
let bob: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack();
  alice = client(stack.app, (await stack.signIn("alice@example.com")).token);
  bob = client(stack.app, (await stack.signIn("bob@example.com")).token);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
  await stack.setQuote("BTC_USDC_PERP", "60000", "60010.5");
});
afterAll(() => stack.close());

type Order = { id: string; asset: string; side: string; quantity: string; price: string; total: string };
const placed: Order[] = []; // alice's orders, oldest first

async function order(who: ReturnType<typeof client>, body: object, headers: Record<string, string> = {}) {
  const res = await who.post("/api/v1/trade/order", body, headers);
  expect(res.status).toBe(201);
  return res.body.order as Order & { executedAt: string };
}

/** Rows of spot_orders for an order id, read straight from Postgres. */
async function rowsOf(id: string): Promise<number> {
  const { rows } = await stack.pg.db.query<{ n: number }>("SELECT count(*)::int AS n FROM spot_orders WHERE id = $1", [
    id,
  ]);
  return rows[0]!.n;
}

/** The engine's order_response entries on engine:output that answered with this spot order. */
async function answersOf(orderId: string): Promise<string[][]> {
  const entries = await stack.redis.xrange(stack.keys.output, "-", "+");
  return entries
    .map(([, fields]) => fields)
    .filter((fields) => {
      const decoded = decodeOutputFields(fields);
      const m = decoded.ok ? decoded.message : undefined;
      return (
        m?.type === "order_response" &&
        m.answer.ok &&
        m.answer.result.kind === "spot_order" &&
        m.answer.result.order.id === orderId
      );
    });
}

async function workerCaughtUp(): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const backlog = await groupBacklog(stack.redis, stack.keys);
    if (backlog?.lag === 0 && backlog.pending === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the worker never caught up");
}

describe("GET /api/v1/trade/spot-orders", () => {
  it("shows a filled order as soon as its POST answered, exactly as the POST answered it; a refusal leaves none", async () => {
    const empty = await alice.get("/api/v1/trade/spot-orders");
    expect([empty.status, empty.body]).toEqual([200, { orders: [], nextCursor: null }]);
    const buy = await order(alice, { asset: "ETH", side: "buy", quantity: "0.5" });
    expect(buy).toMatchObject({ price: "2001", total: "1000.5" }); // at the ask: 0.5 × 2001
    placed.push(buy);
    expect((await alice.get("/api/v1/trade/spot-orders")).body).toEqual({ orders: [buy], nextCursor: null });

    const refused = await bob.post("/api/v1/trade/order", { asset: "ETH", side: "sell", quantity: "1" });
    expect([refused.status, refused.body.error?.code]).toEqual([422, "INSUFFICIENT_BALANCE"]);
    expect((await bob.get("/api/v1/trade/spot-orders")).body).toEqual({ orders: [], nextCursor: null });
  });

  it("pages newest first with the cursor, exact amounts, and no order twice", async () => {
    placed.push(await order(alice, { asset: "ETH", side: "sell", quantity: "0.2" }));
    placed.push(await order(alice, { asset: "BTC", side: "buy", quantity: "0.00001" }));
    placed.push(await order(alice, { asset: "BTC", side: "sell", quantity: "0.00001" }));
    expect(placed.map((o) => [o.side, o.price, o.total])).toEqual([
      ["buy", "2001", "1000.5"],
      ["sell", "2000", "400"], // at the bid: 0.2 × 2000
      ["buy", "60010.5", "0.600105"], // 0.00001 × 60010.5
      ["sell", "60000", "0.6"],
    ]);
    const first = await alice.get("/api/v1/trade/spot-orders?limit=3");
    expect(first.status).toBe(200);
    expect(first.body.orders).toEqual([placed[3], placed[2], placed[1]]);
    expect(typeof first.body.nextCursor).toBe("string");
    const second = await alice.get(`/api/v1/trade/spot-orders?limit=3&cursor=${String(first.body.nextCursor)}`);
    expect(second.body).toEqual({ orders: [placed[0]], nextCursor: null });
    // Exactly a page's worth: no cursor to an empty page.
    expect((await alice.get("/api/v1/trade/spot-orders?limit=4")).body.nextCursor).toBeNull();
  });

  it("shows each user only their own orders", async () => {
    const bobs = await order(bob, { asset: "ETH", side: "buy", quantity: "0.1" });
    expect((await bob.get("/api/v1/trade/spot-orders")).body).toEqual({ orders: [bobs], nextCursor: null });
    const alices = (await alice.get("/api/v1/trade/spot-orders")).body.orders as Order[];
    expect(alices.map((o) => o.id)).toEqual(placed.map((o) => o.id).reverse());
  });

  it("inserts nothing for a replayed output, nor for the answer repeated to a retried request", async () => {
    // The engine re-emits an output after a restart: the same entry again on engine:output.
    const [answer] = await answersOf(placed[0]!.id);
    await stack.redis.xadd(stack.keys.output, "*", ...answer!);
    // A retry with the same Idempotency-Key: the engine answers the first order again, under a new output id.
    const key = { "idempotency-key": `spot-${crypto.randomUUID()}` };
    const once = await order(alice, { asset: "ETH", side: "buy", quantity: "0.01" }, key);
    const again = await order(alice, { asset: "ETH", side: "buy", quantity: "0.01" }, key);
    expect(again).toEqual(once);
    await workerCaughtUp();
    expect(await answersOf(placed[0]!.id)).toHaveLength(2);
    expect(await answersOf(once.id)).toHaveLength(2);
    expect([await rowsOf(placed[0]!.id), await rowsOf(once.id)]).toEqual([1, 1]);
    const orders = (await alice.get("/api/v1/trade/spot-orders")).body.orders as Order[];
    expect(orders.map((o) => o.id)).toEqual([once.id, ...placed.map((o) => o.id).reverse()]);
  });

  it("refuses a bad query or cursor with 400, and answers nothing without a session", async () => {
    const limit = await alice.get("/api/v1/trade/spot-orders?limit=0");
    expect([limit.status, limit.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    const cursor = await alice.get("/api/v1/trade/spot-orders?cursor=bm90LWEtY3Vyc29y");
    expect([cursor.status, cursor.body.error?.code]).toEqual([400, "INVALID_CURSOR"]);
    const anonymous = await client(stack.app).get("/api/v1/trade/spot-orders");
    expect([anonymous.status, anonymous.body.error?.code]).toEqual([401, "UNAUTHENTICATED"]);
  });
});
