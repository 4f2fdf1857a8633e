/**
 * The account summary through the API, against real Redis and Postgres with the real engine and worker running
 * (testing/api-stack.ts). One test fills the pending orders' read model by hand; those on an engine step the worker
 * has written part of write its outputs by hand, with the worker's own scripts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrivateOutput } from "../../contract/messages.ts";
import { EVENT_SCRIPTS, recordLostEvents } from "../../worker/events.ts";
import { queueOutputWrite, READ_MODEL_SCRIPTS } from "../../worker/read-models.ts";
import { ACCOUNT_STEP_WAIT } from "../account-reads.ts";
import { createApp } from "../app.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
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

describe("GET /api/v1/account/summary read inside an engine step", () => {
  /**
   * A new user (the engine's grant stored: seq 1, 10000 USD) whose requests go through an app that counts the reads
   * of the user's read models (the one script) and runs `afterRead` once the first of a request has answered; and the
   * steps of a trade opened (ETH long, margin 100, 0.5 at 2000) as the engine emits them: `opened` (seq 2, its step
   * goes on) and `paid` (seq 3, the margin taken from the balance).
   */
  async function midStepUser() {
    await stack.setQuote("ETH_USDC_PERP", "2010", "2011");
    const { token, user } = await stack.signIn(`step-${crypto.randomUUID()}@example.com`);
    const counted = { reads: 0, afterRead: undefined as (() => void) | undefined };
    const redis: ApiRedis = {
      ...stack.deps.redis,
      eval: async (script, keys, args) => {
        const answer = await stack.deps.redis.eval(script, keys, args);
        if (keys.includes(stack.keys.eventsSeqKey(user.id))) {
          counted.reads++;
          const after = counted.afterRead;
          counted.afterRead = undefined;
          after?.();
        }
        return answer;
      },
    };
    const ms = Date.now();
    const head = { userId: user.id, inputId: `${ms}-0` };
    const opened: PrivateOutput = {
      type: "trade_opened",
      ...head,
      id: `${ms}-0:0`,
      seq: 2,
      trade: {
        id: "T0-1",
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
        openedAt: new Date(ms).toISOString(),
      },
    };
    const paid: PrivateOutput = {
      type: "balances_changed",
      ...head,
      id: `${ms}-0:1`,
      seq: 3,
      balances: { USD: "9900" },
    };
    return { userId: user.id, api: client(createApp({ ...stack.deps, redis }), token), counted, opened, paid };
  }

  /** Writes `output` as the worker does: its read-model change and its event in one script. */
  async function store(output: PrivateOutput, more = false) {
    for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await stack.redis.script("LOAD", script);
    const pipe = stack.redis.pipeline();
    queueOutputWrite(pipe, stack.keys, output, more);
    for (const [error] of (await pipe.exec())!) expect(error).toBeNull();
  }

  it("waits for the step's next event and answers with the whole step", async () => {
    const { api, counted, opened, paid } = await midStepUser();
    await store(opened, true); // the trade open, its margin not yet paid: 10100 of money that never was
    // The step's next event lands 40 ms after the request's first read of the account
    let stepEnded: Promise<void> | undefined;
    counted.afterRead = () => {
      stepEnded = new Promise((resolve) => setTimeout(resolve, 40)).then(() => store(paid));
    };
    const res = await api.get("/api/v1/account/summary");
    await stepEnded;
    expect(res.status).toBe(200);
    // 9900 free + 100 in the trade; PnL (2010 − 2000) × 0.5 = 5
    expect(res.body.summary).toMatchObject({ balance: "10000", marginUsed: "100", equity: "10005" });
    expect(counted.reads).toBeGreaterThan(1);
  });

  it("waits for the step's next event also above a gap a dead worker's batch left in the user's events", async () => {
    const { api, counted, opened, paid } = await midStepUser();
    // Seq 2 is in a batch a dead worker still holds (claimed ~30 s later): the live worker writes the step as 3 and
    // 4, above the mark (1), whose event is an older step's, whole
    await store({ ...opened, seq: 3 }, true);
    let stepEnded: Promise<void> | undefined;
    counted.afterRead = () => {
      stepEnded = new Promise((resolve) => setTimeout(resolve, 40)).then(() => store({ ...paid, seq: 4 }));
    };
    const from = stack.logLines.length;
    const res = await api.get("/api/v1/account/summary");
    await stepEnded;
    expect(res.body.summary).toMatchObject({ balance: "10000", marginUsed: "100", equity: "10005" });
    expect(counted.reads).toBeGreaterThan(1);
    expect(stack.logLines.slice(from).filter((l) => l.event === "account_read_mid_step")).toEqual([]);
  });

  it("does not wait above a gap for a step whose next event was refused (recorded lost): it never comes", async () => {
    const { userId, api, counted, opened } = await midStepUser();
    // Seq 2 is held by a dead worker. The live worker's batch: 3 opened the trade (`more`), 4 (its margin paid) was
    // refused and recorded lost, before the batch's outputs were written, as the worker does
    await recordLostEvents(stack.redis, stack.keys, [{ userId, seq: 4 }]);
    await store({ ...opened, seq: 3 }, true);
    const from = stack.logLines.length;
    const res = await api.get("/api/v1/account/summary");
    // The read models keep the half step: a wait would have ended with these figures too
    expect(res.body.summary).toMatchObject({ balance: "10100", marginUsed: "100", equity: "10105" });
    expect(counted.reads).toBe(1);
    expect(stack.logLines.slice(from).filter((l) => l.event === "account_read_mid_step")).toEqual([]);
  });

  it("answers with the part of the step it read once the wait runs out, and logs it", async () => {
    const { userId, api, opened } = await midStepUser();
    await store(opened, true); // the rest of the step never comes (a worker died holding it)
    const from = stack.logLines.length;
    const res = await api.get("/api/v1/account/summary");
    expect(res.status).toBe(200);
    expect(res.body.summary).toMatchObject({ balance: "10100", marginUsed: "100", equity: "10105" });
    const logged = stack.logLines.slice(from).filter((l) => l.event === "account_read_mid_step");
    expect(logged).toEqual([expect.objectContaining({ level: "warn", userId, seq: 2 })]);
    // It gives up only once the wait is used up: what it logs, not how long the test took
    expect(logged[0]!.waitedMs).toBeGreaterThanOrEqual(ACCOUNT_STEP_WAIT.maxWaitMs);
  });

  it("reads a state outside a step once", async () => {
    const { api, counted, opened, paid } = await midStepUser();
    await store(opened, true);
    await store(paid);
    const res = await api.get("/api/v1/account/summary");
    expect(res.body.summary).toMatchObject({ balance: "10000", marginUsed: "100", equity: "10005" });
    expect(counted.reads).toBe(1);
  });
});
