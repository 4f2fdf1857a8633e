// How long a function waits for the engine's answer: ENGINE_TIMEOUT_MS, cut to what the caller has left.
import { describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { createEngineClient } from "./engine-client.ts";
import { ApiError } from "./errors.ts";
import { REDIS_CALL_TIMEOUT_MS, type ApiRedis } from "./redis/api-redis.ts";

const REFUSAL = JSON.stringify({ ok: false, error: { code: "TRADE_NOT_FOUND", message: "No open trade T0-1." } });

/** An ApiRedis whose engine holds the lease and answers at once; the waits asked for, in ms. */
function answeringRedis() {
  const waits: number[] = [];
  const redis = {
    eval: () => Promise.resolve("1-0"),
    waitFirst: (_key: string, timeoutMs: number) => {
      waits.push(timeoutMs);
      return Promise.resolve(REFUSAL);
    },
  } as unknown as ApiRedis;
  return { redis, waits };
}

const instruction = { kind: "close_trade", tradeId: "T0-1" } as const;

describe("createEngineClient", () => {
  it("waits ENGINE_TIMEOUT_MS when the caller has no deadline, or time enough", async () => {
    const { redis, waits } = answeringRedis();
    const engine = createEngineClient(redis, keyspace("t:"), 5_000);
    expect((await engine.send("u1", "r1", instruction)).ok).toBe(false);
    await engine.send("u1", "r2", instruction, () => 60_000);
    expect(waits).toEqual([5_000, 5_000]);
  });

  it("cuts the wait to the caller's time left, less the bound on its last read", async () => {
    const { redis, waits } = answeringRedis();
    const engine = createEngineClient(redis, keyspace("t:"), 5_000);
    await engine.send("u1", "r1", instruction, () => REDIS_CALL_TIMEOUT_MS + 1_500);
    expect(waits).toEqual([1_500]);
  });

  it("with no time left to wait: 504 ENGINE_TIMEOUT at once, as after a timeout", async () => {
    const { redis, waits } = answeringRedis();
    const engine = createEngineClient(redis, keyspace("t:"), 5_000);
    const refused = engine.send("u1", "r1", instruction, () => REDIS_CALL_TIMEOUT_MS);
    await expect(refused).rejects.toBeInstanceOf(ApiError);
    await expect(refused).rejects.toMatchObject({ code: "ENGINE_TIMEOUT" });
    expect(waits).toEqual([]);
  });
});
