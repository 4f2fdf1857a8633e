/**
 * Over Upstash's REST API, a trade's wait for the engine is tens of HTTP requests, and the SEND's reply can be lost
 * after Upstash ran it. Once the instruction may be in the log, a call that fails is 504 ENGINE_TIMEOUT ("retry with
 * the same Idempotency-Key"), never 503 UNAVAILABLE ("retry"): the engine carries the order out all the same, and a
 * retry with the key gets its answer, acted on once. The whole app on the Upstash adapter, with the real engine and
 * worker, through the local Upstash peer.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { freePort } from "../../platform/testing/processes.ts";
import type { ApiRedis } from "./api-redis.ts";
import { createUpstashApiRedis } from "./upstash-api-redis.ts";
import { client } from "../testing/http.ts";
import { REDIS_URL, startApiStack, type ApiStack } from "../testing/api-stack.ts";
import { startUpstashBridge, type UpstashBridge } from "../testing/upstash-bridge.ts";

let stack: ApiStack;
let bridge: UpstashBridge;
let slowBridge: UpstashBridge;
let pollsUnreachable = false;
let sendSlow = false;

beforeAll(async () => {
  bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: "t" });
  const upstash = createUpstashApiRedis({ url: bridge.url, token: bridge.token });
  // The same client with its polls sent where nothing answers: every poll fails (fetch failed, after its retry).
  const unreachable = createUpstashApiRedis({ url: `http://127.0.0.1:${await freePort()}`, token: "t" });
  // A peer whose answers take 3 s, half before the command runs and half after: a SEND through it runs at 1.5 s,
  // and the client's 2 s bound (REDIS_CALL_TIMEOUT_MS) ends the call before its reply comes.
  slowBridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: "t", delayMs: 3_000 });
  const slow = createUpstashApiRedis({ url: slowBridge.url, token: slowBridge.token });
  const apiRedis: ApiRedis = {
    ...upstash,
    eval: (script, keys, args) =>
      sendSlow && script.includes("XADD") ? slow.eval(script, keys, args) : upstash.eval(script, keys, args),
    waitFirst: (key, ms) => (pollsUnreachable ? unreachable.waitFirst(key, ms) : upstash.waitFirst(key, ms)),
  };
  stack = await startApiStack({ apiRedis, engineTimeoutMs: 1_000 });
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
});
afterAll(async () => {
  await stack?.close();
  await bridge?.close();
  await slowBridge?.close();
});

/** The user's open trades once there is one (the engine applies the instruction after the 504), or none in 6 s. */
async function openTrades(api: ReturnType<typeof client>): Promise<Record<string, unknown>[]> {
  let open: Record<string, unknown>[] = [];
  for (let i = 0; i < 300 && open.length === 0; i++) {
    open = (await api.get("/api/v1/trade/open")).body.trades as Record<string, unknown>[];
    if (open.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return open;
}

it("every poll fails after the XADD: 504 ENGINE_TIMEOUT, and the retry with the key gets the trade, opened once", async () => {
  const alice = client(stack.app, (await stack.signIn("lost-polls@example.com")).token);
  const order = { asset: "ETH", type: "long", margin: "100", leverage: 10 };
  const key = { "idempotency-key": `lost-polls-${crypto.randomUUID()}` };

  pollsUnreachable = true;
  const first = await alice.post("/api/v1/trade/create", order, key).finally(() => (pollsUnreachable = false));
  expect([first.status, first.body.error?.code]).toEqual([504, "ENGINE_TIMEOUT"]);
  expect(stack.logLines.filter((l) => l.event === "engine_outcome_unknown").map((l) => l.step)).toContain("wait");

  const opened = await openTrades(alice); // the engine applied it all the same
  expect(opened).toHaveLength(1);
  const retried = await alice.post("/api/v1/trade/create", order, key);
  expect(retried.status).toBe(201);
  expect((retried.body.trade as { id: string }).id).toBe(opened[0]!.id);
  expect((await alice.get("/api/v1/trade/open")).body.trades).toHaveLength(1);
});

it("a SEND whose reply comes after the call's bound: 504 ENGINE_TIMEOUT, and the retry with the key acts once", async () => {
  const bob = client(stack.app, (await stack.signIn("slow-send@example.com")).token);
  const order = { asset: "ETH", type: "short", margin: "50", leverage: 5 };
  const key = { "idempotency-key": `slow-send-${crypto.randomUUID()}` };

  sendSlow = true;
  const first = await bob.post("/api/v1/trade/create", order, key).finally(() => (sendSlow = false));
  expect([first.status, first.body.error?.code]).toEqual([504, "ENGINE_TIMEOUT"]);
  expect(stack.logLines.filter((l) => l.event === "engine_outcome_unknown").map((l) => l.step)).toContain("send");

  const opened = await openTrades(bob);
  expect(opened).toHaveLength(1);
  const retried = await bob.post("/api/v1/trade/create", order, key);
  expect(retried.status).toBe(201);
  expect((retried.body.trade as { id: string }).id).toBe(opened[0]!.id);
  expect((await bob.get("/api/v1/trade/open")).body.trades).toHaveLength(1);
});
