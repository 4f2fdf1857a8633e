/**
 * The worker through a Postgres outage, on real Redis and Postgres: Postgres sits behind a proxy the test cuts (its
 * connections reset, new ones refused, as a Postgres killed) and mends. Trading goes on meanwhile (the engine needs
 * only Redis), so each batch's Redis part must too: answers, read models, events and their fan-out, in log order;
 * its history and candles are written once Postgres is back, exactly once, and nothing in Redis moves back.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pgDriver from "pg";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPrivateOutput, type EngineInput } from "../contract/messages.ts";
import { keyspace } from "../contract/names.ts";
import { outputEntries } from "../contract/stream-fields.ts";
import { apply } from "../engine/core/apply.ts";
import { makeParams } from "../engine/core/params.ts";
import { createState } from "../engine/core/state.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { connectPostgres } from "../platform/postgres.ts";
import { postgresErrorCode } from "../platform/postgres-errors.ts";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { startRedisProxy } from "../platform/testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { engineFeed, instruct } from "./testing/engine-feed.ts";
import { readEventsAfter, readPrivateState } from "./events.ts";
import { workerMetrics } from "./metrics.ts";
import { catchUp, oweAndAcknowledge, owedEntries } from "./postgres-backlog.ts";
import { ensureGroup, groupBacklog, runWorker, type WorkerOptions } from "./worker.ts";

const log = createLogger("worker-test", { level: "error" });
let redis: Redis;
let pg: TestDatabase;
let prefix: string;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase();
  await migrate(pg.db, log);
  prefix = `test:${randomUUID()}:`;
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

async function until<T>(probe: () => Promise<T | undefined | null>, timeoutMs = 10_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null) return value;
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The first ms of a minute, one per test: each test's candles are its own rows. */
const minute = (n: number) => 2_000_000_040_000 + n * 60_000;

/** Each test's engine numbers its trades and orders as a shard of its own: its history rows are its own too. */
let shards = 100;

/**
 * A keyspace whose workers reach Postgres (`database`, the file's unless given) through a proxy the test cuts and
 * mends, every statement counted and each one Postgres failed noted, the first one after `cutUnderNextStatement()` cut
 * while under way; and an engine in-process that publishes to it, one batch per call, at log times from `baseMs` on.
 */
async function cuttablePostgres(name: string, baseMs: number, database: TestDatabase = pg) {
  const local = keyspace(`${prefix}${name}:`);
  await ensureGroup(redis, local);
  const proxy = await startRedisProxy(database.url);
  const url = new URL(database.url);
  url.port = String(proxy.port);
  const db = await connectPostgres(url.toString(), log, { closeTimeoutMs: 100 });
  let cutArmed = false;
  const statements = { sent: 0, failed: [] as { atMs: number; code: string | undefined }[] };
  const cuttableDb = {
    query: async (text: string, params?: unknown[]) => {
      statements.sent++;
      const answer = db.query(text, params);
      answer.catch((err: unknown) => statements.failed.push({ atMs: performance.now(), code: postgresErrorCode(err) }));
      if (cutArmed) {
        cutArmed = false;
        await proxy.cut();
      }
      return answer;
    },
  } as TestDatabase["db"];
  const engine = engineFeed(redis, local, shards++, baseMs);
  const workers: { stop: AbortController; running: Promise<void>; reader: Redis }[] = [];
  return {
    local,
    database,
    proxy,
    statements,
    outputs: engine.outputs,
    cutUnderNextStatement: () => void (cutArmed = true),
    publish: engine.publish,
    price: engine.price,
    /** The answer to the input `inputId` of `userId`, once delivered. */
    answer: (userId: string, inputId: string) => until(() => redis.lpop(local.responseKey(userId, inputId))),
    /** The bids of the quotes fanned out, in order. */
    quotesOut: async () =>
      (await redis.xrange(local.streamFanout, "-", "+"))
        .filter(([, f]) => f[1] === "quote")
        .map(([, f]) => (JSON.parse(f[3]!) as { bid: string }).bid),
    /** Each seq of `userId`'s events fanned out, as often as it was. */
    eventSeqsOut: async (userId: string) =>
      (await redis.xrange(local.streamFanout, "-", "+"))
        .filter(([, f]) => f[1] === "event" && f[3] === userId)
        .map(([, f]) => Number(f[5])),
    /** The candles fanned out. */
    candlesOut: async () =>
      (await redis.xrange(local.streamFanout, "-", "+"))
        .filter(([, f]) => f[1] === "candle")
        .map(([, f]) => JSON.parse(f[3]!) as { high: string; low: string; close: string }),
    /** A worker on this keyspace: its own reader, claim rounds and stats often, no acknowledged output kept. */
    start(consumer: string, options: Partial<WorkerOptions> = {}) {
      const lines: Record<string, unknown>[] = [];
      const capture = createLogger("worker-test", {
        sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
      });
      const registry = new Registry();
      const reader = new Redis(TEST_REDIS_URL);
      const stop = new AbortController();
      const running = runWorker(
        {
          reader,
          writer: redis,
          db: cuttableDb,
          keys: local,
          log: capture,
          consumer,
          blockMs: 50,
          claimIdleMs: 200,
          statsEveryMs: 100,
          outputKeepMs: 0,
          stuckAfterMs: 1_000,
          postgresRetry: { firstMs: 100, maxMs: 400 },
          metrics: workerMetrics(registry),
          ...options,
        },
        stop.signal,
      );
      running.catch(() => undefined); // awaited by the test, or at close
      workers.push({ stop, running, reader });
      const ended = { now: false };
      const end = () => void (ended.now = true);
      running.then(end, end);
      return {
        lines,
        stop,
        running,
        ended,
        line: (event: string) => Promise.resolve(lines.find((l) => l.event === event)),
        events: (prefix: string) => lines.filter((l) => String(l.event).startsWith(prefix)),
        samples: async () => parseSamples(await registry.metrics()),
      };
    },
    async close() {
      for (const w of workers) w.stop.abort();
      for (const w of workers) {
        await w.running.catch(() => undefined);
        w.reader.disconnect();
      }
      await db.close();
      await proxy.close();
    },
  };
}

