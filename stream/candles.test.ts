// Coarser candles merged from 1m updates, and exact decimal comparison, on plain data.
import type { WebSocket } from "ws";
import { describe, expect, it } from "vitest";
import { CandleFanout, compareDecimal, type CandleView } from "./candles.ts";
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

const minute = (hhmm: string, open: string, high: string, low: string, close: string): CandleView => ({
  asset: "BTC",
  interval: "1m",
  openTime: `2027-01-15T${hhmm}:00.000Z`,
  open,
  high,
  low,
  close,
});

describe("compareDecimal", () => {
  it("orders by value, whatever the digits' lengths", () => {
    expect(compareDecimal("4303.9", "4303.10")).toBe(1);
    expect(compareDecimal("99.5", "100")).toBe(-1);
    expect(compareDecimal("100.0", "100")).toBe(0);
    expect(compareDecimal("0.001", "0.0009")).toBe(1);
    expect(compareDecimal("007", "7")).toBe(0);
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
    let release: (c: CandleView) => void = () => undefined;
    const fanout = new CandleFanout(
      () => new Promise((resolve) => (release = resolve)),
      () => undefined,
    );
    const s = socket();
    const now = Date.parse("2027-01-15T10:07:30.000Z");
    fanout.subscribe(s.conn, "BTC", "15m", now);
    fanout.publish(minute("10:07", "101", "101.5", "100.8", "101.2"), now);
    release({ ...minute("10:00", "99", "104", "98", "100.9"), interval: "15m" });
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
});
