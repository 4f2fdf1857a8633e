/**
 * Outputs the worker cannot apply: each is refused at decode as `bad_output_entry`, acknowledged and skipped, and
 * the worker goes on to the entry after it. An output that passed the codec and then failed (a malformed id, a time
 * Postgres refuses, a number past a column) failed its batch every time it ran, and so ended every worker on it.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ClosedTradeView, EngineOutput, OrderView } from "../contract/messages.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import type { Queryable } from "../platform/postgres.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { Registry } from "prom-client";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import { EVENT_SCRIPTS, EVENTS_TRIM_ABOVE, readEventsAfter, readPrivateState } from "./events.ts";
import { workerMetrics } from "./metrics.ts";
import { oweBatch, owedEntries } from "./postgres-backlog.ts";
import { queueOutputWrite, READ_MODEL_SCRIPTS } from "./read-models.ts";
import { ensureGroup, handleBatch, runWorker } from "./worker.ts";

const log = createLogger("worker-test", { level: "error" });
let redis: Redis;
let reader: Redis;
let pg: TestDatabase;
let prefix: string;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  reader = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase();
  await migrate(pg.db, log);
  prefix = `test:bad-outputs:${randomUUID()}:`;
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  reader.disconnect();
  await pg.drop();
});

const MS = 1_800_000_000_000;
const AT = "2027-01-15T08:00:00.000Z";
const head = (n: number) => ({ id: `${MS + n}-0:0`, inputId: `${MS + n}-0` });

const order: OrderView = {
  id: "P0-1",
  asset: "ETH",
  side: "long",
  type: "limit",
  price: "1950",
  margin: "100",
  leverage: 10,
  stopLoss: null,
  takeProfit: null,
  trailingStop: null,
  expiresAt: null,
  ocoWith: null,
  status: "pending",
  placedAt: AT,
  updatedAt: AT,
  fillPrice: null,
  tradeId: null,
  reason: null,
};

const closed: ClosedTradeView = {
  id: "T0-1",
  asset: "ETH",
  type: "long",
  margin: "100",
  leverage: 10,
  quantity: "0.5",
  openPrice: "2000",
  stopLoss: null,
  takeProfit: null,
  trailingStop: null,
  liquidationPrice: "1820",
  openedAt: AT,
  closeId: "T0-1",
  closePrice: "2010",
  pnl: "5",
  lossWaived: null,
  remainingQuantity: "0",
  closeReason: "manual",
  closedAt: AT,
};

const spotAnswer = (executedAt: string): EngineOutput => ({
  type: "order_response",
  ...head(4),
  requestId: "r-spot",
  userId: "ann",
  answer: {
    ok: true,
    result: {
      kind: "spot_order",
      balances: { USD: "1" },
      order: { id: "O0-1", asset: "BTC", side: "buy", quantity: "1", price: "1", total: "1", executedAt },
    },
  },
});

/**
 * Adds `bad` (after `before`, and before `later`, if given), then a valid balances_changed of another user, runs a
 * worker until that one is applied (failing if the worker ends first), and returns what it logged and what the group
 * still has pending.
 */
