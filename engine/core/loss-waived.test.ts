// The capped-loss record: a close whose loss at the close price passes the margin charges only the margin (negative
// balance protection) and says what it waived, so that (close − open) × quantity = pnl − lossWaived (long; a short
// mirrors it). Trades: ETH at 2000, margin 100 USD, leverage 10 → 5000 steps (0.5 ETH), 1 micro per tick × step.
import { describe, expect, it } from "vitest";
import { ETH, given, ofType, opened, resultOf, usdOf } from "../testing/spec-support.ts";
import { makeParams } from "./params.ts";
import { createState } from "./state.ts";
import { closedTradeView } from "./views.ts";

describe("lossWaived", () => {
  it("is null when the margin covers the loss, as at the liquidation level itself", () => {
    const h = given();
    opened(h, "alice"); // liquidation 1809.04
    const [closed] = ofType(h.price(ETH, "1809.04", "1809.04"), "closed_order");
    // (180904 − 200000) × 5000 = −95,480,000 micros: within the 100 USD margin; 4.52 USD returns
    expect(closed?.trade).toMatchObject({ closeReason: "liquidation", pnl: "-95.48", lossWaived: null });
    expect(usdOf(h, "alice")).toBe("9904.52");
  });

  it("a short gapping past liquidation: pnl −margin, the rest of the loss waived", () => {
    const h = given();
    opened(h, "alice", { side: "short" }); // liquidation 2189.06
    const house = h.state.house.usd;
    const [closed] = ofType(h.price(ETH, "2999", "3000"), "closed_order");
    // (200000 − 300000) × 5000 = −500,000,000 micros; charged −100 USD, 400 USD waived
    expect(closed?.trade).toMatchObject({
      closeReason: "liquidation",
      closePrice: "3000",
      pnl: "-100",
      lossWaived: "400",
    });
    expect(usdOf(h, "alice")).toBe("9900");
    expect(h.state.house.usd - house).toBe(100_000_000n);
  });

  it("a long's rest after a partial close, gapping past liquidation, waives on the rest's quantity and margin", () => {
    const h = given();
    const trade = opened(h, "alice");
    const part = h.instruct("alice", { kind: "close_trade", tradeId: trade.id, percent: "60" });
    // 3000 steps at the bid 2000: pnl 0, 60 USD released; 2000 steps and 40 USD stay
    expect(resultOf(part.answer, "close_trade").trade).toMatchObject({ pnl: "0", lossWaived: null, margin: "60" });
    const house = h.state.house.usd;
    const [closed] = ofType(h.price(ETH, "1000", "1000.01"), "closed_order");
    // (100000 − 200000) × 2000 = −200,000,000 micros; charged −40 USD, 160 USD waived
    expect(closed?.trade).toMatchObject({
      closeReason: "liquidation",
      quantity: "0.2",
      margin: "40",
      closePrice: "1000",
      pnl: "-40",
      lossWaived: "160",
    });
    expect(usdOf(h, "alice")).toBe("9960");
    expect(h.state.house.usd - house).toBe(40_000_000n);
  });

  it("a short's rest after a partial close, gapping past liquidation, waives on the rest's quantity and margin", () => {
    const h = given();
    const trade = opened(h, "alice", { side: "short" });
    h.instruct("alice", { kind: "close_trade", tradeId: trade.id, percent: "25" }); // 1250 steps, 25 USD out
    const [closed] = ofType(h.price(ETH, "2999", "3000"), "closed_order");
    // (200000 − 300000) × 3750 = −375,000,000 micros; charged −75 USD, 300 USD waived
    expect(closed?.trade).toMatchObject({ quantity: "0.375", margin: "75", pnl: "-75", lossWaived: "300" });
    expect(usdOf(h, "alice")).toBe("9925");
  });

  it("is exact when the loss passes 2^53 micros: a short of a million ETH opened at 1, gapping to 10,000", () => {
    const h = given({ eth: ["1", "1"] });
    opened(h, "alice", { side: "short", margin: "10000", leverage: 100 }); // 1,000,000 ETH
    const [closed] = ofType(h.price(ETH, "10000", "10000"), "closed_order");
    // (1 − 10000) × 1,000,000 = −9,999,000,000 USD: −1e16 micros; charged the 10,000 margin, the rest waived
    expect(closed?.trade).toMatchObject({
      closeReason: "liquidation",
      quantity: "1000000",
      pnl: "-10000",
      lossWaived: "9998990000",
    });
    expect(usdOf(h, "alice")).toBe("0");
  });

  it("a part's view derives it from the part's own quantity and margin", () => {
    const state = createState(makeParams());
    const part = {
      seq: 1,
      assetIndex: 0,
      isLong: true,
      marginMicros: 40_000_000,
      leverage: 10,
      quantitySteps: 2000,
      openPriceTicks: 200_000,
      stopLossTicks: 0,
      takeProfitTicks: 0,
      liquidationTicks: 180_904,
      openedAtMs: 0,
    };
    const close = { priceTicks: 100_000, pnlMicros: -40_000_000, reason: "manual" as const, atMs: 0 };
    // (100000 − 200000) × 2000 = −200 USD on a 40 USD part: 160 waived
    expect(closedTradeView(state, part, close, { closeSeq: 7, remainingSteps: 3000 })).toMatchObject({
      closeId: "T0-1.7",
      quantity: "0.2",
      margin: "40",
      pnl: "-40",
      lossWaived: "160",
      remainingQuantity: "0.3",
    });
  });
});
