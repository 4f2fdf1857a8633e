/**
 * The per-user events store, its contiguous mark and the fan-out stream, on real Redis (and Postgres, for the
 * worker's batches): appending is idempotent, a gap left by a late batch holds the mark until it fills, retention
 * keeps the newest 1,000 and the last 10 minutes, and the readers the stream process uses see a consistent store.
 */
import { createHash, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { EngineOutput, OrderView, OutputOf, PrivateOutput, TradeView } from "../contract/messages.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { outputEntries } from "../contract/stream-fields.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { startScratchRedis } from "../platform/testing/processes.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import {
  EVENT_APPEND,
  EVENT_SCRIPTS,
  FANOUT_ADD,
  EVENTS_KEEP_COUNT,
  EVENTS_KEEP_MS,
  EVENTS_IDLE_TTL_MS,
  EVENTS_TRIM_ABOVE,
  queueEventAppend,
  readEventsAfter,
  readPrivateState,
  recordLostEvents,
} from "./events.ts";
import {
  ANSWER_WRITE,
  chainScripts,
  ENTITY_WRITE,
  GUARDED_WRITE,
  queueOutputWrite,
  READ_MODEL_SCRIPTS,
} from "./read-models.ts";
import { ensureGroup, handleBatch } from "./worker.ts";

const log = createLogger("events-test", { level: "error" });
let redis: Redis;
let pg: TestDatabase;
let prefix: string;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase();
  await migrate(pg.db, log);
  prefix = `t-b-${randomUUID()}:`;
  for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await redis.script("LOAD", script);
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

async function space(name: string, on = redis): Promise<Keyspace> {
  const keys = keyspace(`${prefix}${name}:`);
  await ensureGroup(on, keys);
  return keys;
}

const T0 = 1_800_000_000_000;
const at = (ms: number) => new Date(ms).toISOString();

/** A private event of `userId` number `seq`, its input at log time `ms`. */
function balances(userId: string, seq: number, ms = T0 + seq, usd = String(10_000 + seq)): PrivateOutput {
  return {
    type: "balances_changed",
    id: `${ms}-0:0`,
    inputId: `${ms}-0`,
    userId,
    seq,
    balances: { USD: usd, ETH: "0" },
  };
}

function trade(id: string, openedAt: number): TradeView {
  return {
    id,
    asset: "ETH",
    type: "long",
    margin: "100",
    leverage: 10,
    quantity: "0.5",
    openPrice: "2000",
    stopLoss: null,
    takeProfit: null,
    trailingStop: null,
    liquidationPrice: "1810",
    openedAt: at(openedAt),
  };
}

function order(id: string, placedAt: number): OrderView {
  return {
    id,
    asset: "ETH",
    side: "long",
    type: "limit",
    price: "1900",
    margin: "100",
    leverage: 10,
    stopLoss: null,
    takeProfit: null,
    trailingStop: null,
    expiresAt: null,
    ocoWith: null,
    status: "pending",
    placedAt: at(placedAt),
    updatedAt: at(placedAt),
    fillPrice: null,
    tradeId: null,
    reason: null,
  };
}

function quote(ms: number, bid: string): OutputOf<"quote_updated"> {
  return {
    type: "quote_updated",
    id: `${ms}-0:0`,
    inputId: `${ms}-0`,
    asset: "ETH",
    market: "ETH_USDC_PERP",
    bid,
    ask: bid,
    updatedAt: at(ms),
    source: "sim",
  };
}

/** Appends events straight to the store, as the worker's pipeline does; the scripts' replies (1 stored, 0 not). */
async function append(keys: Keyspace, events: readonly PrivateOutput[]): Promise<number[]> {
  const pipe = redis.pipeline();
  for (const e of events) queueEventAppend(pipe, keys, e);
  const results = (await pipe.exec()) ?? [];
  return results.map(([err, value]) => {
    if (err) throw err;
    return value as number;
  });
}

