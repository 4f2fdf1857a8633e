// Opening leveraged trades. Defaults: ETH (2 price decimals, 4 quantity decimals: 1 micro per
// tick × step), margin 100 USD, leverage 10 → notional 1000 USD = 1,000,000,000 micros.
import { describe, expect, it } from "vitest";
import { close, codeOf, given, messageOf, ofType, open, opened, resultOf, usdOf } from "../testing/spec-support.ts";

describe("open_trade fills and sizes", () => {
  it("a long fills at the ask and locks its margin", () => {
    const h = given({ eth: ["1999", "2000"] });
    const { answer, outputs } = open(h, "alice");
    const { trade, balances } = resultOf(answer, "open_trade");
    // quantity = 1e9 / 200000 ticks = 5000 steps = 0.5 ETH; liquidation: see liquidation.test.ts
    expect(trade).toEqual({
      id: "T0-1",
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
      quantity: "0.5",
      openPrice: "2000",
      stopLoss: null,
      takeProfit: null,
      trailingStop: null,
      liquidationPrice: "1809.04",
      openedAt: new Date(h.nowMs).toISOString(),
    });
    expect(balances.USD).toBe("9900");
    expect(outputs.map((o) => o.type)).toEqual(["trade_opened", "balances_changed", "order_response"]);
    expect(ofType(outputs, "trade_opened")[0]).toMatchObject({ userId: "alice", trade });
  });

  it("a short fills at the bid", () => {
    const h = given({ eth: ["1999", "2000"] });
    const trade = opened(h, "alice", { side: "short" });
    // 1e9 / 199900 = 5002.5… → 5002 steps: 0.5002 × 1999 = 999.8998 ≤ 1000 < 0.5003 × 1999 = 1000.0997
    expect(trade).toMatchObject({ type: "short", openPrice: "1999", quantity: "0.5002" });
  });

  it("rounds the quantity down to the step: the last unit is dropped", () => {
    const exact = given({ eth: ["2000", "2000"] });
    expect(opened(exact, "alice").quantity).toBe("0.5"); // 1e9 / 200000 = 5000 exactly
    const oneTickUp = given({ eth: ["2000", "2000.01"] });
    // 1e9 / 200001 = 4999.975… → 4999: 0.4999 × 2000.01 = 999.804999; 0.5 × 2000.01 = 1000.005 > 1000
    expect(opened(oneTickUp, "alice").quantity).toBe("0.4999");
    expect(usdOf(oneTickUp, "alice")).toBe("9900"); // the whole margin is locked; rounding never refunds
  });

  it("sizes other markets at their own steps", () => {
    const h = given();
    h.price("BTC_USDC_PERP", "97543.1", "97543.2");
    h.price("SOL_USDC_PERP", "150.2", "150.25");
    h.price("ADA_USDC_PERP", "0.45677", "0.45678");
    // BTC: 5e9 micros / 975432 = 5125.9… → 0.05125 BTC (0.05125 × 97543.2 = 4999.089)
    expect(opened(h, "alice", { asset: "BTC", margin: "1000", leverage: 5 })).toMatchObject({
      quantity: "0.05125",
      openPrice: "97543.2",
    });
    // SOL: 1 tick × 1 step = 100 micros; 1e9 / (15025 × 100) = 665.5… → 6.65 SOL (6.65 × 150.25 = 999.1625)
    expect(opened(h, "alice", { asset: "SOL" })).toMatchObject({ quantity: "6.65", openPrice: "150.25" });
    // ADA: 3e7 micros / 45678 = 656.7… → 65.6 ADA (65.6 × 0.45678 = 29.964768 ≤ 30 < 65.7 × 0.45678)
    expect(opened(h, "alice", { asset: "ADA", margin: "10", leverage: 3 })).toMatchObject({
      quantity: "65.6",
      openPrice: "0.45678",
    });
    expect(usdOf(h, "alice")).toBe("8890"); // 10000 − 1000 − 100 − 10
  });

  it("QUANTITY_TOO_SMALL below one step; exactly one step is fine", () => {
    const h = given();
    // 0.1 USD = 100000 micros < one step (0.0001 ETH × 2000 = 0.2 USD = 200000 micros)
    expect(codeOf(open(h, "alice", { margin: "0.1", leverage: 1 }).answer)).toBe("QUANTITY_TOO_SMALL");
    expect(codeOf(open(h, "alice", { margin: "0.199999", leverage: 1 }).answer)).toBe("QUANTITY_TOO_SMALL");
    // The message gives what the order came to, what one step costs and the least margin at its leverage.
    expect(messageOf(open(h, "alice", { margin: "0.01", leverage: 3 }).answer)).toBe(
      "The order is smaller than one quantity step of the asset. Margin × leverage is 0.03 USD; one step " +
        "(0.0001 ETH) at 2000 costs 0.2 USD: at leverage 3, a margin of at least 0.066667 USD.",
    );
    // 1 step at leverage 1 can never be liquidated: equity M + (p − 2000)·q reaches 0 only at p = 0
    expect(opened(h, "alice", { margin: "0.2", leverage: 1 })).toMatchObject({
      quantity: "0.0001",
      liquidationPrice: null,
    });
  });
});

