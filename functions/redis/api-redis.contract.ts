/**
 * The cases every ApiRedis adapter must pass, on a real Redis of the suite's own (it runs SCRIPT FLUSH, which would
 * empty the shared test Redis's script cache under every other test file): the same calls must give the same
 * replies whichever adapter makes them. Setup and checks go through a plain ioredis connection, never the adapter
 * under test. Keys live under a random prefix; the server, and they with it, end with the suite.
 */
import { createHash, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startScratchRedis } from "../../platform/testing/processes.ts";
import type { ApiRedis } from "./api-redis.ts";

/** An adapter under test, on the Redis at the URL it is given; `close` ends what the adapter needed besides. */
export interface ContractSubject {
  readonly redis: ApiRedis;
  close?(): Promise<void>;
}

/** Values that trip up encodings: JSON look-alikes, base64 look-alikes, Redis status words, whitespace, control and non-ASCII characters. */
const AWKWARD = [
  "héllo wörld",
  "日本語 🚀",
  "  spaced  out  ",
  'tab\tnew\nline\r"quoted" back\\slash',
  "nul\u0000byte",
  "",
  "OK",
  "PONG",
  "null",
  "42",
  "[1,2]",
  '{"a":1}',
  "dGVzdA==",
];

export function describeApiRedisContract(name: string, factory: (redisUrl: string) => Promise<ContractSubject>): void {
  describe(`ApiRedis contract: ${name}`, () => {
    let scratch: Awaited<ReturnType<typeof startScratchRedis>>;
    let subject: ContractSubject;
    let redis: ApiRedis;
    let plain: Redis;
    let prefix: string;
    const key = (suffix: string) => `${prefix}${suffix}`;

    beforeAll(async () => {
      prefix = `test:api-redis:${randomUUID()}:`;
      scratch = await startScratchRedis("api-redis-contract");
      plain = new Redis(scratch.url);
      subject = await factory(scratch.url);
      redis = subject.redis;
    });

    afterAll(async () => {
      await redis.close();
      await subject.close?.();
      plain.disconnect();
      await scratch.stop();
    });

    describe("eval", () => {
      it("returns integers, strings, nil, arrays and nested arrays as Redis sends them", async () => {
        expect(await redis.eval("return 42", [], [])).toBe(42);
        expect(await redis.eval("return 'hello'", [], [])).toBe("hello");
        expect(await redis.eval("return nil", [], [])).toBeNull();
        expect(await redis.eval("return false", [], [])).toBeNull();
        expect(await redis.eval("return {1, 'two', 3}", [], [])).toEqual([1, "two", 3]);
        expect(await redis.eval("return {1, {'a', {2, 'b'}}, 'c', {}}", [], [])).toEqual([1, ["a", [2, "b"]], "c", []]);
      });

      it("returns a status reply as its text: the whole reply, or inside an array as the script's .ok", async () => {
        // A status reply as such inside an array is not portable (ApiRedis.eval): api-redis.int.test.ts shows why.
        expect(await redis.eval("return redis.call('SET', KEYS[1], 'x')", [key("status")], [])).toBe("OK");
        expect(await redis.eval("return redis.call('PING')", [], [])).toBe("PONG");
        const script =
          "return {redis.call('SET', KEYS[1], 'y').ok, redis.call('PING').ok, {redis.call('SET', KEYS[1], 'z').ok}}";
        expect(await redis.eval(script, [key("status")], [])).toEqual(["OK", "PONG", ["OK"]]);
        expect(await plain.get(key("status"))).toBe("z");
      });

      it("rejects on a script error", async () => {
        await expect(redis.eval("return redis.call('NO_SUCH_COMMAND')", [], [])).rejects.toThrow();
        await expect(redis.eval("error('boom')", [], [])).rejects.toThrow(/boom/);
        await expect(redis.eval("return redis.error_reply('MY_ERR custom')", [], [])).rejects.toThrow(/MY_ERR custom/);
      });

      it("passes keys and args", async () => {
        const script = "redis.call('SET', KEYS[1], ARGV[1]) return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}";
        expect(await redis.eval(script, [key("k1"), key("k2")], ["v1", "7"])).toEqual([
          key("k1"),
          key("k2"),
          "v1",
          "7",
          2,
          2,
        ]);
        expect(await plain.get(key("k1"))).toBe("v1");
      });

      it("runs a script by its sha once loaded, and again after SCRIPT FLUSH", async () => {
        // A script text new to the server, so the first call meets NOSCRIPT and falls back to EVAL. MONITOR shows
        // what reached Redis: the sha alone while the script is loaded, the text only after a NOSCRIPT.
        const script = `return {ARGV[1], '${prefix}'}`;
        const sha = createHash("sha1").update(script).digest("hex");
        const seen: string[] = [];
        // Only on this suite's own Redis, where nothing else sends while MONITOR starts: ioredis fails one whose first
        // monitor line comes in the same read as its OK ("Command queue state error", redis/ioredis#1981).
        const monitor = await plain.monitor();
        monitor.on("monitor", (_time: string, args: string[]) => {
          if (args.includes(sha) || args.includes(script)) seen.push(String(args[0]).toLowerCase());
        });
        try {
          expect(await redis.eval(script, [], ["a"])).toEqual(["a", prefix]);
          expect(await redis.eval(script, [], ["b"])).toEqual(["b", prefix]);
          await plain.script("FLUSH");
          expect(await redis.eval(script, [], ["c"])).toEqual(["c", prefix]);
          await until(() => seen.length >= 5);
          expect(seen).toEqual(["evalsha", "eval", "evalsha", "evalsha", "eval"]);
        } finally {
          monitor.disconnect();
        }
      });
    });

    describe("waitFirst", () => {
      it("answers the first element of a list filled before", async () => {
        await plain.rpush(key("q:before"), "first", "second");
        expect(await redis.waitFirst(key("q:before"), 1_000)).toBe("first");
      });

      it("answers an element pushed while it waits", async () => {
        const answered = redis.waitFirst(key("q:during"), 5_000);
        await sleep(50);
        await plain.rpush(key("q:during"), "late");
        expect(await answered).toBe("late");
      });

      it("answers null once the timeout has passed", async () => {
        const started = performance.now();
        expect(await redis.waitFirst(key("q:empty"), 300)).toBeNull();
        expect(performance.now() - started).toBeGreaterThanOrEqual(250);
      });

      it("refuses a timeout that is not a positive number of milliseconds", async () => {
        for (const timeoutMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
          await expect(redis.waitFirst(key("q:bad"), timeoutMs)).rejects.toThrow(/timeoutMs/);
      });

      it("serves several waiters on different keys at once, and other calls meanwhile", async () => {
        // Served in the reverse of the order they started, each while the others still wait: waiters queued behind
        // one another (one shared blocking connection) would time out instead.
        const queues = [0, 1, 2, 3, 4, 5].map((i) => key(`q:many:${i}`));
        const waiters = queues.map((queue) => redis.waitFirst(queue, 5_000));
        void Promise.allSettled(waiters); // a failed check below must not leave the rest unhandled
        await sleep(50);
        await redis.ping();
        expect(await redis.get(key("q:many:other"))).toBeNull();
        for (const [i, queue] of [...queues.entries()].reverse()) {
          await plain.rpush(queue, `item-${i}`);
          expect(await waiters[i]).toBe(`item-${i}`);
        }
      });
    });

    it("hgetall: an empty object for a missing hash, all fields for a filled one", async () => {
      expect(await redis.hgetall(key("h:missing"))).toEqual({});
      await plain.hset(key("h:filled"), { a: "1", "b c": "é", n: "42" });
      expect(await redis.hgetall(key("h:filled"))).toEqual({ a: "1", "b c": "é", n: "42" });
    });

    it("get/set: stores with an expiry in milliseconds, null for a missing key", async () => {
      expect(await redis.get(key("s:missing"))).toBeNull();
      await redis.set(key("s:ttl"), "v", 10_000);
      expect(await redis.get(key("s:ttl"))).toBe("v");
      const pttl = await plain.pttl(key("s:ttl"));
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(10_000);
    });

    it("lrange: a range of a list, empty for a missing key", async () => {
      await plain.rpush(key("l"), "a", "b", "c");
      expect(await redis.lrange(key("l"), 0, -1)).toEqual(["a", "b", "c"]);
      expect(await redis.lrange(key("l"), 1, 1)).toEqual(["b"]);
      expect(await redis.lrange(key("l:missing"), 0, -1)).toEqual([]);
    });

    it("ping resolves while Redis answers", async () => {
      await expect(redis.ping()).resolves.toBeUndefined();
    });

    it("round-trips awkward values unchanged through every call", async () => {
      for (const [i, value] of AWKWARD.entries()) {
        await redis.set(key(`awk:${i}`), value, 60_000);
        expect(await redis.get(key(`awk:${i}`))).toBe(value);
        expect(await redis.eval("return {ARGV[1], {ARGV[1]}}", [], [value])).toEqual([value, [value]]);
        await plain.rpush(key(`awk:l:${i}`), value, value);
        expect(await redis.lrange(key(`awk:l:${i}`), 0, 0)).toEqual([value]);
        expect(await redis.waitFirst(key(`awk:l:${i}`), 1_000)).toBe(value);
      }
      await plain.hset(key("awk:h"), Object.fromEntries(AWKWARD.map((value) => [value, value])));
      expect(await redis.hgetall(key("awk:h"))).toEqual(Object.fromEntries(AWKWARD.map((value) => [value, value])));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!done() && Date.now() - started < timeoutMs) await sleep(10);
}