type Cuttable = Awaited<ReturnType<typeof cuttablePostgres>>;

/**
 * Checks that Postgres holds each history row of `userId` exactly once and the candle of the minute at `baseMs` as
 * the quotes make it, and that the read models, the events store and the latest quote are what the engine's outputs,
 * applied once in log order, make them.
 */
async function expectAllWritten(c: Cuttable, userId: string, baseMs: number): Promise<void> {
  const mine = c.outputs.filter((o) => isPrivateOutput(o) && o.userId === userId);
  const closeIds = mine.flatMap((o) => (o.type === "closed_order" ? [o.trade.closeId] : []));
  const db = c.database.db;
  const rows = async (sql: string) => (await db.query<{ id: string }>(sql, [userId])).rows.map((r) => r.id).sort();
  expect(await rows("SELECT close_id AS id FROM closed_orders WHERE user_id = $1")).toEqual(closeIds.sort());
  const spot = c.outputs.flatMap((o) =>
    o.type === "order_response" && o.userId === userId && o.answer.ok && o.answer.result.kind === "spot_order"
      ? [o.answer.result.order.id]
      : [],
  );
  expect(await rows("SELECT id FROM spot_orders WHERE user_id = $1")).toEqual(spot.sort());
  const orders = new Map<string, string>();
  for (const o of mine) if (o.type === "order_updated") orders.set(o.order.id, o.order.status);
  const stored = await db.query<{ id: string; status: string }>(
    "SELECT id, status FROM orders WHERE user_id = $1 ORDER BY id",
    [userId],
  );
  expect(stored.rows.map((r) => [r.id, r.status])).toEqual([...orders].sort());

  const bids = c.outputs.flatMap((o) => (o.type === "quote_updated" ? [Number(o.bid)] : []));
  const candle = await db.query<{ open: number; high: number; low: number; close: number }>(
    `SELECT open::float8 AS open, high::float8 AS high, low::float8 AS low, close::float8 AS close FROM candles_1m
     WHERE asset = 'ETH' AND open_time = $1`,
    [new Date(baseMs).toISOString()],
  );
  expect(candle.rows).toEqual([{ open: bids[0], high: Math.max(...bids), low: Math.min(...bids), close: bids.at(-1) }]);

  let balances: unknown;
  const trades = new Map<string, unknown>();
  const pending = new Map<string, unknown>();
  for (const o of mine) {
    if (o.type === "balances_changed") balances = o.balances;
    if (o.type === "trade_opened" || o.type === "trade_updated") trades.set(o.trade.id, o.trade);
    if (o.type === "closed_order" && o.trade.remainingQuantity === "0") trades.delete(o.trade.id);
    if (o.type === "order_updated" && o.order.status === "pending") pending.set(o.order.id, o.order);
    if (o.type === "order_updated" && o.order.status !== "pending") pending.delete(o.order.id);
  }
  const models = await readPrivateState(redis, c.local, userId);
  expect(models).toMatchObject({ seq: mine.length, aheadSeq: 0, balances });
  expect(models.trades).toEqual([...trades.values()]);
  expect(models.orders).toEqual([...pending.values()]);
  const events = await readEventsAfter(redis, c.local, userId, 0);
  expect(events.ok && events.events.map((e) => e.seq)).toEqual(mine.map((_, i) => i + 1));
  const quotes = c.outputs.filter((o) => o.type === "quote_updated");
  expect(JSON.parse((await redis.hget(c.local.quotesKey, "ETH"))!)).toEqual(quotes.at(-1));
}

