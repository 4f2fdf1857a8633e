// Coarser candles merged from 1m updates, and exact decimal comparison, on plain data.
import type { WebSocket } from "ws";
import { describe, expect, it } from "vitest";
import type { Candle } from "../contract/candles.ts";
import { CandleFanout, comparePrice, type StoredBucket } from "./candles.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamConnection } from "./connection.ts";
import { NO_METRICS } from "./metrics.ts";

function socket() {
  const sent: Record<string, unknown>[] = [];
  const ws = {
    bufferedAmount: 0,
    send: (data: Buffer | string) => sent.push(JSON.parse(String(data)) as Record<string, unknown>),
  };
  const conn = new StreamConnection(
    ws as unknown as WebSocket,
    { userId: "u", sessionId: "s", sessionExpiresAtMs: Infinity },
    DEFAULT_LIMITS,
    NO_METRICS,
    0,
  );
  return { conn, sent };
}

const minute = (hhmm: string, open: string, high: string, low: string, close: string): Candle => ({
  asset: "BTC",
  interval: "1m",
  openTime: `2027-01-15T${hhmm}:00.000Z`,
  open,
  high,
  low,
  close,
});

/** A 15m bucket as loaded from the table, its minutes from `first` to `last`. */
const stored = (first: string, last: string, open: string, high: string, low: string, close: string): StoredBucket => ({
  ...minute("10:00", open, high, low, close),
  interval: "15m",
  firstMinuteMs: Date.parse(`2027-01-15T${first}:00.000Z`),
  lastMinuteMs: Date.parse(`2027-01-15T${last}:00.000Z`),
});

describe("comparePrice", () => {
  it("orders by value at the asset's price decimals, whatever the digits' lengths", () => {
    expect(comparePrice("ETH", "4303.9", "4303.10")).toBe(1);
    expect(comparePrice("BTC", "99.5", "100")).toBe(-1);
    expect(comparePrice("BTC", "100.0", "100")).toBe(0);
    expect(comparePrice("ETH", "007", "7")).toBe(0);
    expect(() => comparePrice("ETH", "4303.123", "1")).toThrow(/not a price at 2 decimals/);
    expect(() => comparePrice("XYZ", "1", "1")).toThrow(/unknown asset/);
  });
});

describe("CandleFanout", () => {
  it("merges 1m updates onto the 1h bucket: first open, extremes, latest close; a new hour starts afresh", async () => {
    const fanout = new CandleFanout(undefined, () => undefined);
    const s = socket();
    fanout.subscribe(s.conn, "BTC", "1h", 0);
    fanout.publish(minute("10:05", "100", "101", "99.5", "100.5"), 0);
    fanout.publish(minute("10:06", "100.5", "103", "100", "102"), 0);
    fanout.publish(minute("10:05", "100", "101.5", "99", "101"), 0); // a late update of an earlier minute
    fanout.publish(minute("11:00", "102", "102", "102", "102"), 0);
    await Promise.resolve();
    expect(s.sent.slice(-2)).toEqual([
      {
        type: "candle",
        asset: "BTC",
        interval: "1h",
        openTime: "2027-01-15T10:00:00.000Z",
        open: "100",
        high: "103",
        low: "99",
        close: "102",
      },
      {
        type: "candle",
        asset: "BTC",
        interval: "1h",
        openTime: "2027-01-15T11:00:00.000Z",
        open: "102",
        high: "102",
        low: "102",
        close: "102",
      },
    ]);
  });

  it("starts from the stored bucket when one is loaded, keeping updates that came meanwhile", async () => {
    let release: (c: StoredBucket) => void = () => undefined;
    const fanout = new CandleFanout(
      () => new Promise((resolve) => (release = resolve)),
      () => undefined,
    );
    const s = socket();
    const now = Date.parse("2027-01-15T10:07:30.000Z");
    fanout.subscribe(s.conn, "BTC", "15m", now);
    fanout.publish(minute("10:07", "101", "101.5", "100.8", "101.2"), now);
    release(stored("10:00", "10:06", "99", "104", "98", "100.9"));
    await new Promise((r) => setTimeout(r, 0));
    expect(s.sent.at(-1)).toEqual({
      type: "candle",
      asset: "BTC",
      interval: "15m",
      openTime: "2027-01-15T10:00:00.000Z",
      open: "99",
      high: "104",
      low: "98",
      close: "101.2",
    });
  });

  it("keeps the loaded bucket's close when a late update of an earlier minute comes after the load", async () => {
    const fanout = new CandleFanout(
      () => Promise.resolve(stored("10:00", "10:07", "99", "104", "98", "100.9")),
      () => undefined,
    );
    const s = socket();
    fanout.subscribe(s.conn, "BTC", "15m", Date.parse("2027-01-15T10:07:30.000Z"));
    await new Promise((r) => setTimeout(r, 0));
    fanout.publish(minute("10:03", "100", "100.2", "99.9", "100"), 0); // a late batch for 10:03
    expect(s.sent.at(-1)).toMatchObject({ open: "99", high: "104", low: "98", close: "100.9" });
    fanout.publish(minute("10:07", "100.9", "101", "100.8", "101"), 0);
    expect(s.sent.at(-1)).toMatchObject({ close: "101" });
  });

  it("loads a bucket once for the subscribers that come while it loads, and sends it to each", async () => {
    let loads = 0;
    let release: (c: StoredBucket) => void = () => undefined;
    const fanout = new CandleFanout(
      () => {
        loads++;
        return new Promise((resolve) => (release = resolve));
      },
      () => undefined,
    );
    const now = Date.parse("2027-01-15T10:07:30.000Z");
    const a = socket();
    const b = socket();
    fanout.subscribe(a.conn, "BTC", "1h", now);
    fanout.subscribe(b.conn, "BTC", "1h", now + 10);
    expect(loads).toBe(1);
    release({ ...stored("10:00", "10:07", "99", "104", "98", "100.9"), interval: "1h" });
    await new Promise((r) => setTimeout(r, 0));
    for (const s of [a, b]) expect(s.sent).toEqual([expect.objectContaining({ type: "candle", close: "100.9" })]);
    // Loaded: a later subscriber gets the bucket at once, without another load.
    const c = socket();
    fanout.subscribe(c.conn, "BTC", "1h", now + 20);
    expect(c.sent).toEqual([expect.objectContaining({ close: "100.9" })]);
    expect(loads).toBe(1);
  });
});