async function runPast(
  keys: Keyspace,
  bad: object,
  before: object[] = [],
  later: object[] = [],
  worker: { db?: Queryable; stuckAfterMs?: number } = {},
) {
  await ensureGroup(redis, keys);
  const add = (output: object) =>
    redis.xadd(keys.output, "*", "type", String((output as { type?: unknown }).type), "body", JSON.stringify(output));
  for (const output of before) await add(output);
  const badId = await add(bad);
  for (const output of later) await add(output);
  const after: EngineOutput = { type: "balances_changed", ...head(9), userId: "after", seq: 1, balances: { USD: "7" } };
  await redis.xadd(keys.output, "*", ...encodeFields(after));
  const lines: Record<string, unknown>[] = [];
  const capture = createLogger("worker-test", {
    level: "warn",
    sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  const stop = new AbortController();
  const registry = new Registry();
  const running = runWorker(
    {
      reader,
      writer: redis,
      db: pg.db,
      keys,
      log: capture,
      consumer: "w-bad",
      blockMs: 20,
      metrics: workerMetrics(registry),
      ...worker,
    },
    stop.signal,
  );
  const applied = (async () => {
    while ((await redis.hget(keys.balancesKey("after"), "USD")) === null) await new Promise((r) => setTimeout(r, 20));
  })();
  // A worker that ends on the bad entry rejects here with what ended it.
  await Promise.race([applied, running.then(() => Promise.reject(new Error("the worker stopped by itself")))]);
  stop.abort();
  await running;
  const pending = (await redis.xpending(keys.output, keys.workerGroup)) as [number, ...unknown[]];
  const samples = parseSamples(await registry.metrics());
  const count = (kind: string, reason: string) => sample(samples, "worker_bad_output_entries_total", { kind, reason });
  const counted = (kind: string) => count(kind, "decode") + count(kind, "postgres");
  const byReason = (reason: string) => count("private", reason) + count("public", reason);
  return {
    badId,
    lines,
    pending: pending[0],
    counted: { private: counted("private"), public: counted("public") },
    byReason: { decode: byReason("decode"), postgres: byReason("postgres") },
  };
}

it.each<[string, object]>([
  ["an output id that is not <ms>-<seq>:<n>", { ...spotAnswer(AT), id: "bad" }],
  [
    "an output id whose n is past the orders table's int column",
    { type: "order_updated", ...head(2), id: `${MS + 2}-0:2147483648`, userId: "ann", seq: 1, order },
  ],
  ["a spot order's executedAt that is not a time", spotAnswer("soon")],
  ["a spot order's executedAt that Postgres reads as a time", spotAnswer("yesterday")],
  [
    "a closed order's closedAt on a day that does not exist",
    {
      type: "closed_order",
      ...head(5),
      userId: "ann",
      seq: 1,
      trade: { ...closed, closedAt: "2027-02-30T00:00:00.000Z" },
    },
  ],
  [
    "an order's expiresAt not in UTC",
    {
      type: "order_updated",
      ...head(6),
      userId: "ann",
      seq: 1,
      order: { ...order, expiresAt: "2027-01-15T09:00:00+01:00" },
    },
  ],
])("%s: logged as bad_output_entry, acknowledged, and the next entry applied", async (_name, bad) => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  const { badId, lines, pending, counted } = await runPast(keys, bad);
  expect(lines.filter((l) => l.event === "bad_output_entry")).toEqual([expect.objectContaining({ id: badId })]);
  expect(pending).toBe(0);
  // Counted by kind; a private one's line names the user and seq whose event is lost.
  const isPrivate = "seq" in bad;
  expect(counted).toEqual({ private: isPrivate ? 1 : 0, public: isPrivate ? 0 : 1 });
  if (isPrivate) expect(lines.find((l) => l.event === "bad_output_entry")).toMatchObject({ userId: "ann", seq: 1 });
});

it("a balances_changed without balances: refused, and the user's balances stay as they were", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  await redis.hset(keys.balancesKey("ann"), "USD", "5");
  const bad = { type: "balances_changed", ...head(3), userId: "ann", seq: 1, balances: {} };
  const { badId, lines, pending, counted, byReason } = await runPast(keys, bad);
  expect(counted).toEqual({ private: 1, public: 0 });
  expect(byReason).toEqual({ decode: 1, postgres: 0 });
  expect(lines.find((l) => l.event === "bad_output_entry")).toMatchObject({
    id: badId,
    userId: "ann",
    seq: 1,
    reason: expect.stringMatching(/^invalid message: balances: /) as unknown,
  });
  expect(pending).toBe(0);
  expect(await redis.hgetall(keys.balancesKey("ann"))).toEqual({ USD: "5" });
});

it("a balances write without balances, past the codec, fails before it deletes anything or appends its event", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await redis.script("LOAD", script);
  await redis.hset(keys.balancesKey("bob"), "USD", "5");
  const empty = { type: "balances_changed", ...head(3), userId: "bob", seq: 1, balances: {} } as EngineOutput;
  const pipe = redis.pipeline();
  queueOutputWrite(pipe, keys, empty);
  const [[error]] = (await pipe.exec()) as [[Error | null, unknown]];
  expect(await redis.hgetall(keys.balancesKey("bob"))).toEqual({ USD: "5" });
  expect(await redis.zcard(keys.eventsKey("bob"))).toBe(0);
  expect(error?.message).toMatch(/hset needs field and value pairs/);
});

