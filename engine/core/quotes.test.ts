// Prices: a price_update replaces the market's quote; malformed, crossed, out-of-range or
// unknown-market updates are counted and ignored, and so is one from too far in the future, or a new price from too
// far behind the market's newest. Orders need a market the exchange showed live (its own time) no more than
// staleQuoteMs of log time ago.
import { describe, expect, it } from "vitest";
import {
  ETH,
  SOL,
  close,
  codeOf,
  given,
  isOpen,
  messageOf,
  ofType,
  open,
  opened,
  resultOf,
} from "../testing/spec-support.ts";
import { EngineHarness } from "../testing/engine-harness.ts";

describe("price_update", () => {
  it("stores the quote and publishes it", () => {
    const h = new EngineHarness();
    const outputs = h.price(ETH, "2000.500", "2001");
    const id = h.log.at(-1)?.id;
    expect(outputs).toEqual([
      {
        type: "quote_updated",
        id: `${id}:0`,
        inputId: id,
        asset: "ETH",
        market: ETH,
        bid: "2000.5",
        ask: "2001",
        updatedAt: "2023-11-14T22:13:20.000Z",
        source: "sim",
      },
    ]);
    expect(h.state.quotes[0]).toMatchObject({ bidTicks: 200_050, askTicks: 200_100, atMs: 1_700_000_000_000 });
    expect(h.state.ignoredPriceUpdates).toBe(0);
  });

  it("accepts a zero spread", () => {
    const h = new EngineHarness();
    expect(h.price(ETH, "2000", "2000")).toHaveLength(1);
    expect(h.state.quotes[0]).toMatchObject({ bidTicks: 200_000, askTicks: 200_000 });
  });

  it.each([
    ["an unknown market", "DOGE_USDC_PERP", "1", "1"],
    ["an asset symbol instead of a market", "ETH", "2000", "2000"],
    ["a crossed quote (bid > ask)", ETH, "2000.01", "2000"],
    ["too many decimals in the bid", ETH, "2000.001", "2001"],
    ["too many decimals in the ask", ETH, "2000", "2000.001"],
    ["a zero bid", ETH, "0", "2000"],
    ["a zero quote", ETH, "0", "0"],
    ["an ask above the market's max price", ETH, "2000", "1000000.01"],
    ["a malformed price", ETH, "2,000", "2001"],
    ["an exponent", ETH, "2e3", "2001"],
  ])("ignores %s and counts it", (_what, market, bid, ask) => {
    const h = given({ eth: ["1999", "2000"] });
    opened(h, "alice", { stopLoss: "1990", takeProfit: "2010" });
    const before = { ...h.state.quotes[0] };
    expect(h.price(market, bid, ask)).toEqual([]);
    expect(h.state.ignoredPriceUpdates).toBe(1);
    expect(h.state.quotes[0]).toEqual(before);
    expect(h.state.accounts.get("alice")?.openTrades.size).toBe(1);
  });

  it("accepts the market's max price exactly", () => {
    const h = new EngineHarness();
    h.price(ETH, "999999.99", "1000000"); // ETH maxPriceTicks = 100,000,000 = 1,000,000.00
    expect(h.state.quotes[0]).toMatchObject({ bidTicks: 99_999_999, askTicks: 100_000_000 });
  });

  it("keeps counting ignored updates", () => {
    const h = new EngineHarness();
    h.price("X", "1", "1");
    h.price(ETH, "2", "1");
    h.price(ETH, "1", "2");
    expect(h.state.ignoredPriceUpdates).toBe(2);
  });
});

describe("NO_PRICE and UNKNOWN_ASSET", () => {
  it("refuses orders on a market that has never had a price", () => {
    const h = given();
    expect(codeOf(open(h, "alice", { asset: "SOL" }).answer)).toBe("NO_PRICE");
    expect(codeOf(h.instruct("alice", { kind: "spot_order", asset: "SOL", side: "buy", quantity: "1" }).answer)).toBe(
      "NO_PRICE",
    );
    expect(messageOf(open(h, "alice", { asset: "SOL" }).answer)).toBe(
      "There is no price for this market yet. No quote for SOL_USDC_PERP (SOL) has reached the engine.",
    );
  });

  it("an ignored update does not give a market its first price", () => {
    const h = given();
    h.price(SOL, "150", "149");
    expect(codeOf(open(h, "alice", { asset: "SOL" }).answer)).toBe("NO_PRICE");
  });
});

/** A price_update with an explicit exchange time (µs digits), as a feed would send it. */
const quoteAt = (h: EngineHarness, market: string, bid: string, ask: string, exchangeTimeUs: string) =>
  h.send({ type: "price_update", market, bid, ask, exchangeTimeUs, source: "backpack" });
