import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { EngineInput, EngineOutput, Instruction } from "../../contract/messages.ts";
import { keyspace, type Keyspace } from "../../contract/names.ts";
import { decodeOutputFields, encodeFields } from "../../contract/stream-fields.ts";
import { Registry } from "prom-client";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import { parseSamples, sample } from "../../platform/testing/metrics.ts";
import { engineMetrics, type LeaderMetrics } from "../metrics.ts";
import { makeParams } from "../core/params.ts";
import { createState, type EngineState } from "../core/state.ts";
import { lagMs, runLeader, type LeaderOptions } from "./leader.ts";
import type { LogPrefetch } from "./log-prefetch.ts";
import { EngineLease } from "./lease.ts";
import { applyRaw, type RawEntry } from "./log-stream.ts";
import { runStandby } from "./standby.ts";
import { catchUp, LogGapError } from "./follower.ts";
import { stateHash } from "../snapshot/hash.ts";
import { FencedError, PUBLISH_MAX_BYTES, publishOutputs } from "./publisher.ts";
import { recordPublishCalls } from "../testing/publish-calls.ts";
import { startRedisProxy } from "../../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";

const REDIS_URL = TEST_REDIS_URL;
const log = createLogger("engine-test", { level: "error" });
let redis: Redis;
let reader: Redis;
const prefixes: string[] = [];

beforeAll(() => {
  redis = new Redis(REDIS_URL);
  reader = new Redis(REDIS_URL);
});

afterAll(async () => {
  for (const prefix of prefixes) {
    await deleteKeysWithPrefix(redis, prefix);
  }
  redis.disconnect();
  reader.disconnect();
});

function freshKeys(): Keyspace {
  const prefix = `test:${randomUUID()}:`;
  prefixes.push(prefix);
  return keyspace(prefix);
}
/**
 * A leader holding a lease of `ttlMs` on `keys`, reading through `reader` with blocking reads of `blockMs`, its
 * warnings kept in `logged`; `isLive` resolves once it has replayed.
 */
async function leadWatched(
  keys: Keyspace,
  reader: Redis,
  ttlMs: number,
  blockMs: number,
  more: Partial<LeaderOptions> = {},
) {
  const lease = new EngineLease(redis, keys, "a", ttlMs, log);
  const logged: string[] = [];
  const watched = createLogger("engine-test", { level: "info", sink: (line) => logged.push(line) });
  expect(await lease.tryAcquire()).toBe(true);
  let live!: () => void;
  let wentLive = false;
  const isLive = new Promise<void>((resolve) => (live = resolve));
  const stop = new AbortController();
  const state = createState(makeParams());
  const onLive = () => {
    wentLive = true;
    live();
  };
  const running = runLeader(
    { reader, writer: redis, keys, log: watched, lease, state, blockMs, onLive, ...more },
    stop.signal,
  );
  return { lease, logged, stop, running, isLive, state, wentLive: () => wentLive };
}

/** A client of the test Redis through a proxy whose bytes stop both ways once `freeze()` is called. */
async function freezingProxy() {
  const proxy = await startRedisProxy(REDIS_URL);
  const client = new Redis(proxy.port, "127.0.0.1", { maxRetriesPerRequest: null });
  return {
    client,
    freeze: () => proxy.freeze(),
    close: async () => {
      client.disconnect();
      await proxy.close();
    },
  };
}

async function send(keys: Keyspace, message: EngineInput): Promise<string> {
  return (await redis.xadd(keys.input, "*", ...encodeFields(message))) as string;
}

async function outputs(keys: Keyspace): Promise<EngineOutput[]> {
  const entries = (await redis.xrange(keys.output, "-", "+")) as [string, string[]][];
  return entries.map(([, fields]) => {
    const decoded = decodeOutputFields(fields);
    if (!decoded.ok) throw new Error(decoded.reason);
    return decoded.message;
  });
}

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves with "still running" after `ms`: raced against a leader that should have ended by then. */
const stillRunningAfter = (ms: number) => new Promise<string>((r) => setTimeout(() => r("still running"), ms));

const instruction = (userId: string, requestId: string, body: Instruction): EngineInput => ({
  type: "user_instruction",
  userId,
  requestId,
  instruction: body,
});

/** An ETH quote at `bid` (= ask), stamped now: the exchange's clock, by which quotes are judged fresh. */
const eth = (bid: string): EngineInput => ({
  type: "price_update",
  market: "ETH_USDC_PERP",
  bid,
  ask: bid,
  exchangeTimeUs: `${Date.now()}000`,
  source: "sim",
});

/** Metrics that record only each slice's entry count (LeaderMetrics.batchApplied). */
function sliceRecorder(): { slices: number[]; metrics: LeaderMetrics } {
  const slices: number[] = [];
  const metrics = {
    batchApplied: (n: number) => void slices.push(n),
    openTrades() {},
    lag() {},
    replayed() {},
    ignoredPriceUpdates() {},
  };
  return { slices, metrics };
}