describe("the Postgres backlog", () => {
  it("owes a batch's range as it acknowledges it, only if some of it was still pending", async () => {
    const local = keyspace(`${prefix}owe:`);
    for (let n = 1; n <= 3; n++) await redis.xadd(local.output, `5-${n}`, "type", "quote_updated", "body", "{}");
    await ensureGroup(redis, local);
    await redis.xreadgroup("GROUP", local.workerGroup, "a", "STREAMS", local.output, ">");
    expect(await oweAndAcknowledge(redis, local, ["5-3", "5-1", "5-2"])).toBe(3);
    expect(await redis.zrange(local.postgresBacklog, "0", "-1", "WITHSCORES")).toEqual(["5-1 5-3 3", "5"]);
    expect(await groupBacklog(redis, local)).toMatchObject({ pending: 0 });
    expect(await owedEntries(redis, local)).toBe(3);
    // Acknowledged already (another worker handled it whole): nothing owed again.
    await redis.zrem(local.postgresBacklog, "5-1 5-3 3");
    expect(await oweAndAcknowledge(redis, local, ["5-1", "5-2", "5-3"])).toBe(0);
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
  });

  it("catches up the oldest range first, a page at a time, each range settled once written whole", async () => {
    const local = keyspace(`${prefix}catch-up:`);
    const state = createState(makeParams());
    for (let n = 1; n <= 7; n++) {
      const message: EngineInput = {
        type: "price_update",
        market: "ETH_USDC_PERP",
        bid: String(2000 + n),
        ask: String(2000 + n),
        exchangeTimeUs: `${n}000`,
        source: "sim",
      };
      for (const fields of outputEntries(apply(state, { id: `${n}-0`, message })))
        await redis.xadd(local.output, `9-${n}`, ...fields);
    }
    // Two ranges, the younger one added first; entries 9-3 and 9-7 are owed by neither.
    await redis.zadd(local.postgresBacklog, 9, "9-4 9-6 3", 9, "9-1 9-2 2");
    const pages: string[][] = [];
    const settledAtPage: number[] = [];
    const { entries: written } = await catchUp({
      redis,
      keys: local,
      pageSize: 2,
      bound: (work) => work,
      log,
      write: async (outputs) => {
        settledAtPage.push(await redis.zcard(local.postgresBacklog));
        pages.push(outputs.map((o) => (o.type === "quote_updated" ? o.bid : o.type)));
      },
      stop: new AbortController().signal,
    });
    expect(written).toBe(5);
    expect(pages).toEqual([["2001", "2002"], ["2004", "2005"], ["2006"]]);
    // A range stays owed until its last page is written.
    expect(settledAtPage).toEqual([2, 1, 1]);
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
    // A write that fails leaves its range owed, whole.
    await redis.zadd(local.postgresBacklog, 9, "9-1 9-7 7");
    let calls = 0;
    const failing = catchUp({
      redis,
      keys: local,
      pageSize: 2,
      bound: (work) => work,
      log,
      write: () => (++calls === 2 ? Promise.reject(new Error("refused")) : Promise.resolve()),
      stop: new AbortController().signal,
    });
    await expect(failing).rejects.toThrow("refused");
    expect(await redis.zrange(local.postgresBacklog, "0", "-1")).toEqual(["9-1 9-7 7"]);
  });
});

