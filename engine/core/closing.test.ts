// Closing by the user: a long closes at the bid, a short at the ask; the margin plus the realized PnL
// returns to USD, and pnl is exactly the USD change beyond the margin. Trades: ETH, margin 100 USD, leverage 10.
import { describe, expect, it } from "vitest";
import {
  ETH,
  close,
  codeOf,
  given,
  isOpen,
  messageOf,
  ofType,
  opened,
  resultOf,
  usdOf,
} from "../testing/spec-support.ts";

describe("close_trade", () => {
  it("closes a long at the bid", () => {
    const h = given({ eth: ["1999.5", "2000"] });
    const trade = opened(h, "alice", { stopLoss: "1900", takeProfit: "2200" }); // 0.5 ETH at 2000
    h.price(ETH, "2100", "2100.5");
    const { answer, outputs } = close(h, "alice", trade.id);
    const { trade: closed, balances } = resultOf(answer, "close_trade");
    // (210000 − 200000) × 5000 = 50,000,000 micros; 9900 + 100 + 50 = 10050
    expect(closed).toEqual({
      ...trade,
      closeId: trade.id,
      closePrice: "2100",
      pnl: "50",
      lossWaived: null,
      remainingQuantity: "0",
      closeReason: "manual",
      closedAt: new Date(h.nowMs).toISOString(),
    });
    expect(balances.USD).toBe("10050");
    expect(outputs.map((o) => o.type)).toEqual(["closed_order", "balances_changed", "order_response"]);
    expect(ofType(outputs, "closed_order")[0]).toMatchObject({ userId: "alice", trade: closed });
    expect(h.state.accounts.get("alice")?.openTrades.size).toBe(0);
  });

  it("closes a short at the ask", () => {
    const h = given({ eth: ["2000", "2000.5"] });
    const trade = opened(h, "alice", { side: "short" }); // 0.5 ETH at 2000
    h.price(ETH, "1900", "1900.5");
    const closed = resultOf(close(h, "alice", trade.id).answer, "close_trade");
    // (200000 − 190050) × 5000 = 49,750,000 micros
    expect(closed.trade).toMatchObject({ closePrice: "1900.5", pnl: "49.75", closeReason: "manual" });
    expect(closed.balances.USD).toBe("10049.75");
  });

  it("a losing close returns what is left of the margin", () => {
    const h = given({ eth: ["1999", "2000"] });
    const trade = opened(h, "alice", { side: "short" }); // 1e9 / 199900 → 5002 steps at 1999
    h.price(ETH, "2019.99", "2020.01");
    const closed = resultOf(close(h, "alice", trade.id).answer, "close_trade");
    // (199900 − 202001) × 5002 = −2101 × 5002 = −10,509,202 micros; 9900 + 100 − 10.509202
    expect(closed.trade).toMatchObject({ quantity: "0.5002", closePrice: "2020.01", pnl: "-10.509202" });
    expect(closed.balances.USD).toBe("9989.490798");
  });

  it("pnl is exactly the USD change beyond the margin, and the house pays it", () => {
    const h = given({ eth: ["2000", "2000.01"] });
    const trade = opened(h, "alice"); // 4999 steps at 2000.01
    h.price(ETH, "2345.67", "2345.68");
    const before = usdOf(h, "alice");
    const house = h.state.house.usd;
    const closed = resultOf(close(h, "alice", trade.id).answer, "close_trade");
    // (234567 − 200001) × 4999 = 34566 × 4999 = 172,795,434 micros
    expect(before).toBe("9900");
    expect(closed.trade.pnl).toBe("172.795434");
    expect(closed.balances.USD).toBe("10172.795434"); // 9900 + 100 + 172.795434
    expect(house - h.state.house.usd).toBe(172_795_434n);
  });

  it("a closed trade's triggers no longer fire", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900", takeProfit: "2100" });
    resultOf(close(h, "alice", trade.id).answer, "close_trade");
    expect(ofType(h.price(ETH, "1800", "1800"), "closed_order")).toEqual([]);
    expect(ofType(h.price(ETH, "2200", "2200"), "closed_order")).toEqual([]);
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("closes one trade of several, leaving the rest indexed", () => {
    const h = given();
    const a = opened(h, "alice", { stopLoss: "1900" });
    const b = opened(h, "alice", { stopLoss: "1950" });
    const c = opened(h, "alice", { stopLoss: "1920" });
    resultOf(close(h, "alice", c.id).answer, "close_trade");
    const fired = ofType(h.price(ETH, "1900", "1900"), "closed_order").map((o) => o.trade.id);
    expect(fired).toEqual([b.id, a.id]);
  });
});

describe("close_trade refusals", () => {
  it("TRADE_NOT_FOUND for an id that never existed", () => {
    const h = given();
    const { answer, outputs } = close(h, "alice", "T0-999");
    expect(codeOf(answer)).toBe("TRADE_NOT_FOUND");
    expect(messageOf(answer)).toBe('tradeId: expected the id of an open trade of this account, received "T0-999".');
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
  });

  it("TRADE_NOT_FOUND for any spelling of an open trade's id but the exact one, or another shard's", () => {
    const h = given();
    const trade = opened(h, "alice");
    expect(trade.id).toBe("T0-1");
    const others = [
      "T0-01",
      "T0-1 ",
      " T0-1",
      "t0-1",
      "T1-1",
      "T0-",
      "T0-+1",
      "T0-1.0",
      "T0-1e0",
      "T0-0x1",
      "T0-0",
      "T0--1",
      "T00-1",
      "T0-1".repeat(9),
    ];
    for (const id of others) expect(codeOf(close(h, "alice", id).answer), id).toBe("TRADE_NOT_FOUND");
    expect(isOpen(h, "alice", "T0-1")).toBe(true);
    expect(resultOf(close(h, "alice", "T0-1").answer, "close_trade").trade.id).toBe("T0-1");
  });

  it("TRADE_NOT_FOUND for a trade already closed by the user, with no second payout", () => {
    const h = given();
    const trade = opened(h, "alice");
    resultOf(close(h, "alice", trade.id).answer, "close_trade");
    expect(codeOf(close(h, "alice", trade.id).answer)).toBe("TRADE_NOT_FOUND");
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("TRADE_NOT_FOUND for a trade already closed by a trigger", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1990" });
    h.price(ETH, "1990", "1990");
    expect(codeOf(close(h, "alice", trade.id).answer)).toBe("TRADE_NOT_FOUND");
    expect(usdOf(h, "alice")).toBe("9995"); // 9900 + 100 + (1990 − 2000) × 0.5
  });

  it("TRADE_NOT_FOUND for someone else's trade, which stays open", () => {
    const h = given({ users: ["alice", "bob"] });
    const trade = opened(h, "alice");
    const { answer, outputs } = close(h, "bob", trade.id);
    expect(answer).toEqual({ ok: false, error: { code: "TRADE_NOT_FOUND", message: expect.any(String) as string } });
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(isOpen(h, "alice", trade.id)).toBe(true);
    expect(usdOf(h, "alice")).toBe("9900");
    expect(usdOf(h, "bob")).toBe("10000");
  });

  it("STALE_PRICE leaves the trade open", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.advance(30_001);
    expect(codeOf(close(h, "alice", trade.id).answer)).toBe("STALE_PRICE");
    expect(isOpen(h, "alice", trade.id)).toBe(true);
  });
});
