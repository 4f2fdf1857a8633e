// The log prefetch: a real worker thread reading a real Redis, handing decoded batches to this thread.
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineInput } from "../../contract/messages.ts";
import { keyspace, type Keyspace } from "../../contract/names.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { createLogger } from "../../platform/log.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { stateHash } from "../snapshot/hash.ts";
import { commandsArbitrary, toLog } from "../testing/random-log.ts";
import { runLeader } from "./leader.ts";
import { EngineLease } from "./lease.ts";
import { startLogPrefetch, type LogPrefetch } from "./log-prefetch.ts";
import { decodeEntry, type DecodedEntry } from "./log-stream.ts";
import { CONTROL_WORDS, DONE, LOADING, STATE } from "./snapshot-loader.ts";

const log = createLogger("engine-test", { level: "error" });
let redis: Redis;
const prefixes: string[] = [];
const prefetches: LogPrefetch[] = [];

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  await Promise.all(prefetches.map((p) => p.close()));
  for (const prefix of prefixes) await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
});

function freshKeys(): Keyspace {
  const prefix = `test:${randomUUID()}:`;
  prefixes.push(prefix);
  return keyspace(prefix);
}

function prefetch(keys: Keyspace, options: { batch?: number; window?: number } = {}): LogPrefetch {
  const p = startLogPrefetch(TEST_REDIS_URL, keys.input, options);
  prefetches.push(p);
  return p;
}

const create = (i: number): EngineInput => ({
  type: "user_instruction",
  userId: `u${i}`,
  requestId: "r1",
  instruction: { kind: "create_account" },
});

async function fill(keys: Keyspace, from: number, to: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i < to; i++) ids.push((await redis.xadd(keys.input, "*", ...encodeFields(create(i))))!);
  return ids;
}

/** Takes batches the way the leader does, each after the last id taken; returns them once there is no more. */
async function takeAll(p: LogPrefetch, after: string): Promise<DecodedEntry[][]> {
  const batches: DecodedEntry[][] = [];
  for (;;) {
    const batch = await p.next(after);
    if (batch === undefined) return batches;
    batches.push(batch);
    after = batch[batch.length - 1]!.id;
  }
}

