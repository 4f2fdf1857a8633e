/**
 * The public market routes on the real API stack (Redis, Postgres, the engine and the worker running): quotes from
 * the read model and candles from Postgres, without signing in. Candle history is seeded through the worker's own
 * writer (worker/candles.ts) for SOL and ADA, which no test here quotes live, so those rows are exactly the seeded
 * ones; ETH and BTC are quoted live and show the whole path, poller tick to candle.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineOutputSchema, type EngineOutput } from "../../contract/messages.ts";
import { writeCandles } from "../../worker/candles.ts";
import { createApp } from "../app.ts";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let anonymous: ReturnType<typeof client>;

/** 2026-11-30T22:00:00Z: a 4h bucket starts at 20:00, a day at 00:00. */
const T0 = Date.UTC(2026, 10, 30, 22, 0);
const MIN = 60_000;
const at = (ms: number) => new Date(ms).toISOString();
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let seq = 0;
function quote(asset: string, ms: number, bid: string): EngineOutput {
  seq++;
  return engineOutputSchema.parse({
    id: `${ms}-${seq}:0`,
    inputId: `${ms}-${seq}`,
    type: "quote_updated",
    asset,
    market: `${asset}_USDC_PERP`,
    bid,
    ask: "99999",
    updatedAt: at(ms),
    source: "sim",
  });
}

/** SOL: minutes 22:00 to 22:09, each opening at 100 + m and touching ± 0.5 around it; then one quote at 23:00. */
function solSeries(): EngineOutput[] {
  const outputs: EngineOutput[] = [];
  for (let m = 0; m < 10; m++) {
    const base = 100 + m;
    outputs.push(quote("SOL", T0 + m * MIN + 1_000, `${base}`));
    outputs.push(quote("SOL", T0 + m * MIN + 20_000, `${base + 0.5}`));
    outputs.push(quote("SOL", T0 + m * MIN + 40_000, `${base - 0.5}`));
    outputs.push(quote("SOL", T0 + m * MIN + 59_000, `${base + 0.25}`));
  }
  outputs.push(quote("SOL", T0 + 60 * MIN + 5_000, "120.12"));
  return outputs;
}

/** The SOL candle of minute m of the series. */
const solMinute = (m: number) => ({
  openTime: at(T0 + m * MIN),
  open: `${100 + m}`,
  high: `${100 + m + 0.5}`,
  low: `${100 + m - 0.5}`,
  close: `${100 + m + 0.25}`,
});

beforeAll(async () => {
  stack = await startApiStack();
  anonymous = client(stack.app);
  await writeCandles(stack.pg.db, solSeries(), stack.pg.log);
});
afterAll(() => stack.close());

const candles = (query: string) => anonymous.get(`/api/v1/market/candles?${query}`);

interface Candle {
  openTime: string;
  open: string;
  high: string;
  low: string;
  close: string;
}

/** `minutes` (oldest first) merged into buckets of `length` ms: open the first, close the last, the extremes. */
function mergedFrom(minutes: readonly Candle[], length: number): Candle[] {
  const buckets = new Map<number, Candle>();
  for (const m of minutes) {
    const openMs = Math.floor(Date.parse(m.openTime) / length) * length;
    const b = buckets.get(openMs);
    if (b === undefined) buckets.set(openMs, { ...m, openTime: at(openMs) });
    else {
      b.close = m.close;
      if (Number(m.high) > Number(b.high)) b.high = m.high;
      if (Number(m.low) < Number(b.low)) b.low = m.low;
    }
  }
  return [...buckets.values()];
}

