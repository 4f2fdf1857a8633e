import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it, vi } from "vitest";
import type { EngineInput } from "../../contract/messages.ts";
import { keyspace } from "../../contract/names.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { createLogger } from "../../platform/log.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import { MemorySnapshotStore } from "../snapshot/store.ts";
import { catchUp, LogGapError, logTrimmedAfter, runFollower } from "./follower.ts";
import { applyRaw, type RawEntry } from "./log-stream.ts";

const redis = new Redis(TEST_REDIS_URL);
const prefix = `test:${randomUUID()}:`;
const keys = keyspace(prefix);
const log = createLogger("engine-test", { level: "error" });
/** The options every follower here shares: the follower of the leader holding lease "leader:1". */
const LEADER_1 = { redis, keys, log, leaseValue: "leader:1" };

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
});

const account = (userId: string): EngineInput => ({
  type: "user_instruction",
  userId,
  requestId: `r-${userId}`,
  instruction: { kind: "create_account" },
});

/** Appends an input and marks it published, as the leader's publish does. */
async function publish(message: EngineInput): Promise<string> {
  const id = (await redis.xadd(keys.input, "*", ...encodeFields(message))) as string;
  await redis.set(keys.enginePublished, id);
  return id;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(probe: () => boolean, timeoutMs = 5_000): Promise<void> {
  const start = Date.now();
  while (!probe()) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await sleep(10);
  }
}

async function untilAsync(probe: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await sleep(10);
  }
}

describe("the snapshotting follower", () => {
  it("asks for the published cursor only after the leader published again", async () => {
    const state = createState(makeParams());
    const store = new MemorySnapshotStore();
    let publishes = 0;
    const stop = new AbortController();
    const first = await publish(account("alice"));
    const running = runFollower(
      { ...LEADER_1, state, store, everyMs: 3_600_000, pollMs: 10, batchSize: 1, publishes: () => publishes },
      stop.signal,
    );
    try {
      await until(() => state.lastInputId === first);
      // The cursor moves in Redis, but the leader's count does not: a caught-up follower does not look.
      const second = await publish(account("bob"));
      await sleep(300);
      expect(state.lastInputId).toBe(first);
      publishes++;
      await until(() => state.lastInputId === second);
      expect(state.accounts.has("bob")).toBe(true);
      // One publish of several entries, read one batch (of 1) at a time: all of them are applied.
      let third = "";
      for (const user of ["dan", "erin", "frank"]) third = await publish(account(user));
      publishes++;
      await until(() => state.lastInputId === third);
    } finally {
      stop.abort();
      await running;
    }
    // Stopping, it catches up whatever the count says and saves its final snapshot there.
    const last = await publish(account("gus"));
    const stopped = runFollower(
      { ...LEADER_1, state, store, everyMs: 3_600_000, publishes: () => publishes },
      AbortSignal.abort(),
    );
    await stopped;
    expect(state.lastInputId).toBe(last);
    expect((await store.load())?.head.lastInputId).toBe(last);
  });
});

describe("the snapshotting follower's schedule", () => {
  it("takes its next snapshot on time when the wall clock steps back: it is timed on the monotonic clock", async () => {
    const own = keyspace(`${prefix}clock-step:`);
    const store = new MemorySnapshotStore();
    const state = createState(makeParams());
    const stop = new AbortController();
    const realNow = Date.now.bind(Date);
    const id = (await redis.xadd(own.input, "*", ...encodeFields(account("clock")))) as string;
    await redis.set(own.enginePublished, id);
    const running = runFollower({ ...LEADER_1, keys: own, state, store, everyMs: 100, pollMs: 10 }, stop.signal);
    // Its first snapshot is due 100 ms from now; the wall clock then steps back an hour.
    const stepped = vi.spyOn(Date, "now").mockImplementation(() => realNow() - 3_600_000);
    try {
      await untilAsync(async () => (await store.latestHead())?.lastInputId === id);
    } finally {
      stepped.mockRestore();
      stop.abort();
      await running;
    }
  });
});

