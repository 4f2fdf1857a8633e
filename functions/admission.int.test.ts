/**
 * The Idempotency-Key records' per-user cap and TTL (admission.ts), through the API against real Redis with the real
 * engine and worker (testing/api-stack.ts). A small cap and TTL come in through the settings; production keeps
 * IDEMPOTENCY_KEYS_PER_USER and IDEMPOTENCY_TTL_MS.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IDEMPOTENCY_KEYS_PER_USER, IDEMPOTENCY_TTL_MS, settleSignInBudget, spendSignInBudget } from "./admission.ts";
import { createApp } from "./app.ts";
import { client } from "./testing/http.ts";
import { startApiStack, type ApiStack } from "./testing/api-stack.ts";

let stack: ApiStack;
beforeAll(async () => {
  stack = await startApiStack({ settings: { idempotencyKeys: { perUser: 3, ttlMs: IDEMPOTENCY_TTL_MS } } });
  await stack.setQuote("SOL_USDC_PERP", "150", "150");
});
afterAll(() => stack.close());

const hashOf = (key: string) => createHash("sha256").update(key).digest("hex");
/** A close of a trade nobody has: admitted (so its key is recorded), then refused by the engine with a 404. */
const closeMissing = (api: ReturnType<typeof client>, tradeId: string, key: string) =>
  api.post("/api/v1/trade/close", { tradeId }, { "idempotency-key": key });
const buySol = (api: ReturnType<typeof client>, quantity: string, key: string) =>
  api.post("/api/v1/trade/order", { asset: "SOL", side: "buy", quantity }, { "idempotency-key": key });

describe("Idempotency-Key records per user", () => {
  it("keeps production at the engine's per-user horizon", () => {
    expect(IDEMPOTENCY_KEYS_PER_USER).toBe(10_000);
  });

  it("past the cap a user's oldest record goes, and only theirs", async () => {
    const alice = await stack.signIn("idem-alice@example.com");
    const bob = await stack.signIn("idem-bob@example.com");
    const aliceApi = client(stack.app, alice.token);
    const bobApi = client(stack.app, bob.token);
    expect((await closeMissing(bobApi, "T0-800", "b1")).status).toBe(404);
    for (const i of [1, 2, 3, 4]) expect((await buySol(aliceApi, String(i), `k${i}`)).status).toBe(201);

    // Given cap 3: alice's k1 went when k4 came; her three newest remain, oldest first.
    const order = stack.keys.idempotencyOrder(alice.user.id);
    const records = stack.keys.idempotencyRecords(alice.user.id);
    expect(await stack.redis.zrange(order, "0", "-1")).toEqual(["k2", "k3", "k4"].map(hashOf));
    expect((await stack.redis.hkeys(records)).sort()).toEqual(["k2", "k3", "k4"].map(hashOf).sort());
    // Both keys expire a TTL after the last keyed request, so an idle user's records go as a whole.
    for (const key of [order, records]) {
      const ttl = await stack.redis.pttl(key);
      expect(ttl).toBeGreaterThan(IDEMPOTENCY_TTL_MS - 60_000);
      expect(ttl).toBeLessThanOrEqual(IDEMPOTENCY_TTL_MS);
    }

    // k2 is still remembered: another body is a conflict.
    expect((await buySol(aliceApi, "9", "k2")).body.error?.code).toBe("IDEMPOTENCY_CONFLICT");
    // k1 is not: the API lets another body through, and the engine, which still remembers the request, answers as
    // it first did (1 SOL bought, not 9): the API's record only catches a changed body.
    const forgotten = await buySol(aliceApi, "9", "k1");
    expect([forgotten.status, (forgotten.body.order as { quantity: string }).quantity]).toEqual([201, "1"]);
    const balances = (await aliceApi.get("/api/v1/account/balance")).body.balances as Record<string, string>;
    expect(balances.SOL).toBe("10"); // 1 + 2 + 3 + 4
    // k1 is now the newest record, so k2 (the oldest) made room for it.
    expect(await stack.redis.zrange(order, "0", "-1")).toEqual(["k3", "k4", "k1"].map(hashOf));

    // Bob's one record was never in alice's way.
    expect((await closeMissing(bobApi, "T0-999", "b1")).body.error?.code).toBe("IDEMPOTENCY_CONFLICT");
    expect(await stack.redis.zcard(stack.keys.idempotencyOrder(bob.user.id))).toBe(1);
  });

  it("a record older than its TTL counts as absent and is recorded anew", async () => {
    const ttlMs = 3_000;
    const app = createApp({
      ...stack.deps,
      settings: { ...stack.deps.settings, idempotencyKeys: { perUser: 3, ttlMs } },
    });
    const carol = await stack.signIn("idem-carol@example.com");
    const api = client(app, carol.token);
    expect((await closeMissing(api, "T0-700", "e1")).status).toBe(404);
    expect((await closeMissing(api, "T0-701", "e1")).body.error?.code).toBe("IDEMPOTENCY_CONFLICT");
    await sleep(ttlMs + 100);
    expect((await closeMissing(api, "T0-701", "e1")).body.error?.code).toBe("TRADE_NOT_FOUND");
    // Recorded again from now, with the body it came with this time.
    expect((await closeMissing(api, "T0-700", "e1")).body.error?.code).toBe("IDEMPOTENCY_CONFLICT");
    expect(await stack.redis.zcard(stack.keys.idempotencyOrder(carol.user.id))).toBe(1);
  });
});

