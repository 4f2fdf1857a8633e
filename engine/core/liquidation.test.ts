// Liquidation: isolated margin, closed when margin + unrealized PnL falls to maintenance margin
// (0.5% of notional by default), loss never beyond the margin. Every trade here: ETH at 2000, margin 100 USD,
// leverage 10 → q = 0.5 ETH (5000 steps, 1 micro per tick × step).
//   long:  100 + (p − 2000)·0.5 ≤ 0.005·0.5·p ⇔ 0.4975p ≤ 900  ⇔ p ≤ 1809.0452… → 1809.04
//          (at 1809.04: equity 4.52 ≤ mm 4.5226; at 1809.05: equity 4.525 > mm 4.522625)
//   short: 100 + (2000 − p)·0.5 ≤ 0.0025p ⇔ 1100 ≤ 0.5025p ⇔ p ≥ 2189.0547… → 2189.06
//          (at 2189.06: equity 5.47 ≤ mm 5.47265; at 2189.05: equity 5.475 > mm 5.472625)
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ETH,
  close,
  codeOf,
  given,
  messageOf,
  ofType,
  open,
  opened,
  resultOf,
  usdOf,
} from "../testing/spec-support.ts";
import { liquidationTicks } from "./liquidation.ts";

describe("liquidation price", () => {
  it("is shown on the trade, rounded in the user's favour", () => {
    const h = given();
    expect(opened(h, "alice").liquidationPrice).toBe("1809.04");
    expect(opened(h, "alice", { side: "short" }).liquidationPrice).toBe("2189.06");
  });

  it("follows the formula in ticks", () => {
    // long:  ⌊1e6·(200000·5000 − 1e8) / (5000·995000)⌋ = ⌊9e14 / 4.975e9⌋ = 180904
    expect(liquidationTicks(true, 100_000_000, 200_000, 5000, 5000)).toBe(180_904);
    // short: ⌈1e6·(1e8 + 200000·5000) / (5000·1005000)⌉ = ⌈1.1e15 / 5.025e9⌉ = 218906
    expect(liquidationTicks(false, 100_000_000, 200_000, 5000, 5000)).toBe(218_906);
    // a long whose margin covers the whole notional (leverage 1) cannot be liquidated
    expect(liquidationTicks(true, 1_000_000_000, 200_000, 5000, 5000)).toBe(0);
    // with no maintenance margin a long at leverage 2 liquidates at exactly half the entry
    expect(liquidationTicks(true, 500_000_000, 200_000, 5000, 0)).toBe(100_000);
  });

  it("is absent for a long at leverage 1, which survives any fall", () => {
    const h = given();
    const trade = opened(h, "alice", { leverage: 1 }); // 1e8 / 200000 = 500 steps = 0.05 ETH
    expect(trade.liquidationPrice).toBeNull();
    h.price(ETH, "0.01", "0.01");
    // closes at 0.01: (1 − 200000) ticks × 500 steps = −99,999,500 micros; 100 − 99.9995 = 0.0005 returns
    const closed = resultOf(close(h, "alice", trade.id).answer, "close_trade");
    expect(closed.trade.pnl).toBe("-99.9995");
    expect(closed.balances.USD).toBe("9900.0005");
  });
});

describe("liquidation fires at the level, at the triggering quote", () => {
  it("long: bid one tick above does nothing; at the level it closes", () => {
    const h = given();
    const trade = opened(h, "alice");
    expect(ofType(h.price(ETH, "1809.05", "1809.05"), "closed_order")).toEqual([]);
    const [closed] = ofType(h.price(ETH, "1809.04", "1810"), "closed_order");
    // pnl = (180904 − 200000) × 5000 = −95,480,000 micros; margin 100 − 95.48 = 4.52 returns
    expect(closed?.trade).toMatchObject({
      id: trade.id,
      closeReason: "liquidation",
      closePrice: "1809.04",
      pnl: "-95.48",
    });
    expect(usdOf(h, "alice")).toBe("9904.52");
  });

  it("short: ask one tick below does nothing; at the level it closes", () => {
    const h = given();
    const trade = opened(h, "alice", { side: "short" });
    expect(ofType(h.price(ETH, "2189.05", "2189.05"), "closed_order")).toEqual([]);
    const [closed] = ofType(h.price(ETH, "2189", "2189.06"), "closed_order");
    // pnl = (200000 − 218906) × 5000 = −94,530,000 micros
    expect(closed?.trade).toMatchObject({
      id: trade.id,
      closeReason: "liquidation",
      closePrice: "2189.06",
      pnl: "-94.53",
    });
    expect(usdOf(h, "alice")).toBe("9905.47");
  });
});

