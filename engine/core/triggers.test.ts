// Stop-loss / take-profit triggers: long SL when bid ≤ SL, TP when bid ≥ TP; short SL when ask ≥ SL,
// TP when ask ≤ TP; an exit fills at the quote that triggered it. Every trade: ETH opened at 2000, margin 100,
// leverage 10 → 0.5 ETH (5000 steps × 1 micro per tick), so pnl = Δticks × 5000 micros = Δprice × 0.5 USD.
import { describe, expect, it } from "vitest";
import { tradeId } from "./state.ts";
import { ETH, given, isOpen, ofType, opened, usdOf } from "../testing/spec-support.ts";

const closedBy = (outputs: Parameters<typeof ofType>[0]) => ofType(outputs, "closed_order").map((o) => o.trade);

describe("long triggers watch the bid", () => {
  it("stop-loss: one tick above does nothing, exactly at the level fires at it", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900" });
    expect(closedBy(h.price(ETH, "1900.01", "1900.01"))).toEqual([]);
    // the ask is not what a long's exits watch
    expect(closedBy(h.price(ETH, "1900.01", "1950"))).toEqual([]);
    const [closed] = closedBy(h.price(ETH, "1900", "1900.5"));
    // (1900 − 2000) × 0.5 = −50
    expect(closed).toMatchObject({ id: trade.id, closeReason: "stop_loss", closePrice: "1900", pnl: "-50" });
    expect(usdOf(h, "alice")).toBe("9950");
  });

  it("stop-loss gapped through fills at the triggering bid, not the level", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1900" });
    const [closed] = closedBy(h.price(ETH, "1850", "1851"));
    // (1850 − 2000) × 0.5 = −75
    expect(closed).toMatchObject({ closeReason: "stop_loss", closePrice: "1850", pnl: "-75" });
    expect(usdOf(h, "alice")).toBe("9925");
  });

  it("take-profit: one tick below does nothing, exactly at the level fires; a gap fills at the bid", () => {
    const h = given();
    const trade = opened(h, "alice", { takeProfit: "2100" });
    expect(closedBy(h.price(ETH, "2099.99", "2200"))).toEqual([]);
    const [closed] = closedBy(h.price(ETH, "2100", "2100"));
    // (2100 − 2000) × 0.5 = +50
    expect(closed).toMatchObject({ id: trade.id, closeReason: "take_profit", closePrice: "2100", pnl: "50" });
    expect(usdOf(h, "alice")).toBe("10050");

    opened(h, "alice", { takeProfit: "2100.01" }); // opened at ask 2100 → 1e9 / 210000 = 4761 steps
    const [gapped] = closedBy(h.price(ETH, "2150", "2150.5"));
    // (215000 − 210000) × 4761 = 23,805,000 micros
    expect(gapped).toMatchObject({ closeReason: "take_profit", closePrice: "2150", pnl: "23.805", quantity: "0.4761" });
  });
});

describe("short triggers watch the ask", () => {
  it("stop-loss: one tick below does nothing, exactly at the level fires at it", () => {
    const h = given();
    const trade = opened(h, "alice", { side: "short", stopLoss: "2100" });
    expect(closedBy(h.price(ETH, "2099.99", "2099.99"))).toEqual([]);
    // the bid is not what a short's exits watch
    expect(closedBy(h.price(ETH, "2050", "2099.99"))).toEqual([]);
    const [closed] = closedBy(h.price(ETH, "2099", "2100"));
    // (2000 − 2100) × 0.5 = −50
    expect(closed).toMatchObject({ id: trade.id, closeReason: "stop_loss", closePrice: "2100", pnl: "-50" });
    expect(usdOf(h, "alice")).toBe("9950");
  });

  it("stop-loss gapped through fills at the triggering ask", () => {
    const h = given();
    opened(h, "alice", { side: "short", stopLoss: "2100" });
    const [closed] = closedBy(h.price(ETH, "2140", "2140.02"));
    // (200000 − 214002) × 5000 = −70,010,000 micros
    expect(closed).toMatchObject({ closeReason: "stop_loss", closePrice: "2140.02", pnl: "-70.01" });
  });

  it("take-profit: one tick above does nothing, exactly at the level fires; a gap fills at the ask", () => {
    const h = given();
    const trade = opened(h, "alice", { side: "short", takeProfit: "1900" });
    expect(closedBy(h.price(ETH, "1800", "1900.01"))).toEqual([]);
    const [closed] = closedBy(h.price(ETH, "1899", "1900"));
    // (2000 − 1900) × 0.5 = +50
    expect(closed).toMatchObject({ id: trade.id, closeReason: "take_profit", closePrice: "1900", pnl: "50" });

    opened(h, "alice", { side: "short", takeProfit: "1898" }); // at bid 1899 → ⌊1e9 / 189900⌋ = 5265 steps
    const [gapped] = closedBy(h.price(ETH, "1849.5", "1850"));
    // (189900 − 185000) × 5265 = 25,798,500 micros
    expect(gapped).toMatchObject({
      closeReason: "take_profit",
      closePrice: "1850",
      pnl: "25.7985",
      quantity: "0.5265",
    });
    expect(usdOf(h, "alice")).toBe("10075.7985"); // 10000 + 50 + 25.7985
  });
});

