/**
 * A coarser candle's bucket so far, as the stream loads it when the bucket's first subscriber comes: from the
 * worker's 1-minute candles on real Postgres, merged as the API's candle history merges them. And the worker's
 * rows of one minute, fanned out in either order, merged onto it.
 */
import type { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { writeCandles } from "../worker/candles.ts";
import { CandleFanout, loadBucketFrom } from "./candles.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamConnection } from "./connection.ts";
import { NO_METRICS } from "./metrics.ts";
import { quoteAtMs } from "./testing/quote-output.ts";

let pg: TestDatabase;

beforeAll(async () => {
  pg = await createTestDatabase();
  await migrate(pg.db, createLogger("stream-test", { level: "error" }));
});
afterAll(() => pg.drop());

/** 2027-01-15T08:00:00Z, the start of an hour. */
const T0 = Date.UTC(2027, 0, 15, 8, 0);

/** The order of output id "<ms>-0:0" as the table keeps it (ms × 10^30), in decimal. */
const order = (ms: number) => String(BigInt(ms) * 10n ** 30n);

const quote = (ms: number, bid: string, asset = "ETH") => quoteAtMs(ms, asset, bid);

describe("loadBucketFrom", () => {
  it("reads the bucket's minutes so far merged (open of the first, close of the last, extremes), or nothing", async () => {
    await writeCandles(
      pg.db,
      [
        quote(T0 + 1_000, "4000"),
        quote(T0 + 61_000, "4100"),
        quote(T0 + 62_000, "3900.5"),
        quote(T0 + 5 * 60_000, "4050"),
      ],
      pg.log,
    );
    const load = loadBucketFrom(pg.db);
    expect(await load("ETH", "1h", T0)).toEqual({
      asset: "ETH",
      interval: "1h",
      openTime: new Date(T0).toISOString(),
      open: "4000",
      high: "4100",
      low: "3900.5",
      close: "4050",
      // The minutes the open and close came from: a late update of an earlier minute must not move the close.
      firstMinuteMs: T0,
      lastMinuteMs: T0 + 5 * 60_000,
      // And the outputs: a row of those minutes that is older than the one loaded must not move them either.
      openOutput: order(T0 + 1_000),
      closeOutput: order(T0 + 5 * 60_000),
    });
    expect(await load("ETH", "5m", T0 + 5 * 60_000)).toMatchObject({
      open: "4050",
      close: "4050",
      firstMinuteMs: T0 + 5 * 60_000,
      lastMinuteMs: T0 + 5 * 60_000,
    });
    // A bucket with no minute stored yet, and one before it whose candle must not stand in for it.
    expect(await load("ETH", "1h", T0 + 60 * 60_000)).toBeUndefined();
    expect(await load("BTC", "1h", T0)).toBeUndefined();
  });

  it("loads a minute stored at finer ticks than its asset's priceDecimals now as stored, not a failed load", async () => {
    // Stored while ETH quoted 3 decimals, before its priceDecimals was made coarser (2).
    const hour = T0 + 4 * 60 * 60_000; // 12:00, a 4h bucket
    await pg.db.query(
      `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
       VALUES ('ETH', $1, 4300.25, 4300.255, 4299.5, 4300.1, $2, $2)`,
      [new Date(hour + 60_000).toISOString(), order(hour + 60_000)],
    );
    expect(await loadBucketFrom(pg.db)("ETH", "4h", hour)).toMatchObject({
      open: "4300.25",
      high: "4300.255",
      low: "4299.5",
      close: "4300.1",
      firstMinuteMs: hour + 60_000,
    });
  });
});

describe("a minute's rows from two workers, fanned out newer first", () => {
  it("leave the live 1m and 15m candles as stored", async () => {
    // Worker A upserts the minute with its early quotes; B with later ones, and fans out first.
    const ms = T0 + 2 * 60 * 60_000 + 7 * 60_000;
    const [a] = await writeCandles(pg.db, [quote(ms + 1_000, "1.5", "SOL"), quote(ms + 2_000, "1.7", "SOL")], pg.log);
    const [b] = await writeCandles(pg.db, [quote(ms + 30_000, "1.6", "SOL")], pg.log);
    const sent: Record<string, unknown>[] = [];
    const ws = { bufferedAmount: 0, send: (d: Buffer) => sent.push(JSON.parse(String(d)) as Record<string, unknown>) };
    const ticket = { userId: "u", sessionId: "s", sessionExpiresAtMs: Infinity };
    const conn = new StreamConnection(ws as unknown as WebSocket, ticket, DEFAULT_LIMITS, NO_METRICS, 0);
    const fanout = new CandleFanout(loadBucketFrom(pg.db), (error) => {
      throw error;
    });
    fanout.subscribe(conn, "SOL", "1m", ms + 40_000, 0);
    fanout.subscribe(conn, "SOL", "15m", ms + 40_000, 0);
    await expect.poll(() => sent.length).toBe(2);
    fanout.publish(b!, 0);
    fanout.publish(a!, 0);
    const last = (interval: string) => sent.filter((f) => f.interval === interval).at(-1);
    const prices = { open: "1.5", high: "1.7", low: "1.5", close: "1.6" };
    expect(last("1m")).toMatchObject({ openTime: new Date(ms).toISOString(), ...prices });
    expect(last("15m")).toMatchObject({ openTime: new Date(ms - 7 * 60_000).toISOString(), ...prices });
  });
});
