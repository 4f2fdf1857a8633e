// Prices: a price_update replaces the market's quote; malformed, crossed, out-of-range or
// unknown-market updates are counted and ignored. Orders need a quote no older than staleQuoteMs of log time.
import { describe, expect, it } from "vitest";
import { ETH, SOL, close, codeOf, given, open, opened, resultOf } from "../testing/spec-support.ts";
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
  });

  it("an ignored update does not give a market its first price", () => {
    const h = given();
    h.price(SOL, "150", "149");
    expect(codeOf(open(h, "alice", { asset: "SOL" }).answer)).toBe("NO_PRICE");
  });
});

describe("STALE_PRICE (staleQuoteMs = 30000 by default)", () => {
  it("a quote exactly staleQuoteMs old is still tradable; one ms older is not", () => {
    const h = given();
    h.advance(30_000);
    resultOf(open(h, "alice").answer, "open_trade");
    h.advance(1);
    const { answer } = open(h, "alice");
    expect(codeOf(answer)).toBe("STALE_PRICE");
    if (!answer.ok) expect(answer.error.message).toContain("30001 ms");
  });

  it("applies to opening, closing and spot orders alike", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.advance(30_001);
    expect(codeOf(open(h, "alice").answer)).toBe("STALE_PRICE");
    expect(codeOf(close(h, "alice", trade.id).answer)).toBe("STALE_PRICE");
    expect(codeOf(h.instruct("alice", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "1" }).answer)).toBe(
      "STALE_PRICE",
    );
    h.price(ETH, "2000", "2000");
    resultOf(close(h, "alice", trade.id).answer, "close_trade");
  });

  it("is per market", () => {
    const h = given();
    h.price(SOL, "150", "150");
    h.advance(30_001);
    h.price(ETH, "2000", "2000");
    expect(codeOf(open(h, "alice", { asset: "SOL" }).answer)).toBe("STALE_PRICE");
    resultOf(open(h, "alice").answer, "open_trade");
  });

  it("an ignored update does not refresh a stale market", () => {
    const h = given();
    h.advance(30_001);
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
