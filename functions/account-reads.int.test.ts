/**
 * The reads that combine a user's read models, or them and the quotes, never show a state from around an engine
 * step: an engine step (a trade opened, a stop-loss fired by a quote) is made to land between one request's Redis
 * calls, after the first has answered and before the others run, and the answer must be the account as it was just
 * before the step or just after it. On both adapters: over REST every call is its own request, so this interleaving
 * is the one a deployed function meets. Real engine, worker, Redis and Postgres (testing/api-stack.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "./app.ts";
import type { ApiRedis } from "./redis/api-redis.ts";
import { createUpstashApiRedis } from "./redis/upstash-api-redis.ts";
import { client } from "./testing/http.ts";
import { REDIS_URL, startApiStack, type ApiStack } from "./testing/api-stack.ts";
import { startUpstashBridge, type UpstashBridge } from "./testing/upstash-bridge.ts";

/**
 * `redis` with a step that `between` lands inside one request: the first call that reads a key `watched` names
 * (HGETALL of it, or a script given it) runs, the step is carried out once that call has answered, and every such
 * call after it waits for the step to finish before it runs.
 */
function stepBetweenReads(redis: ApiRedis) {
  let armed: (() => Promise<unknown>) | undefined;
  let stepped: Promise<void> | undefined;
  let watched: (key: string) => boolean = () => false;
  const read = async <T>(keys: readonly string[], call: () => Promise<T>): Promise<T> => {
    if (!keys.some(watched)) return call();
    if (stepped !== undefined) {
      await stepped;
      return call();
    }
    const step = armed;
    if (step === undefined) return call();
    armed = undefined;
    let release!: () => void;
    stepped = new Promise((resolve) => (release = resolve));
    try {
      return await call();
    } finally {
      try {
        await step();
      } finally {
        release();
      }
    }
  };
  return {
    redis: {
      ...redis,
      eval: (script, keys, args) => read(keys, () => redis.eval(script, keys, args)),
      hgetall: (key) => read([key], () => redis.hgetall(key)),
    } satisfies ApiRedis,
    /** `request`'s answer, with `step` landed between its first watched read and the next. */
    async between<T>(
      watching: (key: string) => boolean,
      step: () => Promise<unknown>,
      request: () => Promise<T>,
    ): Promise<T> {
      watched = watching;
      armed = step;
      stepped = undefined;
      const answer = await request();
      expect(armed, "the request read a watched key, and the step ran").toBeUndefined();
      return answer;
    },
  };
}

describe.each(["ioredis", "upstash"] as const)("reads around an engine step, on the %s adapter", (adapter) => {
  let bridge: UpstashBridge | undefined;
  let stack: ApiStack;
  let gate: ReturnType<typeof stepBetweenReads>;

  beforeAll(async () => {
    bridge =
      adapter === "upstash" ? await startUpstashBridge({ redisUrl: REDIS_URL, token: "reads-token" }) : undefined;
    stack = await startApiStack(
      bridge === undefined ? {} : { apiRedis: createUpstashApiRedis({ url: bridge.url, token: bridge.token }) },
    );
    gate = stepBetweenReads(stack.deps.redis);
  });
  afterAll(async () => {
    await stack.close();
    await bridge?.close();
  });

  /** A new user, through the stack's app and through one whose Redis lands steps between reads. */
  async function user() {
    const { token } = await stack.signIn(`reads-${crypto.randomUUID()}@example.com`);
    return { api: client(stack.app, token), gated: client(createApp({ ...stack.deps, redis: gate.redis }), token) };
  }

  /** Keys to watch: a user's read models; or those and the quotes, to see which the request reads first. */
  const readModels = (key: string) => /^[^{]*account:\{[^}]+\}:(balances|open-trades|pending-orders)$/.test(key);
  const readModelsOrQuotes = (key: string) => key === stack.keys.quotesKey || readModels(key);

  const ethLong = { asset: "ETH", type: "long", margin: "100", leverage: 10, stopLoss: "1900" };

  it("GET /account/summary: a trade opened between the reads shows with its margin paid, or not at all", async () => {
    await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
    const { api, gated } = await user();
    const before = (await api.get("/api/v1/account/summary")).body;
    let opened: number | undefined;
    // The quotes do not move here: watched, the step would land after them, before the account is read at all.
    const during = await gate.between(
      readModels,
      async () => (opened = (await api.post("/api/v1/trade/create", ethLong)).status),
      () => gated.get("/api/v1/account/summary"),
    );
    expect(opened).toBe(201);
    const after = (await api.get("/api/v1/account/summary")).body;
    expect(after).not.toEqual(before);
    // Torn, the free USD of before with the trade of after: a balance of 10,100 on 10,000.
    expect([before, after]).toContainEqual(during.body);
  });

  /**
   * `path`'s answers for a user with an ETH long open: before its stop-loss fires, with the quote that fires it landing
   * between the request's reads, and after.
   */
  async function aroundStopLoss(path: string) {
    await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
    const { api, gated } = await user();
    expect((await api.post("/api/v1/trade/create", ethLong)).status).toBe(201);
    const before = (await api.get(path)).body;
    const during = await gate.between(
      readModelsOrQuotes,
      () => stack.setQuote("ETH_USDC_PERP", "1850", "1851"),
      () => gated.get(path),
    );
    await stack.settled();
    return { before, during: during.body, after: (await api.get(path)).body };
  }

  it("GET /account/summary: a stop-loss fired between the reads: open at the old quote, or closed", async () => {
    const { before, during, after } = await aroundStopLoss("/api/v1/account/summary");
    expect(after).toMatchObject({ summary: { marginUsed: "0" } }); // the stop closed it
    // Torn, the trade still open at the bid past its stop (PnL −75.4547), or its margin neither locked nor paid back.
    expect([before, after]).toContainEqual(during);
  });

  it("GET /trade/open: a stop-loss fired between the reads: the trade at the old quote, or none", async () => {
    const { before, during, after } = await aroundStopLoss("/api/v1/trade/open");
    expect(after).toEqual({ trades: [] });
    // Torn, the trade open at the bid past its stop.
    expect([before, after]).toContainEqual(during);
  });
});
