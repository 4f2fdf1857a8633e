import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  isPrivateOutput,
  type Answer,
  type EngineInput,
  type EngineOutput,
  type Instruction,
} from "../contract/messages.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { encodeFields, outputEntries } from "../contract/stream-fields.ts";
import { apply } from "../engine/core/apply.ts";
import { makeParams } from "../engine/core/params.ts";
import { createState } from "../engine/core/state.ts";
import { EngineLease } from "../engine/runner/lease.ts";
import { publishOutputs } from "../engine/runner/publisher.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { connectPostgres, describeDatabase } from "../platform/postgres.ts";
import { startRedisProxy } from "../platform/testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { Registry } from "prom-client";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import { readEventsAfter } from "./events.ts";
import { watchRedisOutages } from "./redis-outages.ts";
import { workerMetrics } from "./metrics.ts";
import {
  ensureGroup,
  forgetConsumer,
  groupBacklog,
  handleBatch,
  DEFAULT_BATCH_SIZE,
  MAX_PENDING_PER_CONSUMER,
  runWorker,
  trimHandledOutputs,
} from "./worker.ts";
import { WorkerStuckError } from "./watchdog.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { freePort, startRedisServer, startScratchRedis } from "../platform/testing/processes.ts";
import { connectRedis } from "../platform/redis.ts";

const REDIS_URL = TEST_REDIS_URL;
const log = createLogger("worker-test", { level: "error" });
/** The figure in Upstash's refusal of a group read (upstash.com/docs/redis/troubleshooting/stream_pel_limit). */
const UPSTASH_PEL_LIMIT = 1_000;
let redis: Redis;
let reader: Redis;
let pg: TestDatabase;
let keys: Keyspace;
let prefix: string;

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  reader = new Redis(REDIS_URL);
  pg = await createTestDatabase();
  await migrate(pg.db, log);
  prefix = `test:${randomUUID()}:`;
  keys = keyspace(prefix);
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  reader.disconnect();
  await pg.drop();
});

/** An engine in-process: applies inputs and publishes their outputs under a real lease, as the leader does. */
function engine() {
  const state = createState(makeParams());
  const lease = new EngineLease(redis, keys, "test-engine", 60_000, log);
  let ms = 1_800_000_000_000;
  const all: EngineOutput[] = [];
  return {
    state,
    all,
    start: () => lease.tryAcquire(),
    async send(message: EngineInput) {
      const id = `${ms++}-0`;
      const outputs = apply(state, { id, message });
      all.push(...outputs);
      await publishOutputs(redis, keys, lease, id, outputs);
      return outputs;
    },
    /**
     * Writes outputs again as a replay does with the already published part of a batch that straddles the cursor
     * (publishOutputs adds nothing for a batch that ends at or below it, so this XADDs them itself).
     */
    async republish(outputs: EngineOutput[]) {
      const again = redis.multi();
      for (const fields of outputEntries(outputs)) again.xadd(keys.output, "*", ...fields);
      await again.exec();
    },
  };
}

const instruct = (userId: string, requestId: string, instruction: Instruction): EngineInput => ({
  type: "user_instruction",
  userId,
  requestId,
  instruction,
});