describe("log prefetch thread on real Redis", () => {
  it("hands over every entry after the cursor, decoded as this thread would, in batches that chain", async () => {
    const keys = freshKeys();
    const [first] = await fill(keys, 0, 3);
    // Malformed entries: a body naming its sender (answered) and one that names nobody.
    await redis.xadd(
      keys.input,
      "*",
      "type",
      "user_instruction",
      "body",
      JSON.stringify({ type: "user_instruction", userId: "u1", requestId: "bad-1", instruction: { kind: "teleport" } }),
    );
    await redis.xadd(keys.input, "*", "type", "price_update", "body", "{not json");
    await fill(keys, 3, 25);
    const p = prefetch(keys, { batch: 4 });
    p.start(first!, undefined);
    const batches = await takeAll(p, first!);

    const expected = ((await redis.xrange(keys.input, `(${first!}`, "+")) as [string, string[]][]).map(decodeEntry);
    expect(expected).toHaveLength(26);
    expect(batches.flat()).toEqual(expected);
    expect(batches.map((b) => b.length)).toEqual([4, 4, 4, 4, 4, 4, 2]);
    expect(expected[2]).toMatchObject({
      reason: expect.stringContaining("instruction") as unknown,
      sender: { userId: "u1", requestId: "bad-1" },
    });
    expect(expected[3]).toMatchObject({ reason: "body is not valid JSON", sender: undefined });
    expect(p.ended).toMatchObject({ entries: 26 });
    expect(p.ended?.error).toBeUndefined();
    expect(await p.next(expected[25]!.id)).toBeUndefined();
  });

  it("reads at most `window` batches ahead of the taker, and goes on as they are taken", async () => {
    const keys = freshKeys();
    await fill(keys, 0, 45);
    const p = prefetch(keys, { batch: 10, window: 2 });
    p.start("0-0", undefined);
    // Taking the first batch (the thread is reading now) lets it read one more: 30 of the 45, then it waits.
    const first = await p.next("0-0");
    expect(first).toHaveLength(10);
    await new Promise((r) => setTimeout(r, 300));
    // Added while it waits: had it read on, it would have found the end of the log at entry 45 and stopped there.
    await fill(keys, 45, 75);
    const rest = await takeAll(p, first![9]!.id);
    const users = [...first!, ...rest.flat()].map((e) =>
      e.message?.type === "user_instruction" ? e.message.userId : "?",
    );
    expect(users).toEqual(Array.from({ length: 75 }, (_, i) => `u${i}`));
    expect(p.ended).toMatchObject({ entries: 75 });
  });

  it("waits for the snapshot load to end before it reads", async () => {
    const keys = freshKeys();
    await fill(keys, 0, 3);
    const control = new SharedArrayBuffer(CONTROL_WORDS * 4);
    const words = new Int32Array(control);
    Atomics.store(words, STATE, LOADING);
    const p = prefetch(keys);
    p.start("0-0", control);
    // Nothing while the load "runs" (a taker that gives up is not an end: the prefetch stays usable)...
    expect(await p.next("0-0", AbortSignal.timeout(1500))).toBeUndefined();
    expect(p.ended).toBeUndefined();
    // ...and the log once it is over.
    Atomics.store(words, STATE, DONE);
    const batches = await takeAll(p, "0-0");
    expect(batches.flat()).toHaveLength(3);
  });

  it("gives nothing to a taker at another cursor, and nothing after", async () => {
    const keys = freshKeys();
    const ids = await fill(keys, 0, 10);
    const p = prefetch(keys, { batch: 3 });
    p.start(ids[0]!, undefined);
    expect(await p.next(ids[1]!)).toBeUndefined();
    expect(p.ended?.error).toContain(`prefetched after ${ids[0]!}, needed after ${ids[1]!}`);
    expect(await p.next(ids[0]!)).toBeUndefined();
    await p.close(); // already closing: the thread ends
  });

  it("gives nothing when never started, and stops waiting when the taker's signal aborts", async () => {
    const keys = freshKeys();
    const idle = prefetch(keys);
    expect(await idle.next("0-0")).toBeUndefined();
    expect(idle.ended?.error).toBe("never started");

    const gated = prefetch(keys);
    const control = new SharedArrayBuffer(CONTROL_WORDS * 4); // stays LOADING: nothing ever comes
    gated.start("0-0", control);
    const stop = new AbortController();
    const waiting = gated.next("0-0", stop.signal);
    setTimeout(() => stop.abort(), 50);
    expect(await waiting).toBeUndefined();
    await gated.close();
  });

  it("a leader replaying through the prefetch reaches the same state and outputs as one reading the log itself", async () => {
    const keys = freshKeys();
    const [commands] = fc.sample(commandsArbitrary(400), { numRuns: 1, seed: 42 });
    const entries = toLog(commands!);
    for (const entry of entries) await redis.xadd(keys.input, "*", ...encodeFields(entry.message));
    await redis.xadd(
      keys.input,
      "*",
      "type",
      "user_instruction",
      "body",
      JSON.stringify({ type: "user_instruction", userId: "u1", requestId: "bad-1", instruction: { kind: "teleport" } }),
    );
    const lease = new EngineLease(redis, keys, "leader", 5000, log);
    expect(await lease.tryAcquire()).toBe(true);

    const replay = async (prefetched?: LogPrefetch) => {
      await redis.del(keys.output, keys.enginePublished);
      const state = createState(makeParams());
      const reader = new Redis(TEST_REDIS_URL);
      const stop = new AbortController();
      try {
        await runLeader(
          {
            reader,
            writer: redis,
            keys,
            log,
            lease,
            state,
            blockMs: 20,
            ...(prefetched ? { prefetched } : {}),
            onLive: () => stop.abort(),
          },
          stop.signal,
        );
      } finally {
        reader.disconnect();
      }
      const outputs = (await redis.xrange(keys.output, "-", "+")) as [string, string[]][];
      return { hash: stateHash(state), cursor: state.lastInputId, outputs: outputs.map(([, fields]) => fields) };
    };
    const direct = await replay();
    const p = prefetch(keys, { batch: 7, window: 3 });
    p.start("0-0", undefined);
    const through = await replay(p);
    expect(p.ended?.entries).toBe(entries.length + 1);
    expect(direct.outputs.length).toBeGreaterThan(entries.length / 2);
    expect(through).toEqual(direct);
  });
});