const seqs = (events: readonly PrivateOutput[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * Puts `outputs` on engine:output as the engine publishes them (whole steps), and has the worker handle them as one
 * batch, as a group read delivers them.
 */
async function deliver(keys: Keyspace, outputs: readonly EngineOutput[], on = redis): Promise<void> {
  for (const fields of outputEntries(outputs)) await on.xadd(keys.output, "*", ...fields);
  const read = (await on.xreadgroup("GROUP", keys.workerGroup, "w", "STREAMS", keys.output, ">")) as
    [string, [string, string[]][]][] | null;
  await handleBatch({ reader: on, writer: on, db: pg.db, keys, log, consumer: "w" }, read?.[0]?.[1] ?? []);
}

/** The fan-out's entries but candles (the quotes' candles are worker/candles.ts's, checked in its own spec). */
async function fanout(keys: Keyspace): Promise<string[][]> {
  return (await redis.xrange(keys.streamFanout, "-", "+")).map(([, fields]) => fields).filter((f) => f[1] !== "candle");
}

describe("events store", () => {
  it("appends each seq once, advances the mark, and reads back a contiguous run after `since`", async () => {
    const keys = await space("append");
    // Given events 1–5 appended, then 3–5 again (an engine replay) and 2 again (a claimed batch)
    expect(
      await append(
        keys,
        range(1, 5).map((n) => balances("ann", n)),
      ),
    ).toEqual([1, 1, 1, 1, 1]);
    expect(
      await append(
        keys,
        [3, 4, 5, 2].map((n) => balances("ann", n)),
      ),
    ).toEqual([0, 0, 0, 0]);
    // Then each is stored once and the mark is 5
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(5);
    expect(await redis.get(keys.eventsSeqKey("ann"))).toBe("5");
    // And the member is the log ms, then the output as it came
    const [member] = await redis.zrangebyscore(keys.eventsKey("ann"), "1", "1");
    expect(member).toBe(`${T0 + 1} ${JSON.stringify(balances("ann", 1))}`);

    const after2 = await readEventsAfter(redis, keys, "ann", 2);
    expect(after2).toEqual({
      ok: true,
      events: [3, 4, 5].map((n) => balances("ann", n)),
      continued: [],
      mark: 5,
      aheadSeq: 0,
    });
    const limited = await readEventsAfter(redis, keys, "ann", 0, 2);
    expect(limited.ok && [seqs(limited.events), limited.mark]).toEqual([[1, 2], 5]);
    expect(await readEventsAfter(redis, keys, "ann", 5)).toEqual({
      ok: true,
      events: [],
      continued: [],
      mark: 5,
      aheadSeq: 0,
    });
    expect(await readEventsAfter(redis, keys, "ann", 6)).toEqual({ ok: false, reason: "ahead" });
    // A user with no events: mark 0, nothing after 0
    expect(await readEventsAfter(redis, keys, "bob", 0)).toEqual({
      ok: true,
      events: [],
      continued: [],
      mark: 0,
      aheadSeq: 0,
    });
    expect(await readEventsAfter(redis, keys, "bob", 1)).toEqual({ ok: false, reason: "ahead" });
  });

  it("lets a user's store expire a day after its last event, keeping the mark: a later resume is a resync", async () => {
    const keys = await space("idle");
    await append(
      keys,
      [1, 2].map((n) => balances("ann", n)),
    );
    await append(
      keys,
      [4].map((n) => balances("ann", n)),
    ); // 3 missing: 4 waits above the gap
    for (const key of [keys.eventsKey("ann"), keys.eventsAheadKey("ann")]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(EVENTS_IDLE_TTL_MS - 60_000);
      expect(ttl).toBeLessThanOrEqual(EVENTS_IDLE_TTL_MS);
    }
    expect(await redis.pttl(keys.eventsSeqKey("ann"))).toBe(-1);
    // When the idle time has passed (the expiry, brought forward)
    await redis.pexpire(keys.eventsKey("ann"), 1);
    await new Promise((r) => setTimeout(r, 20));
    // Then a resume below the mark gets a resync, and the mark is still 2
    expect(await readEventsAfter(redis, keys, "ann", 1)).toEqual({ ok: false, reason: "beyond_retention" });
    expect(await redis.get(keys.eventsSeqKey("ann"))).toBe("2");
  });

  it("refuses a since or limit that is not a whole number in range, naming it", async () => {
    const keys = await space("bad-args");
    await expect(readEventsAfter(redis, keys, "ann", -1)).rejects.toThrow(
      "since: expected a whole number ≥ 0, received -1",
    );
    await expect(readEventsAfter(redis, keys, "ann", 1.5)).rejects.toThrow("received 1.5");
    await expect(readEventsAfter(redis, keys, "ann", 0, 0)).rejects.toThrow(
      "limit: expected a whole number ≥ 1, received 0",
    );
  });

  it("holds the mark below a gap, stores what came early, and moves over it once the gap fills", async () => {
    const keys = await space("gap");
    // Given 1 and 2, then 5 and 6 (a newer batch), while 3 and 4 are still with a dead worker
    await append(
      keys,
      [1, 2, 5, 6].map((n) => balances("ann", n)),
    );
    // Then the mark stays at 2, and 5 and 6 are stored and listed as ahead
    expect(await redis.get(keys.eventsSeqKey("ann"))).toBe("2");
    expect(await redis.zrange(keys.eventsAheadKey("ann"), "0", "-1")).toEqual(["5", "6"]);
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(4);
    // And a reader sees nothing past the mark
    const early = await readEventsAfter(redis, keys, "ann", 0);
    expect(early.ok && [seqs(early.events), early.mark]).toEqual([[1, 2], 2]);
    // Each read says how far the store holds above the gap: a live channel that missed their fan-out waits for it
    expect(await readEventsAfter(redis, keys, "ann", 2)).toEqual({
      ok: true,
      events: [],
      continued: [],
      mark: 2,
      aheadSeq: 6,
    });
    // A snapshot says how far the store holds above the gap: a channel reads up to there once it fills
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({ seq: 2, aheadSeq: 6 });
    // A replay of an early one stores nothing again
    expect(await append(keys, [balances("ann", 6)])).toEqual([0]);
    // When 4 arrives the gap narrows: still at 2
    await append(keys, [balances("ann", 4)]);
    expect(await redis.get(keys.eventsSeqKey("ann"))).toBe("2");
    // When 3 arrives the mark moves over 3, 4, 5, 6 and nothing waits
    await append(keys, [balances("ann", 3)]);
    expect(await redis.get(keys.eventsSeqKey("ann"))).toBe("6");
    expect(await redis.zcard(keys.eventsAheadKey("ann"))).toBe(0);
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({ seq: 6, aheadSeq: 0 });
    const all = await readEventsAfter(redis, keys, "ann", 0);
    expect(all.ok && [seqs(all.events), all.mark]).toEqual([range(1, 6), 6]);
  });

  it("keeps the newest 1,000 events and trims older ones a run at a time", async () => {
    const keys = await space("trim-count");
    // Events a second apart: by the 1,101st, the oldest are more than ten minutes behind the newest
    const second = (n: number) => balances("ann", n, T0 + n * 1000);
    await append(keys, range(1, EVENTS_TRIM_ABOVE).map(second));
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(EVENTS_TRIM_ABOVE); // not yet past the threshold
    await append(keys, [second(EVENTS_TRIM_ABOVE + 1)]);
    // Then one trim takes it down to the newest 1,000: the 101 older ones are over ten minutes older than the newest
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(EVENTS_KEEP_COUNT);
    await append(keys, range(EVENTS_TRIM_ABOVE + 2, 1_200).map(second));
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(1_099); // amortised: no trim below the threshold
    expect(await readEventsAfter(redis, keys, "ann", 100)).toEqual({ ok: false, reason: "beyond_retention" });
    const resumed = await readEventsAfter(redis, keys, "ann", 101);
    expect(resumed.ok && [resumed.events[0]?.seq, resumed.events.length, resumed.mark]).toEqual([102, 1000, 1200]);
  });

  it("keeps every event of the newest one's last ten minutes, however many", async () => {
    const keys = await space("trim-time");
    // Given 1,300 events within one minute
    const burst = (n: number) => balances("ann", n, T0 + n * 10);
    await append(keys, range(1, 1_300).map(burst));
    // Then none is trimmed
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(1_300);
    expect((await readEventsAfter(redis, keys, "ann", 0, 2_000)).ok).toBe(true);
    // When one comes exactly ten minutes after the oldest, still none is
    await append(keys, [balances("ann", 1_301, T0 + 10 + EVENTS_KEEP_MS)]);
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(1_301);
    // When one comes later than ten minutes after all of them, the set goes down to the newest 1,000
    await append(keys, [balances("ann", 1_302, T0 + 1_300 * 10 + EVENTS_KEEP_MS + 1)]);
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(EVENTS_KEEP_COUNT);
    expect(await readEventsAfter(redis, keys, "ann", 301)).toEqual({ ok: false, reason: "beyond_retention" });
    const kept = await readEventsAfter(redis, keys, "ann", 302);
    expect(kept.ok && [kept.events[0]?.seq, kept.mark]).toEqual([303, 1_302]);
  });

  it("never trims events above the mark, nor the ones a gap waits under", async () => {
    const keys = await space("trim-gap");
    // Given 1,200 old events, all stored ahead of a gap at 1, then a much newer one
    const old = (n: number) => balances("ann", n, T0 + n);
    await append(keys, range(2, 1_200).map(old));
    await append(keys, [balances("ann", 1_201, T0 + 60 * EVENTS_KEEP_MS)]);
    // Then nothing is trimmed: every one of them is above the mark
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(1_200);
    // When 1 arrives the mark covers them all, and the same append trims to the newest 1,000
    await append(keys, [old(1)]);
    expect(await redis.get(keys.eventsSeqKey("ann"))).toBe("1201");
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(EVENTS_KEEP_COUNT);
    expect(await redis.zcard(keys.eventsAheadKey("ann"))).toBe(0);
  });
});

describe("readPrivateState", () => {
  it("reads balances, open trades and pending orders (oldest first) with the mark, in one read", async () => {
    const keys = await space("state");
    await redis.hset(keys.balancesKey("ann"), { USD: "9800", ETH: "0" });
    await redis.hset(keys.openTradesKey("ann"), {
      "T0-10": JSON.stringify(trade("T0-10", T0 + 5)),
      "T0-9": JSON.stringify(trade("T0-9", T0 + 5)),
      "T0-2": JSON.stringify(trade("T0-2", T0 + 9)),
    });
    await redis.hset(keys.pendingOrdersKey("ann"), {
      "P0-4": JSON.stringify(order("P0-4", T0 + 7)),
      "P0-3": JSON.stringify(order("P0-3", T0 + 6)),
    });
    await append(
      keys,
      [1, 2, 4].map((n) => balances("ann", n)),
    );
    expect(await readPrivateState(redis, keys, "ann")).toEqual({
      seq: 2,
      aheadSeq: 4,
      markContinues: false,
      aheadContinues: false,
      balances: { USD: "9800", ETH: "0" },
      trades: [trade("T0-9", T0 + 5), trade("T0-10", T0 + 5), trade("T0-2", T0 + 9)],
      orders: [order("P0-3", T0 + 6), order("P0-4", T0 + 7)],
    });
    expect(await readPrivateState(redis, keys, "nobody")).toEqual({
      seq: 0,
      aheadSeq: 0,
      markContinues: false,
      aheadContinues: false,
      balances: {},
      trades: [],
      orders: [],
    });
  });

  it("says whether the event a reader starts from goes on in its step: `since`'s own `more`, and the mark's", async () => {
    const keys = await space("starts-mid-step");
    // 1 paid in; 2 opened a trade, stored with `more`, its margin paid (3) not stored yet: the mark is inside the step
    const opened: PrivateOutput = {
      type: "trade_opened",
      id: `${T0 + 2}-0:0`,
      inputId: `${T0 + 2}-0`,
      userId: "ann",
      seq: 2,
      trade: trade("T0-1", T0 + 2),
    };
    await append(keys, [balances("ann", 1)]);
    const pipe = redis.pipeline();
    queueEventAppend(pipe, keys, opened, true);
    await pipe.exec();
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({ seq: 2, markContinues: true });
    expect(await readEventsAfter(redis, keys, "ann", 2)).toEqual({
      ok: true,
      events: [],
      continued: [2],
      mark: 2,
      aheadSeq: 0,
    });
    expect(await readEventsAfter(redis, keys, "ann", 1)).toEqual({
      ok: true,
      events: [opened],
      continued: [2],
      mark: 2,
      aheadSeq: 0,
    });
    // Once 3 is stored the mark is past the step; a read from 2 still says 2 went on, and reads 3 within its limit
    const paid = { ...balances("ann", 3, T0 + 2, "9900"), id: `${T0 + 2}-0:1` };
    await append(keys, [paid]);
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({ seq: 3, markContinues: false });
    expect(await readEventsAfter(redis, keys, "ann", 2, 1)).toEqual({
      ok: true,
      events: [paid],
      continued: [2],
      mark: 3,
      aheadSeq: 0,
    });
    // `since` trimmed (2 here), the run after it kept: a resume, and nothing said of `since`
    await redis.zremrangebyscore(keys.eventsKey("ann"), 1, 2);
    expect(await readEventsAfter(redis, keys, "ann", 2)).toEqual({
      ok: true,
      events: [paid],
      continued: [],
      mark: 3,
      aheadSeq: 0,
    });
  });

  it("says whether the newest event stored above a gap goes on in its step, which the mark's cannot say", async () => {
    const keys = await space("ahead-mid-step");
    // 2 is held by a dead worker; the live worker stores 3, stored with `more`, above the gap: the read models are
    // inside 3's step, while the event at the mark (1) is an older step's, whole
    await append(keys, [balances("ann", 1)]);
    const pipe = redis.pipeline();
    queueEventAppend(pipe, keys, balances("ann", 3), true);
    await pipe.exec();
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({
      seq: 1,
      aheadSeq: 3,
      markContinues: false,
      aheadContinues: true,
    });
    await append(keys, [balances("ann", 4)]);
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({ seq: 1, aheadSeq: 4, aheadContinues: false });
    await append(keys, [balances("ann", 2)]);
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({
      seq: 4,
      aheadSeq: 0,
      markContinues: false,
      aheadContinues: false,
    });
    // 5 stored with `more`, 6 (the rest of its step) refused and recorded lost: the mark is 6, with no event there,
    // and no step is under way any more; 5, the newest event stored, is not taken for one
    const next = redis.pipeline();
    queueEventAppend(next, keys, balances("ann", 5), true);
    await next.exec();
    await recordLostEvents(redis, keys, [{ userId: "ann", seq: 6 }]);
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({
      seq: 6,
      aheadSeq: 0,
      markContinues: false,
      aheadContinues: false,
    });
    // The same above a gap (7 held by a dead worker): 8 stored with `more`, 9 refused and recorded lost (the worker
    // records a batch's lost seqs before it writes its outputs). 8 stays the newest stored, and its step never goes on
    await recordLostEvents(redis, keys, [{ userId: "ann", seq: 9 }]);
    const above = redis.pipeline();
    queueEventAppend(above, keys, balances("ann", 8), true);
    await above.exec();
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({
      seq: 6,
      aheadSeq: 8,
      markContinues: false,
      aheadContinues: false,
    });
  });

  it("works on a Redis that has not loaded its script (EVAL on NOSCRIPT)", async () => {
    // A fresh Redis of its own, with no script loaded (a SCRIPT FLUSH of the shared one would empty it under every
    // other test file running).
    const scratch = await startScratchRedis("events-noscript");
    const fresh = new Redis(scratch.port, "127.0.0.1");
    try {
      const keys = keyspace("noscript:");
      expect((await readPrivateState(fresh, keys, "ann")).seq).toBe(0);
      expect(await readEventsAfter(fresh, keys, "ann", 0)).toEqual({
        ok: true,
        events: [],
        continued: [],
        mark: 0,
        aheadSeq: 0,
      });
    } finally {
      fresh.disconnect();
      await scratch.stop();
    }
  });
});

describe("worker: events and fan-out", () => {
  it("stores each private output's event with its read-model write, then fans out events and moved quotes", async () => {
    const keys = await space("worker");
    const opened: PrivateOutput = {
      type: "trade_opened",
      id: `${T0 + 2}-0:1`,
      inputId: `${T0 + 2}-0`,
      userId: "ann",
      seq: 1,
      trade: trade("T0-1", T0 + 2),
    };
    const paid = { ...balances("ann", 2, T0 + 2, "9900"), id: `${T0 + 2}-0:2` };
    // Given a quote, an open and its balances in one batch
    await deliver(keys, [quote(T0 + 1, "2000"), opened, paid]);
    // Then the store holds both events under the mark, and the read models show them
    expect(await readEventsAfter(redis, keys, "ann", 0)).toEqual({
      ok: true,
      events: [opened, paid],
      continued: [1],
      mark: 2,
      aheadSeq: 0,
    });
    const state = await readPrivateState(redis, keys, "ann");
    expect([state.seq, state.balances.USD, state.trades.map((t) => t.id)]).toEqual([2, "9900", ["T0-1"]]);
    // And the fan-out has one entry each, in stream order, in the agreed fields; the open says its step has more
    expect(await fanout(keys)).toEqual([
      ["kind", "quote", "body", JSON.stringify(quote(T0 + 1, "2000"))],
      ["kind", "event", "user", "ann", "seq", "1", "more", "1", "body", JSON.stringify(opened)],
      ["kind", "event", "user", "ann", "seq", "2", "body", JSON.stringify(paid)],
    ]);
    // When the batch is replayed (an engine restart re-emits it) next to a newer quote
    await deliver(keys, [quote(T0 + 1, "2000"), opened, paid, quote(T0 + 3, "2010")]);
    // Then the events go out again (at least once: the stream drops seqs it delivered), the old quote does not, and
    // the new quote goes out first, ahead of the batch's events
    const again = (await fanout(keys)).slice(3);
    expect(again.map((f) => [f[1], f[5] ?? (JSON.parse(f[3]!) as { bid: string }).bid])).toEqual([
      ["quote", "2010"],
      ["event", "1"],
      ["event", "2"],
    ]);
    expect(await redis.zcard(keys.eventsKey("ann"))).toBe(2);
  });

  it("fans out `more` on an event whose entry says its step follows it with another for the same user", async () => {
    const keys = await space("worker-more");
    // One price input fires two users' stops (each: a close, then its balances), then a later input pays bea again
    const step = T0 + 5;
    const closed = (userId: string, seq: number, n: number): PrivateOutput => ({
      ...balances(userId, seq, step),
      id: `${step}-0:${n}`,
    });
    const outputs = [
      closed("ann", 1, 0),
      closed("bea", 1, 1),
      closed("ann", 2, 2),
      closed("bea", 2, 3),
      balances("bea", 3, T0 + 6),
    ];
    await deliver(keys, outputs);
    const entries = (await fanout(keys)).map((f): Record<string, string | undefined> =>
      Object.fromEntries(range(0, f.length / 2 - 1).map((i) => [f[2 * i]!, f[2 * i + 1]!])),
    );
    expect(entries.map((e) => [e.user, e.seq, e.more ?? "-"])).toEqual([
      ["ann", "1", "1"],
      ["bea", "1", "1"],
      ["ann", "2", "-"],
      ["bea", "2", "-"],
      ["bea", "3", "-"],
    ]);
  });

  it("stores `more` with its event and reads it back; a member stored without it reads as no more", async () => {
    const keys = await space("worker-more-stored");
    const step = T0 + 5;
    const outputs = [0, 1].map((n): PrivateOutput => ({ ...balances("ann", n + 1, step), id: `${step}-0:${n}` }));
    await deliver(keys, [...outputs, balances("ann", 3, T0 + 6)]);
    const read = await readEventsAfter(redis, keys, "ann", 0);
    expect(read).toEqual({
      ok: true,
      events: [...outputs, balances("ann", 3, T0 + 6)],
      continued: [1],
      mark: 3,
      aheadSeq: 0,
    });
    // What a reader from before the field does with each member: the log ms up to the first space (EVENT_APPEND's
    // trim too), the rest parsed as the output; the field rides along.
    const members = await redis.zrange(keys.eventsKey("ann"), "0", "-1");
    expect(members.map((m) => /^(\d+) /.exec(m)?.[1])).toEqual([String(step), String(step), String(T0 + 6)]);
    expect(members.map((m) => JSON.parse(m.slice(m.indexOf(" ") + 1)) as unknown)).toEqual([
      { ...outputs[0], more: true },
      outputs[1],
      balances("ann", 3, T0 + 6),
    ]);
    // A member an older worker stored (no field) reads as no more
    const older = balances("ann", 4, T0 + 7);
    await redis.zadd(keys.eventsKey("ann"), 4, `${T0 + 7} ${JSON.stringify(older)}`);
    await redis.set(keys.eventsSeqKey("ann"), "4");
    expect(await readEventsAfter(redis, keys, "ann", 3)).toEqual({
      ok: true,
      events: [older],
      continued: [],
      mark: 4,
      aheadSeq: 0,
    });
    expect(await readEventsAfter(redis, keys, "ann", 4)).toEqual({
      ok: true,
      events: [],
      continued: [],
      mark: 4,
      aheadSeq: 0,
    });
    expect(await readPrivateState(redis, keys, "ann")).toMatchObject({ seq: 4, markContinues: false });
  });

  it("fills the gap a claimed batch left, whatever order the batches come in", async () => {
    const keys = await space("worker-gap");
    const events = range(1, 6).map((n) => balances("cat", n, T0 + n * 10, String(10_000 - n)));
    // Given the newer batch (4–6) handled first, the older (1–3) claimed from a dead worker afterwards
    await deliver(keys, events.slice(3));
    expect((await readPrivateState(redis, keys, "cat")).seq).toBe(0);
    expect(await readEventsAfter(redis, keys, "cat", 0)).toEqual({
      ok: true,
      events: [],
      continued: [],
      mark: 0,
      aheadSeq: 6,
    });
    await deliver(keys, events.slice(0, 3));
    // Then every event is readable in order, and the balances are the newest's (the late ones did not regress them)
    expect(await readEventsAfter(redis, keys, "cat", 0)).toEqual({
      ok: true,
      events,
      continued: [],
      mark: 6,
      aheadSeq: 0,
    });
    const state = await readPrivateState(redis, keys, "cat");
    expect([state.seq, state.balances.USD]).toEqual([6, "9994"]);
  });

  it("leaves the batch unacknowledged when the fan-out fails, and fans it out when run again, quote and all", async () => {
    const keys = await space("worker-fanout-fails");
    await redis.set(keys.streamFanout, "not a stream"); // every XADD to it fails (WRONGTYPE)
    await expect(deliver(keys, [quote(T0 + 1, "2000"), balances("dan", 1, T0 + 2)])).rejects.toThrow("WRONGTYPE");
    // The quote's read model is written (its fan-out comes first, and failed there), and the entries stay pending
    expect(JSON.parse((await redis.hget(keys.quotesKey, "ETH"))!)).toMatchObject({ bid: "2000" });
    expect(((await redis.xpending(keys.output, keys.workerGroup)) as [number])[0]).toBe(2);
    // When the fan-out works again and the pending entries are run again, the quote goes out too: the read model
    // already shows it, and no client has seen it
    await redis.del(keys.streamFanout);
    const pending = (await redis.xrange(keys.output, "-", "+")) as [string, string[]][];
    await handleBatch({ reader: redis, writer: redis, db: pg.db, keys, log, consumer: "w" }, pending);
    const fanned = (await fanout(keys)).map((f) => (f[1] === "quote" ? "quote" : f.slice(0, 6).join(" ")));
    expect(fanned).toEqual(["quote", "kind event user dan seq 1"]);
    expect(await redis.get(keys.eventsSeqKey("dan"))).toBe("1");
    expect(((await redis.xpending(keys.output, keys.workerGroup)) as [number])[0]).toBe(0);
    // An older quote after it is written nowhere and sent nowhere
    await deliver(keys, [quote(T0, "1999")]);
    expect(JSON.parse((await redis.hget(keys.quotesKey, "ETH"))!)).toMatchObject({ bid: "2000" });
    expect((await fanout(keys)).filter((f) => f[1] === "quote")).toHaveLength(1);
  });

  it("runs one script per output (its read-model write and event append), answers last, one fan-out command per pass", async () => {
    // On a Redis of its own: ioredis fails a MONITOR whose first monitor line comes in the same read as its OK
    // ("Command queue state error", redis/ioredis#1981), as it may on the shared one while other test files run.
    const scratch = await startScratchRedis("events-monitor");
    const own = new Redis(scratch.url);
    onTestFinished(async () => {
      own.disconnect();
      await scratch.stop();
    });
    for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await own.script("LOAD", script);
    const keys = await space("worker-order", own);
    const monitor = await own.monitor();
    const scripts = new Map([
      [sha(GUARDED_WRITE), "guarded"],
      [sha(ENTITY_WRITE), "entity"],
      [sha(EVENT_APPEND), "append"],
      [sha(ANSWER_WRITE), "answer"],
      [sha(chainScripts(GUARDED_WRITE, EVENT_APPEND)), "guarded+append"],
      [sha(chainScripts(ENTITY_WRITE, EVENT_APPEND)), "entity+append"],
      [sha(FANOUT_ADD), "fanout"],
    ]);
    const seen: string[] = [];
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      // Top-level commands only: MONITOR shows a script's own calls too, from "lua".
      if (source === "lua" || !args.some((a) => a.startsWith(prefix + "worker-order:"))) return;
      const command = args[0]?.toLowerCase();
      if (command === "evalsha") seen.push(scripts.get(args[1]!) ?? "other");
      else if (command === "xadd" && args[1] === keys.streamFanout) seen.push("xadd");
    });
    const ms = T0 + 5;
    const head = (n: number) => ({ id: `${ms}-0:${n}`, inputId: `${ms}-0`, userId: "fay" });
    try {
      const outputs: EngineOutput[] = [
        quote(ms - 1, "2000"),
        { type: "order_updated", ...head(0), seq: 1, order: order("P0-1", ms) },
        { type: "balances_changed", ...head(1), seq: 2, balances: { USD: "9900" } },
        {
          type: "order_response",
          ...head(2),
          requestId: "r1",
          answer: { ok: false, error: { code: "X", message: "x" } },
        },
        { type: "trade_opened", ...head(3), seq: 3, trade: trade("T0-1", ms) },
        {
          type: "closed_order",
          ...head(4),
          seq: 4,
          trade: {
            ...trade("T0-1", ms),
            quantity: "0.25",
            margin: "50",
            closeId: "T0-1.1",
            closePrice: "2000",
            pnl: "0",
            lossWaived: null,
            remainingQuantity: "0.25",
            closeReason: "manual",
            closedAt: at(ms),
          },
        },
      ];
      await deliver(keys, outputs, own);
      await until(() => seen.length >= 8);
      await new Promise((r) => setTimeout(r, 100)); // nothing more comes
    } finally {
      monitor.disconnect();
    }
    // The quote first, its fan-out at once; then one script per output (a partial close has no read-model write,
    // only its event), the answer, and the events and the quote's candle fanned out in one command.
    expect(seen).toEqual([
      "guarded",
      "fanout",
      "entity+append",
      "guarded+append",
      "entity+append",
      "append",
      "answer",
      "fanout",
    ]);
    const fanned = (await own.xrange(keys.streamFanout, "-", "+")).map(([, f]) =>
      f[1] === "event" ? `event ${f[3]} ${f[5]}` : f[1],
    );
    expect(fanned).toEqual(["quote", "event fay 1", "event fay 2", "event fay 3", "event fay 4", "candle"]);
  });

  it("writes a private output's read model and stores its event in one script; an older output's event is stored all the same", async () => {
    const keys = await space("one-script");
    const pipe = redis.pipeline();
    queueOutputWrite(pipe, keys, balances("gil", 2, T0 + 20, "10002"));
    queueOutputWrite(pipe, keys, balances("gil", 1, T0 + 10, "10001")); // older: its read-model write is skipped
    queueOutputWrite(pipe, keys, quote(T0 + 30, "2000")); // no event: its write alone
    expect(pipe.length).toBe(3);
    const results = ((await pipe.exec()) ?? []).map(([err, value]) => {
      if (err) throw err;
      return value;
    });
    expect(results).toEqual([1, 0, 1]); // the read-model writes' replies
    expect(await redis.hgetall(keys.balancesKey("gil"))).toEqual({ USD: "10002", ETH: "0" });
    const read = await readEventsAfter(redis, keys, "gil", 0, 10);
    expect(read).toMatchObject({ mark: 2, events: [{ seq: 1 }, { seq: 2 }] });
    expect(JSON.parse((await redis.hget(keys.quotesKey, "ETH"))!)).toMatchObject({ bid: "2000" });
  });
});

async function until(probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!probe()) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sha = (script: string) => createHash("sha1").update(script).digest("hex");