describe("GET /api/v1/market/quotes", () => {
  it("lists the markets that have a quote, in the assets' order, to anyone", async () => {
    expect((await anonymous.get("/api/v1/market/quotes")).body).toEqual({ quotes: [] });
    await stack.setQuote("BTC_USDC_PERP", "60000.5", "60010");
    await stack.setQuote("ETH_USDC_PERP", "2000.25", "2001");
    const res = await anonymous.get("/api/v1/market/quotes");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      quotes: [
        {
          asset: "ETH",
          market: "ETH_USDC_PERP",
          bid: "2000.25",
          ask: "2001",
          updatedAt: expect.stringMatching(ISO_TIME) as unknown,
          source: "sim",
        },
        {
          asset: "BTC",
          market: "BTC_USDC_PERP",
          bid: "60000.5",
          ask: "60010",
          updatedAt: expect.stringMatching(ISO_TIME) as unknown,
          source: "sim",
        },
      ],
    });
  });

  it("candles follow the live quotes: the worker folds each tick into its minute", async () => {
    await stack.setQuote("ETH_USDC_PERP", "2010.5", "2011");
    await stack.setQuote("ETH_USDC_PERP", "2005", "2006");
    const res = await candles("asset=ETH&interval=1d");
    expect(res.status).toBe(200);
    // The ticks may straddle a minute, never a day (unless the test runs across midnight UTC: then two candles).
    const list = res.body.candles as { open: string; high: string; low: string; close: string }[];
    expect(list.at(-1)).toMatchObject({ high: "2010.5", close: "2005" });
    expect(list[0]).toMatchObject({ open: "2000.25" });
  });
});