describe("open_trade refusals leave the account untouched", () => {
  const refused = (fields: Parameters<typeof open>[2], eth: [string, string] = ["1999", "2000"]) => {
    const h = given({ eth });
    const { answer, outputs } = open(h, "alice", fields);
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(usdOf(h, "alice")).toBe("10000");
    expect(h.state.accounts.get("alice")?.openTrades.size).toBe(0);
    return codeOf(answer);
  };

  it.each([0, 101, 1.5, -1, 1e300])("leverage %s → INVALID_LEVERAGE", (leverage) => {
    expect(refused({ leverage })).toBe("INVALID_LEVERAGE");
  });

  it("leverage 1 and 100 are allowed", () => {
    const h = given({ eth: ["1999", "2000"] });
    expect(opened(h, "alice", { leverage: 1 }).quantity).toBe("0.05"); // 1e8 / 200000 = 500 steps
    expect(opened(h, "alice", { leverage: 100 }).quantity).toBe("5"); // 1e10 / 200000 = 50000 steps
  });

  it.each(["0", "0.000000", "0.0000001", "-1", "1e2", "abc", "", "1000000000.000001"])(
    "margin %j → INVALID_AMOUNT",
    (margin) => {
      expect(refused({ margin })).toBe("INVALID_AMOUNT");
    },
  );

  it("margin above the free balance → INSUFFICIENT_BALANCE; the whole balance is fine", () => {
    expect(refused({ margin: "10000.000001", leverage: 1 })).toBe("INSUFFICIENT_BALANCE");
    const h = given();
    opened(h, "alice", { margin: "10000", leverage: 1 });
    expect(usdOf(h, "alice")).toBe("0");
    expect(codeOf(open(h, "alice", { margin: "0.000001" }).answer)).toBe("INSUFFICIENT_BALANCE");
  });

  it("INSUFFICIENT_BALANCE says, exactly, what the order needs and what is free", () => {
    const h = given();
    opened(h, "alice", { margin: "9879.65", leverage: 1 });
    expect(messageOf(open(h, "alice", { margin: "500" }).answer)).toBe(
      "The balance does not cover this order. It needs 500 USD of margin; 120.35 USD is free.",
    );
    expect(messageOf(open(h, "alice", { margin: "120.350001" }).answer)).toContain(
      "It needs 120.350001 USD of margin; 120.35 USD is free.",
    );
  });

  it("INVALID_AMOUNT names the margin's rule and echoes what was received", () => {
    expect(messageOf(open(given(), "alice", { margin: "0.0000001" }).answer)).toBe(
      "The amount is not a valid positive decimal at this asset's precision. margin must be a positive USD amount " +
        'up to 1000000000 with at most 6 decimals; received "0.0000001".',
    );
    expect(messageOf(open(given(), "alice", { margin: "0" }).answer)).toContain('received "0".');
  });

  it("INVALID_LEVERAGE names the field, the allowed range and what was received", () => {
    expect(messageOf(open(given(), "alice", { leverage: 101 }).answer)).toBe(
      "leverage: expected a whole number from 1 to 100, received 101.",
    );
  });

  it("NOTIONAL_TOO_LARGE above maxNotionalMicros; exactly at it is fine", () => {
    const h = given({ params: { maxNotionalMicros: 1_000_000_000 } }); // 1000 USD
    expect(codeOf(open(h, "alice", { leverage: 11 }).answer)).toBe("NOTIONAL_TOO_LARGE"); // 100 × 11 = 1100 USD
    expect(codeOf(open(h, "alice", { margin: "100.000001" }).answer)).toBe("NOTIONAL_TOO_LARGE"); // 1000.00001 USD
    expect(opened(h, "alice", { leverage: 10 }).quantity).toBe("0.5");
    expect(messageOf(open(h, "alice", { leverage: 11 }).answer)).toBe(
      "The order is larger than a limit allows. Margin × leverage may be at most 1000 USD; received margin " +
        "100 USD × leverage 11.",
    );
  });

  it("TOO_MANY_OPEN_TRADES past maxOpenTradesPerUser, per user, until one closes", () => {
    const h = given({ users: ["alice", "bob"], params: { maxOpenTradesPerUser: 2 } });
    const first = opened(h, "alice");
    opened(h, "alice");
    expect(codeOf(open(h, "alice").answer)).toBe("TOO_MANY_OPEN_TRADES");
    expect(messageOf(open(h, "alice").answer)).toBe(
      "The account has reached its limit of open trades. The limit is 2; 2 are open.",
    );
    expect(usdOf(h, "alice")).toBe("9800");
    opened(h, "bob");
    resultOf(close(h, "alice", first.id).answer, "close_trade");
    expect(opened(h, "alice").id).toBe("T0-4");
  });

  it.each(["DOGE", "eth", "USD", "ETH_USDC_PERP"])("asset %j → UNKNOWN_ASSET", (asset) => {
    expect(refused({ asset })).toBe("UNKNOWN_ASSET");
  });

  it("UNKNOWN_ASSET names the assets traded and echoes the one received", () => {
    expect(messageOf(open(given(), "alice", { asset: "DOGE" }).answer)).toBe(
      'The asset is not traded here. asset must be one of ETH, BTC, SOL, ADA; received "DOGE".',
    );
  });
});

