/**
 * A coarser candle's bucket so far, as the stream loads it when the bucket's first subscriber comes: from the
 * worker's 1-minute candles on real Postgres, merged as the API's candle history merges them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineOutputSchema, type OutputOf } from "../contract/messages.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { writeCandles } from "../worker/candles.ts";
import { loadBucketFrom } from "./candles.ts";

let pg: TestDatabase;

beforeAll(async () => {
  pg = await createTestDatabase();
  await migrate(pg.db, createLogger("stream-test", { level: "error" }));
});
afterAll(() => pg.drop());

/** 2027-01-15T08:00:00Z, the start of an hour. */
const T0 = Date.UTC(2027, 0, 15, 8, 0);

function quote(ms: number, bid: string): OutputOf<"quote_updated"> {
  return engineOutputSchema.parse({
    id: `${ms}-0:0`,
    inputId: `${ms}-0`,
    type: "quote_updated",
    asset: "ETH",
    market: "ETH_USDC_PERP",
    bid,
    ask: bid,
    updatedAt: new Date(ms).toISOString(),
    source: "sim",
  }) as OutputOf<"quote_updated">;
}

describe("loadBucketFrom", () => {
  it("reads the bucket's minutes so far merged (open of the first, close of the last, extremes), or nothing", async () => {
    await writeCandles(pg.db, [
      quote(T0 + 1_000, "4000"),
      quote(T0 + 61_000, "4100"),
      quote(T0 + 62_000, "3900.5"),
      quote(T0 + 5 * 60_000, "4050"),
    ]);
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
});