describe("GET /api/v1/market/candles", () => {
  it("1m between from and to, both inclusive of a candle's open time, oldest first", async () => {
    const res = await candles(`asset=SOL&interval=1m&from=${at(T0 + 2 * MIN)}&to=${at(T0 + 4 * MIN)}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ asset: "SOL", interval: "1m", candles: [solMinute(2), solMinute(3), solMinute(4)] });
  });

  it("merges coarser intervals from the minutes, in buckets aligned to UTC", async () => {
    const five = await candles(`asset=SOL&interval=5m&from=${at(T0)}&to=${at(T0 + 9 * MIN)}`);
    expect(five.body.candles).toEqual([
      { openTime: at(T0), open: "100", high: "104.5", low: "99.5", close: "104.25" },
      { openTime: at(T0 + 5 * MIN), open: "105", high: "109.5", low: "104.5", close: "109.25" },
    ]);
    const fourHours = await candles(`asset=SOL&interval=4h&from=${at(T0 - 2 * 60 * MIN)}`);
    expect(fourHours.body.candles).toEqual([
      { openTime: at(T0 - 2 * 60 * MIN), open: "100", high: "120.12", low: "99.5", close: "120.12" },
    ]);
    const day = await candles("asset=SOL&interval=1d");
    expect(day.body.candles).toEqual([
      { openTime: "2026-11-30T00:00:00.000Z", open: "100", high: "120.12", low: "99.5", close: "120.12" },
    ]);
  });

  it("never cuts a bucket: from rounds up to the next bucket, to takes the whole bucket it falls in", async () => {
    const res = await candles(`asset=SOL&interval=5m&from=${at(T0 + 3 * MIN)}&to=${at(T0 + 5 * MIN + 1)}`);
    expect(res.body.candles).toEqual([
      { openTime: at(T0 + 5 * MIN), open: "105", high: "109.5", low: "104.5", close: "109.25" },
    ]);
  });

  it("with from: the first `limit`; without: the last `limit` up to `to`, across intervals with no quote", async () => {
    const first = await candles(`asset=SOL&interval=1m&from=${at(T0)}&limit=2`);
    expect(first.body.candles).toEqual([solMinute(0), solMinute(1)]);
    const acrossGap = await candles(`asset=SOL&interval=1m&from=${at(T0 + 9 * MIN)}&limit=2`);
    expect(acrossGap.body.candles).toEqual([
      solMinute(9),
      { openTime: at(T0 + 60 * MIN), open: "120.12", high: "120.12", low: "120.12", close: "120.12" },
    ]);
    const last = await candles(`asset=SOL&interval=1m&to=${at(T0 + 60 * MIN)}&limit=3`);
    expect(last.body.candles).toEqual([
      solMinute(8),
      solMinute(9),
      { openTime: at(T0 + 60 * MIN), open: "120.12", high: "120.12", low: "120.12", close: "120.12" },
    ]);
    const upToNow = await candles("asset=SOL&interval=15m&limit=2");
    expect((upToNow.body.candles as { openTime: string }[]).map((c) => c.openTime)).toEqual([
      at(T0),
      at(T0 + 60 * MIN),
    ]);
    expect((await candles(`asset=SOL&interval=1m&to=${at(T0 - 1)}`)).body.candles).toEqual([]);
    expect((await candles("asset=ADA&interval=1h")).body).toEqual({ asset: "ADA", interval: "1h", candles: [] });
    // The ends of the times the API takes: no candle there, and no error from Postgres either.
    for (const range of ["from=0000-01-01T00:00:00Z", "to=9999-12-31T23:59:59Z", "to=0000-01-01T00:00:00Z"])
      expect((await candles(`asset=SOL&interval=1d&${range}`)).status).toBe(200);
    const ends = await candles("asset=SOL&interval=1d&from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z");
    expect((ends.body.candles as unknown[]).length).toBe(1);
  });

  it("1h, 4h and 1d candles equal those merged from the minutes, whatever order the worker wrote them in", async () => {
    // BTC, three days from 2025-05-01T21:00Z: a minute every 7, two quotes each, written newest batch first.
    const start = Date.UTC(2025, 4, 1, 21);
    const batches: EngineOutput[][] = [];
    for (let m = 0; m < 3 * 24 * 60; m += 7) {
      const ms = start + m * MIN;
      const bid = (k: number) => (60_000 + ((m * 37 + k * 101) % 5_000) / 10).toFixed(1);
      batches.push([quote("BTC", ms + 1_000, bid(0)), quote("BTC", ms + 30_000, bid(1))]);
    }
    for (let i = Math.floor((batches.length - 1) / 10) * 10; i >= 0; i -= 10)
      await writeCandles(stack.pg.db, batches.slice(i, i + 10).flat(), stack.pg.log);
    const range = `from=${at(start)}&to=${at(start + 3 * 24 * 60 * MIN - 1)}`;
    const minutes = (await candles(`asset=BTC&interval=1m&${range}&limit=1000`)).body.candles as Candle[];
    expect(minutes.length).toBe(batches.length);
    for (const [interval, length] of [
      ["1h", 60 * MIN],
      ["4h", 240 * MIN],
      ["1d", 1440 * MIN],
    ] as const) {
      const res = await candles(`asset=BTC&interval=${interval}&${range}&limit=1000`);
      // `from` rounds up to a whole bucket: 21:00 is one for 1h only.
      const expected = mergedFrom(minutes, length).filter((c) => Date.parse(c.openTime) >= start);
      expect([interval, res.body.candles]).toEqual([interval, expected]);
    }
  });

  it("reads 1h and coarser from the hourly rollup, finer intervals from the minutes", async () => {
    // An hour with no minute stored (as no writer leaves it): only the intervals read from candles_1h show it.
    const hour = Date.UTC(2025, 7, 1, 10);
    await stack.pg.db.query(
      `INSERT INTO candles_1h (asset, open_time, open, high, low, close, open_output, close_output)
       VALUES ('BTC', $1, 61000, 61010.5, 60990, 61005, 1, 2)`,
      [at(hour)],
    );
    try {
      const range = `from=${at(hour - 24 * 60 * MIN)}&to=${at(hour + 60 * MIN)}`;
      const candle = { open: "61000", high: "61010.5", low: "60990", close: "61005" };
      expect((await candles(`asset=BTC&interval=1h&${range}`)).body.candles).toEqual([
        { openTime: at(hour), ...candle },
      ]);
      expect((await candles(`asset=BTC&interval=1d&${range}`)).body.candles).toEqual([
        { openTime: "2025-08-01T00:00:00.000Z", ...candle },
      ]);
      expect((await candles(`asset=BTC&interval=15m&${range}`)).body.candles).toEqual([]);
    } finally {
      await stack.pg.db.query("DELETE FROM candles_1h WHERE asset = 'BTC' AND open_time = $1", [at(hour)]);
    }
  });

  it("serves a candle stored at finer ticks than its asset's priceDecimals now, as stored", async () => {
    // Stored while ETH quoted 3 decimals, before its priceDecimals was made coarser (2): still a candle, not a 500.
    const minute = Date.UTC(2025, 2, 1, 10, 5);
    const insert = (table: string, openTime: number) =>
      stack.pg.db.query(
        `INSERT INTO ${table} (asset, open_time, open, high, low, close, open_output, close_output)
         VALUES ('ETH', $1, 4300.25, 4300.255, 4299.5, 4300.1, 1, 2)`,
        [at(openTime)],
      );
    await insert("candles_1m", minute);
    await insert("candles_1h", minute - 5 * MIN);
    try {
      const range = `from=${at(minute - 10 * 60 * MIN)}&to=${at(minute)}`;
      const candle = { open: "4300.25", high: "4300.255", low: "4299.5", close: "4300.1" };
      const oneMinute = await candles(`asset=ETH&interval=1m&${range}`);
      expect([oneMinute.status, oneMinute.body.candles]).toEqual([200, [{ openTime: at(minute), ...candle }]]);
      const day = await candles(`asset=ETH&interval=1d&from=2025-03-01T00:00:00Z&to=${at(minute)}`);
      expect([day.status, day.body.candles]).toEqual([200, [{ openTime: "2025-03-01T00:00:00.000Z", ...candle }]]);
    } finally {
      await stack.pg.db.query("DELETE FROM candles_1m WHERE asset = 'ETH' AND open_time < '2026-01-01'");
      await stack.pg.db.query("DELETE FROM candles_1h WHERE asset = 'ETH' AND open_time < '2026-01-01'");
    }
  });

  it("refuses bad parameters with the field, what was expected and what was received", async () => {
    const refused = async (query: string, code: string, message: string) => {
      const res = await candles(query);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error).toEqual({ code, message });
    };
    await refused(
      "asset=DOGE&interval=1m",
      "UNKNOWN_ASSET",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received "DOGE".',
    );
    await refused(
      "asset=SOL&interval=2m",
      "INVALID_REQUEST",
      'interval: expected one of "1m", "5m", "15m", "1h", "4h", "1d", received "2m".',
    );
    await refused(
      "asset=SOL",
      "INVALID_REQUEST",
      'interval: expected one of "1m", "5m", "15m", "1h", "4h", "1d", received nothing.',
    );
    await refused(
      "interval=1m",
      "INVALID_REQUEST",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received nothing.',
    );
    await refused(
      "asset=SOL&interval=1m&from=yesterday",
      "INVALID_REQUEST",
      'from: expected an ISO 8601 time with its offset, such as 2026-12-05T18:00:00Z, received "yesterday".',
    );
    // An offset's "+" sent unencoded reads as a space: the refusal says how to send it.
    await refused(
      "asset=SOL&interval=1m&from=2026-12-05T19:00:00+01:00",
      "INVALID_REQUEST",
      'from: expected an ISO 8601 time with its offset, such as 2026-12-05T18:00:00Z (in a query string, send its "+" as %2B: a "+" there is a space), received "2026-12-05T19:00:00 01:00".',
    );
    expect((await candles("asset=SOL&interval=1m&from=2026-12-05T19:00:00%2B01:00")).status).toBe(200);
    // Times that name no real day or time, which Date.parse alone would roll over into another one.
    for (const time of [
      "2026-02-30T00:00Z",
      "2025-02-29T00:00:00Z",
      "2026-04-31T10:00Z",
      "2026-12-01T24:00Z",
      "2026-12-01T10:60Z",
      "2026-12-01T10:00:60Z",
      "2026-13-01T00:00Z",
      "2026-12-00T00:00Z",
      "2026-12-01T10:00+24:00",
    ])
      await refused(
        `asset=SOL&interval=1m&to=${encodeURIComponent(time)}`,
        "INVALID_REQUEST",
        `to: expected an ISO 8601 time with its offset, such as 2026-12-05T18:00:00Z, received "${time}".`,
      );
    for (const time of ["2024-02-29T00:00Z", "2000-02-29T23:59:59.999+01:00", "0000-02-29T00:00Z"])
      expect((await candles(`asset=SOL&interval=1m&to=${encodeURIComponent(time)}`)).status).toBe(200);
    const future = await candles("asset=SOL&interval=1m&from=2999-01-01T00:00:00Z");
    expect(future.status).toBe(400);
    expect(future.body.error).toEqual({
      code: "INVALID_REQUEST",
      message: expect.stringMatching(
        /^from: expected a time no later than \d{4}-\d\d-\d\dT[\d:.]+Z \(a minute after now\), received "2999-01-01T00:00:00Z"\.$/,
      ) as unknown,
    });
    // A client clock a little ahead, asking from its now: no candle yet, not an error; a minute and more is one.
    const ahead = (ms: number) => encodeURIComponent(new Date(Date.now() + ms).toISOString());
    const skewed = await candles(`asset=SOL&interval=1m&from=${ahead(30_000)}`);
    expect([skewed.status, skewed.body.candles]).toEqual([200, []]);
    expect((await candles(`asset=SOL&interval=1m&from=${ahead(90_000)}`)).status).toBe(400);
    await refused(
      "asset=SOL&interval=1m&from=2026-12-01T00:00:00Z&to=2026-11-30T00:00:00Z",
      "INVALID_REQUEST",
      'from: expected a time not after to (2026-11-30T00:00:00.000Z), received "2026-12-01T00:00:00Z".',
    );
    for (const limit of ["0", "1001", "ten"])
      await refused(
        `asset=SOL&interval=1m&limit=${limit}`,
        "INVALID_REQUEST",
        `limit: expected a whole number from 1 to 1000, received "${limit}".`,
      );
    await refused(
      "asset=SOL&interval=1m&since=1",
      "INVALID_REQUEST",
      'Unknown query parameter "since"; this request takes asset, interval, from, to and limit.',
    );
  });

  it("is rate limited per client IP; the quotes are not", async () => {
    const settings = { ...stack.deps.settings, candlesRate: { limit: 2, windowMs: 60_000 } };
    const limited = client(createApp({ ...stack.deps, settings }));
    const from = (ip: string) => ({ "x-test-ip": ip });
    const query = "/api/v1/market/candles?asset=SOL&interval=1h";
    // A request refused for its query changes nothing, the count included.
    for (let i = 0; i < 3; i++)
      expect((await limited.get(`${query}&limit=0`, from("192.0.2.1"))).body.error?.code).toBe("INVALID_REQUEST");
    expect((await limited.get(query, from("192.0.2.1"))).status).toBe(200);
    expect((await limited.get(query, from("192.0.2.1"))).status).toBe(200);
    const third = await limited.get(query, from("192.0.2.1"));
    expect([third.status, third.body.error?.code]).toEqual([429, "RATE_LIMITED"]);
    expect(third.headers.get("retry-after")).toMatch(/^\d+$/);
    expect((await limited.get(query, from("192.0.2.2"))).status).toBe(200);
    for (let i = 0; i < 3; i++)
      expect((await limited.get("/api/v1/market/quotes", from("192.0.2.1"))).status).toBe(200);
  });
});
