import { describe, expect, it } from "vitest";
import { CANDLE_INTERVAL_MS, CANDLE_INTERVALS, candleOpenMs, storedCandle } from "./candles.ts";

describe("candle buckets", () => {
  it("align to the UTC epoch: a day opens at 00:00Z, 4h at 00, 04, …, 20 UTC", () => {
    const t = Date.parse("2026-12-05T22:37:41.5Z");
    const open = (interval: keyof typeof CANDLE_INTERVAL_MS) => new Date(candleOpenMs(t, interval)).toISOString();
    expect(CANDLE_INTERVALS.map(open)).toEqual([
      "2026-12-05T22:37:00.000Z",
      "2026-12-05T22:35:00.000Z",
      "2026-12-05T22:30:00.000Z",
      "2026-12-05T22:00:00.000Z",
      "2026-12-05T20:00:00.000Z",
      "2026-12-05T00:00:00.000Z",
    ]);
    expect(candleOpenMs(Date.parse("2026-12-05T22:37:00Z"), "1m")).toBe(Date.parse("2026-12-05T22:37:00Z"));
  });

  it("each interval divides a day, so the coarser buckets are whole numbers of finer ones", () => {
    for (const interval of CANDLE_INTERVALS) expect((24 * 60 * 60_000) % CANDLE_INTERVAL_MS[interval]).toBe(0);
  });
});

describe("storedCandle", () => {
  it("formats Postgres numerics as the asset's quotes are: trailing zeros trimmed at its price decimals", () => {
    const prices = { open: "4303.9300000000", high: "4310.0000000000", low: "0.0100000000", close: "4303.0000000000" };
    expect(storedCandle("ETH", "1h", "2026-12-05T22:00:00.000Z", prices)).toEqual({
      asset: "ETH",
      interval: "1h",
      openTime: "2026-12-05T22:00:00.000Z",
      open: "4303.93",
      high: "4310",
      low: "0.01",
      close: "4303",
    });
  });

  it("throws for a price off the asset's ticks or an unknown asset: only the engine's quotes are stored", () => {
    const prices = { open: "1.5", high: "1.5", low: "1.5", close: "1.5" };
    expect(() => storedCandle("ETH", "1m", "2026-12-05T22:00:00.000Z", { ...prices, low: "1.505" })).toThrow(/1.505/);
    expect(() => storedCandle("DOGE", "1m", "2026-12-05T22:00:00.000Z", prices)).toThrow(/DOGE/);
    expect(() => storedCandle("BTC", "1m", "2026-12-05T22:00:00.000Z", { ...prices, low: "1.55" })).toThrow(
      /^candle price 1\.55 of BTC is not a price at 1 decimal$/,
    );
  });
});