describe("one tick, many trades", () => {
  it("fires exactly the crossed ones: long exits by level then age, then short profits", () => {
    const h = given({ users: ["alice", "bob"] });
    const l1 = opened(h, "alice", { stopLoss: "1950" });
    const l2 = opened(h, "bob", { stopLoss: "1980" });
    const l3 = opened(h, "alice", { stopLoss: "1950" });
    const l4 = opened(h, "bob", { stopLoss: "1900" });
    const s1 = opened(h, "alice", { side: "short", takeProfit: "1960" });
    const s2 = opened(h, "bob", { side: "short", takeProfit: "1990" });
    const s3 = opened(h, "alice", { side: "short", takeProfit: "1940" });
    const s4 = opened(h, "bob", { side: "short", stopLoss: "2050" });
    const l5 = opened(h, "alice", { takeProfit: "2050" });

    const outputs = h.price(ETH, "1950", "1955");
    const closed = closedBy(outputs);
    // longs with SL ≥ bid 1950: 1980, then the two at 1950 oldest first; shorts with TP ≥ ask 1955: 1990, 1960
    expect(closed.map((t) => t.id)).toEqual([l2.id, l1.id, l3.id, s2.id, s1.id]);
    expect(closed.map((t) => [t.closeReason, t.closePrice, t.pnl])).toEqual([
      ["stop_loss", "1950", "-25"], // (1950 − 2000) × 0.5
      ["stop_loss", "1950", "-25"],
      ["stop_loss", "1950", "-25"],
      ["take_profit", "1955", "22.5"], // (2000 − 1955) × 0.5
      ["take_profit", "1955", "22.5"],
    ]);
    // each close is followed by the owner's new balances, after the quote itself
    expect(outputs.map((o) => o.type)).toEqual([
      "quote_updated",
      ...Array<string[]>(5).fill(["closed_order", "balances_changed"]).flat(),
    ]);
    expect(ofType(outputs, "balances_changed").map((o) => o.userId)).toEqual(["bob", "alice", "alice", "bob", "alice"]);

    const open = [...h.state.accounts.values()]
      .flatMap((a) => [...a.openTrades.keys()].map((seq) => tradeId(h.state.params.shard, seq)))
      .sort();
    expect(open).toEqual([l4.id, s3.id, s4.id, l5.id].sort());
    // alice: 10000 − 5 × 100 margin + (100 − 25) × 2 + (100 + 22.5) = 9772.5
    expect(usdOf(h, "alice")).toBe("9772.5");
    // bob: 10000 − 4 × 100 + (100 − 25) + (100 + 22.5) = 9797.5
    expect(usdOf(h, "bob")).toBe("9797.5");
  });

  it("a widening spread closes long exits before short exits, whatever their age", () => {
    const h = given();
    const short = opened(h, "alice", { side: "short", stopLoss: "2030" });
    const long = opened(h, "alice", { stopLoss: "1970" });
    const closed = closedBy(h.price(ETH, "1960", "2040"));
    expect(closed.map((t) => [t.id, t.closePrice])).toEqual([
      [long.id, "1960"],
      [short.id, "2040"],
    ]);
  });

  it("a rise closes long take-profits before short stop-losses", () => {
    const h = given();
    const short = opened(h, "alice", { side: "short", stopLoss: "2030" });
    const long = opened(h, "alice", { takeProfit: "2040" });
    const closed = closedBy(h.price(ETH, "2050", "2050.5"));
    expect(closed.map((t) => [t.id, t.closeReason, t.closePrice])).toEqual([
      [long.id, "take_profit", "2050"],
      [short.id, "stop_loss", "2050.5"],
    ]);
  });

  it("a trigger on one market leaves the others alone", () => {
    const h = given();
    h.price("SOL_USDC_PERP", "150", "150");
    const sol = opened(h, "alice", { asset: "SOL", stopLoss: "140" });
    expect(closedBy(h.price(ETH, "140", "140"))).toEqual([]);
    expect(isOpen(h, "alice", sol.id)).toBe(true);
  });
});