describe("the snapshotting follower while Postgres is down", () => {
  it("keeps following and trims nothing while saves fail, says so once, and saves again once Postgres is back", async () => {
    const own = keyspace(`${prefix}outage:`);
    const store = new MemorySnapshotStore();
    let down = true;
    const failing = {
      save: (...args: Parameters<MemorySnapshotStore["save"]>) => {
        if (!down) return store.save(...args);
        return Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432"));
      },
    };
    const lines: Record<string, unknown>[] = [];
    const watched = createLogger("engine-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const events = (event: string) => lines.filter((l) => l.event === event);
    const state = createState(makeParams());
    const stop = new AbortController();
    let failedTurns = 0;
    await redis.set(own.engineLease, "leader:1");
    const send = async (user: string) => {
      const id = (await redis.xadd(own.input, "*", ...encodeFields(account(user)))) as string;
      await redis.set(own.enginePublished, id);
      return id;
    };
    const running = runFollower(
      {
        ...LEADER_1,
        keys: own,
        log: watched,
        state,
        store: failing,
        everyMs: 20,
        pollMs: 5,
        onFailed: () => failedTurns++,
      },
      stop.signal,
    );
    try {
      let last = "";
      for (const user of ["a", "b", "c", "d"]) {
        last = await send(user);
        await until(() => state.lastInputId === last);
        await sleep(30);
      }
      await until(() => failedTurns >= 3); // each failed turn is reported (for the metrics)
      // Still following, nothing saved, the log whole: every entry is still needed.
      expect(await redis.xlen(own.input)).toBe(4);
      expect(await store.load()).toBeNull();
      expect(events("snapshot_failed")).toHaveLength(1);
      expect(events("snapshot_failed")[0]).toMatchObject({ level: "error", step: "save" });
      expect(JSON.stringify(events("snapshot_failed")[0]!.error)).toContain("ECONNREFUSED");
      down = false;
      last = await send("e");
      await untilAsync(async () => (await store.load())?.head.lastInputId === last);
      await until(() => events("snapshot_recovered").length === 1);
      expect(events("snapshot_recovered")[0]).toMatchObject({ step: "save" });
      expect(events("snapshot_recovered")[0]!.failures).toBeGreaterThanOrEqual(3);
      // Its next save trims below the one before, as before the outage.
      last = await send("f");
      await untilAsync(async () => (await store.load())?.head.lastInputId === last);
      const [first] = (await redis.xrange(own.input, "-", "+", "COUNT", 1)) as RawEntry[];
      expect(first?.[0]).toBe((await store.load("previous"))?.head.lastInputId);
      expect(events("snapshot_failed")).toHaveLength(1);
    } finally {
      down = false; // its final snapshot is not what this test is about
      stop.abort();
      await running;
    }
  });
});

describe("the snapshotting follower restored past an unusable latest snapshot", () => {
  it("has its first save delete that snapshot, and its later saves keep their own previous", async () => {
    const store = new MemorySnapshotStore();
    const filler = new Uint8Array(10);
    for (const lastInputId of ["1-0", "2-0"]) {
      // Generation 1 the state was restored from, generation 2 the unusable latest.
      const head = { version: 1, shard: 0, lastInputId, stateHash: hashSnapshot(filler), takenAt: "" };
      await store.save(filler, head);
    }
    const generations = async () => [
      (await store.load())?.head.generation,
      (await store.load("previous"))?.head.generation,
    ];
    const state = createState(makeParams());
    const stop = new AbortController();
    let publishes = 0;
    await redis.set(keys.engineLease, "leader:1"); // its second save trims, fenced by the lease
    const running = runFollower(
      {
        ...LEADER_1,
        state,
        store,
        everyMs: 20,
        pollMs: 5,
        publishes: () => publishes,
        pastUnusable: { generation: 2, restoredFrom: 1 },
      },
      stop.signal,
    );
    try {
      const first = await publish(account("hal"));
      publishes++;
      await until(() => state.lastInputId === first);
      await untilAsync(async () => (await store.load())?.head.lastInputId === first);
      expect(await generations()).toEqual([3, 1]); // 2 deleted
      const second = await publish(account("ivy"));
      publishes++;
      await untilAsync(async () => (await store.load())?.head.lastInputId === second);
      expect(await generations()).toEqual([4, 3]); // its own first save stays, as an ordinary save keeps it
    } finally {
      stop.abort();
      await running;
    }
  });
});

describe("catching up after a deleted entry", () => {
  it("applies what follows a cursor whose own entry was deleted (XDEL) while entries before it are kept", async () => {
    const own = keyspace(`${prefix}xdel:`);
    const ids: string[] = [];
    for (const user of ["a", "b", "c"])
      ids.push((await redis.xadd(own.input, "*", ...encodeFields(account(user)))) as string);
    await redis.set(own.enginePublished, ids[2]!);
    const state = createState(makeParams());
    await catchUp({ redis, keys: own, state });
    expect(state.lastInputId).toBe(ids[2]);
    // The state's cursor is the newest entry, as an idle system's snapshot is; an operator deletes that entry.
    await redis.xdel(own.input, ids[2]!);
    const next = (await redis.xadd(own.input, "*", ...encodeFields(account("d")))) as string;
    await redis.set(own.enginePublished, next);
    // logTrimmedAfter (the engine's check before it leads) and catching up agree: nothing after the cursor is gone.
    expect(await logTrimmedAfter(redis, own.input, state.lastInputId)).toBe(false);
    await catchUp({ redis, keys: own, state });
    expect(state.lastInputId).toBe(next);
    expect(state.accounts.has("d")).toBe(true);
    // Trimmed past the cursor, by contrast, both see a possible gap.
    const behind = createState(makeParams());
    for (const entry of await redis.xrange(own.input, ids[0]!, ids[0]!)) applyRaw(behind, entry);
    await redis.xtrim(own.input, "MINID", ids[1]!);
    expect(await logTrimmedAfter(redis, own.input, behind.lastInputId)).toBe(true);
    await expect(catchUp({ redis, keys: own, state: behind })).rejects.toBeInstanceOf(LogGapError);
  });
});

/** An id a millisecond after `id`'s. */
const afterId = (id: string) => `${Number(id.split("-")[0]) + 1}-0`;

describe("a log written anew under its key", () => {
  it("is a gap for a follower whose cursor came from the lost one: it applies nothing of it", async () => {
    const own = keyspace(`${prefix}recreated:`);
    const ids: string[] = [];
    for (const u of ["a", "b", "c", "d"])
      ids.push((await redis.xadd(own.input, "*", ...encodeFields(account(u)))) as string);
    await redis.set(own.enginePublished, ids[1]!);
    const state = createState(makeParams());
    await catchUp({ redis, keys: own, state });
    expect(state.lastInputId).toBe(ids[1]);
    await redis.set(own.enginePublished, ids[3]!); // c and d published
    await redis.del(own.input); // the key lost
    // Its ids start from the clock again: after the lost log's (given here: in the same millisecond they could repeat).
    const next = (await redis.xadd(own.input, afterId(ids[3]!), ...encodeFields(account("e")))) as string;
    await redis.set(own.enginePublished, next);
    await expect(catchUp({ redis, keys: own, state })).rejects.toBeInstanceOf(LogGapError);
    expect(state.lastInputId).toBe(ids[1]);
  });
});

describe("logTrimmedAfter", () => {
  it("answers from the stream's trim history, and fails rather than guess when it cannot read it", async () => {
    const stream = `${prefix}trim-check`;
    expect(await logTrimmedAfter(redis, stream, "0-0")).toBe(false); // no stream yet
    // No stream, and a cursor from a log (a snapshot's): the log it came from is lost, or this is another Redis.
    expect(await logTrimmedAfter(redis, stream, "1700000000000-0")).toBe(true);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await redis.xadd(stream, "*", "n", String(i))) as string);
    expect(await logTrimmedAfter(redis, stream, "0-0")).toBe(false);
    await redis.xtrim(stream, "MINID", ids[2]!); // the first two are gone
    expect(await logTrimmedAfter(redis, stream, ids[2]!)).toBe(false);
    expect(await logTrimmedAfter(redis, stream, ids[0]!)).toBe(true);
    expect(await logTrimmedAfter(redis, stream, "0-0")).toBe(true);

    // The key lost and written anew: a cursor from the old log finds nothing at or before it, nothing ever removed.
    const recreated = `${prefix}trim-check-recreated`;
    const before = (await redis.xadd(recreated, "*", "n", "0")) as string;
    await redis.del(recreated);
    await redis.xadd(recreated, afterId(before), "n", "1");
    expect(await logTrimmedAfter(redis, recreated, before)).toBe(true);
    expect(await logTrimmedAfter(redis, recreated, "0-0")).toBe(false);

    const notAStream = `${prefix}trim-check-string`;
    await redis.set(notAStream, "x");
    await expect(logTrimmedAfter(redis, notAStream, "0-0")).rejects.toThrow(/WRONGTYPE/);
    const closed = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false });
    await expect(logTrimmedAfter(closed, stream, "0-0")).rejects.toThrow();
    closed.disconnect();
  });
});
