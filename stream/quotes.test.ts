// Quote coalescing on plain data: sockets stand in as objects with a send buffer; time is passed in.
import type { WebSocket } from "ws";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamConnection } from "./connection.ts";
import { NO_METRICS } from "./metrics.ts";
import { QuoteFanout } from "./quotes.ts";
import { quoteOutput } from "./testing/quote-output.ts";

function socket() {
  const sent: string[] = [];
  const ws = { bufferedAmount: 0, send: (data: Buffer) => sent.push(data.toString("utf8")) };
  const conn = new StreamConnection(
    ws as unknown as WebSocket,
    { userId: "u", sessionId: "s", sessionExpiresAtMs: Infinity },
    DEFAULT_LIMITS,
    NO_METRICS,
    0,
  );
  return { ws, conn, sent, bids: () => sent.map((s) => (JSON.parse(s) as { bid: string }).bid) };
}

const quote = (asset: string, bid: string) => quoteOutput(asset, bid);

describe("QuoteFanout", () => {
  it("sends at most one quote per asset per 100 ms to a socket, the latest when the tick comes", () => {
    const fanout = new QuoteFanout(DEFAULT_LIMITS);
    const a = socket();
    fanout.subscribe(a.conn, undefined, 0);
    fanout.publish(quote("BTC", "1"), 1_000);
    fanout.publish(quote("BTC", "2"), 1_010);
    fanout.publish(quote("BTC", "3"), 1_050);
    fanout.publish(quote("ETH", "9"), 1_050); // another asset has its own budget
    fanout.tick(1_060);
    expect(a.bids()).toEqual(["1", "9"]);
    fanout.tick(1_100);
    expect(a.bids()).toEqual(["1", "9", "3"]);
    fanout.tick(1_300);
    expect(a.bids()).toEqual(["1", "9", "3"]); // nothing newer: nothing sent
  });

  it("switching from a list to all quotes keeps the quotes held back for the list: they still go out", () => {
    const fanout = new QuoteFanout(DEFAULT_LIMITS);
    const a = socket();
    fanout.subscribe(a.conn, ["BTC"], 0);
    fanout.publish(quote("BTC", "1"), 1_000);
    fanout.publish(quote("BTC", "2"), 1_020); // held back: 100 ms not up
    fanout.subscribe(a.conn, undefined, 1_030);
    fanout.tick(1_100);
    expect(a.bids()).toEqual(["1", "2"]);
    expect(fanout.heldCount()).toBe(0);
  });

  it("flush sends a socket its held-back quotes at once (before a private event), and only that socket's", () => {
    const fanout = new QuoteFanout(DEFAULT_LIMITS);
    const a = socket();
    const b = socket();
    fanout.subscribe(a.conn, undefined, 0);
    fanout.subscribe(b.conn, undefined, 0);
    fanout.publish(quote("BTC", "1"), 1_000);
    fanout.publish(quote("BTC", "2"), 1_020); // held back for both
    fanout.flush(a.conn, 1_030);
    expect(a.bids()).toEqual(["1", "2"]);
    expect(b.bids()).toEqual(["1"]);
    expect(fanout.heldCount()).toBe(1);
    fanout.tick(1_100);
    expect(a.bids()).toEqual(["1", "2"]); // nothing owed any more: not sent twice
    expect(b.bids()).toEqual(["1", "2"]);
  });

  it("sends one serialisation of a quote to every subscriber", () => {
    const fanout = new QuoteFanout(DEFAULT_LIMITS);
    const sockets = [socket(), socket(), socket()];
    for (const s of sockets) fanout.subscribe(s.conn, ["BTC"], 0);
    const frames: unknown[] = [];
    for (const s of sockets) s.ws.send = (data: Buffer) => frames.push(data);
    fanout.publish(quote("BTC", "5"), 1_000);
    expect(frames).toHaveLength(3);
    expect(frames[0]).toBe(frames[1]);
    expect(frames[1]).toBe(frames[2]);
  });

  it("holds quotes back while a socket's buffer is high, and sends only the latest once it drains", () => {
    const fanout = new QuoteFanout(DEFAULT_LIMITS);
    const slow = socket();
    const fast = socket();
    fanout.subscribe(slow.conn, ["BTC"], 0);
    fanout.subscribe(fast.conn, ["BTC"], 0);
    slow.ws.bufferedAmount = DEFAULT_LIMITS.quoteThinBytes;
    for (let i = 1; i <= 10; i++) {
      fanout.publish(quote("BTC", String(i)), 1_000 + i * 200);
      fanout.tick(1_050 + i * 200);
    }
    expect(slow.bids()).toEqual([]);
    expect(fast.bids()).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
    slow.ws.bufferedAmount = 0;
    fanout.tick(5_000);
    expect(slow.bids()).toEqual(["10"]);
  });

  it("holds quotes back below half the send buffer's cap when that is under quoteThinBytes: thinned before closed", () => {
    const capBytes = 16_384;
    const fanout = new QuoteFanout({ ...DEFAULT_LIMITS, privateBufferCapBytes: capBytes });
    const slow = socket();
    fanout.subscribe(slow.conn, ["BTC"], 0);
    slow.ws.bufferedAmount = capBytes / 2;
    fanout.publish(quote("BTC", "1"), 1_000);
    fanout.tick(2_000);
    expect(slow.bids()).toEqual([]);
    slow.ws.bufferedAmount = 0;
    fanout.tick(3_000);
    expect(slow.bids()).toEqual(["1"]);
  });

  it("on subscribe sends the latest known quote; unsubscribing some assets of all keeps the rest", () => {
    const fanout = new QuoteFanout(DEFAULT_LIMITS);
    const early = socket();
    fanout.subscribe(early.conn, undefined, 0);
    fanout.publish(quote("BTC", "1"), 1_000);
    fanout.publish(quote("ETH", "2"), 1_000);
    const late = socket();
    fanout.subscribe(late.conn, ["ETH"], 2_000);
    expect(late.bids()).toEqual(["2"]);
    fanout.unsubscribe(early.conn, ["BTC"], ["BTC", "ETH"]);
    fanout.publish(quote("BTC", "3"), 3_000);
    fanout.publish(quote("ETH", "4"), 3_000);
    expect(early.bids()).toEqual(["1", "2", "4"]);
    fanout.remove(late.conn);
    fanout.publish(quote("ETH", "5"), 4_000);
    expect(late.bids()).toEqual(["2", "4"]);
  });
});