it("a refused private event's seq is recorded lost: the mark moves over it, and the store is trimmed", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  // Seq 2 of cy is refused; seqs 3 to 1,202 come after it, a second of log time apart: past the retention's bounds.
  const event = (seq: number): EngineOutput => ({
    type: "balances_changed",
    id: `${MS + seq * 1000}-0:0`,
    inputId: `${MS + seq * 1000}-0`,
    userId: "cy",
    seq,
    balances: { USD: String(seq) },
  });
  const later = Array.from({ length: 1_200 }, (_, i) => event(i + 3));
  await runPast(keys, { ...event(2), balances: {} }, [event(1)], later);
  expect(await redis.get(keys.eventsSeqKey("cy"))).toBe("1202");
  expect(await redis.zcard(keys.eventsAheadKey("cy"))).toBe(0);
  expect(await redis.zcard(keys.eventsKey("cy"))).toBeLessThanOrEqual(EVENTS_TRIM_ABOVE);
  expect(await redis.hgetall(keys.balancesKey("cy"))).toEqual({ USD: "1202" });
  const newest = await readEventsAfter(redis, keys, "cy", 1_200);
  expect(newest).toMatchObject({ ok: true, mark: 1_202, aheadSeq: 0 });
  expect(newest.ok && newest.events.map((e) => e.seq)).toEqual([1_201, 1_202]);
});

it("a resume from below a lost seq gets a resync; from the lost seq on, the events after it", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  const event = (seq: number): EngineOutput => ({
    type: "balances_changed",
    ...head(seq),
    userId: "dee",
    seq,
    balances: { USD: String(seq) },
  });
  // Seq 3 arrives before the refused 2, as from a batch claimed late: held ahead, then the mark moves over both.
  await runPast(keys, { ...event(2), balances: {} }, [event(1), event(3)]);
  expect(await redis.get(keys.eventsSeqKey("dee"))).toBe("3");
  expect(await readEventsAfter(redis, keys, "dee", 1)).toEqual({ ok: false, reason: "beyond_retention" });
  expect(await readEventsAfter(redis, keys, "dee", 2)).toMatchObject({ ok: true, mark: 3, events: [event(3)] });
});

it("a lost seq above a gap waits apart from the events stored ahead; the mark moves over it once the gap fills", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  const event = (seq: number): EngineOutput => ({
    type: "balances_changed",
    ...head(seq),
    userId: "eli",
    seq,
    balances: { USD: String(seq) },
  });
  // Seq 2 comes later (a batch claimed late); the refused 3 and a bogus 1,000,000 are recorded lost above the gap.
  await runPast(keys, { ...event(3), balances: {} }, [event(1), { ...event(1_000_000), balances: {} }], [event(4)]);
  expect(await readPrivateState(redis, keys, "eli")).toMatchObject({ seq: 1, aheadSeq: 4 });
  const pipe = redis.pipeline();
  queueOutputWrite(pipe, keys, event(2));
  await pipe.exec();
  expect(await readPrivateState(redis, keys, "eli")).toMatchObject({ seq: 4, aheadSeq: 0 });
  expect(await readEventsAfter(redis, keys, "eli", 2)).toEqual({ ok: false, reason: "beyond_retention" });
});

it("a batch that fails after its refusals and runs again counts each refused entry once", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  await ensureGroup(redis, keys);
  const entries: [string, string[]][] = [
    [`${MS + 31}-0`, ["type", "balances_changed", "body", JSON.stringify({ type: "balances_changed", seq: 1 })]],
    [`${MS + 32}-0`, encodeFields(overflowing(32, "ivy", "T9-5") as EngineOutput)],
    [`${MS + 33}-0`, encodeFields(closing(33, "jay", "T9-6"))],
  ];
  for (const [id, fields] of entries) await redis.xadd(keys.output, id, ...fields);
  await redis.xreadgroup("GROUP", keys.workerGroup, "w-again", "COUNT", 10, "STREAMS", keys.output, ">");
  const registry = new Registry();
  const metrics = workerMetrics(registry);
  let writes = 0;
  // Postgres refuses the batch, then the overflow alone, then the connection drops (not a data error) at the last.
  const db: Queryable = {
    query: async (text, params) => {
      if (++writes === 3) throw new Error("Connection terminated unexpectedly");
      return pg.db.query(text, params);
    },
  };
  const o = { reader, writer: redis, keys, log, consumer: "w-again", metrics };
  await expect(handleBatch({ ...o, db }, entries)).rejects.toThrow(/Connection terminated/);
  await handleBatch({ ...o, db: pg.db }, entries);
  const samples = parseSamples(await registry.metrics());
  const count = (kind: string, reason: string) => sample(samples, "worker_bad_output_entries_total", { kind, reason });
  // The refused balances_changed (no id) and the overflow, both private outputs; nothing public.
  expect([count("private", "decode"), count("private", "postgres"), count("public", "decode")]).toEqual([1, 1, 0]);
});

