/**
 * The 1-minute candles on real Postgres (a fresh database per run) and, through the worker's batch handler, real
 * Redis: open, high, low and close of the bid per asset per minute, unchanged by a replayed output or by an older
 * batch applied after a newer one; and each hour in candles_1h the merge of its minutes, kept so by every write and
 * by the re-merge a worker runs at start.
 */
import { randomUUID } from "node:crypto";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineOutputSchema, type EngineOutput, type OutputOf } from "../contract/messages.ts";
import { keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { createLogger } from "../platform/log.ts";
import { DEFAULT_MIGRATIONS_DIR, migrate } from "../platform/migrate.ts";
import type { Queryable } from "../platform/postgres.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { MERGE_CHUNK_MS, mergeHoursAtStart, mergeRecentHours, REMERGE_HOURS, writeCandles } from "./candles.ts";
import { READ_MODEL_SCRIPTS } from "./read-models.ts";
import { ensureGroup, handleBatch } from "./worker.ts";

const log = createLogger("worker-test", { level: "error" });
let pg: TestDatabase;

beforeAll(async () => {
  pg = await createTestDatabase();
  await migrate(pg.db, log);
});
afterAll(() => pg.drop());

/** A minute boundary: 2027-01-15T08:00:00Z. Each test uses its own asset or minutes, so tests do not meet. */
const T0 = Date.UTC(2027, 0, 15, 8, 0);
const at = (ms: number) => new Date(ms).toISOString();

/** The order of output id "<ms>-<seq>:<n>" as the table keeps it: ms × 10^30 + seq × 10^10 + n, in decimal. */
const order = (ms: number, seq = 0, n = 0) => String(BigInt(ms) * 10n ** 30n + BigInt(seq) * 10n ** 10n + BigInt(n));

/** The engine's quote output for `asset` at log time `ms`; `seq`, `n` the rest of its id "<ms>-<seq>:<n>". */
function quote(asset: string, ms: number, bid: string, seq = 0, n = 0): OutputOf<"quote_updated"> {
  return engineOutputSchema.parse({
    id: `${ms}-${seq}:${n}`,
    inputId: `${ms}-${seq}`,
    type: "quote_updated",
    asset,
    market: `${asset}_USDC_PERP`,
    bid,
    ask: "999999",
    updatedAt: at(ms),
    source: "sim",
  }) as OutputOf<"quote_updated">;
}

async function stored(asset: string) {
  const { rows } = await pg.db.query(
    "SELECT open_time, open::text, high::text, low::text, close::text FROM candles_1m WHERE asset = $1 ORDER BY 1",
    [asset],
  );
  return rows.map((r) => ({ ...r, open_time: (r.open_time as Date).toISOString() }));
}

describe("writeCandles", () => {
  it("folds a batch's bids into one candle per minute: open first, close last, high and low the extremes", async () => {
    const outputs: EngineOutput[] = [
      quote("ETH", T0 + 1_000, "2000"),
      quote("ETH", T0 + 20_000, "2010.5"),
      quote("ETH", T0 + 40_000, "1995.25"),
      quote("ETH", T0 + 59_999, "2003"),
      quote("ETH", T0 + 60_000, "2004.1"), // the next minute
      quote("BTC", T0 + 5_000, "60000.5"),
    ];
    const candles = await writeCandles(pg.db, outputs, log);
    // In (asset, minute) order, as they were written.
    expect(candles).toMatchObject([
      {
        asset: "BTC",
        interval: "1m",
        openTime: at(T0),
        open: "60000.5",
        high: "60000.5",
        low: "60000.5",
        close: "60000.5",
      },
      { asset: "ETH", interval: "1m", openTime: at(T0), open: "2000", high: "2010.5", low: "1995.25", close: "2003" },
      {
        asset: "ETH",
        interval: "1m",
        openTime: at(T0 + 60_000),
        open: "2004.1",
        high: "2004.1",
        low: "2004.1",
        close: "2004.1",
      },
    ]);
    expect(await stored("ETH")).toEqual([
      {
        open_time: at(T0),
        open: "2000.0000000000",
        high: "2010.5000000000",
        low: "1995.2500000000",
        close: "2003.0000000000",
      },
      {
        open_time: at(T0 + 60_000),
        open: "2004.1000000000",
        high: "2004.1000000000",
        low: "2004.1000000000",
        close: "2004.1000000000",
      },
    ]);
  });

  it("merges later batches into the stored minute, and writes nothing for a batch without quotes", async () => {
    await writeCandles(pg.db, [quote("SOL", T0 + 1_000, "150"), quote("SOL", T0 + 2_000, "151")], log);
    const later = await writeCandles(
      pg.db,
      [quote("SOL", T0 + 3_000, "149.5"), quote("SOL", T0 + 4_000, "150.25")],
      log,
    );
    expect(later).toMatchObject([
      { asset: "SOL", interval: "1m", openTime: at(T0), open: "150", high: "151", low: "149.5", close: "150.25" },
    ]);
    expect(await writeCandles(pg.db, [], log)).toEqual([]);
  });

  it("a replayed output changes nothing, and the candle is still returned (for the fan-out to send again)", async () => {
    const batch = [
      quote("ADA", T0 + 1_000, "0.5"),
      quote("ADA", T0 + 2_000, "0.51234"),
      quote("ADA", T0 + 3_000, "0.49"),
    ];
    const first = await writeCandles(pg.db, batch, log);
    const before = await stored("ADA");
    expect(await writeCandles(pg.db, [batch[1]!], log)).toEqual(first);
    expect(await writeCandles(pg.db, batch, log)).toEqual(first);
    expect(await stored("ADA")).toEqual(before);
    expect(first).toMatchObject([
      { asset: "ADA", interval: "1m", openTime: at(T0), open: "0.5", high: "0.51234", low: "0.49", close: "0.49" },
    ]);
  });

  it("an older batch after a newer one, or any order, gives the log order's row, outputs and all", async () => {
    // Ids compared as numbers: seq 10 is after seq 9 and n 10 after n 9, though "10" sorts before "9" as text.
    const ms = T0 + 10 * 60_000;
    const older = [quote("ETH", ms, "2100", 9, 9), quote("ETH", ms, "2090", 9, 10)];
    const newer = [quote("ETH", ms, "2120", 10, 0), quote("ETH", ms + 30_000, "2105", 0, 0)];
    const expected = {
      asset: "ETH",
      interval: "1m",
      openTime: at(ms),
      open: "2100",
      high: "2120",
      low: "2090",
      close: "2105",
      openOutput: order(ms, 9, 9),
      closeOutput: order(ms + 30_000),
    };
    expect(await writeCandles(pg.db, newer, log)).toEqual([
      { ...expected, open: "2120", low: "2105", openOutput: order(ms, 10, 0) },
    ]);
    expect(await writeCandles(pg.db, older, log)).toEqual([expected]);

    // The same outputs in reverse order, in one batch, into a minute of their own.
    const later = 60 * 60_000;
    const shifted = [...older, ...newer].map((q) => {
      const [msText, rest] = q.id.split("-") as [string, string];
      return quote("ETH", Number(msText) + later, q.bid, Number(rest.split(":")[0]), Number(rest.split(":")[1]));
    });
    expect(await writeCandles(pg.db, shifted.reverse(), log)).toEqual([
      {
        ...expected,
        openTime: at(ms + later),
        openOutput: order(ms + later, 9, 9),
        closeOutput: order(ms + 30_000 + later),
      },
    ]);
  });

  it("two workers writing the same minutes' candles, assets in opposite orders, do not deadlock", async () => {
    // A rolling deploy always runs two workers; each batch upserts its candles in one statement, and rows locked in
    // opposite orders by two statements at once are a deadlock (40P01) unless every writer locks in one order.
    const ms = T0 + 2 * 60 * 60_000;
    const forward = ["ETH", "BTC", "SOL", "ADA"].map((asset, i) => quote(asset, ms + i, "1", 0, i));
    const backward = [...forward].reverse();
    const errors: unknown[] = [];
    const loop = async (batch: EngineOutput[]) => {
      for (let i = 0; i < 1_000 && errors.length === 0; i++) {
        await writeCandles(pg.db, batch, log).catch((err: unknown) => errors.push(err));
      }
    };
    await Promise.all([loop(forward), loop(backward)]);
    expect(errors).toEqual([]);
    // Not even one statement sent again (platform/postgres.ts): the writers never met in a deadlock at all.
    expect(pg.logLines.filter((line) => line.event === "postgres_statement_retried")).toEqual([]);
  });
});

/** A candles_1m or candles_1h row, every column as text. */
interface StoredRow {
  open_time: string;
  open: string;
  high: string;
  low: string;
  close: string;
  open_output: string;
  close_output: string;
}

async function rowsOf(db: TestDatabase["db"], table: string, asset: string): Promise<StoredRow[]> {
  const { rows } = await db.query<StoredRow & { open_time: Date }>(
    `SELECT open_time, open::text, high::text, low::text, close::text, open_output::text, close_output::text
       FROM ${table} WHERE asset = $1 ORDER BY 1`,
    [asset],
  );
  return rows.map((r) => ({ ...r, open_time: r.open_time.toISOString() }));
}

/** The stored hours of `asset`. */
const hours = (db: TestDatabase["db"], asset: string) => rowsOf(db, "candles_1h", asset);

/**
 * The hours of `asset` as merged from its stored minutes by the rules of the table, computed here from the rows
 * rather than in SQL: open from the minute with the least open output, close from the greatest close output.
 */
async function hoursFromMinutes(db: TestDatabase["db"], asset: string): Promise<StoredRow[]> {
  const merged = new Map<number, StoredRow>();
  for (const row of await rowsOf(db, "candles_1m", asset)) {
    const hourMs = Math.floor(Date.parse(row.open_time) / 3_600_000) * 3_600_000;
    const h = merged.get(hourMs);
    if (h === undefined) {
      merged.set(hourMs, { ...row, open_time: at(hourMs) });
      continue;
    }
    if (BigInt(row.open_output) < BigInt(h.open_output)) [h.open, h.open_output] = [row.open, row.open_output];
    if (BigInt(row.close_output) > BigInt(h.close_output)) [h.close, h.close_output] = [row.close, row.close_output];
    if (Number(row.high) > Number(h.high)) h.high = row.high;
    if (Number(row.low) < Number(h.low)) h.low = row.low;
  }
  return [...merged.values()];
}

describe("the hourly rollup", () => {
  it("writes each minute into its hour: the merge of the hour's minutes, whatever the order and however often", async () => {
    // Two hours of ETH, 2027-01-16 10:00 and 11:00; batches applied newest first, then an older one claimed late,
    // then every batch again (a replay).
    const h10 = Date.UTC(2027, 0, 16, 10);
    const h11 = h10 + 60 * 60_000;
    const first = [quote("ETH", h10 + 5 * 60_000, "2100"), quote("ETH", h10 + 5 * 60_000 + 1, "2090.5")];
    const second = [quote("ETH", h10 + 30 * 60_000, "2150.25"), quote("ETH", h10 + 59 * 60_000 + 59_000, "2120")];
    const third = [quote("ETH", h11 + 1_000, "2119"), quote("ETH", h11 + 20 * 60_000, "2130")];
    await writeCandles(pg.db, third, log);
    await writeCandles(pg.db, second, log);
    const secondHour = await hours(pg.db, "ETH");
    await writeCandles(pg.db, first, log);
    const fromH10 = async () => (await hours(pg.db, "ETH")).filter((h) => h.open_time >= at(h10));
    expect(await fromH10()).toEqual([
      {
        open_time: at(h10),
        open: "2100.0000000000",
        high: "2150.2500000000",
        low: "2090.5000000000",
        close: "2120.0000000000",
        open_output: order(h10 + 5 * 60_000),
        close_output: order(h10 + 59 * 60_000 + 59_000),
      },
      secondHour.find((h) => h.open_time === at(h11)),
    ]);
    for (const batch of [first, second, third, [...first, ...second, ...third].reverse()])
      await writeCandles(pg.db, batch, log);
    const stored = await fromH10();
    expect(stored).toEqual((await hoursFromMinutes(pg.db, "ETH")).filter((h) => h.open_time >= at(h10)));
    expect(stored.find((h) => h.open_time === at(h11))).toMatchObject({
      open: "2119.0000000000",
      low: "2119.0000000000",
    });
  });
});

describe("mergeRecentHours (the worker's start)", () => {
  let own: TestDatabase;
  beforeAll(async () => {
    own = await createTestDatabase();
    await migrate(own.db, log);
  });
  afterAll(() => own.drop());

  /** A minute as a worker of the release before candles_1h writes it: into candles_1m alone. */
  const oldWorkerMinute = (asset: string, ms: number, price: string, outputMs = ms) =>
    own.db.query(
      `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
       VALUES ($1, $2, $3, $3, $3, $3, $4, $4)`,
      [asset, at(ms), price, order(outputMs)],
    );

  it("merges the minutes from each asset's latest hour (or 6 h back) into their hours, once however often run", async () => {
    const now = Date.UTC(2027, 2, 1, 12, 30);
    const HOUR = 60 * 60_000;
    // SOL: its latest hour 3 days ago, written by this release; then the old worker ran (a rollback) and wrote two
    // more minutes of that hour, one of a day later and one of an hour ago.
    const latest = now - 3 * 24 * HOUR - 30 * 60_000;
    await writeCandles(own.db, [quote("SOL", latest, "150")], log);
    await oldWorkerMinute("SOL", latest + 60_000, "151");
    await oldWorkerMinute("SOL", latest + 2 * 60_000, "149");
    await oldWorkerMinute("SOL", now - 2 * 24 * HOUR, "152");
    await oldWorkerMinute("SOL", now - HOUR, "153");
    // ADA: no hour of its own; minutes 5 h and 8 h back, the old worker's: only the one within 6 h is merged.
    await oldWorkerMinute("ADA", now - 5 * HOUR, "0.5");
    await oldWorkerMinute("ADA", now - 8 * HOUR, "0.4");

    expect(REMERGE_HOURS).toBe(6);
    expect(await mergeRecentHours(own.db, now, log)).toBe(4);
    expect(await hours(own.db, "SOL")).toEqual(await hoursFromMinutes(own.db, "SOL"));
    expect((await hours(own.db, "SOL"))[0]).toMatchObject({
      open: "150.0000000000",
      high: "151.0000000000",
      low: "149.0000000000",
      close: "149.0000000000",
    });
    const ada = await hoursFromMinutes(own.db, "ADA");
    expect(await hours(own.db, "ADA")).toEqual(ada.slice(1));

    const before = [await hours(own.db, "SOL"), await hours(own.db, "ADA")];
    // From 6 h back now (SOL's latest hour is 11:00): SOL's 11:00 and ADA's 07:00, unchanged.
    expect(await mergeRecentHours(own.db, now, log)).toBe(2);
    expect([await hours(own.db, "SOL"), await hours(own.db, "ADA")]).toEqual(before);
  });
});

describe("mergeHoursAtStart (the worker's start)", () => {
  const HOUR = 60 * 60_000;
  const DAY = 24 * HOUR;
  /** The worker's start, 2027-04-01T12:30Z. */
  const now = Date.UTC(2027, 3, 1, 12, 30);
  const open: TestDatabase[] = [];
  let before012: string;
  beforeAll(async () => {
    // The repository's migrations before candles_1h: the schema an old worker writes to.
    before012 = await mkdtemp(join(tmpdir(), "migrations-"));
    for (const name of await readdir(DEFAULT_MIGRATIONS_DIR))
      if (name.endsWith(".sql") && name < "012")
        await copyFile(join(DEFAULT_MIGRATIONS_DIR, name), join(before012, name));
  });
  afterAll(async () => {
    await Promise.all(open.map((t) => t.drop()));
    await rm(before012, { recursive: true, force: true });
  });

  /** A minute as a worker of the release before candles_1h writes it: into candles_1m alone. */
  const oldWorkerMinute = (db: Queryable, asset: string, ms: number, price: string) =>
    db.query(
      `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
       VALUES ($1, $2, $3, $3, $3, $3, $4, $4)`,
      [asset, at(ms), price, order(ms)],
    );
  const owed = async (db: Queryable) => (await db.query("SELECT 1 FROM candles_1h_merge_owed")).rowCount === 1;

  /**
   * A database where an old worker wrote minutes before migration 012 ran (the backfill merged them) and, from its
   * Postgres backlog, after it: minutes days and weeks older than the latest hour, in several chunks.
   */
  async function deployedOverOldWorker() {
    const t = await createTestDatabase();
    open.push(t);
    await migrate(t.db, log, before012);
    await oldWorkerMinute(t.db, "ETH", now - 3 * DAY, "2000");
    await oldWorkerMinute(t.db, "ETH", now - 20 * 60_000, "2100");
    await migrate(t.db, log);
    expect(await owed(t.db)).toBe(true);
    // The backlog, written after the backfill: later in ETH's hour of 3 days ago, an hour after it, and BTC weeks back.
    await oldWorkerMinute(t.db, "ETH", now - 3 * DAY + 5 * 60_000, "2010");
    await oldWorkerMinute(t.db, "ETH", now - 3 * DAY + HOUR, "1990");
    await oldWorkerMinute(t.db, "BTC", now - 30 * DAY, "60000");
    await oldWorkerMinute(t.db, "BTC", now - 16 * DAY, "61000");
    await oldWorkerMinute(t.db, "BTC", now - 2 * HOUR, "62000");
    return t;
  }
  const allHoursMerged = async (db: TestDatabase["db"]) => {
    for (const asset of ["BTC", "ETH"]) expect(await hours(db, asset)).toEqual(await hoursFromMinutes(db, asset));
  };

  it("owed: merges every minute into its hour, in chunks, however old, then is owed no more", async () => {
    const t = await deployedOverOldWorker();
    // ETH: 3 days back the backfill's hour and the next, and today's; BTC: 30 days, 16 days and 2 hours back.
    expect(await mergeHoursAtStart(t.db, now, log)).toBe(6);
    await allHoursMerged(t.db);
    expect((await hours(t.db, "ETH"))[0]).toMatchObject({ close: "2010.0000000000", high: "2010.0000000000" });
    expect(await owed(t.db)).toBe(false);
  });

  it("a start failing halfway leaves it owed, and the next start merges everything", async () => {
    const t = await deployedOverOldWorker();
    // Killed at its second chunk, among BTC's weeks.
    let chunks = 0;
    const failing: Queryable = {
      query: (text, params) => {
        if (text.includes("AS chunk") && ++chunks === 2) return Promise.reject(new Error("killed"));
        return t.db.query(text, params);
      },
    };
    expect(MERGE_CHUNK_MS).toBe(7 * DAY);
    await expect(mergeHoursAtStart(failing, now, log)).rejects.toThrow("killed");
    expect(await owed(t.db)).toBe(true);
    expect(await hours(t.db, "BTC")).not.toEqual(await hoursFromMinutes(t.db, "BTC"));
    expect(await mergeHoursAtStart(t.db, now, log)).toBe(6);
    await allHoursMerged(t.db);
    expect(await owed(t.db)).toBe(false);
  });

  it("not owed: only the recent minutes, as every later start", async () => {
    const t = await deployedOverOldWorker();
    await t.db.query("DELETE FROM candles_1h_merge_owed");
    // From 6 h back (ETH's latest hour, 12:00, is later): ETH's hour of today and BTC's of 2 h ago.
    expect(await mergeHoursAtStart(t.db, now, log)).toBe(2);
    expect(await hours(t.db, "BTC")).toEqual((await hoursFromMinutes(t.db, "BTC")).slice(-1));
    // ETH 3 days back: the backfill's hour as it was, and no hour after it.
    const [backfilled, , today] = await hoursFromMinutes(t.db, "ETH");
    expect(await hours(t.db, "ETH")).toEqual([
      { ...backfilled, close: "2000.0000000000", high: "2000.0000000000", close_output: order(now - 3 * DAY) },
      today,
    ]);
    expect(await owed(t.db)).toBe(false);
  });
});

describe("the worker's batch", () => {
  let redis: Redis;
  const prefix = `test:candles:${randomUUID()}:`;
  beforeAll(async () => {
    redis = new Redis(TEST_REDIS_URL);
    for (const script of READ_MODEL_SCRIPTS) await redis.script("LOAD", script);
  });
  afterAll(async () => {
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
  });

  it("writes the candles with the history and fans each out, outputs and all, after the read models", async () => {
    const keys = keyspace(prefix);
    await ensureGroup(redis, keys);
    const ms = T0 + 3 * 60 * 60_000;
    for (const o of [quote("BTC", ms + 1_000, "61000"), quote("BTC", ms + 2_000, "61000.7")])
      await redis.xadd(keys.output, "*", ...encodeFields(o));
    const read = (await redis.xreadgroup("GROUP", keys.workerGroup, "w", "STREAMS", keys.output, ">")) as
      [string, [string, string[]][]][] | null;
    await handleBatch({ reader: redis, writer: redis, db: pg.db, keys, log, consumer: "w" }, read?.[0]?.[1] ?? []);

    const candle = {
      asset: "BTC",
      interval: "1m",
      openTime: at(ms),
      open: "61000",
      high: "61000.7",
      low: "61000",
      close: "61000.7",
      openOutput: order(ms + 1_000),
      closeOutput: order(ms + 2_000),
    };
    const fanned = await redis.xrange(keys.streamFanout, "-", "+");
    // The quotes go out on the same stream (worker/events.ts); the batch's one candle goes out once, as stored.
    const candles = fanned.map(([, fields]) => fields).filter((fields) => fields[1] === "candle");
    expect(candles).toEqual([["kind", "candle", "body", JSON.stringify(candle)]]);
    expect(fanned.some(([, fields]) => fields[1] === "quote")).toBe(true);
    expect(JSON.parse((await redis.hget(keys.quotesKey, "BTC"))!)).toMatchObject({ bid: "61000.7" });
    expect(await stored("BTC")).toContainEqual({
      open_time: at(ms),
      open: "61000.0000000000",
      high: "61000.7000000000",
      low: "61000.0000000000",
      close: "61000.7000000000",
    });
    expect(await redis.xpending(keys.output, keys.workerGroup)).toEqual([0, null, null, null]);
  });

  it("fans out no stored row off its asset's ticks, logs it, and acknowledges the batch", async () => {
    // A row stored before the asset's priceDecimals was made coarser, its minute still open: no retry could format it.
    const keys = keyspace(`${prefix}off-ticks:`);
    await ensureGroup(redis, keys);
    const ms = T0 + 5 * 60 * 60_000;
    await pg.db.query(
      `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
       VALUES ('ETH', $1, 2000, 2000, 1999.995, 2000, $2, $2)`,
      [at(ms), order(ms)],
    );
    for (const o of [quote("ETH", ms + 1_000, "2001"), quote("BTC", ms + 2_000, "61000.5")])
      await redis.xadd(keys.output, "*", ...encodeFields(o));
    const read = (await redis.xreadgroup("GROUP", keys.workerGroup, "w", "STREAMS", keys.output, ">")) as
      [string, [string, string[]][]][] | null;
    const lines: Record<string, unknown>[] = [];
    const seen = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    await handleBatch(
      { reader: redis, writer: redis, db: pg.db, keys, log: seen, consumer: "w" },
      read?.[0]?.[1] ?? [],
    );

    expect(await redis.xpending(keys.output, keys.workerGroup)).toEqual([0, null, null, null]);
    const candles = (await redis.xrange(keys.streamFanout, "-", "+"))
      .map(([, fields]) => fields)
      .filter((fields) => fields[1] === "candle")
      .map((fields) => (JSON.parse(fields[3]!) as { asset: string }).asset);
    expect(candles).toEqual(["BTC"]);
    expect(lines.filter((line) => line.event === "candle_row_skipped")).toEqual([
      expect.objectContaining({
        level: "warn",
        asset: "ETH",
        openTime: at(ms),
        reason: "candle price 1999.9950000000 of ETH is not a price at 2 decimals",
      }),
    ]);
  });

  it("leaves out of the candles a quote they cannot chart, logs it, and acknowledges the batch", async () => {
    // No retry could chart it: failing the batch would leave it pending, and crash every worker that claims it.
    const keys = keyspace(`${prefix}unusable:`);
    await ensureGroup(redis, keys);
    const ms = T0 + 4 * 60 * 60_000;
    const unlisted = quote("DOGE", ms + 1_000, "0.1");
    const tooFine = quote("BTC", ms + 2_000, "61000.25"); // BTC prices have 1 decimal
    for (const o of [unlisted, tooFine, quote("BTC", ms + 3_000, "61000.5")])
      await redis.xadd(keys.output, "*", ...encodeFields(o));
    const read = (await redis.xreadgroup("GROUP", keys.workerGroup, "w", "STREAMS", keys.output, ">")) as
      [string, [string, string[]][]][] | null;
    const lines: Record<string, unknown>[] = [];
    const seen = createLogger("worker-test", {
      sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    await handleBatch(
      { reader: redis, writer: redis, db: pg.db, keys, log: seen, consumer: "w" },
      read?.[0]?.[1] ?? [],
    );

    expect(await redis.xpending(keys.output, keys.workerGroup)).toEqual([0, null, null, null]);
    expect(await stored("BTC")).toContainEqual({
      open_time: at(ms),
      open: "61000.5000000000",
      high: "61000.5000000000",
      low: "61000.5000000000",
      close: "61000.5000000000",
    });
    expect(await stored("DOGE")).toEqual([]);
    const skipped = lines.filter((line) => line.event === "candle_quote_skipped");
    expect(skipped).toEqual([
      expect.objectContaining({ level: "error", id: unlisted.id, reason: "asset DOGE is not listed" }),
      expect.objectContaining({
        level: "error",
        id: tooFine.id,
        reason: "bid 61000.25 is not a price of the asset (priceDecimals 1)",
      }),
    ]);
  });
});