describe("the worker through a Postgres outage", () => {
  it("goes on with every batch's Redis part while Postgres is down, and writes its history and candles once it is back", async () => {
    const baseMs = minute(0);
    const c = await cuttablePostgres("pg-outage", baseMs);
    const w = c.start("w");
    try {
      const user = "quin";
      await c.answer(user, await c.publish(c.price("2000"), instruct(user, "q0", { kind: "create_account" })));
      const before = c.outputs.length;
      // Postgres goes under the next batch's first statement, and refuses connections after. That batch, and each
      // one after it, is answered, and its read models, events and quotes move on.
      c.cutUnderNextStatement();
      const open = instruct(user, "q1", {
        kind: "open_trade",
        asset: "ETH",
        side: "long",
        margin: "100",
        leverage: 10,
      });
      const opened = JSON.parse(await c.answer(user, await c.publish(c.price("2010"), open))) as {
        ok: boolean;
        result: { trade: { id: string } };
      };
      expect(opened.ok).toBe(true);
      await until(() => w.line("postgres_unavailable"));
      const tradeId = opened.result.trade.id;
      expect((await readPrivateState(redis, c.local, user)).trades.map((t) => t.id)).toEqual([tradeId]);
      const limit = { asset: "ETH", side: "long", type: "limit", price: "1500", margin: "50", leverage: 5 } as const;
      expect(await c.answer(user, await c.publish(instruct(user, "q2", { kind: "place_order", ...limit })))).toContain(
        '"ok":true',
      );
      const buy = instruct(user, "q3", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "0.1" });
      expect(await c.answer(user, await c.publish(c.price("1990"), buy))).toContain('"kind":"spot_order"');
      const close = instruct(user, "q4", { kind: "close_trade", tradeId });
      expect(await c.answer(user, await c.publish(c.price("2030"), close))).toContain('"kind":"close_trade"');
      const mine = c.outputs.filter((o) => isPrivateOutput(o) && o.userId === user);
      expect(new Set(await c.eventSeqsOut(user))).toEqual(new Set(mine.map((_, i) => i + 1)));
      expect((await c.quotesOut()).at(-1)).toBe("2030");

      // Everything acknowledged, within the pending limit; what went without Postgres owed, and kept on
      // engine:output by the trims of every claim round, which take what was handled whole before the outage.
      const owed = c.outputs.length - before;
      await until(async () => ((await groupBacklog(redis, c.local))?.pending === 0 ? true : undefined));
      expect(await owedEntries(redis, c.local)).toBe(owed);
      await until(async () => ((await redis.xlen(c.local.output)) === owed ? true : undefined));
      // Postgres tried again meanwhile, with no step counted stuck however long it is down.
      const sent = c.statements.sent;
      await until(() => Promise.resolve(c.statements.sent >= sent + 3 ? true : undefined));
      expect(w.ended.now).toBe(false);
      expect(w.lines.filter((l) => l.event === "worker_stuck")).toEqual([]);
      await until(async () =>
        sample(await w.samples(), "worker_postgres_backlog_entries") === owed ? true : undefined,
      );
      expect(sample(await w.samples(), "worker_entries_handled_total")).toBe(c.outputs.length);
      expect(await pg.db.query("SELECT 1 FROM closed_orders WHERE user_id = $1", [user])).toMatchObject({
        rowCount: 0,
      });
      const models = await readPrivateState(redis, c.local, user);
      await expect(c.candlesOut()).resolves.toHaveLength(1); // the minute as it stood before the outage

      await c.proxy.mend();
      expect(await until(() => w.line("postgres_caught_up"))).toMatchObject({ level: "info", entries: owed });
      expect(await redis.zcard(c.local.postgresBacklog)).toBe(0);
      expect(w.events("postgres_")).toEqual([
        expect.objectContaining({ level: "warn", event: "postgres_unavailable" }),
        expect.objectContaining({
          event: "postgres_recovered",
          downMs: expect.any(Number) as number,
          backlogEntries: owed,
        }),
        expect.objectContaining({ event: "postgres_caught_up" }),
      ]);
      await expectAllWritten(c, user, baseMs);
      // The catch-up wrote Postgres only: the read models are as the outage left them.
      expect(await readPrivateState(redis, c.local, user)).toEqual(models);
      // The minute's candle goes out with the outage's prices in it.
      expect((await c.candlesOut()).at(-1)).toMatchObject({ high: "2030", low: "1990", close: "2030" });

      // Back to Postgres before Redis: an answer now comes after its history row.
      const reopen = instruct(user, "q5", {
        kind: "open_trade",
        asset: "ETH",
        side: "short",
        margin: "100",
        leverage: 2,
      });
      const reopened = JSON.parse(await c.answer(user, await c.publish(reopen))) as {
        result: { trade: { id: string } };
      };
      const closeAgain = instruct(user, "q6", { kind: "close_trade", tradeId: reopened.result.trade.id });
      await c.answer(user, await c.publish(closeAgain));
      const row = await pg.db.query("SELECT 1 FROM closed_orders WHERE id = $1", [reopened.result.trade.id]);
      expect(row.rowCount).toBe(1);
      expect(await owedEntries(redis, c.local)).toBe(0);
      w.stop.abort();
      await w.running;
    } finally {
      await c.close();
    }
  });

  it("counts a Postgres that answers and takes no write (read-only) as one outage, tried ever less often", async () => {
    const readOnly = await createTestDatabase();
    try {
      await migrate(readOnly.db, log);
      // For every session from now on: the worker's are all new.
      await readOnly.db.query(`ALTER DATABASE ${readOnly.name} SET default_transaction_read_only = on`);
      const baseMs = minute(5);
      const c = await cuttablePostgres("pg-read-only", baseMs, readOnly);
      const w = c.start("w", { postgresRetry: { firstMs: 100, maxMs: 800 } });
      try {
        const user = "rory";
        const created = await c.publish(c.price("2000"), instruct(user, "o0", { kind: "create_account" }));
        expect(await c.answer(user, created)).toContain('"granted":true');
        // Its SELECT answered at every try, each try's write refused: tried 0.1, 0.3, 0.7, 1.5, 2.3 and 3.1 s after
        // the batch's write, the pause doubling to its cap, with no recovery between.
        await until(() => Promise.resolve(c.statements.failed.length >= 7 ? true : undefined));
        const failed = c.statements.failed.slice(0, 7);
        expect(failed.map((f) => f.code)).toEqual(Array<string>(7).fill("25006"));
        const gapsMs = failed.slice(1).map((f, i) => f.atMs - failed[i]!.atMs);
        expect(Math.min(...gapsMs.slice(-3))).toBeGreaterThanOrEqual(790);
        expect(w.events("postgres_")).toEqual([
          expect.objectContaining({ level: "warn", event: "postgres_unavailable", code: "25006" }),
        ]);
        expect(w.ended.now).toBe(false);

        // Writable again: one recovery, and what was owed written.
        await readOnly.db.query(`ALTER DATABASE ${readOnly.name} SET default_transaction_read_only = off`);
        await until(() => w.line("postgres_caught_up"));
        expect(w.events("postgres_")).toEqual([
          expect.objectContaining({ event: "postgres_unavailable" }),
          expect.objectContaining({ event: "postgres_recovered", backlogEntries: c.outputs.length }),
          expect.objectContaining({ event: "postgres_caught_up", entries: c.outputs.length }),
        ]);
        await expectAllWritten(c, user, baseMs);
        w.stop.abort();
        await w.running;
      } finally {
        await c.close();
      }
    } finally {
      await readOnly.drop();
    }
  });

  it("goes on through a full disk (53100), its history owed, and writes it once there is room again", async () => {
    const full = await createTestDatabase();
    try {
      await migrate(full.db, log);
      // Stands in for a full volume, or Neon's project size limit: every new row of the worker's refused with 53100.
      await full.db.query(`CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; END $$`);
      const tables = ["candles_1m", "closed_orders", "orders", "spot_orders"];
      for (const table of tables)
        await full.db.query(
          `CREATE TRIGGER disk_full BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION disk_full()`,
        );
      const baseMs = minute(6);
      const c = await cuttablePostgres("pg-disk-full", baseMs, full);
      const w = c.start("w");
      try {
        const user = "dora";
        await c.answer(user, await c.publish(c.price("2000"), instruct(user, "d0", { kind: "create_account" })));
        const open = instruct(user, "d1", {
          kind: "open_trade",
          asset: "ETH",
          side: "long",
          margin: "100",
          leverage: 10,
        });
        const opened = JSON.parse(await c.answer(user, await c.publish(c.price("2010"), open))) as {
          ok: boolean;
          result: { trade: { id: string } };
        };
        expect(opened.ok).toBe(true);
        const limit = { asset: "ETH", side: "long", type: "limit", price: "1500", margin: "50", leverage: 5 } as const;
        expect(
          await c.answer(user, await c.publish(instruct(user, "d2", { kind: "place_order", ...limit }))),
        ).toContain('"ok":true');
        const close = instruct(user, "d3", { kind: "close_trade", tradeId: opened.result.trade.id });
        expect(await c.answer(user, await c.publish(c.price("2030"), close))).toContain('"kind":"close_trade"');
        // The operator is told why: the code, and Postgres's name for it.
        expect(w.events("postgres_")).toEqual([
          expect.objectContaining({
            level: "warn",
            event: "postgres_unavailable",
            code: "53100",
            condition: "disk_full",
          }),
        ]);
        await until(async () => ((await owedEntries(redis, c.local)) === c.outputs.length ? true : undefined));
        expect(await full.db.query("SELECT 1 FROM orders WHERE user_id = $1", [user])).toMatchObject({ rowCount: 0 });
        expect(w.ended.now).toBe(false);

        // Room again (an operator freed space, or raised the limit): one recovery, the history written once.
        for (const table of tables) await full.db.query(`DROP TRIGGER disk_full ON ${table}`);
        await until(() => w.line("postgres_caught_up"));
        expect(w.events("postgres_")).toEqual([
          expect.objectContaining({ event: "postgres_unavailable" }),
          expect.objectContaining({ event: "postgres_recovered", backlogEntries: c.outputs.length }),
          expect.objectContaining({ event: "postgres_caught_up", entries: c.outputs.length }),
        ]);
        await expectAllWritten(c, user, baseMs);
        w.stop.abort();
        await w.running;
      } finally {
        await c.close();
      }
    } finally {
      await full.drop();
    }
  });

  it.each(["restarted under its name", "claimed by another worker"] as const)(
    "a worker stopped during the outage, a batch it read left pending: %s, it all ends as handled once",
    async (how) => {
      const baseMs = minute(how === "restarted under its name" ? 1 : 2);
      const c = await cuttablePostgres(`pg-outage-${how.split(" ")[0]}`, baseMs);
      try {
        await c.proxy.cut();
        const w1 = c.start("w1");
        const user = `rae-${how.split(" ")[0]}`;
        await c.answer(user, await c.publish(c.price("2000"), instruct(user, "r0", { kind: "create_account" })));
        const open = instruct(user, "r1", {
          kind: "open_trade",
          asset: "ETH",
          side: "long",
          margin: "100",
          leverage: 10,
        });
        const opened = JSON.parse(await c.answer(user, await c.publish(open))) as { result: { trade: { id: string } } };
        await until(async () => ((await groupBacklog(redis, c.local))?.pending === 0 ? true : undefined));
        // A stop during the outage ends the worker as ever; what it owes stays owed.
        w1.stop.abort();
        await w1.running;
        const owed = await owedEntries(redis, c.local);
        expect(owed).toBe(c.outputs.length);

        // A batch w1 read as it was killed, and never handled; newer outputs of the same user behind it.
        const close = instruct(user, "r2", { kind: "close_trade", tradeId: opened.result.trade.id });
        const closing = await c.publish(c.price("2050"), close);
        const read = (await redis.xreadgroup("GROUP", c.local.workerGroup, "w1", "STREAMS", c.local.output, ">")) as [
          string,
          [string, string[]][],
        ][];
        const ids = read[0]![1].map(([id]) => id);
        const short = { kind: "open_trade", asset: "ETH", side: "short", margin: "100", leverage: 5 } as const;
        const reopened = await c.publish(c.price("2040"), instruct(user, "r3", short));
        // Idle from now: another worker claims it only after it has handled the newer batch.
        await redis.xclaim(c.local.output, c.local.workerGroup, "w1", 0, ...ids);
        const w2 = how === "restarted under its name" ? c.start("w1") : c.start("w2", { claimIdleMs: 1_000 });
        // Postgres still down: every answer delivered all the same.
        expect(await c.answer(user, reopened)).toContain('"ok":true');
        expect(await c.answer(user, closing)).toContain('"kind":"close_trade"');
        await until(async () => ((await groupBacklog(redis, c.local))?.pending === 0 ? true : undefined));
        expect(await owedEntries(redis, c.local)).toBe(c.outputs.length);
        if (how === "claimed by another worker")
          expect(w2.lines.filter((l) => l.event === "claimed_pending")).toEqual([
            expect.objectContaining({ entries: ids.length }),
          ]);
        // The older quote, handled after the newer one when claimed, is neither the latest nor sent as it.
        expect((await c.quotesOut()).at(-1)).toBe("2040");

        await c.proxy.mend();
        await until(() => w2.line("postgres_caught_up"));
        expect(await redis.zcard(c.local.postgresBacklog)).toBe(0);
        await expectAllWritten(c, user, baseMs);
        w2.stop.abort();
        await w2.running;
      } finally {
        await c.close();
      }
    },
  );

  it.each(["a batch", "the backlog"] as const)(
    "goes on through a Postgres starting up or shut down, and still ends on an error that is no outage, in %s",
    async (where) => {
      const local = keyspace(`${prefix}pg-errors-${where.split(" ")[1]}:`);
      await ensureGroup(redis, local);
      const lines: Record<string, unknown>[] = [];
      const capture = createLogger("worker-test", {
        sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
      });
      /** What node-postgres gives for a server's error response. */
      const serverError = (code: string, message: string) =>
        Object.assign(new pgDriver.DatabaseError(message, message.length, "error"), { code });
      const outages = [
        serverError("57P03", "the database system is starting up"),
        serverError("57P01", "terminating connection due to administrator command"),
        serverError("57P03", "the database system is in recovery mode"),
      ];
      // In the backlog's case, refused from the start: the batch's candles meet the outage first, the backlog's after.
      let broken = where === "the backlog";
      const db = {
        query: async (text: string, params?: unknown[]) => {
          const outage = outages.shift();
          if (outage !== undefined) throw outage;
          // A statement Postgres refuses: a bug of the worker's, which no wait can mend.
          return pg.db.query(
            broken ? text.replace("INSERT INTO candles_1m", "INSERT INTO no_such_table") : text,
            params,
          );
        },
      } as TestDatabase["db"];
      const stop = new AbortController();
      const options = {
        reader: new Redis(TEST_REDIS_URL),
        writer: redis,
        db,
        keys: local,
        log: capture,
        consumer: "w",
      };
      const running = runWorker(
        { ...options, blockMs: 50, claimIdleMs: 200, postgresRetry: { firstMs: 50, maxMs: 100 } },
        stop.signal,
      );
      running.catch(() => undefined);
      try {
        const state = createState(makeParams({ shard: shards++ }));
        let ms = minute(3 + (where === "a batch" ? 0 : 1));
        const publish = async (message: EngineInput) => {
          const id = `${ms++}-0`;
          for (const fields of outputEntries(apply(state, { id, message })))
            await redis.xadd(local.output, "*", ...fields);
          return id;
        };
        const price = (bid: string): EngineInput => ({
          type: "price_update",
          market: "ETH_USDC_PERP",
          bid,
          ask: bid,
          exchangeTimeUs: `${ms}000`,
          source: "sim",
        });
        await publish(price("2000"));
        const created = await publish(instruct("sue", "s1", { kind: "create_account" }));
        if (where === "the backlog") {
          expect(await until(() => redis.lpop(local.responseKey("sue", created)))).toContain('"granted":true');
          await expect(running).rejects.toMatchObject({ code: "42P01" });
          // Postgres answered, but took no write: the outage never ended.
          expect(lines.filter((l) => String(l.event).startsWith("postgres_"))).toEqual([
            expect.objectContaining({ level: "warn", event: "postgres_unavailable", code: "57P03" }),
          ]);
          expect(await redis.zcard(local.postgresBacklog)).toBeGreaterThan(0);
          return;
        }
        expect(await until(() => redis.lpop(local.responseKey("sue", created)))).toContain('"granted":true');
        await until(() => Promise.resolve(lines.find((l) => l.event === "postgres_caught_up")));
        expect(outages).toEqual([]);
        expect(lines.filter((l) => String(l.event).startsWith("postgres_"))).toEqual([
          expect.objectContaining({ level: "warn", event: "postgres_unavailable", code: "57P03" }),
          expect.objectContaining({ level: "info", event: "postgres_recovered" }),
          expect.objectContaining({ level: "info", event: "postgres_caught_up" }),
        ]);
        broken = true;
        await publish(price("2001"));
        await expect(running).rejects.toMatchObject({ code: "42P01" });
        expect(lines.filter((l) => l.event === "postgres_unavailable")).toHaveLength(1);
      } finally {
        stop.abort();
        await running.catch(() => undefined);
        options.reader.disconnect();
      }
    },
  );
});