async function until<T>(probe: () => Promise<T | undefined | null>, timeoutMs = 5000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null) return value;
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("worker on real Redis and Postgres", () => {
  it("delivers answers after the read models they depend on, writes closed orders once, survives replays", async () => {
    const e = engine();
    expect(await e.start()).toBe(true);
    const stop = new AbortController();
    const registry = new Registry();
    const running = runWorker(
      { reader, writer: redis, db: pg.db, keys, log, consumer: "w1", blockMs: 50, metrics: workerMetrics(registry) },
      stop.signal,
    );
    const samples = async () => parseSamples(await registry.metrics());

    await e.send(instruct("alice", "r1", { kind: "create_account" }));
    await e.send({
      type: "price_update",
      market: "ETH_USDC_PERP",
      bid: "2000",
      ask: "2000",
      exchangeTimeUs: "1800000000001000", // the exchange's clock, as the log's (ms 1_800_000_000_001): fresh
      source: "sim",
    });
    const [openOutput] = await e.send(
      instruct("alice", "r2", {
        kind: "open_trade",
        asset: "ETH",
        side: "long",
        margin: "100",
        leverage: 10,
        takeProfit: "2100",
      }),
    );
    const answer = await until(() => redis.lpop(keys.responseKey("alice", openOutput!.inputId)));
    const opened = JSON.parse(answer) as Answer;
    expect(opened.ok && opened.result.kind === "open_trade" && opened.result.trade.id).toBe("T0-1");
    // The answer is out only after the read models: reading them now shows this very write.
    expect(await redis.hgetall(keys.balancesKey("alice"))).toEqual({
      USD: "9900",
      ETH: "0",
      BTC: "0",
      SOL: "0",
      ADA: "0",
    });
    expect(Object.keys(await redis.hgetall(keys.openTradesKey("alice")))).toEqual(["T0-1"]);

    // A take-profit fires: the closed order lands in Postgres, the open trade leaves the read model.
    const tick = await e.send({
      type: "price_update",
      market: "ETH_USDC_PERP",
      bid: "2100",
      ask: "2100",
      exchangeTimeUs: "1800000000003000",
      source: "sim",
    });
    expect(tick.map((o) => o.type)).toEqual(["quote_updated", "closed_order", "balances_changed"]);
    const rows = await until(async () => {
      const r = await pg.db.query<{ id: string; pnl: string; close_reason: string; margin: string }>(
        "SELECT id, pnl::text, close_reason, margin::text FROM closed_orders",
      );
      return r.rows.length > 0 ? r.rows : undefined;
    });
    expect(rows).toEqual([{ id: "T0-1", pnl: "50.000000", close_reason: "take_profit", margin: "100.000000" }]); // (2100 − 2000) × 0.5
    // Each batch with a quote writes its candle too: the quote batches and the close's batch, however grouped.
    await until(async () =>
      sample(await samples(), "worker_postgres_write_duration_seconds_count") >= 1 ? true : undefined,
    );
    expect(sample(await samples(), "worker_postgres_write_duration_seconds_sum")).toBeGreaterThan(0);
    await until(async () => ((await redis.hget(keys.balancesKey("alice"), "USD")) === "10050" ? true : undefined));
    expect(await redis.hlen(keys.openTradesKey("alice"))).toBe(0);
    const quote = JSON.parse((await redis.hget(keys.quotesKey, "ETH"))!) as { bid: string };
    expect(quote.bid).toBe("2100");

    // An engine restart re-emits old outputs (same ids); caught midway (only up to the open, before the close),
    // unguarded read models would show the trade open and 9900 USD again. Then the rest re-emitted: no new rows.
    const throughOpen = e.all.findIndex((o) => o.type === "order_response" && o.requestId === "r2") + 1;
    const writesBefore = sample(await samples(), "worker_postgres_write_duration_seconds_count");
    await e.republish(e.all.slice(0, throughOpen));
    await until(async () =>
      ((await redis.xpending(keys.output, keys.workerGroup)) as [number])[0] === 0 ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(await redis.hget(keys.balancesKey("alice"), "USD")).toBe("10050");
    expect(await redis.hlen(keys.openTradesKey("alice"))).toBe(0);
    await e.republish(e.all.slice(throughOpen));
    await until(async () =>
      ((await redis.xpending(keys.output, keys.workerGroup)) as [number])[0] === 0 &&
      (await redis.xlen(keys.output)) > 0
        ? true
        : undefined,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect((await pg.db.query("SELECT count(*)::int AS n FROM closed_orders")).rows[0]).toEqual({ n: 1 });
    expect(await redis.hget(keys.balancesKey("alice"), "USD")).toBe("10050");
    expect(await redis.hlen(keys.openTradesKey("alice"))).toBe(0);
    expect(JSON.parse((await redis.hget(keys.quotesKey, "ETH"))!)).toMatchObject({ bid: "2100" });
    // Every entry was handled once, the replayed ones included; the replayed close was inserted again (a no-op).
    expect(sample(await samples(), "worker_entries_handled_total")).toBe(await redis.xlen(keys.output));
    expect(sample(await samples(), "worker_postgres_write_duration_seconds_count")).toBeGreaterThan(writesBefore);
    // Alice's events are stored once each, in the engine's numbering, all under the mark, though replayed twice.
    const events = e.all.filter((o) => isPrivateOutput(o)).filter((o) => o.userId === "alice");
    // Each stored with `more` when its engine step has another event for her after it (the open, then its margin).
    const continued = events.filter((o, i) => events[i + 1]?.inputId === o.inputId).map((o) => o.seq);
    expect(continued).not.toEqual([]);
    expect(await readEventsAfter(redis, keys, "alice", 0)).toEqual({
      ok: true,
      events,
      continued,
      mark: events.length,
      aheadSeq: 0,
    });

    stop.abort();
    await running;
  });

  it("writes read models by script hash, and loads the scripts again when Redis has lost them", async () => {
    // A Redis of its own: SCRIPT FLUSH empties a server's whole script cache, under every other test file running.
    const scratch = await startScratchRedis("worker-noscript");
    const redis = new Redis(scratch.port, "127.0.0.1");
    const reader = new Redis(scratch.port, "127.0.0.1");
    const local = keyspace(`${prefix}noscript:`);
    const state = createState(makeParams({ shard: 2 }));
    const stop = new AbortController();
    const running = runWorker(
      { reader, writer: redis, db: pg.db, keys: local, log, consumer: "w1", blockMs: 50 },
      stop.signal,
    );
    try {
      // A first batch goes through, so the worker has loaded its scripts; then Redis loses them.
      const warmUp = apply(state, { id: "19-0", message: instruct("dave", "d1", { kind: "create_account" }) });
      for (const o of warmUp) await redis.xadd(local.output, "*", ...encodeFields(o));
      await until(() => redis.lpop(local.responseKey("dave", "19-0")));
      await redis.script("FLUSH"); // as after a Redis restart without persistence of scripts
      // In one transaction, so the worker reads the balances and the answer in one batch.
      const outputs = apply(state, { id: "20-0", message: instruct("carol", "c1", { kind: "create_account" }) });
      const both = redis.multi();
      for (const o of outputs) both.xadd(local.output, "*", ...encodeFields(o));
      await both.exec();
      expect(await until(() => redis.lpop(local.responseKey("carol", "20-0")))).toContain('"granted":true');
      expect(await redis.hget(local.balancesKey("carol"), "USD")).toBe("10000");
      // The event appends are scripts too: reloaded with the rest, carol's one event is stored once, under the mark
      expect(await readEventsAfter(redis, local, "carol", 0)).toMatchObject({
        ok: true,
        events: [{ seq: 1 }],
        mark: 1,
      });
      await until(async () =>
        ((await redis.xpending(local.output, local.workerGroup)) as [number])[0] === 0 ? true : undefined,
      );
      expect(await redis.lrange(local.responseKey("carol", "20-0"), 0, -1)).toEqual([]); // answered once: the failed attempt pushed nothing
    } finally {
      stop.abort();
      await running;
      redis.disconnect();
      reader.disconnect();
      await scratch.stop();
    }
  });

  it("leaves a batch unacknowledged when an effect fails, and another worker claims and applies it", async () => {
    const local = keyspace(`${prefix}claim:`);
    await redis.xgroup("CREATE", local.output, local.workerGroup, "0", "MKSTREAM");
    // Shard 1, so its trade ids cannot collide with the first test's rows.
    const state = createState(makeParams({ shard: 1 }));
    const inputs: EngineInput[] = [
      instruct("bob", "b1", { kind: "create_account" }),
      { type: "price_update", market: "ETH_USDC_PERP", bid: "2000", ask: "2000", exchangeTimeUs: "1", source: "sim" },
      instruct("bob", "b2", {
        kind: "open_trade",
        asset: "ETH",
        side: "short",
        margin: "50",
        leverage: 2,
        takeProfit: "1900",
      }),
      { type: "price_update", market: "ETH_USDC_PERP", bid: "1900", ask: "1900", exchangeTimeUs: "2", source: "sim" },
    ];
    const outputs = inputs.flatMap((message, i) => apply(state, { id: `${10 + i}-0`, message }));
    const b2InputId = "12-0"; // the open's entry id: its answer's key
    expect(outputs.some((o) => o.type === "closed_order")).toBe(true);
    for (const o of outputs) await redis.xadd(local.output, "*", ...encodeFields(o));

    // Worker w1 takes the batch, then fails on Postgres: it must acknowledge nothing.
    const read = (await redis.xreadgroup(
      "GROUP",
      local.workerGroup,
      "w1",
      "COUNT",
      100,
      "STREAMS",
      local.output,
      ">",
    )) as [string, [string, string[]][]][];
    const entries = read[0]![1];
    const brokenDb = { query: () => Promise.reject(new Error("db down")) } as unknown as TestDatabase["db"];
    await expect(
      handleBatch({ reader, writer: redis, db: brokenDb, keys: local, log, consumer: "w1" }, entries),
    ).rejects.toThrow("db down");
    expect(((await redis.xpending(local.output, local.workerGroup)) as [number])[0]).toBe(entries.length);
    expect(await redis.llen(local.responseKey("bob", b2InputId))).toBe(0);

    // w1 is gone; w2 claims what it left pending and applies it.
    const stop = new AbortController();
    const running = runWorker(
      { reader, writer: redis, db: pg.db, keys: local, log, consumer: "w2", blockMs: 50, claimIdleMs: 100 },
      stop.signal,
    );
    const row = await until(
      async () => (await pg.db.query<{ pnl: string }>("SELECT pnl::text FROM closed_orders WHERE id = 'T1-1'")).rows[0],
    );
    expect(row.pnl).toBe("5.000000"); // short 0.05 ETH from 2000 to 1900
    await until(async () =>
      ((await redis.xpending(local.output, local.workerGroup)) as [number])[0] === 0 ? true : undefined,
    );
    expect(await redis.llen(local.responseKey("bob", b2InputId))).toBe(1);
    stop.abort();
    await running;
  });

  it("logs worker_stats: entries handled, and the group's lag and pending count on engine:output", async () => {
    const own = keyspace(`${prefix}stats:`);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    await ensureGroup(redis, own);
    const output = (n: number) => ["type", "quote_updated", "body", JSON.stringify({ n })];
    for (let n = 0; n < 3; n++) await redis.xadd(own.output, "*", ...output(n));
    expect(await groupBacklog(redis, own)).toEqual({ lag: 3, pending: 0 });
    await redis.xreadgroup("GROUP", own.workerGroup, "probe", "COUNT", 2, "STREAMS", own.output, ">");
    expect(await groupBacklog(redis, own)).toEqual({ lag: 1, pending: 2 });
    await redis.xgroup("DESTROY", own.output, own.workerGroup);
    expect(await groupBacklog(redis, own)).toBeUndefined();

    // A running worker: everything handled (the bodies are not valid outputs: logged and acknowledged), nothing left.
    const stop = new AbortController();
    const registry = new Registry();
    const running = runWorker(
      {
        reader,
        writer: redis,
        db: pg.db,
        keys: own,
        log: capture,
        consumer: "w-stats",
        blockMs: 20,
        statsEveryMs: 50,
        metrics: workerMetrics(registry),
      },
      stop.signal,
    );
    const stats = await until(() => Promise.resolve(lines.find((l) => l.event === "worker_stats" && l.handled === 3)));
    expect(stats).toMatchObject({ lag: 0, pending: 0 });
    // The metrics say the same as the line.
    const samples = parseSamples(await registry.metrics());
    expect(sample(samples, "worker_entries_handled_total")).toBe(3);
    expect(sample(samples, "worker_group_lag_entries")).toBe(0);
    expect(sample(samples, "worker_group_pending_entries")).toBe(0);
    expect(sample(samples, "worker_postgres_backlog_entries")).toBe(0);
    expect(stats).toMatchObject({ postgresBacklog: 0 });
    stop.abort();
    await running;
  });

  it("removes consumers of workers that are gone (nothing pending, idle long), never one with entries pending", async () => {
    const own = keyspace(`${prefix}forget:`);
    await ensureGroup(redis, own);
    const output = (n: number) => ["type", "quote_updated", "body", JSON.stringify({ n })];
    await redis.xadd(own.output, "*", ...output(0));
    // "gone" read nothing and is idle; "busy" holds an entry it has not acknowledged (claimed only after 60 s).
    await redis.xgroup("CREATECONSUMER", own.output, own.workerGroup, "gone");
    await redis.xreadgroup("GROUP", own.workerGroup, "busy", "COUNT", 1, "STREAMS", own.output, ">");
    await sleep(150);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const stop = new AbortController();
    const options = { reader, writer: redis, db: pg.db, keys: own, log: capture, consumer: "w-forget", blockMs: 20 };
    const running = runWorker({ ...options, claimIdleMs: 60_000, forgetConsumerMs: 100 }, stop.signal);
    try {
      await until(() => Promise.resolve(lines.find((l) => l.event === "consumer_removed")));
    } finally {
      stop.abort();
      await running;
    }
    const names = ((await redis.xinfo("CONSUMERS", own.output, own.workerGroup)) as unknown[][]).map((c) => c[1]);
    expect(names).not.toContain("gone");
    expect(names).toContain("busy");
    expect(((await redis.xpending(own.output, own.workerGroup)) as [number])[0]).toBe(1);
    expect(lines.filter((l) => l.event === "consumer_removed").map((l) => l.consumer)).toEqual(["gone"]);
    // The script itself keeps a consumer with entries pending, and says so of one that is gone already.
    expect(await forgetConsumer(redis, own, "busy")).toBe(false);
    expect(await forgetConsumer(redis, own, "gone")).toBe(false);
    const after = ((await redis.xinfo("CONSUMERS", own.output, own.workerGroup)) as unknown[][]).map((c) => c[1]);
    expect(after).toContain("busy");
    expect(after).not.toContain("gone");
  });

  it("trims engine:output of what every group acknowledged, never an entry pending or not yet delivered", async () => {
    const own = keyspace(`${prefix}trim:`);
    const output = (n: number) => ["type", "quote_updated", "body", JSON.stringify({ n })];
    const ids: string[] = [];
    for (let n = 0; n < 10; n++) ids.push((await redis.xadd(own.output, "*", ...output(n)))!);
    const first = async () => ((await redis.xrange(own.output, "-", "+", "COUNT", 1)) as [string, string[]][])[0]![0];
    const later = Date.now() + 60_000;
    // No group reads the stream yet: all of it may still be needed.
    expect((await trimHandledOutputs(redis, own, later)).trimmed).toBe(0);
    await ensureGroup(redis, own);
    expect((await trimHandledOutputs(redis, own, later)).trimmed).toBe(0); // a new group has been delivered nothing

    const read = (consumer: string, count: number) =>
      redis.xreadgroup("GROUP", own.workerGroup, consumer, "COUNT", count, "STREAMS", own.output, ">");
    // Six delivered, the first two acknowledged, 2..5 pending, 6..9 not yet delivered: only 0 and 1 go.
    await read("a", 6);
    await redis.xack(own.output, own.workerGroup, ids[0]!, ids[1]!);
    expect((await trimHandledOutputs(redis, own, later)).trimmed).toBe(2);
    expect(await first()).toBe(ids[2]);
    // All six acknowledged: trimmed up to the last delivered, which stays; 6..9 are still to be read.
    await redis.xack(own.output, own.workerGroup, ...ids.slice(2, 6));
    expect((await trimHandledOutputs(redis, own, later)).trimmed).toBe(3);
    expect(await first()).toBe(ids[5]);
    expect((await read("a", 10))![0]![1].map(([id]) => id)).toEqual(ids.slice(6));

    // A second group that has read less holds the trim back to what it still needs, and is named.
    await redis.xgroup("CREATE", own.output, "other", ids[6]!);
    await redis.xack(own.output, own.workerGroup, ...ids.slice(6));
    expect(await trimHandledOutputs(redis, own, later)).toEqual({
      trimmed: 1,
      heldBy: "other",
      heldAt: ids[6],
      owed: false,
    });
    expect(await first()).toBe(ids[6]);
    await redis.xgroup("DESTROY", own.output, "other");

    // The workers' own group needing older entries does not hide another group from the warning's report.
    await redis.xgroup("CREATE", own.output, "late", "$");
    await redis.xgroup("CREATE", own.output, "early", "0-0");
    // (A cutoff of 0 trims nothing here, so the entries below stay for the next steps.)
    expect(await trimHandledOutputs(redis, own, 0)).toEqual({
      trimmed: 0,
      heldBy: "early",
      heldAt: "0-0",
      owed: false,
    });
    await redis.xgroup("DESTROY", own.output, "early");
    expect(await trimHandledOutputs(redis, own, 0)).toEqual({
      trimmed: 0,
      heldBy: "late",
      heldAt: ids[9],
      owed: false,
    });
    await redis.xgroup("DESTROY", own.output, "late");

    // At most maxEntries a call: a long backlog goes over several.
    expect((await trimHandledOutputs(redis, own, later, 1)).trimmed).toBe(1);
    expect(await first()).toBe(ids[7]);

    // Nothing added at or after the cutoff goes, acknowledged or not.
    const cutoff = Number(ids[8]!.split("-")[0]);
    await trimHandledOutputs(redis, own, cutoff);
    expect(Number((await first()).split("-")[0])).toBeGreaterThanOrEqual(cutoff);
    expect((await trimHandledOutputs(redis, own, later)).trimmed).toBeGreaterThan(0);
    expect(await first()).toBe(ids[9]);

    // A running worker trims as it claims: with no time kept, only the last entry it was delivered is left.
    for (let n = 10; n < 15; n++) ids.push((await redis.xadd(own.output, "*", ...output(n)))!);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const stop = new AbortController();
    const options = { reader, writer: redis, db: pg.db, keys: own, log: capture, consumer: "w-trim", blockMs: 20 };
    const running = runWorker({ ...options, claimIdleMs: 100, statsEveryMs: 50, outputKeepMs: 0 }, stop.signal);
    try {
      await until(() => Promise.resolve(lines.find((l) => l.event === "worker_stats" && Number(l.trimmed) > 0)));
      await until(async () => ((await redis.xlen(own.output)) === 1 ? true : undefined));
    } finally {
      stop.abort();
      await running;
    }
    expect(await first()).toBe(ids[14]);

    // A group left behind (an operator's, say) holds the trim back: the worker names it each round.
    await redis.xgroup("CREATE", own.output, "stale", ids[14]!);
    for (let n = 15; n < 18; n++) ids.push((await redis.xadd(own.output, "*", ...output(n)))!);
    lines.length = 0;
    const again = new AbortController();
    const held = { ...options, claimIdleMs: 100, outputKeepMs: 0, forgetConsumerMs: 50 };
    const rerun = runWorker(held, again.signal);
    try {
      const warning = await until(() => Promise.resolve(lines.find((l) => l.event === "output_trim_held")));
      expect(warning).toMatchObject({ level: "warn", group: "stale", neededId: ids[14] });
    } finally {
      again.abort();
      await rerun;
    }
    expect(await first()).toBe(ids[14]);
  });

  it("keeps on engine:output every entry from the first the Postgres backlog owes, and says it owes", async () => {
    const own = keyspace(`${prefix}trim-owed:`);
    for (let n = 1; n <= 12; n++) await redis.xadd(own.output, `1-${n}`, "type", "quote_updated", "body", "{}");
    await ensureGroup(redis, own);
    await redis.xreadgroup("GROUP", own.workerGroup, "a", "STREAMS", own.output, ">");
    await redis.xack(own.output, own.workerGroup, ...Array.from({ length: 12 }, (_, i) => `1-${i + 1}`));
    const first = async () => ((await redis.xrange(own.output, "-", "+", "COUNT", 1)) as [string, string[]][])[0]![0];
    const later = Date.now() + 60_000;
    // Two ranges of one ms: the oldest is 1-9, though "1-10" comes first as text.
    await redis.zadd(own.postgresBacklog, 1, "1-10 1-11 2", 1, "1-9 1-9 1");
    expect(await trimHandledOutputs(redis, own, later)).toMatchObject({ trimmed: 8, owed: true });
    expect(await first()).toBe("1-9");
    await redis.zrem(own.postgresBacklog, "1-9 1-9 1");
    expect(await trimHandledOutputs(redis, own, later)).toMatchObject({ trimmed: 1, owed: true });
    expect(await first()).toBe("1-10");
    await redis.zrem(own.postgresBacklog, "1-10 1-11 2");
    // Nothing owed: down to the last entry delivered, as ever.
    expect(await trimHandledOutputs(redis, own, later)).toMatchObject({ trimmed: 2, owed: false });
    expect(await first()).toBe("1-12");
  });

  it("holds fewer than Upstash's 1,000 pending entries per consumer, even restarted with 900 left pending", async () => {
    const own = keyspace(`${prefix}pel:`);
    const consumer = "w-pel";
    const quiet = createLogger("worker-test", { sink: () => undefined });
    await ensureGroup(redis, own);
    const add = redis.pipeline();
    for (let n = 0; n < 2_500; n++) add.xadd(own.output, "*", "type", "quote_updated", "body", JSON.stringify({ n }));
    await add.exec();
    // An earlier run under the same name read 900 entries and died before acknowledging them; one of them has been
    // trimmed from the stream since.
    const read = (await redis.xreadgroup(
      "GROUP",
      own.workerGroup,
      consumer,
      "COUNT",
      900,
      "STREAMS",
      own.output,
      ">",
    )) as [string, [string, string[]][]][] | null;
    const [firstId] = read?.[0]?.[1][0] ?? [];
    expect(read?.[0]?.[1].length).toBe(900);
    await redis.xdel(own.output, firstId!);

    // Upstash's check, made before each read that adds to the consumer's list: what it holds plus what it asks for.
    const asked: { command: string; pending: number; count: number }[] = [];
    const checked = (client: Redis, command: "xreadgroup" | "xautoclaim") => {
      const original = (client[command] as (...args: unknown[]) => Promise<unknown>).bind(client);
      const replacement = async (...args: (string | number)[]) => {
        const summary = await redis.xpending(own.output, own.workerGroup, "-", "+", 10_000, consumer);
        asked.push({ command, pending: summary.length, count: Number(args[args.indexOf("COUNT") + 1]) });
        return original(...args);
      };
      return Object.assign(client, { [command]: replacement });
    };
    const checkedReader = checked(new Redis(REDIS_URL), "xreadgroup");
    const checkedWriter = checked(new Redis(REDIS_URL), "xautoclaim");
    const stop = new AbortController();
    const running = runWorker(
      { reader: checkedReader, writer: checkedWriter, db: pg.db, keys: own, log: quiet, consumer, blockMs: 20 },
      stop.signal,
    );
    try {
      await until(async () => {
        const backlog = await groupBacklog(redis, own);
        return backlog?.lag === 0 && backlog.pending === 0 ? backlog : undefined;
      });
    } finally {
      stop.abort();
      await running;
      checkedReader.disconnect();
      checkedWriter.disconnect();
    }
    expect(asked.filter((a) => a.command === "xreadgroup").length).toBeGreaterThanOrEqual(4); // 1,600 new, 499 a read
    // A read may come while the batch before it is still pending (its rest under way), never past the limit.
    // Strictly below Upstash's 1,000: whether a read that reaches it is refused is not documented.
    for (const a of asked) expect(a.pending + a.count, JSON.stringify(a)).toBeLessThan(UPSTASH_PEL_LIMIT);
    expect(asked.every((a) => a.pending <= 500)).toBe(true);
  });

  it("fans out a batch's quotes while the batch before it still writes to Postgres; everything else in log order", async () => {
    const local = keyspace(`${prefix}overlap:`);
    await ensureGroup(redis, local);
    await redis.xgroup("CREATE", local.streamFanout, "probe", "0", "MKSTREAM");
    const state = createState(makeParams());
    let n = 20;
    const publish = async (...messages: EngineInput[]) => {
      for (const message of messages)
        for (const o of apply(state, { id: `${n++}-0`, message }))
          await redis.xadd(local.output, "*", ...encodeFields(o));
    };
    const price = (bid: string): EngineInput => ({
      type: "price_update",
      market: "ETH_USDC_PERP",
      bid,
      ask: bid,
      exchangeTimeUs: "1",
      source: "sim",
    });
    const fanout = async () =>
      (await redis.xrange(local.streamFanout, "-", "+")).map(
        ([, f]) => (f[1] === "quote" ? `quote ${(JSON.parse(f[3]!) as { bid: string }).bid}` : `${f[1]} ${f[3]}`), // event <user>
      );
    // Postgres holds every write (the first batch's candle) until released.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const heldDb = { query: async (text: string, params?: unknown[]) => (await held, pg.db.query(text, params)) };
    await publish(price("2000"), instruct("alice", "a1", { kind: "create_account" }));
    const stop = new AbortController();
    const registry = new Registry();
    const handled = async () => sample(parseSamples(await registry.metrics()), "worker_entries_handled_total");
    const running = runWorker(
      {
        reader,
        writer: redis,
        db: heldDb as TestDatabase["db"],
        keys: local,
        log,
        consumer: "w",
        blockMs: 20,
        metrics: workerMetrics(registry),
      },
      stop.signal,
    );
    try {
      await until(async () => ((await fanout()).includes("quote 2000") ? true : undefined));
      await publish(price("2001"), instruct("bob", "b1", { kind: "create_account" }));
      // The second batch's quote goes out while the first batch's rest waits on Postgres; no event has gone out.
      await until(async () => ((await fanout()).includes("quote 2001") ? true : undefined));
      expect(await fanout()).toEqual(["quote 2000", "quote 2001"]);
      expect(((await redis.xpending(local.output, local.workerGroup)) as [number])[0]).toBeGreaterThan(0);
      // Read, quotes out, but none acknowledged: none counted.
      expect(await handled()).toBe(0);
      release();
      await until(async () => ((await groupBacklog(redis, local))?.pending === 0 ? true : undefined));
      expect(await handled()).toBe(await redis.xlen(local.output));
      const kinds = await fanout();
      const alice = kinds.indexOf("event alice");
      const bob = kinds.indexOf("event bob");
      expect(alice).toBeGreaterThan(1);
      expect(bob).toBeGreaterThan(alice);
    } finally {
      release();
      stop.abort();
      await running;
    }
  });

  it("fans out the engine's `more` on an event even when a read ends right after it, inside its step", async () => {
    const local = keyspace(`${prefix}step-cut:`);
    await ensureGroup(redis, local);
    const state = createState(makeParams());
    const messages: EngineInput[] = [
      { type: "price_update", market: "ETH_USDC_PERP", bid: "2000", ask: "2000", exchangeTimeUs: "1", source: "sim" },
      instruct("alice", "a1", { kind: "create_account" }),
      instruct("alice", "a2", { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 }),
    ];
    const outputs = messages.flatMap((message, i) => apply(state, { id: `${20 + i}-0`, message }));
    for (const fields of outputEntries(outputs)) await redis.xadd(local.output, "*", ...fields);
    // A batch size that cuts the open's step right after trade_opened: balances_changed and the answer come after
    const cut = outputs.findIndex((o) => o.type === "trade_opened") + 1;
    expect(outputs.slice(cut).map((o) => o.type)).toEqual(["balances_changed", "order_response"]);
    const stop = new AbortController();
    const options = { reader, writer: redis, db: pg.db, keys: local, log, consumer: "w", blockMs: 20 };
    const running = runWorker({ ...options, batchSize: cut }, stop.signal);
    try {
      await until(() => redis.lpop(local.responseKey("alice", "22-0")));
      await until(async () => ((await groupBacklog(redis, local))?.pending === 0 ? true : undefined));
    } finally {
      stop.abort();
      await running;
    }
    const events = (await redis.xrange(local.streamFanout, "-", "+"))
      .map(([, f]) => f)
      .filter((f) => f[1] === "event")
      .map((f) => `${f[5]} ${(JSON.parse(f.at(-1)!) as { type: string }).type}${f[6] === "more" ? " more" : ""}`);
    expect(events).toEqual(["1 balances_changed", "2 trade_opened more", "3 balances_changed"]);
  });

  /** Resolves once a worker's start has made its group (on a writer that may still be connecting). */
  const untilGroup = (client: Redis, local: Keyspace) =>
    until(() =>
      client.xinfo("GROUPS", local.output).then(
        (groups) => ((groups as unknown[]).length > 0 ? true : undefined),
        () => undefined,
      ),
    );

  /**
   * A worker whose Postgres (or, with `frozen: "reader"` or `"writer"`, that Redis connection) goes through a proxy
   * that then stops passing anything, as a dead peer does; a price and an account's creation are published after it
   * froze.
   */
  async function stuckWorker(name: string, frozen: "postgres" | "reader" | "writer") {
    const local = keyspace(`${prefix}${name}:`);
    const where = describeDatabase(pg.url);
    // The proxy passes bytes, whatever the protocol: Postgres's as well as Redis's.
    const target = frozen === "postgres" ? `tcp://${where.host}:${where.port}` : REDIS_URL;
    const proxy = await startRedisProxy(target);
    const url = new URL(pg.url);
    if (frozen === "postgres") url.port = String(proxy.port);
    const db = await connectPostgres(url.toString(), log, { closeTimeoutMs: 100 });
    const proxied = `redis://127.0.0.1:${proxy.port}`;
    const proxiedReader = new Redis(frozen === "reader" ? proxied : REDIS_URL);
    const writer = frozen === "writer" ? new Redis(proxied) : redis;
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const stop = new AbortController();
    const options = { reader: proxiedReader, writer, db, keys: local, log: capture, consumer: "w" };
    const running = runWorker({ ...options, blockMs: 50, stuckAfterMs: 1_000 }, stop.signal);
    running.catch(() => undefined);
    await untilGroup(redis, local);
    if (frozen === "writer") {
      // The writer's part of the start comes after the group: a first batch handled is past it.
      const warmUp = apply(createState(makeParams()), {
        id: "39-0",
        message: instruct("wes", "w0", { kind: "create_account" }),
      });
      for (const o of warmUp) await redis.xadd(local.output, "*", ...encodeFields(o));
      await until(() => redis.lpop(local.responseKey("wes", "39-0")));
      // Its fan-out and XACK follow the answer on the writer: frozen before they are done, the warm-up is what sticks.
      await until(async () =>
        ((await redis.xpending(local.output, local.workerGroup)) as [number])[0] === 0 ? true : undefined,
      );
    }
    proxy.freeze();
    const state = createState(makeParams());
    const messages: EngineInput[] = [
      { type: "price_update", market: "ETH_USDC_PERP", bid: "2000", ask: "2000", exchangeTimeUs: "1", source: "sim" },
      instruct("erin", "e1", { kind: "create_account" }),
    ];
    for (const [i, message] of messages.entries())
      for (const o of apply(state, { id: `${40 + i}-0`, message }))
        await redis.xadd(local.output, "*", ...encodeFields(o));
    return {
      local,
      lines,
      stop,
      running,
      close: async () => {
        proxiedReader.disconnect();
        if (writer !== redis) writer.disconnect();
        await db.close();
        await proxy.close();
      },
    };
  }

  it("ends with worker_stuck when Postgres stops answering under a batch, its entries left for a claim", async () => {
    const w = await stuckWorker("stuck-pg", "postgres");
    try {
      // The batch's quote went out; the rest of it waits on Postgres.
      await until(async () => ((await redis.xlen(w.local.streamFanout)) > 0 ? true : undefined));
      const startedAt = performance.now();
      await expect(w.running).rejects.toThrow(WorkerStuckError);
      expect(performance.now() - startedAt).toBeLessThan(3_000);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([
        expect.objectContaining({ level: "error", step: "batch_rest", stuckAfterMs: 1_000 }),
      ]);
      expect(((await redis.xpending(w.local.output, w.local.workerGroup)) as [number])[0]).toBeGreaterThan(0);
      expect(await redis.llen(w.local.responseKey("erin", "41-0"))).toBe(0);
    } finally {
      w.stop.abort();
      await w.close();
    }
  });

  it("stops within the stuck bound while a batch waits on a Postgres that stopped answering", async () => {
    const w = await stuckWorker("stuck-stop", "postgres");
    try {
      await until(async () => ((await redis.xlen(w.local.streamFanout)) > 0 ? true : undefined));
      const startedAt = performance.now();
      w.stop.abort();
      await expect(w.running).rejects.toThrow(WorkerStuckError);
      expect(performance.now() - startedAt).toBeLessThan(3_000);
      expect(w.lines.map((l) => l.event)).toContain("worker_stuck");
    } finally {
      await w.close();
    }
  });

  it("ends with worker_stuck when its group read's connection stops answering", async () => {
    const w = await stuckWorker("stuck-read", "reader");
    try {
      const startedAt = performance.now();
      await expect(w.running).rejects.toThrow(WorkerStuckError);
      expect(performance.now() - startedAt).toBeLessThan(3_000);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([
        expect.objectContaining({ level: "error", step: "read", stuckAfterMs: 1_000 }),
      ]);
    } finally {
      w.stop.abort();
      await w.close();
    }
  });

  it("ends with worker_stuck when its writer connection stops answering", async () => {
    const w = await stuckWorker("stuck-write", "writer");
    try {
      const startedAt = performance.now();
      await expect(w.running).rejects.toThrow(WorkerStuckError);
      expect(performance.now() - startedAt).toBeLessThan(3_000);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([
        expect.objectContaining({ level: "error", step: "batch_quotes", stuckAfterMs: 1_000 }),
      ]);
    } finally {
      w.stop.abort();
      await w.close();
    }
  });

  /** A redis-server of the test's own, stopped and started again on the same port and data (AOF, fsync always). */
  async function restartableRedis(name: string) {
    const dir = mkdtempSync(join(tmpdir(), `${name}-`));
    const port = await freePort();
    const args = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""];
    let server = await startRedisServer(port, dir, args);
    return {
      url: `redis://127.0.0.1:${port}`,
      down: async () => void (await server.stop("SIGTERM")),
      /** Resolves once it serves commands, loading done. */
      up: async (extra: readonly string[] = []) =>
        void (server = await startRedisServer(port, dir, [...args, ...extra])),
      close: async () => {
        await server.stop("SIGTERM");
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  /**
   * A worker on its own Redis, with its connections made as main.ts makes them, whose Postgres statements wait for
   * `postgresHeld`; and the test's own connection to that Redis.
   */
  async function workerOnOwnRedis(name: string, stuckAfterMs: number, postgresHeld: Promise<void> = Promise.resolve()) {
    const server = await restartableRedis(name);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const writer = connectRedis(server.url, capture, "worker-writer");
    const reader = connectRedis(server.url, capture, "worker-reader", { resendUnanswered: false });
    const direct = new Redis(server.url);
    direct.on("error", () => undefined); // down with the server while it is
    const heldDb = {
      query: async (text: string, params?: unknown[]) => (await postgresHeld, pg.db.query(text, params)),
    };
    const local = keyspace(`${prefix}${name}:`);
    const stop = new AbortController();
    const options = { reader, writer, db: heldDb as TestDatabase["db"], keys: local, log: capture, consumer: "w" };
    const running = runWorker({ ...options, blockMs: 50, stuckAfterMs }, stop.signal);
    const ended = { now: false };
    running.then(
      () => (ended.now = true),
      () => (ended.now = true),
    );
    const close = async () => {
      reader.disconnect();
      writer.disconnect();
      direct.disconnect();
      await server.close();
    };
    try {
      await untilGroup(direct, local);
    } catch (err) {
      stop.abort();
      await close();
      throw err;
    }
    return { server, writer, direct, local, lines, stop, running, ended, close };
  }

  it("waits out a Redis restart, down then loading for longer than its stuck bound, and handles what waited", async () => {
    let releasePostgres!: () => void;
    const postgresHeld = new Promise<void>((resolve) => (releasePostgres = resolve));
    const w = await workerOnOwnRedis("redis-restart", 500, postgresHeld);
    try {
      // Data in the AOF's base for the restarted Redis to load slowly, answering only LOADING meanwhile.
      const filler = w.direct.pipeline();
      for (let n = 0; n < 400; n++) filler.set(`filler:${n}`, "x".repeat(200));
      await filler.exec();
      await w.direct.bgrewriteaof();
      await until(async () =>
        /aof_rewrite_(in_progress|scheduled):1/.test(await w.direct.info("persistence")) ? undefined : true,
      );
      // A batch whose quote went out and whose rest waits on Postgres: its Redis writes come during the outage.
      const state = createState(makeParams());
      const publish = async (id: number, message: EngineInput) => {
        for (const o of apply(state, { id: `${id}-0`, message }))
          await w.direct.xadd(w.local.output, "*", ...encodeFields(o));
      };
      const price = { type: "price_update", market: "ETH_USDC_PERP", bid: "2000", ask: "2000", source: "sim" } as const;
      await publish(70, { ...price, exchangeTimeUs: "1" });
      await publish(71, instruct("hal", "h1", { kind: "create_account" }));
      await until(async () => ((await w.direct.xlen(w.local.streamFanout)) > 0 ? true : undefined));
      await w.server.down();
      releasePostgres();
      // Down for four bounds: the batch's rest, the group read and the reader's PING all wait through it.
      await sleep(2_000);
      expect(w.ended.now).toBe(false);
      // Then loading for seconds (400 keys, 7 ms each, answering every 1 KB): the writer connects to it meanwhile.
      const loading = { done: false, connectedMs: 0 };
      const back = w.server.up(["--key-load-delay", "7000", "--loading-process-events-interval-bytes", "1024"]);
      const settled = () => void (loading.done = true);
      void back.then(settled, settled);
      for (let since: number | undefined; !loading.done; await sleep(20)) {
        since = w.writer.status === "connect" ? (since ?? performance.now()) : undefined;
        if (since !== undefined) loading.connectedMs = Math.max(loading.connectedMs, performance.now() - since);
      }
      await back;
      expect(loading.connectedMs).toBeGreaterThan(1_000);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([]);
      expect(await until(() => w.direct.lpop(w.local.responseKey("hal", "71-0")), 10_000)).toContain('"granted":true');
      await publish(72, instruct("ivy", "i1", { kind: "create_account" }));
      expect(await until(() => w.direct.lpop(w.local.responseKey("ivy", "72-0")))).toContain('"granted":true');
      await until(async () => ((await groupBacklog(w.direct, w.local))?.pending === 0 ? true : undefined));
      expect(w.ended.now).toBe(false);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([]);
      expect(w.lines.map((l) => l.event)).toEqual(expect.arrayContaining(["redis_error", "redis_reconnected"]));
      w.stop.abort();
      await w.running;
    } finally {
      w.stop.abort();
      releasePostgres();
      await w.running.catch(() => undefined);
      await w.close();
    }
  });

  it("started while its Redis loads for longer than its stuck bound, with Postgres first, it waits for it", async () => {
    const server = await restartableRedis("redis-cold-start");
    const direct = new Redis(server.url);
    direct.on("error", () => undefined); // down with the server while it is
    const filler = direct.pipeline();
    for (let n = 0; n < 400; n++) filler.set(`filler:${n}`, "x".repeat(200));
    await filler.exec();
    await direct.bgrewriteaof();
    await until(async () =>
      /aof_rewrite_(in_progress|scheduled):1/.test(await direct.info("persistence")) ? undefined : true,
    );
    await server.down();
    const back = server.up(["--key-load-delay", "7000", "--loading-process-events-interval-bytes", "1024"]);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    // The connections watched at once, as main.ts does, and the worker started a little later.
    const writer = connectRedis(server.url, capture, "worker-writer");
    const reader = connectRedis(server.url, capture, "worker-reader", { resendUnanswered: false });
    const outages = watchRedisOutages([reader, writer]);
    const local = keyspace(`${prefix}cold-start:`);
    const stop = new AbortController();
    let running: Promise<void> | undefined;
    try {
      await until(() => Promise.resolve(writer.status === "connect" && reader.status === "connect" ? true : undefined));
      await sleep(300);
      const options = { reader, writer, db: pg.db, keys: local, log: capture, consumer: "w", outages };
      running = runWorker({ ...options, blockMs: 50, stuckAfterMs: 500 }, stop.signal);
      await back;
      await until(async () => ((await groupBacklog(direct, local)) === undefined ? undefined : true), 10_000);
      expect(lines.filter((l) => l.event === "worker_stuck")).toEqual([]);
      stop.abort();
      await running;
    } finally {
      stop.abort();
      await running?.catch(() => undefined);
      reader.disconnect();
      writer.disconnect();
      direct.disconnect();
      await back.catch(() => undefined);
      await server.close();
    }
  });

  it("ends with worker_stuck when a Redis connection connects and nothing answers on it", async () => {
    const local = keyspace(`${prefix}stuck-connect:`);
    const proxy = await startRedisProxy(REDIS_URL);
    proxy.freeze(); // accepts connections, passes nothing: as a frozen Redis, or a dead proxy in front of one
    const silentReader = new Redis(`redis://127.0.0.1:${proxy.port}`);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const stop = new AbortController();
    const options = { reader: silentReader, writer: redis, db: pg.db, keys: local, log: capture, consumer: "w" };
    const startedAt = performance.now();
    const running = runWorker({ ...options, blockMs: 50, stuckAfterMs: 1_000 }, stop.signal);
    try {
      await expect(running).rejects.toThrow(WorkerStuckError);
      expect(performance.now() - startedAt).toBeLessThan(3_000);
      expect(silentReader.status).toBe("connect");
      expect(lines.filter((l) => l.event === "worker_stuck")).toEqual([
        expect.objectContaining({ level: "error", step: "read", stuckAfterMs: 1_000 }),
      ]);
    } finally {
      stop.abort();
      await running.catch(() => undefined);
      silentReader.disconnect();
      await proxy.close();
    }
  });

  it("does not wait out a Redis outage on a stop: it ends with worker_stuck within the bound", async () => {
    const w = await workerOnOwnRedis("redis-down-stop", 500);
    try {
      await w.server.down();
      await sleep(1_500);
      expect(w.ended.now).toBe(false);
      const stoppedAt = performance.now();
      w.stop.abort();
      await expect(w.running).rejects.toThrow(WorkerStuckError);
      expect(performance.now() - stoppedAt).toBeLessThan(1_500);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([
        expect.objectContaining({ level: "error", redisDown: true, stuckAfterMs: 500 }),
      ]);
    } finally {
      w.stop.abort();
      await w.running.catch(() => undefined);
      await w.close();
    }
  });

  it.each([false, true])(
    "handles at once what a group read took when its answer was lost with the connection (resent: %s)",
    async (resend) => {
      const local = keyspace(`${prefix}lost-read-${resend}:`);
      await ensureGroup(redis, local);
      const proxy = await startRedisProxy(REDIS_URL);
      const proxiedReader = new Redis(`redis://127.0.0.1:${proxy.port}`, { autoResendUnfulfilledCommands: resend });
      const lines: Record<string, unknown>[] = [];
      const capture = createLogger("worker-test", {
        sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
      });
      // Published before the worker starts, so that its first read takes them: that read's answer is the one lost.
      const state = createState(makeParams());
      const created = apply(state, { id: "50-0", message: instruct("fay", "f1", { kind: "create_account" }) });
      for (const o of created) await redis.xadd(local.output, "*", ...encodeFields(o));
      const dropped = proxy.dropReplyTo("xreadgroup");
      const stop = new AbortController();
      const options = { reader: proxiedReader, writer: redis, db: pg.db, keys: local, log: capture, consumer: "w" };
      // Claims only after a minute: what the lost read took is not left to them.
      const running = runWorker({ ...options, blockMs: 200, claimIdleMs: 60_000 }, stop.signal);
      try {
        await dropped;
        const answer = await until(() => redis.lpop(local.responseKey("fay", "50-0")), 3_000);
        expect(answer).toContain('"granted":true');
        await until(async () => ((await groupBacklog(redis, local))?.pending === 0 ? true : undefined), 3_000);
        expect(lines.filter((l) => l.event === "group_reply_lost")).toEqual([
          expect.objectContaining({ level: "warn", command: "XREADGROUP" }),
        ]);
        expect(await readEventsAfter(redis, local, "fay", 0)).toMatchObject({ ok: true, mark: 1 });
      } finally {
        stop.abort();
        await running;
        proxiedReader.disconnect();
        await proxy.close();
      }
    },
  );

  it("handles at once what a claim took when its answer was lost with the connection", async () => {
    const local = keyspace(`${prefix}lost-claim:`);
    await ensureGroup(redis, local);
    const state = createState(makeParams());
    const created = apply(state, { id: "60-0", message: instruct("gus", "g1", { kind: "create_account" }) });
    for (const o of created) await redis.xadd(local.output, "*", ...encodeFields(o));
    // A worker that is gone read them a minute ago (XCLAIM's IDLE sets how long they have sat).
    const read = (await redis.xreadgroup("GROUP", local.workerGroup, "gone", "STREAMS", local.output, ">")) as
      [string, [string, string[]][]][] | null;
    const ids = (read?.[0]?.[1] ?? []).map(([id]) => id);
    await redis.xclaim(local.output, local.workerGroup, "gone", 0, ...ids, "IDLE", 60_000);
    const proxy = await startRedisProxy(REDIS_URL);
    const proxiedWriter = new Redis(`redis://127.0.0.1:${proxy.port}`);
    const lines: Record<string, unknown>[] = [];
    const capture = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const dropped = proxy.dropReplyTo("xautoclaim");
    const stop = new AbortController();
    const options = { reader, writer: proxiedWriter, db: pg.db, keys: local, log: capture, consumer: "w" };
    // Entries idle for 30 s are claimed, every 15 s: the claim's second run, at once, finds none of them idle.
    const running = runWorker({ ...options, blockMs: 50, claimIdleMs: 30_000 }, stop.signal);
    try {
      await dropped;
      const answer = await until(() => redis.lpop(local.responseKey("gus", "60-0")), 3_000);
      expect(answer).toContain('"granted":true');
      await until(async () => ((await groupBacklog(redis, local))?.pending === 0 ? true : undefined), 3_000);
      expect(lines.filter((l) => l.event === "group_reply_lost")).toEqual([
        expect.objectContaining({ level: "warn", command: "XAUTOCLAIM" }),
      ]);
    } finally {
      stop.abort();
      await running;
      proxiedWriter.disconnect();
      await proxy.close();
    }
  });

  it.each([false, true])(
    "keeps its reads below Upstash's 1,000 pending entries when one's answer is lost (resent: %s)",
    async (resend) => {
      const own = keyspace(`${prefix}pel-lost-${resend}:`);
      const consumer = "w-pel-lost";
      await ensureGroup(redis, own);
      // 1,600 quotes, whose candles a slow Postgres writes: a batch's rest is still under way at the next read.
      const state = createState(makeParams());
      const add = redis.pipeline();
      for (let n = 0; n < 1_600; n++) {
        const bid = String(2000 + (n % 2));
        const message: EngineInput = {
          type: "price_update",
          market: "ETH_USDC_PERP",
          bid,
          ask: bid,
          exchangeTimeUs: String(n + 1),
          source: "sim",
        };
        for (const o of apply(state, { id: `${1_900_000_000_000 + n}-0`, message }))
          add.xadd(own.output, "*", ...encodeFields(o));
      }
      await add.exec();
      expect(await redis.xlen(own.output)).toBe(1_600);
      const slowDb = {
        query: async (text: string, params?: unknown[]) => (await sleep(300), pg.db.query(text, params)),
      } as TestDatabase["db"];
      const proxy = await startRedisProxy(REDIS_URL);
      // A read ioredis sends again is not checked here (main.ts turns that off): only those the worker makes.
      const proxiedReader = new Redis(`redis://127.0.0.1:${proxy.port}`, { autoResendUnfulfilledCommands: resend });
      // Upstash's check, made before each read: what the consumer holds plus what it asks for.
      const asked: { pending: number; count: number }[] = [];
      const original = proxiedReader.xreadgroup.bind(proxiedReader) as (...args: unknown[]) => Promise<unknown>;
      Object.assign(proxiedReader, {
        xreadgroup: async (...args: (string | number)[]) => {
          const summary = await redis.xpending(own.output, own.workerGroup, "-", "+", 10_000, consumer);
          asked.push({ pending: summary.length, count: Number(args[args.indexOf("COUNT") + 1]) });
          return original(...args);
        },
      });
      const quiet = createLogger("worker-test", { sink: () => undefined });
      const dropped = proxy.dropReplyTo("xreadgroup");
      const stop = new AbortController();
      const options = { reader: proxiedReader, writer: redis, db: slowDb, keys: own, log: quiet, consumer };
      const running = runWorker({ ...options, blockMs: 20, claimIdleMs: 60_000 }, stop.signal);
      try {
        await dropped;
        // Everything read: every read so far within the limit; then everything handled.
        await until(async () => ((await groupBacklog(redis, own))?.lag === 0 ? true : undefined), 10_000);
        expect(asked.length).toBeGreaterThanOrEqual(3); // 1,600 entries, 499 a read, one lost (and one resent)
        for (const a of asked) expect(a.pending + a.count, JSON.stringify(a)).toBeLessThan(UPSTASH_PEL_LIMIT);
        // Within it, full batches of the default size still overlap: a read while a whole batch is being written.
        expect(asked.some((a) => a.count === DEFAULT_BATCH_SIZE && a.pending === a.count)).toBe(true);
        await until(async () => ((await groupBacklog(redis, own))?.pending === 0 ? true : undefined), 10_000);
      } finally {
        stop.abort();
        await running;
        proxiedReader.disconnect();
        await proxy.close();
      }
    },
  );

  it("refuses a batch size that would reach Upstash's pending limit", async () => {
    expect(MAX_PENDING_PER_CONSUMER).toBeLessThan(UPSTASH_PEL_LIMIT);
    const options = { reader, writer: redis, db: pg.db, keys: keyspace(`${prefix}big:`), log, consumer: "w-big" };
    await expect(runWorker({ ...options, batchSize: 1_000 }, new AbortController().signal)).rejects.toThrow(
      "batchSize: expected a whole number from 1 to 999, received 1000",
    );
  });
});