describe("stop-loss and take-profit placement (bid 1999, ask 2000)", () => {
  const h = () => given({ eth: ["1999", "2000"] });
  const code = (fields: Parameters<typeof open>[2]) => codeOf(open(h(), "alice", fields).answer);

  it("long (entry at the ask 2000): SL must be below the bid, TP above the bid and the entry", () => {
    expect(code({ stopLoss: "1999" })).toBe("INVALID_STOP_LOSS");
    expect(code({ stopLoss: "2100" })).toBe("INVALID_STOP_LOSS");
    expect(code({ takeProfit: "1999" })).toBe("INVALID_TAKE_PROFIT");
    expect(code({ takeProfit: "1900" })).toBe("INVALID_TAKE_PROFIT");
    // Above the bid but not above the entry: it would close as take_profit at a loss.
    expect(code({ takeProfit: "1999.01" })).toBe("INVALID_TAKE_PROFIT");
    expect(code({ takeProfit: "2000" })).toBe("INVALID_TAKE_PROFIT");
    expect(opened(h(), "alice", { stopLoss: "1998.99", takeProfit: "2000.01" })).toMatchObject({
      openPrice: "2000",
      stopLoss: "1998.99",
      takeProfit: "2000.01",
    });
  });

  it("short (entry at the bid 1999): SL must be above the ask, TP below the ask and the entry", () => {
    expect(code({ side: "short", stopLoss: "2000" })).toBe("INVALID_STOP_LOSS");
    expect(code({ side: "short", stopLoss: "1900" })).toBe("INVALID_STOP_LOSS");
    expect(code({ side: "short", takeProfit: "2000" })).toBe("INVALID_TAKE_PROFIT");
    expect(code({ side: "short", takeProfit: "2100" })).toBe("INVALID_TAKE_PROFIT");
    // Below the ask but not below the entry: it would close as take_profit at a loss.
    expect(code({ side: "short", takeProfit: "1999.99" })).toBe("INVALID_TAKE_PROFIT");
    expect(code({ side: "short", takeProfit: "1999" })).toBe("INVALID_TAKE_PROFIT");
    const trade = opened(h(), "alice", { side: "short", stopLoss: "2000.01", takeProfit: "1998.99" });
    expect(trade).toMatchObject({ openPrice: "1999", stopLoss: "2000.01", takeProfit: "1998.99" });
  });

  it("a take-profit below a long's entry is refused with the entry price named", () => {
    // Wide spread: bid 1990, ask (the long's entry) 2000. A TP at 1995 is above the bid but below the entry.
    const wide = given({ eth: ["1990", "2000"] });
    const { answer, outputs } = open(wide, "alice", { takeProfit: "1995" });
    expect(messageOf(answer)).toBe(
      "The take-profit is not valid for this trade. A long's take-profit must be above its entry price 2000 and " +
        "the current bid 1990; takeProfit 1995 is not.",
    );
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(usdOf(wide, "alice")).toBe("10000");
  });

  it("a take-profit above a short's entry is refused with the entry price named", () => {
    // Wide spread: bid (the short's entry) 2000, ask 2010. A TP at 2005 is below the ask but above the entry.
    const wide = given({ eth: ["2000", "2010"] });
    expect(messageOf(open(wide, "alice", { side: "short", takeProfit: "2005" }).answer)).toBe(
      "The take-profit is not valid for this trade. A short's take-profit must be below its entry price 2000 and " +
        "the current ask 2010; takeProfit 2005 is not.",
    );
    expect(usdOf(wide, "alice")).toBe("10000");
  });

  it("levels that are not positive prices at the market's precision are refused", () => {
    expect(code({ stopLoss: "0" })).toBe("INVALID_STOP_LOSS");
    expect(code({ stopLoss: "1998.999" })).toBe("INVALID_STOP_LOSS");
    expect(code({ takeProfit: "1e4" })).toBe("INVALID_TAKE_PROFIT");
    expect(code({ takeProfit: "1000000.01" })).toBe("INVALID_TAKE_PROFIT"); // above ETH's max price
    expect(opened(h(), "alice", { stopLoss: "1998.990" }).stopLoss).toBe("1998.99");
  });

  it("a refusal names the level, the price it was checked against and the side it must be on", () => {
    const message = (fields: Parameters<typeof open>[2]) => messageOf(open(h(), "alice", fields).answer);
    expect(message({ stopLoss: "2100" })).toBe(
      "The stop-loss is not valid for this trade. A long's stop-loss must be below the current bid 1999; " +
        "stopLoss 2100 is not.",
    );
    expect(message({ side: "short", stopLoss: "1900.5" })).toBe(
      "The stop-loss is not valid for this trade. A short's stop-loss must be above the current ask 2000; " +
        "stopLoss 1900.5 is not.",
    );
    expect(message({ takeProfit: "1900" })).toBe(
      "The take-profit is not valid for this trade. A long's take-profit must be above its entry price 2000 and " +
        "the current bid 1999; takeProfit 1900 is not.",
    );
    expect(message({ side: "short", takeProfit: "2100" })).toBe(
      "The take-profit is not valid for this trade. A short's take-profit must be below its entry price 1999 and " +
        "the current ask 2000; takeProfit 2100 is not.",
    );
    expect(message({ stopLoss: "1998.999" })).toBe(
      "The stop-loss is not valid for this trade. Use a positive price up to 1000000 with at most 2 decimals; " +
        "received 1998.999.",
    );
    // Over ETH's maximum price: the message gives the range, not only the decimals.
    expect(message({ takeProfit: "1000000.01" })).toBe(
      "The take-profit is not valid for this trade. Use a positive price up to 1000000 with at most 2 decimals; " +
        "received 1000000.01.",
    );
  });
});