const T0 = 1_700_000_000_000; // the harness's first log time, ms
const us = (ms: number) => `${ms}000`;

describe("STALE_PRICE: judged by the exchange's time (staleQuoteMs = 5000 by default)", () => {
  it("a market last shown live exactly staleQuoteMs ago is still tradable; one ms more is not", () => {
    const h = given(); // ETH at log time T0, exchange time T0
    h.advance(5_000);
    resultOf(open(h, "alice").answer, "open_trade");
    h.advance(1);
    const { answer } = open(h, "alice");
    expect(codeOf(answer)).toBe("STALE_PRICE");
    if (!answer.ok) expect(answer.error.message).toContain("5001 ms ago; the limit is 5000 ms");
  });

  it("a halted market is refused once log time passes its exchange time by staleQuoteMs, though the same quote keeps arriving", () => {
    const h = given();
    for (let s = 1; s <= 5; s++) {
      h.advance(1_000);
      // The feed re-sends the last quote with the exchange time it had: nothing new, so nothing is emitted.
      expect(quoteAt(h, ETH, "2000", "2000", us(T0))).toEqual([]);
    }
    resultOf(open(h, "alice").answer, "open_trade"); // log T0+5000: 5000 ms since the exchange's T0
    h.advance(1);
    expect(quoteAt(h, ETH, "2000", "2000", us(T0))).toEqual([]);
    const { answer } = open(h, "alice");
    expect(codeOf(answer)).toBe("STALE_PRICE");
    if (!answer.ok) expect(answer.error.message).toContain("5001 ms ago");
  });

  it("a quiet market whose heartbeats carry advancing exchange time keeps trading, and stops 5 s after the last", () => {
    const h = given();
    for (let s = 1; s <= 60; s++) {
      h.advance(1_000);
      // Same top of book each second, stamped by the exchange 200 ms before it reaches the log.
      const out = quoteAt(h, ETH, "2000", "2000", us(h.nowMs - 200));
      expect(out).toMatchObject([{ type: "quote_updated", bid: "2000", ask: "2000" }]);
    }
    resultOf(open(h, "alice").answer, "open_trade"); // log T0+60000, live as of T0+59800
    h.advance(4_800);
    resultOf(open(h, "alice").answer, "open_trade"); // 5000 ms after T0+59800
    h.advance(1);
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
  });

  it("a new price with an older exchange time replaces the prices but not the market's evidence of life", () => {
    const h = given();
    h.advance(1_000);
    expect(quoteAt(h, ETH, "2000", "2000", us(T0 + 1_000))).toHaveLength(1); // heartbeat: live as of T0+1000
    h.advance(500);
    // A book change stamped by another clock 100 ms behind the heartbeat's: the price is news, the time is not.
    expect(quoteAt(h, ETH, "2001", "2002", us(T0 + 900))).toMatchObject([{ bid: "2001", ask: "2002" }]);
    expect(h.state.quotes[0]).toMatchObject({ bidTicks: 200_100, askTicks: 200_200, atMs: T0 + 1_000 });
    expect(h.state.quotes[0]?.exchangeTimeUs).toBe(us(T0 + 1_000));
    h.advance(4_500); // log T0+6000
    const trade = resultOf(open(h, "alice").answer, "open_trade").trade;
    expect(trade.openPrice).toBe("2002");
    h.advance(1);
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
  });

  it("a new price more than staleQuoteMs older than the newest evidence arrives late: ignored and counted, it fires nothing", () => {
    const h = given({ eth: ["1999", "2000"] });
    const trade = opened(h, "alice", { stopLoss: "1990" }); // a long: its stop fires on a bid at or below 1990
    h.advance(6_000);
    expect(quoteAt(h, ETH, "1999", "2000", us(T0 + 6_000))).toHaveLength(1); // live as of T0+6000
    const newest = { ...h.state.quotes[0] };
    // A write the poller gave up on lands after newer ones: its price, below the stop, is one the market has left.
    expect(quoteAt(h, ETH, "1980", "1981", `${T0 + 999}999`)).toEqual([]); // 5000.001 ms older: 5001 ms truncated
    expect(h.state.ignoredPriceUpdates).toBe(1);
    expect(h.state.quotes[0]).toEqual(newest);
    expect(isOpen(h, "alice", trade.id)).toBe(true);
    // Exactly staleQuoteMs older is another stream's clock behind: taken, and the stop fires on it.
    const closed = ofType(quoteAt(h, ETH, "1980", "1981", us(T0 + 1_000)), "closed_order").map((o) => o.trade);
    expect(closed).toMatchObject([{ id: trade.id, closeReason: "stop_loss", closePrice: "1980" }]);
    expect(h.state.quotes[0]).toMatchObject({ bidTicks: 198_000, exchangeTimeUs: us(T0 + 6_000) });
    expect(h.state.ignoredPriceUpdates).toBe(1);
  });
  it("an exchange clock ahead of the log's buys no extra freshness: fresh from the log time it arrived", () => {
    const h = given();
    h.advance(1_000); // log T0+1000
    expect(quoteAt(h, ETH, "2000", "2000", us(T0 + 6_000))).toHaveLength(1); // exactly staleQuoteMs ahead: accepted
    h.advance(5_000); // log T0+6000: 5000 ms since it arrived
    resultOf(open(h, "alice").answer, "open_trade");
    h.advance(1);
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
  });

  it("an update claiming an exchange time more than staleQuoteMs ahead of log time is ignored and counted", () => {
    const h = given();
    // 5000.999 ms ahead truncates to 5000 ms: still inside the bound.
    expect(quoteAt(h, ETH, "2000.5", "2001", `${T0 + 5_000}999`)).toHaveLength(1);
    expect(h.state.ignoredPriceUpdates).toBe(0);
    const accepted = { ...h.state.quotes[0] };
    expect(accepted).toMatchObject({ bidTicks: 200_050, atMs: T0 });
    expect(quoteAt(h, SOL, "150", "150", us(T0 + 5_001))).toEqual([]);
    expect(quoteAt(h, ETH, "2100", "2100", us(T0 + 5_001))).toEqual([]);
    expect(h.state.ignoredPriceUpdates).toBe(2);
    expect(h.state.quotes[0]).toEqual(accepted);
    expect(h.state.quotes[2]).toBeUndefined(); // SOL got no first price from it
  });

  it("compares exchange times as numbers: leading zeros and longer digit strings", () => {
    const h = given();
    h.advance(3_000);
    // "0" + T0+3000 ms: newer than T0 as a number, though "0…" sorts first as text.
    expect(quoteAt(h, ETH, "2000", "2000", `0${us(T0 + 3_000)}`)).toHaveLength(1);
    expect(h.state.quotes[0]).toMatchObject({ atMs: T0 + 3_000, exchangeTimeUs: `0${us(T0 + 3_000)}` });
    h.advance(1_000);
    // 999… µs has fewer digits: older, so the repeat changes nothing.
    expect(quoteAt(h, ETH, "2000", "2000", "999999999999999")).toEqual([]);
    h.advance(5_000); // T0+9000: 6000 ms after T0+3000
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
  });

  it("applies to opening, closing and spot orders alike", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.advance(5_001);
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
    expect(codeOf(close(h, "alice", trade.id).answer)).toBe("STALE_PRICE");
    expect(codeOf(h.instruct("alice", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "1" }).answer)).toBe(
      "STALE_PRICE",
    );
    h.price(ETH, "2000", "2000");
    resultOf(close(h, "alice", trade.id).answer, "close_trade");
  });

  it("is per market: a halted market goes stale while another flows", () => {
    const h = given();
    h.price(SOL, "150", "150");
    for (let s = 1; s <= 6; s++) {
      h.advance(1_000);
      h.price(ETH, "2000", "2000"); // ETH's heartbeat; SOL sends nothing
    }
    expect(codeOf(open(h, "alice", { asset: "SOL" }).answer)).toBe("STALE_PRICE");
    expect(messageOf(open(h, "alice", { asset: "SOL" }).answer)).toBe(
      "The latest price for this market is too old to trade on. The exchange last showed SOL_USDC_PERP (SOL) live " +
        "6000 ms ago; the limit is 5000 ms.",
    );
    resultOf(open(h, "alice").answer, "open_trade");
  });

  it("an ignored update does not refresh a stale market", () => {
    const h = given();
    h.advance(5_001);
    h.price(ETH, "2000.01", "2000");
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
  });

  it("honours a configured staleQuoteMs", () => {
    const h = given({ params: { staleQuoteMs: 500 } });
    h.advance(500);
    resultOf(open(h, "alice").answer, "open_trade");
    h.advance(1);
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
  });

  it("time comes from the log: instructions at the same ms as the quote are fresh", () => {
    const h = given({ params: { staleQuoteMs: 1 } });
    resultOf(open(h, "alice").answer, "open_trade");
    resultOf(open(h, "alice").answer, "open_trade");
  });
});
