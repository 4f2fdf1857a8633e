// readCandles on a schema from before the hourly rollup (migrations/012_candles_1h.sql not run yet, as during a
// deploy whose functions switched before any container migrated): 1h and coarser are merged from the minutes, on
// both of the functions' Postgres paths, and equal what the rollup gives once the migration has run.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { DEFAULT_MIGRATIONS_DIR } from "../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { readCandles, type CandleRange } from "./candles.ts";
import { connectFunctionsPostgres, type FunctionsPostgres } from "./postgres.ts";
import { startNeonHttpPeer, type NeonHttpPeer } from "./testing/neon-http-peer.ts";

const quiet = createLogger("test", { sink: () => undefined });
const MIN = 60_000;
/** 2026-11-30T22:00:00Z: the day opened 22 hours before, a 4h bucket 2 hours before. */
const T0 = Date.UTC(2026, 10, 30, 22);
let t: TestDatabase;
let peer: NeonHttpPeer;
let http: FunctionsPostgres;
let proxied: FunctionsPostgres;
const migration = (name: string) => readFile(join(DEFAULT_MIGRATIONS_DIR, name), "utf8");

beforeAll(async () => {
  t = await createTestDatabase();
  await t.db.query(await migration("010_candles.sql"));
  // ETH minutes over 3 hours from 22:00, one every 17 minutes, written out of time order.
  for (let m = 170; m >= 0; m -= 17) {
    const bid = 2000 + ((m * 37) % 50);
    await t.db.query(
      `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
       VALUES ('ETH', $1, $2, $3, $4, $5, $6, $7)`,
      [new Date(T0 + m * MIN).toISOString(), bid, bid + 2.5, bid - 1.25, bid + 1, 2 * m, 2 * m + 1],
    );
  }
  peer = await startNeonHttpPeer({ postgresUrl: t.url });
  http = await connectFunctionsPostgres(peer.connectionString, quiet, { neonFetchOptions: peer.fetchOptions });
  proxied = await connectFunctionsPostgres(t.url, quiet);
});
afterAll(async () => {
  await http?.close();
  await proxied?.close();
  await peer?.close();
  await t?.drop();
});

const ranges: CandleRange[] = (["1h", "4h", "1d"] as const).flatMap((interval) => [
  { asset: "ETH", interval, toMs: T0 + 5 * 60 * MIN, limit: 500 },
  { asset: "ETH", interval, fromMs: T0 - 24 * 60 * MIN, toMs: T0 + 5 * 60 * MIN, limit: 2 },
]);

describe("readCandles before candles_1h exists", () => {
  it("merges 1h, 4h and 1d from the minutes on both paths, as the rollup does once migrated", async () => {
    await expect(proxied.query("SELECT 1 FROM candles_1h")).rejects.toMatchObject({ code: "42P01" });
    const before = [];
    for (const db of [proxied, http]) for (const r of ranges) before.push(await readCandles(db, r));
    const candle = (ms: number, open: string, high: string, low: string, close: string) => ({
      openTime: new Date(ms).toISOString(),
      open,
      high,
      low,
      close,
    });
    const hours = [
      candle(T0, "2000", "2039.5", "1998.75", "2038"),
      candle(T0 + 60 * MIN, "2016", "2047.5", "2001.75", "2004"),
      candle(T0 + 120 * MIN, "2032", "2042.5", "2009.75", "2041"),
    ];
    const days = [
      candle(T0 - 22 * 60 * MIN, "2000", "2047.5", "1998.75", "2004"),
      candle(T0 + 120 * MIN, "2032", "2042.5", "2009.75", "2041"),
    ];
    expect(before.slice(0, ranges.length)).toEqual([
      hours,
      hours.slice(0, 2),
      [{ ...days[0]!, openTime: new Date(T0 - 120 * MIN).toISOString() }, days[1]],
      [{ ...days[0]!, openTime: new Date(T0 - 120 * MIN).toISOString() }, days[1]],
      days,
      days,
    ]);
    // The same answers from both paths, and from the hours once the migration has run.
    expect(before.slice(ranges.length)).toEqual(before.slice(0, ranges.length));
    await t.db.query(await migration("012_candles_1h.sql"));
    const after = [];
    for (const db of [proxied, http]) for (const r of ranges) after.push(await readCandles(db, r));
    expect(after).toEqual(before);
  });
});