describe("WOULD_LIQUIDATE", () => {
  // Long, leverage 100, margin 100 at ask 2000: q = 5 ETH; liquidated when 100 + (p − 2000)·5 ≤ 0.005·5·p
  // ⇔ 4.975p ≤ 9900 ⇔ p ≤ 1989.9497… → 1989.94 (rounded in the user's favour).
  it("refuses a long whose bid already sits at its liquidation price", () => {
    const h = given({ eth: ["1989.94", "2000"] });
    expect(codeOf(open(h, "alice", { leverage: 100 }).answer)).toBe("WOULD_LIQUIDATE");
    const ok = given({ eth: ["1989.95", "2000"] });
    expect(opened(ok, "alice", { leverage: 100 })).toMatchObject({ quantity: "5", liquidationPrice: "1989.94" });
  });

  // Short, leverage 100, margin 100 at bid 2000: 100 + (2000 − p)·5 ≤ 0.025p ⇔ 5.025p ≥ 10100 ⇔ p ≥ 2009.9502… → 2009.96.
  it("names the leverage, the entry, the liquidation price and the bid or ask already at it", () => {
    const long = open(given({ eth: ["1985", "2000"] }), "alice", { leverage: 100 }).answer;
    expect(messageOf(long)).toBe(
      "The trade would be liquidated as soon as it opened; lower the leverage. At leverage 100, a long opened at " +
        "2000 has liquidation price 1989.94, at or above the current bid 1985.",
    );
    const short = open(given({ eth: ["2000", "2015"] }), "alice", { side: "short", leverage: 100 }).answer;
    expect(messageOf(short)).toContain(
      "At leverage 100, a short opened at 2000 has liquidation price 2009.96, at or below the current ask 2015.",
    );
  });

  it("refuses a short whose ask already sits at its liquidation price", () => {
    const h = given({ eth: ["2000", "2009.96"] });
    expect(codeOf(open(h, "alice", { side: "short", leverage: 100 }).answer)).toBe("WOULD_LIQUIDATE");
    const ok = given({ eth: ["2000", "2009.95"] });
    expect(opened(ok, "alice", { side: "short", leverage: 100 })).toMatchObject({
      quantity: "5",
      liquidationPrice: "2009.96",
    });
  });
});