/** A close whose pnl passes the codec (a decimal of at most 40 characters) but not closed_orders' numeric(30, 6). */
const overflowing = (n: number, userId: string, tradeId: string) => ({
  type: "closed_order",
  ...head(n),
  userId,
  seq: 1,
  trade: { ...closed, id: tradeId, closeId: tradeId, pnl: "1" + "0".repeat(30) },
});
const closing = (n: number, userId: string, tradeId: string): EngineOutput => ({
  type: "closed_order",
  ...head(n),
  userId,
  seq: 1,
  trade: { ...closed, id: tradeId, closeId: tradeId },
});
const closedRows = async (ids: string[]) =>
  (await pg.db.query<{ id: string }>("SELECT id FROM closed_orders WHERE id = ANY($1) ORDER BY id", [ids])).rows.map(
    (r) => r.id,
  );

it("an output whose row Postgres refuses (a numeric overflow): logged, its row left out, the batch written", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  const { badId, lines, pending, counted, byReason } = await runPast(keys, overflowing(11, "eve", "T9-1"), [
    closing(10, "fen", "T9-0"),
  ]);
  expect(lines.find((l) => l.event === "bad_output_entry")).toMatchObject({
    id: `${MS + 11}-0:0`,
    userId: "eve",
    seq: 1,
    code: "22003",
    reason: expect.stringMatching(/^Postgres refused its history or candle: numeric field overflow/) as unknown,
  });
  expect(badId).toBeDefined();
  expect(pending).toBe(0);
  expect(counted).toEqual({ private: 1, public: 0 });
  expect(byReason).toEqual({ decode: 0, postgres: 1 });
  expect(await closedRows(["T9-0", "T9-1"])).toEqual(["T9-0"]);
  // Its Redis part went on: the event is stored.
  expect(await redis.get(keys.eventsSeqKey("eve"))).toBe("1");
});

it("a batch Postgres refuses whole, on a slow database: n + 2·⌈log2 n⌉ + 3 writes, each within the watchdog's bound", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  // 5 ms a query, as a database in another zone: one search over the whole batch took about 5 s (2n − 1 writes),
  // past this bound, and the worker ended stuck on it at every restart.
  let queries = 0;
  const db: Queryable = {
    query: async (text, params) => {
      queries++;
      await new Promise((r) => setTimeout(r, 5));
      return pg.db.query(text, params);
    },
  };
  const n = 200;
  const outputs = Array.from({ length: n }, (_, i) => overflowing(100 + i, `slow${i}`, `T8-${i}`));
  const { lines, pending, counted } = await runPast(keys, outputs[0]!, [], outputs.slice(1), {
    db,
    stuckAfterMs: 1_500,
  });
  expect(lines.filter((l) => l.event === "worker_stuck")).toEqual([]);
  expect(pending).toBe(0);
  const refused = lines.filter((l) => l.event === "bad_output_entry");
  expect(refused).toHaveLength(n);
  expect(refused[0]).toMatchObject({ id: `${MS + 100}-0:0`, userId: "slow0", seq: 1, code: "22003" });
  expect(counted).toEqual({ private: n, public: 0 });
  // The batch (the n refused, then the valid one after them), the parts the search may waste (2·⌈log2 n⌉ + 2), then
  // each output alone; and the prepared-check queries around it.
  expect(queries).toBeLessThan(n + 2 * Math.ceil(Math.log2(n)) + 20);
}, 30_000);

