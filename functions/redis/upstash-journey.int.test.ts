/**
 * The deployed path's Redis client end to end: the whole app on the `@upstash/redis` adapter, over HTTP to the local
 * Upstash REST peer in front of the real Redis (which refuses what Upstash refuses, blocking commands among them),
 * with the real engine and worker. Sign-in, a trade opened and closed, history and balances, the engine's 503, the
 * commands one order costs, a retry after a 504 answered once, and the summary's step wait above a gap, all through
 * REST.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrivateOutput } from "../../contract/messages.ts";
import { EVENT_SCRIPTS, recordLostEvents } from "../../worker/events.ts";
import { queueOutputWrite, READ_MODEL_SCRIPTS } from "../../worker/read-models.ts";
import { createApp } from "../app.ts";
import { createEngineClient } from "../engine-client.ts";
import { client } from "../testing/http.ts";
import { REDIS_URL, startApiStack, type ApiStack } from "../testing/api-stack.ts";
import { startUpstashBridge, type UpstashBridge } from "../testing/upstash-bridge.ts";
import { createUpstashApiRedis } from "./upstash-api-redis.ts";

let bridge: UpstashBridge;
let stack: ApiStack;

beforeAll(async () => {
  bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: "journey-token" });
  stack = await startApiStack({ apiRedis: createUpstashApiRedis({ url: bridge.url, token: bridge.token }) });
});
afterAll(async () => {
  await stack.close();
  await bridge.close();
});

describe("the API on the Upstash REST adapter", () => {
  it("signs in, trades, reads balances and history, and reports a missing engine", async () => {
    const { token, user } = await stack.signIn("upstash@example.com");
    const api = client(stack.app, token);
    expect((await api.get("/api/v1/auth/me")).body).toEqual({ user });
    await stack.setQuote("SOL_USDC_PERP", "150.25", "150.3");
    const opened = await api.post(
      "/api/v1/trade/create",
      { asset: "SOL", type: "short", margin: "30", leverage: 5, takeProfit: "140" },
      { "idempotency-key": "k1" },
    );
    expect(opened.status).toBe(201);
    expect(opened.body.trade).toMatchObject({
      asset: "SOL",
      type: "short",
      openPrice: "150.25",
      quantity: "0.99",
      takeProfit: "140",
    });
    expect(
      (
        await api.post(
          "/api/v1/trade/create",
          { asset: "SOL", type: "short", margin: "30", leverage: 5, takeProfit: "140" },
          { "idempotency-key": "k1" },
        )
      ).body,
    ).toEqual(opened.body);
    const open = (await api.get("/api/v1/trade/open")).body.trades as { unrealizedPnl: string }[];
    expect(open).toHaveLength(1);
    expect(open[0]!.unrealizedPnl).toBe("-0.0495"); // (150.25 − 150.3) × 0.99
    // The read models and the marks in one script (worker/events.ts, readStoredState), its keys in one slot
    expect((await api.get("/api/v1/account/summary")).body.summary).toMatchObject({
      balance: "10000",
      marginUsed: "30",
      unrealizedPnl: "-0.0495",
    });
    const closed = await api.post("/api/v1/trade/close", { tradeId: (opened.body.trade as { id: string }).id });
    expect(closed.body.trade).toMatchObject({ closePrice: "150.3", pnl: "-0.0495", closeReason: "manual" });
    expect((await api.get("/api/v1/account/balance/usd")).body).toEqual({ asset: "USD", balance: "9999.9505" });
    expect(((await api.get("/api/v1/trade/history")).body.trades as unknown[]).length).toBe(1);
    await stack.stopEngine();
    try {
      expect(
        (await api.post("/api/v1/trade/order", { asset: "SOL", side: "buy", quantity: "1" })).body.error?.code,
      ).toBe("ENGINE_UNAVAILABLE");
    } finally {
      await stack.startEngine();
    }
    bridge.resetCommandCounts();
    expect((await api.post("/api/v1/trade/order", { asset: "SOL", side: "buy", quantity: "1" })).status).toBe(201);
    // What an order costs on Upstash: the admission script, the send script, and polls for the answer.
    const counts = Object.fromEntries(bridge.commandCounts());
    expect(Object.keys(counts).sort()).toEqual(["EVALSHA", "LINDEX"]);
    expect(counts.EVALSHA).toBe(2);
    expect(counts.LINDEX).toBeGreaterThanOrEqual(1);
  });

  it("the summary above a gap: waits out a step stored there, not one whose next event was refused", async () => {
    const { token, user } = await stack.signIn("upstash-gap@example.com");
    const api = client(stack.app, token);
    for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await stack.redis.script("LOAD", script);
    // Seq 2 held by a dead worker; the live worker stores 3 above the gap, its step going on (`more`)
    const inputId = `${Date.now()}-0`;
    const step: PrivateOutput = {
      type: "balances_changed",
      id: `${inputId}:0`,
      inputId,
      userId: user.id,
      seq: 3,
      balances: { USD: "9000" },
    };
    const pipe = stack.redis.pipeline();
    queueOutputWrite(pipe, stack.keys, step, true);
    for (const [error] of (await pipe.exec())!) expect(error).toBeNull();
    const midStep = () => stack.logLines.filter((l) => l.event === "account_read_mid_step" && l.userId === user.id);
    expect((await api.get("/api/v1/account/summary")).body.summary).toMatchObject({ balance: "9000" });
    expect(midStep()).toEqual([expect.objectContaining({ seq: 1, aheadSeq: 3 })]);
    // 4, the rest of that step, refused and recorded lost: nothing to wait for
    await recordLostEvents(stack.redis, stack.keys, [{ userId: user.id, seq: 4 }]);
    expect((await api.get("/api/v1/account/summary")).body.summary).toMatchObject({ balance: "9000" });
    expect(midStep()).toHaveLength(1);
  });

  it("a request that timed out polling: the retry with the same key gets the first answer, acted on once", async () => {
    const { token } = await stack.signIn("upstash-retry@example.com");
    const api = client(stack.app, token);
    const impatient = client(
      createApp({ ...stack.deps, engine: createEngineClient(stack.deps.redis, stack.keys, 300) }),
      token,
    );
    await stack.setQuote("SOL_USDC_PERP", "150.25", "150.3");
    const key = { "idempotency-key": `slow-${crypto.randomUUID()}` };
    const order = { asset: "SOL", side: "buy", quantity: "1" };
    // An engine holding the lease but stuck: the instruction is logged, and the function stops polling in time.
    const slow = await stack.withStuckEngine(() => impatient.post("/api/v1/trade/order", order, key));
    expect([slow.status, slow.body.error?.code]).toEqual([504, "ENGINE_TIMEOUT"]);
    const retried = await api.post("/api/v1/trade/order", order, key);
    expect(retried.status).toBe(201);
    expect((await api.post("/api/v1/trade/order", order, key)).body).toEqual(retried.body);
    const balances = (await api.get("/api/v1/account/balance")).body.balances as Record<string, string>;
    expect(balances.SOL).toBe("1"); // one order, not two
  });
});
