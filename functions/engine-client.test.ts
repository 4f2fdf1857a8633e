// How long a function waits for the engine's answer: ENGINE_TIMEOUT_MS, cut to what the caller has left; and which
// failures leave the instruction possibly in the log (504, never the 503 that invites a retry without the key).
import { errors as upstash } from "@upstash/redis";
import { ReplyError as UntypedReplyError } from "ioredis";
import { describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { createLogger } from "../platform/log.ts";
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

/** ioredis's class for Redis's error replies (its type declarations give it no constructor type). */
const ReplyError = UntypedReplyError as new (message: string) => Error;

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

/** An ApiRedis whose SEND and wait do what they are given; the log lines written. */
function failingRedis(calls: { eval?: () => Promise<unknown>; waitFirst?: () => Promise<string | null> }) {
  const redis = {
    eval: calls.eval ?? (() => Promise.resolve("1-0")),
    waitFirst: calls.waitFirst ?? (() => Promise.resolve(REFUSAL)),
  } as unknown as ApiRedis;
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("test", { level: "debug", sink: (line) => lines.push(JSON.parse(line) as never) });
  return { engine: createEngineClient(redis, keyspace("t:"), 5_000, log), lines };
}

const timeout = () => new DOMException("The operation was aborted due to timeout", "TimeoutError");
const fetchFailed = () =>
  new TypeError("fetch failed", {
    cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
  });

describe("createEngineClient: a failure once the instruction may be in the log", () => {
  it("any failure of the wait for the answer is 504 ENGINE_TIMEOUT, logged with its cause", async () => {
    for (const failure of [timeout(), fetchFailed(), new upstash.UpstashJSONParseError("<html>502</html>")]) {
      const { engine, lines } = failingRedis({ waitFirst: () => Promise.reject(failure) });
      await expect(engine.send("u1", "r1", instruction)).rejects.toMatchObject({ code: "ENGINE_TIMEOUT", status: 504 });
      expect(lines.map((l) => [l.event, l.requestId, l.step])).toEqual([["engine_outcome_unknown", "r1", "wait"]]);
      expect(String(lines[0]!.error)).toContain(failure.message);
    }
  });

  it("the SEND's call failing on the way there or back (it may have run): 504 ENGINE_TIMEOUT", async () => {
    const failures: Error[] = [
      timeout(),
      fetchFailed(),
      new upstash.UpstashJSONParseError("<html>502 Bad Gateway</html>"),
      new upstash.UpstashError('undefined, command was: ["evalsha","ab12"]'),
      new Error("Command timed out"),
      new Error("Connection is closed."),
    ];
    for (const failure of failures) {
      const { engine, lines } = failingRedis({ eval: () => Promise.reject(failure) });
      const sent = engine.send("u1", "r1", instruction);
      await expect(sent, failure.message).rejects.toMatchObject({ code: "ENGINE_TIMEOUT" });
      expect(lines.map((l) => [l.event, l.step])).toEqual([["engine_outcome_unknown", "send"]]);
    }
  });

  it("the SEND refused by Redis or Upstash itself (nothing written): that error, as it is", async () => {
    const failures: Error[] = [
      new upstash.UpstashError('ERR max requests limit exceeded, command was: ["evalsha","ab12"]'),
      new upstash.UpstashError('Unauthorized, command was: ["evalsha","ab12"]'),
      new upstash.UpstashError('ERR Error running script, command was: ["evalsha","ab12"]'),
      new ReplyError("ERR Error running script (call to f_ab12): @user_script:3: WRONGTYPE"),
      new Error("a bug"),
    ];
    for (const failure of failures) {
      const { engine, lines } = failingRedis({ eval: () => Promise.reject(failure) });
      await expect(engine.send("u1", "r1", instruction), failure.message).rejects.toBe(failure);
      expect(lines).toEqual([]);
    }
  });
});