describe("negative balance protection", () => {
  it("a long gapping far past liquidation loses exactly the margin; the house gains exactly it", () => {
    const h = given();
    opened(h, "alice");
    const house = h.state.house.usd;
    const [closed] = ofType(h.price(ETH, "1000", "1000.01"), "closed_order");
    // raw pnl (100000 − 200000) × 5000 = −500 USD, capped at −margin: 400 USD of the loss is waived
    expect(closed?.trade).toMatchObject({
      closeReason: "liquidation",
      closePrice: "1000",
      pnl: "-100",
      lossWaived: "400",
    });
    expect(usdOf(h, "alice")).toBe("9900");
    expect(h.state.house.usd - house).toBe(100_000_000n);
  });

  it("a short gapping far past liquidation loses exactly the margin", () => {
    const h = given();
    opened(h, "alice", { side: "short" });
    const house = h.state.house.usd;
    const [closed] = ofType(h.price(ETH, "2999", "3000"), "closed_order");
    expect(closed?.trade).toMatchObject({ closeReason: "liquidation", closePrice: "3000", pnl: "-100" });
    expect(usdOf(h, "alice")).toBe("9900");
    expect(h.state.house.usd - house).toBe(100_000_000n);
  });

  it("a stop-loss hit by a gap past liquidation is capped the same way", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1900" });
    const [closed] = ofType(h.price(ETH, "1", "1"), "closed_order");
    expect(closed?.trade).toMatchObject({ closeReason: "stop_loss", closePrice: "1", pnl: "-100" });
    expect(usdOf(h, "alice")).toBe("9900");
  });

  it("the whole balance at leverage 100 cannot go negative", () => {
    const h = given({ eth: ["1999.99", "2000"] });
    opened(h, "alice", { margin: "10000", leverage: 100 });
    h.price(ETH, "0.01", "0.01");
    expect(usdOf(h, "alice")).toBe("0");
    expect(h.state.accounts.get("alice")?.openTrades.size).toBe(0);
  });
});

describe("stop-loss versus liquidation", () => {
  it("a stop-loss exactly at the liquidation price wins the tie", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1809.04" });
    const [closed] = ofType(h.price(ETH, "1809.04", "1809.04"), "closed_order");
    expect(closed?.trade).toMatchObject({ closeReason: "stop_loss", closePrice: "1809.04", pnl: "-95.48" });
  });

  it("a long's stop-loss beyond the liquidation price is refused: it could never fire", () => {
    const h = given();
    // liquidation 1809.04; a stop at 1809.03 would always be pre-empted by it
    const { answer } = open(h, "alice", { stopLoss: "1809.03" });
    expect(answer).toMatchObject({ ok: false, error: { code: "INVALID_STOP_LOSS" } });
    expect(!answer.ok && answer.error.message).toBe(
      "The stop-loss is not valid for this trade. stopLoss 1809.03 is below this long's liquidation price 1809.04, " +
        "so it could never fire: a long's stop-loss must be at or above the liquidation price 1809.04 and below the " +
        "current bid 2000.",
    );
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("a short's stop-loss at its liquidation price fires as a stop-loss; beyond it is refused", () => {
    const h = given();
    opened(h, "alice", { side: "short", stopLoss: "2189.06" });
    const beyond = open(h, "alice", { side: "short", stopLoss: "2189.07" }).answer;
    expect(codeOf(beyond)).toBe("INVALID_STOP_LOSS");
    expect(messageOf(beyond)).toContain(
      "stopLoss 2189.07 is above this short's liquidation price 2189.06, so it could never fire: a short's " +
        "stop-loss must be above the current ask 2000 and at or below the liquidation price 2189.06.",
    );
    const [closed] = ofType(h.price(ETH, "2189.07", "2189.07"), "closed_order");
    expect(closed?.trade).toMatchObject({ closeReason: "stop_loss", closePrice: "2189.07" });
  });

  it("trades at the same exit level close oldest first, whatever made the level", () => {
    const h = given({ users: ["alice", "bob"] });
    const a = opened(h, "alice"); // liquidation 1809.04
    const b = opened(h, "bob", { stopLoss: "1809.04" });
    const c = opened(h, "alice", { stopLoss: "1809.04" });
    const closed = ofType(h.price(ETH, "1800", "1800"), "closed_order").map((o) => [o.trade.id, o.trade.closeReason]);
    expect(closed).toEqual([
      [a.id, "liquidation"],
      [b.id, "stop_loss"],
      [c.id, "stop_loss"],
    ]);
  });
});

describe("liquidationTicks against a bigint reference", () => {
  // Independent restatement of the rule, all in bigint: the largest long price / smallest short price at which
  // margin + PnL ≤ mmr × notional(p).
  const reference = (isLong: boolean, M: bigint, e: bigint, q: bigint, mmr: bigint): bigint => {
    if (isLong) {
      const num = (e * q - M) * 1_000_000n;
      return num <= 0n ? 0n : num / (q * (1_000_000n - mmr));
    }
    const num = (M + e * q) * 1_000_000n;
    const den = q * (1_000_000n + mmr);
    return (num + den - 1n) / den;
  };

  it("matches exactly, on both the double fast path and the bigint path", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        // margins that keep to the double fast path, and any up to the 10M USD order limit (the bigint path)
        fc.oneof(fc.integer({ min: 1, max: 100_000_000 }), fc.integer({ min: 1, max: 10_000_000_000_000 })),
        fc.integer({ min: 1, max: 100_000_000 }), // entry price in ticks
        fc.integer({ min: 1, max: 100 }), // leverage
        fc.integer({ min: 0, max: 9_999 }), // mmr ppm (below 1/maxLeverage)
        (isLong, margin, entry, leverage, mmr) => {
          const q = Math.floor((margin * leverage) / entry); // micros per tick, as openTrade derives it (k folded in)
          fc.pre(q > 0 && entry * q <= 10_000_000_000_000);
          const expected = reference(isLong, BigInt(margin), BigInt(entry), BigInt(q), BigInt(mmr));
          expect(BigInt(liquidationTicks(isLong, margin, entry, q, mmr))).toBe(expected);
        },
      ),
      { numRuns: 20_000 },
    );
  });
});