describe("a key the API has forgotten while the engine remembers it", () => {
  it("reused on another endpoint, the engine's first answer is of another kind: 409 on every endpoint, nothing done", async () => {
    // Cap 1: each new key pushes the one before out of the API's records, while the engine keeps its 10,000.
    const app = createApp({
      ...stack.deps,
      settings: { ...stack.deps.settings, idempotencyKeys: { perUser: 1, ttlMs: IDEMPOTENCY_TTL_MS } },
    });
    const dan = await stack.signIn("idem-dan@example.com");
    const api = client(app, dan.token);
    expect((await buySol(api, "1", "bought")).status).toBe(201);
    const open = { asset: "SOL", type: "long", margin: "100", leverage: 2 };
    expect((await api.post("/api/v1/trade/create", open, { "idempotency-key": "opened" })).status).toBe(201);
    const before = await Promise.all([api.get("/api/v1/account/balance"), api.get("/api/v1/trade/open")]);

    const entry = { asset: "SOL", side: "long", type: "limit", price: "100", margin: "10", leverage: 2 };
    const elsewhere = [
      ["/api/v1/trade/create", open, "bought", "a spot order"],
      ["/api/v1/trade/close", { tradeId: "T0-1", percent: "50" }, "bought", "a spot order"],
      ["/api/v1/trade/modify", { tradeId: "T0-1", stopLoss: null }, "bought", "a spot order"],
      ["/api/v1/trade/orders", entry, "bought", "a spot order"],
      [
        "/api/v1/trade/orders/oco",
        { legs: [entry, { ...entry, type: "stop", price: "200" }] },
        "bought",
        "a spot order",
      ],
      ["/api/v1/trade/orders/cancel", { orderId: "P0-1" }, "bought", "a spot order"],
      ["/api/v1/trade/order", { asset: "SOL", side: "buy", quantity: "1" }, "opened", "opening a trade"],
    ] as const;
    for (const [i, [path, body, key, firstUse]] of elsewhere.entries()) {
      // A request with a new key pushes `key` out of the API's records: the engine alone remembers it now.
      expect((await closeMissing(api, "T0-900", `filler-${i}`)).status).toBe(404);
      const reused = await api.post(path, body, { "idempotency-key": key });
      expect([reused.status, reused.body.error], path).toEqual([
        409,
        {
          code: "IDEMPOTENCY_CONFLICT",
          message: `This Idempotency-Key was already used for another request (${firstUse}); use a new key for each action.`,
        },
      ]);
    }
    const after = await Promise.all([api.get("/api/v1/account/balance"), api.get("/api/v1/trade/open")]);
    expect(after.map((r) => r.body)).toEqual(before.map((r) => r.body));
    expect((await api.get("/api/v1/trade/orders")).body).toEqual({ orders: [] });
  });
});

describe("the deployment's sign-in email budget", () => {
  const rate = { limit: 5, windowMs: 60_000 };
  const key = () => stack.keys.rateLimitKey("sign-in-budget", "deployment");
  const spent = () => stack.redis.hget(key(), "n");

  it("a unit settles once: a resent refund (a retry after a lost reply) gives back nothing more", async () => {
    await stack.redis.del(key());
    const first = await spendSignInBudget(stack.deps.redis, stack.keys, rate);
    await spendSignInBudget(stack.deps.redis, stack.keys, rate);
    await settleSignInBudget(stack.deps.redis, stack.keys, first, false);
    await settleSignInBudget(stack.deps.redis, stack.keys, first, false);
    expect(await spent()).toBe("1");
    await stack.redis.del(key());
  });

  it("a unit of a window that has ended is not given back to the next; none creates a budget without expiry", async () => {
    await stack.redis.del(key());
    const old = await spendSignInBudget(stack.deps.redis, stack.keys, rate);
    await stack.redis.del(key()); // the window ends
    await settleSignInBudget(stack.deps.redis, stack.keys, old, false);
    expect(await stack.redis.exists(key())).toBe(0);
    await spendSignInBudget(stack.deps.redis, stack.keys, rate);
    await settleSignInBudget(stack.deps.redis, stack.keys, old, false);
    expect(await spent()).toBe("1");
    // A refund back to 0 keeps the window's end: it starts with the budget, not with its first unit.
    await stack.redis.del(key());
    const unit = await spendSignInBudget(stack.deps.redis, stack.keys, rate);
    await stack.redis.pexpire(key(), 5_000);
    await settleSignInBudget(stack.deps.redis, stack.keys, unit, false);
    expect(await spent()).toBe("0");
    await spendSignInBudget(stack.deps.redis, stack.keys, rate);
    expect(await stack.redis.pttl(key())).toBeLessThanOrEqual(5_000);
    await stack.redis.del(key());
  });
});