it("two refused outputs at the two ends of a batch are found by halving, not by writing the batch one at a time", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  let queries = 0;
  const db: Queryable = {
    query: (text, params) => {
      queries++;
      return pg.db.query(text, params);
    },
  };
  const n = 200;
  const middle = Array.from({ length: n - 2 }, (_, i) => closing(300 + i, `mid${i}`, `T7-${i}`));
  const last = overflowing(300 + n, "end", "T7-last");
  const { lines, pending } = await runPast(keys, overflowing(299, "start", "T7-first"), [], [...middle, last], {
    db,
  });
  expect(pending).toBe(0);
  expect(lines.filter((l) => l.event === "bad_output_entry").map((l) => l.userId)).toEqual(["start", "end"]);
  expect(await closedRows(["T7-first", "T7-0", `T7-${n - 3}`, "T7-last"])).toEqual(["T7-0", `T7-${n - 3}`]);
  // About 2·log2(n) writes for each, and the prepared-check queries: not n (one at a time) or 2n.
  expect(queries).toBeLessThan(4 * Math.ceil(Math.log2(n)) + 20);
}, 30_000);

it("a range owed in the Postgres backlog with such an output is written and settled, not retried for ever", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  await ensureGroup(redis, keys);
  const ids: string[] = [];
  for (const output of [overflowing(21, "gus", "T9-3"), closing(22, "hal", "T9-2")])
    ids.push((await redis.xadd(keys.output, "*", ...encodeFields(output as EngineOutput)))!);
  // What a batch handled during an outage leaves: read, owed, acknowledged.
  await redis.xreadgroup("GROUP", keys.workerGroup, "w-lane", "COUNT", 10, "STREAMS", keys.output, ">");
  await oweBatch(redis, keys, ids);
  await redis.xack(keys.output, keys.workerGroup, ...ids);
  const stop = new AbortController();
  const running = runWorker(
    { reader, writer: redis, db: pg.db, keys, log, consumer: "w-lane", blockMs: 20 },
    stop.signal,
  );
  const settled = (async () => {
    while ((await owedEntries(redis, keys)) > 0) await new Promise((r) => setTimeout(r, 20));
  })();
  await Promise.race([settled, running.then(() => Promise.reject(new Error("the worker stopped by itself")))]);
  stop.abort();
  await running;
  expect(await closedRows(["T9-2", "T9-3"])).toEqual(["T9-2"]);
});

it("a backlog page counts what Postgres refuses in an owed range, not an entry between two that it writes again", async () => {
  const keys = keyspace(`${prefix}${randomUUID()}:`);
  await ensureGroup(redis, keys);
  const ids: string[] = [];
  for (const output of [overflowing(41, "kim", "T9-7"), overflowing(42, "lee", "T9-8"), closing(43, "max", "T9-9")])
    ids.push((await redis.xadd(keys.output, "*", ...encodeFields(output as EngineOutput)))!);
  await redis.xreadgroup("GROUP", keys.workerGroup, "w-between", "COUNT", 10, "STREAMS", keys.output, ">");
  // The first and the last owed, each its own batch; the one between was written (and refused) by its own batch.
  await oweBatch(redis, keys, [ids[0]!]);
  await oweBatch(redis, keys, [ids[2]!]);
  await redis.xack(keys.output, keys.workerGroup, ...ids);
  const registry = new Registry();
  const stop = new AbortController();
  const running = runWorker(
    {
      reader,
      writer: redis,
      db: pg.db,
      keys,
      log,
      consumer: "w-between",
      blockMs: 20,
      metrics: workerMetrics(registry),
    },
    stop.signal,
  );
  const settled = (async () => {
    while ((await owedEntries(redis, keys)) > 0) await new Promise((r) => setTimeout(r, 20));
  })();
  await Promise.race([settled, running.then(() => Promise.reject(new Error("the worker stopped by itself")))]);
  stop.abort();
  await running;
  const samples = parseSamples(await registry.metrics());
  expect(sample(samples, "worker_bad_output_entries_total", { kind: "private", reason: "postgres" })).toBe(1);
  expect(await closedRows(["T9-7", "T9-8", "T9-9"])).toEqual(["T9-9"]);
});