describe("engine leader on real Redis", () => {
  it("replays what is in the log, follows it live, and answers every instruction on engine:output", async () => {
    const keys = freshKeys();
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    await send(keys, eth("2000"));
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const state = createState(makeParams());
    const stop = new AbortController();
    const running = runLeader({ reader, writer: redis, keys, log, lease, state, blockMs: 50 }, stop.signal);

    const openId = await send(
      keys,
      instruction("alice", "r2", { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 }),
    );
    await send(keys, {
      type: "user_instruction",
      userId: "alice",
      requestId: "r3",
      instruction: { kind: "teleport" },
    } as unknown as EngineInput);
    const responses = await until(async () => {
      const rs = (await outputs(keys)).filter((o) => o.type === "order_response");
      return rs.length === 3 ? rs : undefined;
    });
    stop.abort();
    expect(await running).toBe("stopped");

    expect(responses.map((r) => [r.requestId, r.answer.ok])).toEqual([
      ["r1", true],
      ["r2", true],
      ["r3", false],
    ]);
    const open = responses[1]!;
    expect(open.id).toMatch(new RegExp(`^${openId}:\\d+$`));
    expect(open.answer.ok && open.answer.result.kind === "open_trade" && open.answer.result.trade.quantity).toBe("0.5");
    expect(!responses[2]!.answer.ok && responses[2]!.answer.error.code).toBe("INVALID_INSTRUCTION");
    expect(await redis.get(keys.enginePublished)).toBe(state.lastInputId);
    expect(state.accounts.get("alice")?.openTrades.size).toBe(1);
    // The open's step as entries: its trade_opened says the step has more for alice (the margin paid), and only it
    const openStep = ((await redis.xrange(keys.output, "-", "+")) as [string, string[]][])
      .map(([, fields]) => fields)
      .filter((fields) => fields[3]!.includes(`"inputId":"${openId}"`));
    expect(openStep.map((fields) => [fields[1], fields.slice(4).join(" ")])).toEqual([
      ["trade_opened", "more 1"],
      ["balances_changed", ""],
      ["order_response", ""],
    ]);
  });

  it("lets exactly one engine hold the lease; the standby takes over when it is released", async () => {
    const keys = freshKeys();
    const a = new EngineLease(redis, keys, "a", 2000, log);
    const b = new EngineLease(redis, keys, "b", 2000, log);
    expect(await a.tryAcquire()).toBe(true);
    expect(await b.tryAcquire()).toBe(false);
    const standingBy = runStandby(
      { redis, keys, log, lease: b, state: createState(makeParams()), pollMs: 5 },
      new AbortController().signal,
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(b.value).toBeUndefined();
    await a.release();
    expect(await standingBy).toBe("leader");
    expect(await a.renew()).toBe(false);
    expect(await b.renew()).toBe(true);
    // Fencing tokens only grow: the newer holder's is larger.
    expect(Number(b.value!.split(":")[1])).toBeGreaterThan(Number(a.value?.split(":")[1] ?? 0));
  });

  it("lets a standby that watched the leader live take its lapsed lease before one started after it died", async () => {
    const keys = freshKeys();
    const leader = new EngineLease(redis, keys, "leader", 300, log);
    expect(await leader.tryAcquire()).toBe(true);
    const renewing = setInterval(() => void leader.renew(), 60);
    const standby = (name: string, pollMs: number) => {
      const lease = new EngineLease(redis, keys, name, 60_000, log);
      const state = createState(makeParams());
      const end = runStandby({ redis, keys, log, lease, state, pollMs }, new AbortController().signal);
      return { lease, end };
    };
    const hot = standby("hot", 20);
    await new Promise((r) => setTimeout(r, 200)); // it sees the leader renew
    clearInterval(renewing); // the leader dies
    // Restarted at once, polling a little faster (so usually first once the lease lapses), it only ever sees the
    // lease run down: it waits two of its polls, longer than the other's poll.
    const fresh = standby("fresh", 15);
    expect(await hot.end).toBe("leader");
    expect(fresh.lease.value).toBeUndefined();

    // With no other standby left, the fresh one takes it all the same, a couple of polls later.
    await hot.lease.release();
    expect(await fresh.end).toBe("leader");
  });

  it("a standby reports its lag behind the stream head in log time, as the leader does", async () => {
    const keys = freshKeys();
    await redis.xadd(keys.input, "1000-0", ...encodeFields(instruction("alice", "r1", { kind: "create_account" })));
    await redis.xadd(keys.input, "5000-0", ...encodeFields(eth("2000")));
    // A leader holds the lease and has published only the first entry.
    await redis.set(keys.engineLease, "leader:1", "PX", 60_000);
    await redis.set(keys.enginePublished, "1000-0");
    const state = createState(makeParams());
    const lags: (number | undefined)[] = [];
    const stop = new AbortController();
    const standingBy = runStandby(
      {
        redis,
        keys,
        log,
        lease: new EngineLease(redis, keys, "b", 60_000, log),
        state,
        pollMs: 5,
        statsEveryMs: 10,
        metrics: { lag: (ms) => lags.push(ms) },
      },
      stop.signal,
    );
    await until(() => Promise.resolve(lags.length >= 2 ? true : undefined));
    stop.abort();
    expect(await standingBy).toBe("stopped");
    expect(state.lastInputId).toBe("1000-0");
    expect(lags.slice(0, 2)).toEqual([4000, 4000]);
  });

  it("keeps a hot standby at the published cursor, never past it; when the lease lapses it leads from there", async () => {
    const keys = freshKeys();
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    await send(keys, eth("2000"));
    await send(
      keys,
      instruction("alice", "r2", { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 }),
    );
    const a = new EngineLease(redis, keys, "a", 60_000, log);
    expect(await a.tryAcquire()).toBe(true);
    const leaderState = createState(makeParams());
    const stopLeader = new AbortController();
    const leading = runLeader(
      { reader, writer: redis, keys, log, lease: a, state: leaderState, blockMs: 20 },
      stopLeader.signal,
    );
    const b = new EngineLease(redis, keys, "b", 60_000, log);
    const standbyState = createState(makeParams());
    let readyAt: string | undefined;
    const standingBy = runStandby(
      {
        redis,
        keys,
        log,
        lease: b,
        state: standbyState,
        pollMs: 5,
        onReady: () => (readyAt = standbyState.lastInputId),
      },
      new AbortController().signal,
    );
    await until(async () => ((await redis.get(keys.enginePublished)) === leaderState.lastInputId ? true : undefined));
    await until(() => Promise.resolve(standbyState.lastInputId === leaderState.lastInputId ? true : undefined));
    expect(readyAt).toBeDefined();
    expect(stateHash(standbyState)).toBe(stateHash(leaderState));

    // The leader dies (stops applying and renewing); an instruction arrives that nobody published.
    stopLeader.abort();
    expect(await leading).toBe("stopped");
    const published = await redis.get(keys.enginePublished);
    const lateId = await send(
      keys,
      instruction("alice", "r3", { kind: "open_trade", asset: "ETH", side: "short", margin: "50", leverage: 5 }),
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(standbyState.lastInputId).toBe(published);
    expect(b.value).toBeUndefined();

    await redis.del(keys.engineLease); // its TTL ran out
    expect(await standingBy).toBe("leader");
    const stop = new AbortController();
    const newLeader = runLeader(
      { reader, writer: redis, keys, log, lease: b, state: standbyState, blockMs: 20 },
      stop.signal,
    );
    await until(async () => ((await redis.get(keys.enginePublished)) === lateId ? true : undefined));
    stop.abort();
    expect(await newLeader).toBe("stopped");

    // The same state as one engine that applied the whole log; every instruction answered exactly once.
    const reference = createState(makeParams());
    for (const entry of (await redis.xrange(keys.input, "-", "+")) as [string, string[]][]) applyRaw(reference, entry);
    expect(stateHash(standbyState)).toBe(stateHash(reference));
    const answered = (await outputs(keys)).filter((o) => o.type === "order_response").map((o) => o.requestId);
    expect(answered).toEqual(["r1", "r2", "r3"]);
  });

  /** Six create_account entries in the log, led by another engine ("leader:1"); their ids. */
  async function sixAccounts(keys: Keyspace): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await send(keys, instruction(`u${i}`, `r${i}`, { kind: "create_account" })));
    await redis.set(keys.engineLease, "leader:1", "PX", 60_000);
    return ids;
  }

  /**
   * A standby ("b") following into `state`; `ended()` stops it and says how it ended: its end, its error, or "still
   * running" when neither came within 2 s.
   */
  function standBy(keys: Keyspace, state: EngineState): () => Promise<unknown> {
    const stop = new AbortController();
    const standingBy = runStandby(
      { redis, keys, log, lease: new EngineLease(redis, keys, "b", 60_000, log), state, pollMs: 5 },
      stop.signal,
    ).then(
      (end) => end,
      (err: unknown) => err,
    );
    return async () => {
      const outcome = await Promise.race([standingBy, new Promise((r) => setTimeout(() => r("still running"), 2_000))]);
      stop.abort();
      return outcome;
    };
  }

  it("a standby whose log was trimmed past its cursor stops with LogGapError rather than skip entries", async () => {
    const keys = freshKeys();
    const ids = await sixAccounts(keys);
    await redis.set(keys.enginePublished, ids[1]!);
    const state = createState(makeParams());
    const ended = standBy(keys, state);
    // Follows the published log, no further.
    await until(() => Promise.resolve(state.lastInputId === ids[1] ? true : undefined));
    await new Promise((r) => setTimeout(r, 50));
    expect(state.lastInputId).toBe(ids[1]);
    // A snapshot at entry 4 trimmed the log below it (this standby's entry too), and the leader published on.
    expect(await redis.xtrim(keys.input, "MINID", ids[4]!)).toBe(4);
    await redis.set(keys.enginePublished, ids[5]!);
    const outcome = await ended();
    expect(outcome).toBeInstanceOf(LogGapError);
    expect(state.lastInputId).toBe(ids[1]);
    expect(state.accounts.has("u4")).toBe(false);
  });

  it("a standby whose cursor's entry was deleted (XDEL), with the log before it kept, follows on", async () => {
    const keys = freshKeys();
    const ids = await sixAccounts(keys);
    await redis.set(keys.enginePublished, ids[2]!);
    const state = createState(makeParams());
    const ended = standBy(keys, state);
    await until(() => Promise.resolve(state.lastInputId === ids[2] ? true : undefined));
    // An operator deleted the entry this standby stands on: nothing after it is missing.
    expect(await redis.xdel(keys.input, ids[2]!)).toBe(1);
    await redis.set(keys.enginePublished, ids[5]!);
    await until(() => Promise.resolve(state.lastInputId === ids[5] ? true : undefined));
    expect(await ended()).toBe("still running");
    expect(state.accounts.has("u5")).toBe(true);
  });

  it("a standby with no snapshot (cursor 0-0) stops with LogGapError on a log that lost its first entry to XDEL, as to a trim", async () => {
    const keys = freshKeys();
    const ids = await sixAccounts(keys);
    await redis.set(keys.enginePublished, ids[5]!);
    await redis.xdel(keys.input, ids[0]!); // the first entry is gone: from 0-0, that is a gap
    const state = createState(makeParams());
    expect(await standBy(keys, state)()).toBeInstanceOf(LogGapError);
    expect(state.lastInputId).toBe("0-0");
  });

  it("a standby with no snapshot (cursor 0-0) on a log trimmed at its start stops with LogGapError too", async () => {
    const keys = freshKeys();
    const ids = await sixAccounts(keys);
    await redis.set(keys.enginePublished, ids[5]!);
    // A snapshot at entry 3 in some database trimmed the log below it; this standby's database has none.
    expect(await redis.xtrim(keys.input, "MINID", ids[3]!)).toBe(3);
    const state = createState(makeParams());
    const ended = standBy(keys, state);
    const outcome = await ended();
    expect(outcome).toBeInstanceOf(LogGapError);
    expect(state.lastInputId).toBe("0-0");
    // And catching up (the snapshotter's way) refuses it the same way.
    await expect(catchUp({ redis, keys, state })).rejects.toBeInstanceOf(LogGapError);
    expect(state.accounts.size).toBe(0);
  });

  it("never publishes a later batch after a publish failed: the leader stops with nothing out of order", async () => {
    const keys = freshKeys();
    for (let i = 0; i < 25; i++) await send(keys, instruction(`u${i}`, "r1", { kind: "create_account" }));
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    // A writer whose first publish fails (as under maxmemory) while later ones would succeed.
    const writer = new Redis(REDIS_URL);
    let evals = 0;
    const realEval = writer.eval.bind(writer) as (...args: unknown[]) => Promise<unknown>;
    (writer as unknown as { eval: (...args: unknown[]) => Promise<unknown> }).eval = (...args) =>
      ++evals === 1 ? Promise.reject(new Error("simulated publish failure")) : realEval(...args);
    try {
      const state = createState(makeParams());
      // batchSize 1: the replay reads ranges of 10, so the 25 entries are three batches.
      const running = runLeader(
        { reader, writer, keys, log, lease, state, batchSize: 1, blockMs: 20 },
        new AbortController().signal,
      );
      await expect(running).rejects.toThrow("simulated publish failure");
      expect(evals).toBe(1);
      expect(await redis.xlen(keys.output)).toBe(0);
      expect(await redis.get(keys.enginePublished)).toBeNull();
    } finally {
      writer.disconnect();
    }
  });

  it("fences off an engine that lost its lease: it can publish nothing and stops", async () => {
    const keys = freshKeys();
    const a = new EngineLease(redis, keys, "a", 300, log);
    expect(await a.tryAcquire()).toBe(true);
    const stale = a.value!;
    // a stalls past its TTL; b takes over.
    await redis.del(keys.engineLease);
    const b = new EngineLease(redis, keys, "b", 2000, log);
    expect(await b.tryAcquire()).toBe(true);
    await expect(publishOutputs(redis, keys, { value: stale, ttlMs: 300 }, "1-0", [])).rejects.toBeInstanceOf(
      FencedError,
    );
    expect(await redis.xlen(keys.output)).toBe(0);
    expect(await redis.get(keys.enginePublished)).toBeNull();

    const state = createState(makeParams());
    const ended = await runLeader(
      { reader, writer: redis, keys, log, lease: a, state, blockMs: 20 },
      new AbortController().signal,
    );
    expect(ended).toBe("lease_lost");
  });

  it("deposed while it had input to publish (stalled past its TTL): lease_lost, not a crash, and nothing out", async () => {
    const keys = freshKeys();
    const lines: { event?: string }[] = [];
    const seen = createLogger("engine-test", {
      level: "info",
      sink: (line) => lines.push(JSON.parse(line) as { event?: string }),
    });
    // A long TTL: the renewal timer (a fifth of it) does not notice the theft before the publish does.
    const lease = new EngineLease(redis, keys, "a", 10_000, seen);
    expect(await lease.tryAcquire()).toBe(true);
    const state = createState(makeParams());
    let live!: () => void;
    const isLive = new Promise<void>((resolve) => (live = resolve));
    const running = runLeader(
      { reader, writer: redis, keys, log: seen, lease, state, blockMs: 50, onLive: live },
      new AbortController().signal,
    );
    await isLive;
    // Another engine took the lease while this one was stalled; then input arrives.
    await redis.set(keys.engineLease, "b:999", "PX", 10_000);
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    expect(await running).toBe("lease_lost");
    expect(lines.map((l) => l.event)).toContain("lease_lost");
    expect(await redis.xlen(keys.output)).toBe(0);
    expect(await redis.get(keys.enginePublished)).toBeNull();
    // Letting go of a lease that is no longer its own deletes nothing and says nothing; of its own, says so.
    await lease.release();
    expect(await redis.get(keys.engineLease)).toBe("b:999");
    expect(lines.map((l) => l.event)).not.toContain("lease_released");
    await redis.del(keys.engineLease);
    const own = new EngineLease(redis, keys, "c", 10_000, seen);
    expect(await own.tryAcquire()).toBe(true);
    await own.release();
    expect(await redis.get(keys.engineLease)).toBeNull();
    expect(lines.filter((l) => l.event === "lease_released")).toHaveLength(1);
  });

  it("keeps its lease, idle, when the wall clock steps forward: progress is timed on the monotonic clock", async () => {
    const keys = freshKeys();
    const { lease, logged, stop, running, isLive } = await leadWatched(keys, reader, 200, 1000);
    await isLive;
    const realNow = Date.now.bind(Date);
    const stepped = vi.spyOn(Date, "now").mockImplementation(() => realNow() + 60_000); // an NTP step of a minute
    try {
      await new Promise((r) => setTimeout(r, 2_500)); // two idle blocking reads, and more than six TTLs
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
      expect(logged.filter((line) => line.includes('"leader_stuck"'))).toEqual([]);
    } finally {
      stepped.mockRestore();
      stop.abort();
      await running.catch(() => undefined);
    }
  });

  it("lets the lease lapse when its reads stop answering (a dead socket), so a standby can take over", async () => {
    const keys = freshKeys();
    const TTL = 200;
    // The reader goes through a proxy that can freeze: bytes stop both ways, the sockets stay open.
    const proxy = await freezingProxy();
    const { lease, logged, stop, running, isLive } = await leadWatched(keys, proxy.client, TTL, 50);
    try {
      await isLive;
      await new Promise((r) => setTimeout(r, 3 * TTL));
      expect(await redis.get(keys.engineLease)).toBe(lease.value); // reading: renewed
      proxy.freeze();
      // No read answers any more: within six TTLs and one more the lease is gone, and the leader says why.
      await until(async () => ((await redis.get(keys.engineLease)) === null ? true : undefined), 12 * TTL);
      expect(logged.some((line) => line.includes('"leader_stuck"'))).toBe(true);
    } finally {
      stop.abort();
      await proxy.close();
      await running.catch(() => undefined);
    }
  });

  it("ends as deposed (lease_lost) once stuck a TTL past its limit: it does not wait on the dead socket for ever", async () => {
    const keys = freshKeys();
    const TTL = 200;
    const proxy = await freezingProxy();
    const { lease, logged, stop, running, isLive } = await leadWatched(keys, proxy.client, TTL, 50);
    const b = new EngineLease(redis, keys, "b", TTL, log);
    let keep: NodeJS.Timeout | undefined;
    try {
      await isLive;
      proxy.freeze();
      await until(async () => ((await redis.get(keys.engineLease)) === null ? true : undefined), 12 * TTL);
      // A standby takes over and keeps the lease; the old leader's read still never answers.
      expect(await b.tryAcquire()).toBe(true);
      keep = setInterval(() => void b.renew(), TTL / 5);
      const ended = await Promise.race([running, stillRunningAfter(12 * TTL)]);
      expect(ended).toBe("lease_lost");
      const lostLine = logged.find((line) => line.includes('"lease_lost"'));
      expect(lostLine).toMatch(/"stuckForMs":\d+/);
      expect(lease.value).toBeUndefined(); // engine_lease_held reads 0; nothing left to release
      expect(await redis.get(keys.engineLease)).toBe(b.value);
    } finally {
      clearInterval(keep);
      stop.abort();
      await proxy.close();
      await running.catch(() => undefined);
    }
  });

  it("stops when asked while its blocking read never answers (a dead socket)", async () => {
    const keys = freshKeys();
    const proxy = await freezingProxy();
    const { stop, running, isLive } = await leadWatched(keys, proxy.client, 10_000, 50);
    try {
      await isLive;
      proxy.freeze();
      await new Promise((r) => setTimeout(r, 200));
      stop.abort();
      expect(await Promise.race([running, stillRunningAfter(1_000)])).toBe("stopped");
    } finally {
      stop.abort();
      await proxy.close();
      await running.catch(() => undefined);
    }
  });

  it("a standby asked to stop while Redis is down stops at once: its poll does not wait for Redis", async () => {
    const keys = freshKeys();
    await redis.set(keys.engineLease, "other:1", "PX", 60_000); // another engine leads
    const proxy = await startRedisProxy(REDIS_URL);
    // The engine's own connection options: a command sent during an outage waits until Redis is back.
    const client = connectRedis(`redis://127.0.0.1:${proxy.port}`, log, "engine-writer");
    const lease = new EngineLease(client, keys, "me", 500, log);
    const stop = new AbortController();
    let ready!: () => void;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    const state = createState(makeParams());
    const running = runStandby({ redis: client, keys, log, lease, state, pollMs: 50, onReady: ready }, stop.signal);
    try {
      await isReady;
      await proxy.cut(); // Redis out of reach: every poll from here on waits
      await new Promise((r) => setTimeout(r, 300));
      stop.abort();
      expect(await Promise.race([running, stillRunningAfter(1_000)])).toBe("stopped");
    } finally {
      stop.abort();
      client.disconnect();
      await proxy.close();
      await running.catch(() => undefined);
    }
  });

  it("a standby asked to stop while its read of the stream head never answers stops at once", async () => {
    const keys = freshKeys();
    await redis.set(keys.engineLease, "other:1", "PX", 60_000);
    const proxy = await startRedisProxy(REDIS_URL);
    const client = connectRedis(`redis://127.0.0.1:${proxy.port}`, log, "engine-writer");
    const lease = new EngineLease(client, keys, "me", 500, log);
    const frozen = proxy.freezeOn("XINFO"); // the lag's read of the head, after the first poll
    const stop = new AbortController();
    const metrics = { lag() {} };
    const state = createState(makeParams());
    const running = runStandby(
      { redis: client, keys, log, lease, state, pollMs: 50, statsEveryMs: 0, metrics },
      stop.signal,
    );
    try {
      await frozen;
      stop.abort();
      expect(await Promise.race([running, stillRunningAfter(1_000)])).toBe("stopped");
    } finally {
      stop.abort();
      client.disconnect();
      await proxy.close();
      await running.catch(() => undefined);
    }
  });

  it("sends one renewal at a time: an idle leader's unanswered renewal is not joined by more", async () => {
    const keys = freshKeys();
    const TTL = 500;
    let renewals = 0;
    let answer!: (held: boolean) => void;
    const { lease, stop, running, isLive } = await leadWatched(keys, redis, TTL, 50);
    try {
      await isLive;
      // From now on a renewal goes to a connection that holds it (a Redis that is down): it is not answered.
      lease.renew = () => {
        renewals++;
        return new Promise<boolean>((resolve) => (answer = resolve));
      };
      await new Promise((r) => setTimeout(r, 6 * (TTL / 5)));
      expect(renewals).toBe(1);
      answer(true);
      await until(() => Promise.resolve(renewals === 2 ? true : undefined), 2 * TTL);
    } finally {
      stop.abort();
      await running.catch(() => undefined);
    }
  });

  it("lets the lease lapse when a read of its replay stops answering: a stuck replay holds nothing", async () => {
    const keys = freshKeys();
    const TTL = 200;
    const proxy = await freezingProxy();
    await proxy.client.ping(); // connected, then frozen before the replay's first read
    proxy.freeze();
    const { logged, stop, running, wentLive } = await leadWatched(keys, proxy.client, TTL, 50);
    try {
      await until(async () => ((await redis.get(keys.engineLease)) === null ? true : undefined), 12 * TTL);
      expect(logged.some((line) => line.includes('"leader_stuck"'))).toBe(true);
      expect(wentLive()).toBe(false);
    } finally {
      stop.abort();
      await proxy.close();
      await running.catch(() => undefined);
    }
  });

  it("drops a prefetch whose next batch does not come, and replays the log itself, a batch per read", async () => {
    const keys = freshKeys();
    let last = "";
    for (const user of ["ann", "ari", "ash"])
      last = await send(keys, instruction(user, "r1", { kind: "create_account" }));
    const ranges = vi.spyOn(reader, "xrange");
    let closed = false;
    // A prefetch thread whose connection died: its next batch never comes.
    const stuck: LogPrefetch = {
      start: () => undefined,
      next: (_after, signal) =>
        new Promise((resolve) => signal?.addEventListener("abort", () => resolve(undefined), { once: true })),
      ended: undefined,
      close: () => {
        closed = true;
        return Promise.resolve();
      },
    };
    const { logged, stop, running, isLive, state } = await leadWatched(keys, reader, 10_000, 50, {
      prefetched: stuck,
      prefetchWaitMs: 100,
      batchSize: 2,
    });
    try {
      await isLive;
      expect(state.lastInputId).toBe(last);
      expect(closed).toBe(true);
      // Reads of one batch each (a slow link must answer each within the stuck limit): 2, 1, then none left.
      expect(ranges.mock.calls.map((call) => call.at(-1))).toEqual([2, 2, 2]);
      const line = logged
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.event === "replay_prefetched");
      expect(line?.abandonedAfterMs).toBe(100);
    } finally {
      ranges.mockRestore();
      stop.abort();
      await running;
    }
  });

  it("stopped before its replay is done, it never goes live: no follower starts for a leader that is leaving", async () => {
    const keys = freshKeys();
    await send(keys, instruction("bo", "r1", { kind: "create_account" }));
    const { stop, running, wentLive } = await leadWatched(keys, reader, 10_000, 50);
    stop.abort();
    expect(await running).toBe("stopped");
    expect(wentLive()).toBe(false);
  });

  it("leaves an idle lease to a renewer while it keeps it, tells it of each publish, and ends when it finds it lost", async () => {
    const keys = freshKeys();
    const TTL = 300;
    const lease = new EngineLease(redis, keys, "a", TTL, log);
    const state = createState(makeParams());
    let claimedAt = 0; // when the renewer says it last extended the lease
    let reportLost!: () => void;
    const extensions: number[] = [];
    let published = 0;
    const renewer = {
      extendedAt: () => claimedAt,
      lost: new Promise<void>((resolve) => (reportLost = resolve)),
      extended: (atMs: number) => extensions.push(atMs),
      progressed: () => undefined,
    };
    expect(await lease.tryAcquire()).toBe(true);
    let live!: () => void;
    const isLive = new Promise<void>((resolve) => (live = resolve));
    const running = runLeader(
      {
        reader,
        writer: redis,
        keys,
        log,
        lease,
        state,
        blockMs: 20,
        onLive: live,
        renewer,
        onPublished: () => published++,
      },
      new AbortController().signal,
    );
    await isLive;
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // The renewer has not extended it (not up yet): the leader's own timer keeps an idle lease past several TTLs.
    await sleep(3 * TTL);
    expect(await redis.get(keys.engineLease)).toBe(lease.value);
    // It says it extends the lease (here it does not): the leader sends nothing of its own, and the lease lapses.
    const claiming = setInterval(() => (claimedAt = Date.now()), 10);
    try {
      await until(async () => ((await redis.get(keys.engineLease)) === null ? true : undefined), 5 * TTL);
    } finally {
      clearInterval(claiming);
    }
    expect(await lease.tryAcquire()).toBe(true); // the same engine again, for what follows
    // Its claim goes stale (a renewer whose connection is stuck): the leader renews again.
    await sleep(3 * TTL);
    expect(await redis.get(keys.engineLease)).toBe(lease.value);
    // A claim from the future (the wall clock stepped back) does not stop the leader's renewals either.
    claimedAt = Date.now() + 60_000;
    await sleep(3 * TTL);
    expect(await redis.get(keys.engineLease)).toBe(lease.value);
    // Each publish is reported, with when it was sent.
    const before = Date.now();
    const publishedBefore = published;
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    await until(() => Promise.resolve(published > publishedBefore ? true : undefined));
    expect(extensions.at(-1)).toBeGreaterThanOrEqual(before);
    expect(extensions.at(-1)).toBeLessThanOrEqual(Date.now());
    expect(extensions.length).toBe(published);
    // The renewer found the lease held by another engine: the leader stops as deposed.
    reportLost();
    expect(await running).toBe("lease_lost");
  });

  it("logs engine_stats live: what it applied, the stream head and its lag behind it", async () => {
    const keys = freshKeys();
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("engine-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const state = createState(makeParams());
    const stop = new AbortController();
    const running = runLeader(
      { reader, writer: redis, keys, log: capture, lease, state, blockMs: 20, statsEveryMs: 50 },
      stop.signal,
    );
    const last = await send(keys, instruction("bob", "r1", { kind: "create_account" }));
    const stats = await until(() =>
      Promise.resolve(lines.find((l) => l.event === "engine_stats" && l.lastInputId === last)),
    );
    stop.abort();
    await running;
    expect(stats).toMatchObject({ applied: 2, lastInputId: last, streamHead: last, lagMs: 0, accounts: 2 });
    expect(typeof stats.loopDelayMaxMs).toBe("number");
  });

  it("applies a long batch in slices, publishing each, so a leader busy with a backlog keeps its lease", async () => {
    const keys = freshKeys();
    const pipe = redis.pipeline();
    pipe.xadd(keys.input, "*", ...encodeFields(instruction("alice", "r1", { kind: "create_account" })));
    for (let i = 0; i < 300; i++) pipe.xadd(keys.input, "*", ...encodeFields(eth(String(2000 + i))));
    await pipe.exec();
    const last = (await redis.xrevrange(keys.input, "+", "-", "COUNT", 1))[0]![0];
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const { slices, metrics } = sliceRecorder();
    const state = createState(makeParams());
    const stop = new AbortController();
    // sliceMs 0: every slice is as short as the clock check allows, 64 entries.
    const running = runLeader({ reader, writer: redis, keys, log, lease, state, sliceMs: 0, metrics }, stop.signal);
    await until(async () => ((await redis.get(keys.enginePublished)) === last ? true : undefined));
    stop.abort();
    expect(await running).toBe("stopped");
    expect(slices).toEqual([64, 64, 64, 64, 45]);
    // The same outputs as one engine applying it all at once.
    const reference = createState(makeParams());
    const expected = (await redis.xrange(keys.input, "-", "+")).flatMap((e) => applyRaw(reference, e));
    expect(await outputs(keys)).toEqual(expected);
  });

  it("ends a slice by the size of its outputs too, between inputs: a batch of many inputs is several calls", async () => {
    const keys = freshKeys();
    const pipe = redis.pipeline();
    for (let i = 0; i < 4_000; i++)
      pipe.xadd(keys.input, "*", ...encodeFields(instruction(`u${i}`, "r1", { kind: "create_account" })));
    await pipe.exec();
    const last = (await redis.xrevrange(keys.input, "+", "-", "COUNT", 1))[0]![0];
    const lease = new EngineLease(redis, keys, "leader-a", 60_000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const { slices, metrics } = sliceRecorder();
    const { writer, calls } = recordPublishCalls(REDIS_URL, keys);
    try {
      const state = createState(makeParams());
      const stop = new AbortController();
      // A slice time no batch reaches: only the size of its outputs ends a slice.
      const running = runLeader(
        { reader, writer, keys, log, lease, state, sliceMs: 60_000, blockMs: 20, metrics },
        stop.signal,
      );
      await until(async () => ((await redis.get(keys.enginePublished)) === last ? true : undefined));
      stop.abort();
      expect(await running).toBe("stopped");
      expect(slices.length).toBeGreaterThan(1);
      expect(slices.reduce((a, b) => a + b)).toBe(4_000);
      // One call per slice, each moving the cursor: no step was split, and none is too large.
      expect(calls.map((c) => c.last)).toEqual(slices.map(() => "1"));
      expect(Math.max(...calls.map((c) => c.bytes))).toBeLessThanOrEqual(PUBLISH_MAX_BYTES);
      const reference = createState(makeParams());
      const expected = (await redis.xrange(keys.input, "-", "+")).flatMap((e) => applyRaw(reference, e));
      expect(await outputs(keys)).toEqual(expected);
    } finally {
      writer.disconnect();
    }
  });

  it("keeps its metrics: entries applied, batch times, open trades (from a restored state on), lag, ignored price updates", async () => {
    const keys = freshKeys();
    const open = (user: string, id: string, leverage: number) =>
      instruction(user, id, { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage });
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    await send(keys, eth("2000"));
    await send(keys, open("alice", "r2", 10));
    await send(keys, open("alice", "r3", 2));
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const state = createState(makeParams());
    // A first run builds the state the second one starts from, as a restored snapshot would be.
    const first = new AbortController();
    const firstRun = runLeader({ reader, writer: redis, keys, log, lease, state, blockMs: 20 }, first.signal);
    await until(() => Promise.resolve(state.accounts.get("alice")?.openTrades.size === 2 ? true : undefined));
    first.abort();
    await firstRun;
    // The first run left its blocking read (it ends at a stop); the second's replay must not queue behind it on this
    // shared connection, or it would read the input sent below, meant for its live loop.
    await reader.ping();

    const registry = new Registry();
    const metrics = engineMetrics(registry, () => lease.value);
    const stop = new AbortController();
    let live!: () => void;
    const isLive = new Promise<void>((resolve) => (live = resolve));
    const running = runLeader(
      { reader, writer: redis, keys, log, lease, state, blockMs: 20, statsEveryMs: 50, metrics, onLive: live },
      stop.signal,
    );
    await isLive; // what is sent below is for the live loop, not the replay
    await send(keys, open("alice", "r4", 5));
    await send(keys, eth("1700")); // the 10× long is liquidated; the 2× and 5× stay open
    const crossed = { type: "price_update", market: "ETH_USDC_PERP", bid: "1700", ask: "1699" } as const;
    await send(keys, { ...crossed, exchangeTimeUs: `${Date.now()}000`, source: "sim" }); // ignored and counted
    const last = await send(keys, instruction("bob", "r1", { kind: "create_account" }));
    const samples = await until(async () => {
      const s = parseSamples(await registry.metrics());
      // The ignored count is set at each engine_stats report (every 50 ms here), as the lag is (also at replay_done).
      const reported = !Number.isNaN(s.get("engine_lag_seconds")) && s.get("engine_price_updates_ignored_total") === 1;
      return state.lastInputId === last && s.get("engine_entries_applied_total") === 4 && reported ? s : undefined;
    });
    stop.abort();
    await running;
    const closed = (await outputs(keys)).filter((o) => o.type === "closed_order");
    expect(closed.map((o) => o.type === "closed_order" && o.trade.closeReason)).toEqual(["liquidation"]);
    expect(state.accounts.get("alice")!.openTrades.size).toBe(2);
    expect(sample(samples, "engine_open_trades")).toBe(2);
    expect(state.ignoredPriceUpdates).toBe(1);
    expect(sample(samples, "engine_price_updates_ignored_total")).toBe(1);
    expect(sample(samples, "engine_apply_batch_duration_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(sample(samples, "engine_apply_batch_duration_seconds_sum")).toBeGreaterThan(0);
    expect(sample(samples, "engine_recovery_replayed_entries")).toBe(0);
    expect(sample(samples, "engine_lag_seconds")).toBeGreaterThanOrEqual(0);
    expect(sample(samples, "engine_lease_held")).toBe(1);
    expect(sample(samples, "engine_lease_fencing_token")).toBe(Number(lease.value!.split(":").pop()));
    await lease.release();
    expect(sample(parseSamples(await registry.metrics()), "engine_lease_held")).toBe(0);
  });

  it("counts a trade open in engine_open_trades until its last part is closed, not at each partial close", async () => {
    const keys = freshKeys();
    await send(keys, instruction("alice", "r1", { kind: "create_account" }));
    await send(keys, eth("2000"));
    // 0.5 ETH: two partial closes of 0.1 leave it open, the full close after them closes it.
    const opening = { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 } as const;
    await send(keys, instruction("alice", "r2", opening));
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const registry = new Registry();
    const metrics = engineMetrics(registry, () => lease.value);
    const state = createState(makeParams());
    const stop = new AbortController();
    const running = runLeader({ reader, writer: redis, keys, log, lease, state, blockMs: 20, metrics }, stop.signal);
    try {
      const opened = await until(async () => (await outputs(keys)).find((o) => o.type === "trade_opened"));
      const tradeId = opened.type === "trade_opened" ? opened.trade.id : "";
      const gaugeAfter = async (requestId: string, quantity?: string) => {
        const close = quantity === undefined ? { tradeId } : { tradeId, quantity };
        await send(keys, instruction("alice", requestId, { kind: "close_trade", ...close }));
        await until(async () =>
          (await outputs(keys)).some((o) => o.type === "order_response" && o.requestId === requestId)
            ? true
            : undefined,
        );
        return sample(parseSamples(await registry.metrics()), "engine_open_trades");
      };
      expect(await gaugeAfter("r3", "0.1")).toBe(1);
      expect(await gaugeAfter("r4", "0.1")).toBe(1);
      expect(state.accounts.get("alice")!.openTrades.size).toBe(1);
      expect(await gaugeAfter("r5")).toBe(0);
      expect(state.accounts.get("alice")!.openTrades.size).toBe(0);
      const closes = (await outputs(keys)).filter((o) => o.type === "closed_order");
      expect(closes.map((o) => o.type === "closed_order" && o.trade.remainingQuantity)).toEqual(["0.4", "0.3", "0"]);
    } finally {
      stop.abort();
      await running;
    }
  });

  it("reports its lag during the replay, from its start: not only at the first engine_stats once live", async () => {
    const keys = freshKeys();
    // Ids at known log times: the state is at 1 s, the head at 5 s.
    for (let i = 1; i <= 5; i++) {
      await redis.xadd(
        keys.input,
        `${i * 1000}-0`,
        ...encodeFields(instruction(`u${i}`, "r1", { kind: "create_account" })),
      );
    }
    const state = createState(makeParams());
    applyRaw(state, ((await redis.xrange(keys.input, "-", "+")) as RawEntry[])[0]!);
    const lease = new EngineLease(redis, keys, "leader-a", 2000, log);
    expect(await lease.tryAcquire()).toBe(true);
    const lags: (number | undefined)[] = [];
    const metrics = { ...sliceRecorder().metrics, lag: (ms: number | undefined) => void lags.push(ms) };
    let live!: () => void;
    const isLive = new Promise<void>((resolve) => (live = resolve));
    const stop = new AbortController();
    const running = runLeader(
      // No engine_stats while the test runs: what it sees is the replay's.
      { reader, writer: redis, keys, log, lease, state, blockMs: 20, statsEveryMs: 60_000, metrics, onLive: live },
      stop.signal,
    );
    try {
      await isLive;
      expect(lags[0]).toBe(4000); // at replay_start: 5 s less 1 s
      expect(lags.at(-1)).toBe(0); // at replay_done: caught up
    } finally {
      stop.abort();
      await running;
    }
  });

  it("measures lag in log time from the stream head's id, never below zero", () => {
    expect(lagMs("1700000005250-3", 1700000005000)).toBe(250);
    expect(lagMs("1700000005000-9", 1700000005000)).toBe(0);
    expect(lagMs("1700000004000-0", 1700000005000)).toBe(0);
    expect(lagMs(undefined, 1700000005000)).toBeUndefined();
    // Nothing applied yet (a replay with no snapshot): unknown, not decades.
    expect(lagMs("1700000005250-3", 0)).toBeUndefined();
  });
});
