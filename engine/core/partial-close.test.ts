// Partial close: `close_trade` with `quantity` or `percent`. Closes at the quote like a full close (long at the bid,
// short at the ask); PnL on the part is exact; released margin = ⌊M × closed / q⌋, the rest of the margin stays
// open. Trades: ETH (1 micro per tick × step), margin 100 USD, leverage 10 unless said.
import { describe, expect, it } from "vitest";
import { ASSETS } from "../../contract/markets.ts";
import type { EngineOutput, Instruction } from "../../contract/messages.ts";
import type { EngineHarness } from "../testing/engine-harness.ts";
import {
  ETH,
  close,
  codeOf,
  given,
  isOpen,
  messageOf,
  ofType,
  open,
  opened,
  placed,
  resultOf,
  usdOf,
} from "../testing/spec-support.ts";
import { tradeSeq } from "./state.ts";

function closeSome(
  h: EngineHarness,
  user: string,
  tradeId: string,
  part: { quantity?: string; percent?: string },
  requestId?: string,
) {
  return h.instruct(user, { kind: "close_trade", tradeId, ...part }, requestId);
}

type ModifyFields = Omit<Extract<Instruction, { kind: "modify_trade" }>, "kind" | "tradeId">;

function modify(h: EngineHarness, user: string, tradeId: string, fields: ModifyFields) {
  return h.instruct(user, { kind: "modify_trade", tradeId, ...fields });
}

const closedBy = (outputs: readonly EngineOutput[]) => ofType(outputs, "closed_order").map((o) => o.trade);

/** The open trade's quantity and margin, in steps and micros, as the engine holds them. */
function held(h: EngineHarness, user: string, tradeId: string) {
  const t = h.state.accounts.get(user)?.openTrades.get(tradeSeq(0, tradeId));
  return t === undefined ? undefined : { steps: t.quantitySteps, micros: t.marginMicros };
}

describe("partial close", () => {
  it("by quantity: a long's part closes at the bid, the rest keeps its entry, leverage and exits", () => {
    const h = given({ eth: ["1999.5", "2000"] });
    const trade = opened(h, "alice", { stopLoss: "1900", takeProfit: "2200" }); // 5000 steps at 2000
    h.price(ETH, "2100", "2100.5");
    const house = h.state.house.usd;
    const { answer, outputs } = closeSome(h, "alice", trade.id, { quantity: "0.2" });
    const result = resultOf(answer, "close_trade");
    // 2000 steps: pnl (210000 − 200000) × 2000 = 20,000,000 micros; released ⌊1e8 × 2000 / 5000⌋ = 40 USD
    expect(result.trade).toEqual({
      ...trade,
      quantity: "0.2",
      margin: "40",
      closeId: `${trade.id}.2`, // the shard's next sequence number after the trade's own (1)
      closePrice: "2100",
      pnl: "20",
      lossWaived: null,
      remainingQuantity: "0.3",
      closeReason: "manual",
      closedAt: new Date(h.nowMs).toISOString(),
    });
    expect(result.remaining).toEqual({ ...trade, quantity: "0.3", margin: "60" });
    // 60 USD on 3000 steps is the whole trade's margin per step: the recomputed level is the one it had
    expect(result.remaining).toMatchObject({
      openPrice: "2000",
      leverage: 10,
      stopLoss: "1900",
      takeProfit: "2200",
      liquidationPrice: "1809.04",
    });
    expect(result.balances.USD).toBe("9960"); // 9900 + 40 + 20
    expect(h.state.house.usd - house).toBe(-20_000_000n);
    expect(outputs.map((o) => o.type)).toEqual(["closed_order", "trade_updated", "balances_changed", "order_response"]);
    expect(ofType(outputs, "closed_order")[0]).toMatchObject({ userId: "alice", trade: result.trade });
    expect(ofType(outputs, "trade_updated")[0]).toMatchObject({
      userId: "alice",
      change: "partial_close",
      trade: result.remaining,
    });
    expect(held(h, "alice", trade.id)).toEqual({ steps: 3000, micros: 60_000_000 });
  });

  it("by percent: a short's part closes at the ask, rounded down to the step", () => {
    const h = given({ eth: ["2000", "2000.5"] });
    const trade = opened(h, "alice", { side: "short" }); // 5000 steps at 2000
    h.price(ETH, "1900", "1900.5");
    const result = resultOf(closeSome(h, "alice", trade.id, { percent: "33.33" }).answer, "close_trade");
    // ⌊5000 × 3333 / 10000⌋ = ⌊1666.5⌋ = 1666 steps; pnl (200000 − 190050) × 1666 = 16,576,700 micros;
    // released ⌊1e8 × 1666 / 5000⌋ = 33,320,000 micros
    expect(result.trade).toMatchObject({
      quantity: "0.1666",
      margin: "33.32",
      closePrice: "1900.5",
      pnl: "16.5767",
      remainingQuantity: "0.3334",
    });
    expect(result.remaining).toMatchObject({ quantity: "0.3334", margin: "66.68", openPrice: "2000" });
    expect(result.balances.USD).toBe("9949.8967"); // 9900 + 33.32 + 16.5767
  });

  it("percent 100 and the whole quantity are full closes, with the trade's own close id", () => {
    const h = given();
    const a = opened(h, "alice");
    const b = opened(h, "alice");
    for (const [trade, part] of [
      [a, { percent: "100" }],
      [b, { quantity: "0.5000" }],
    ] as const) {
      const { answer, outputs } = closeSome(h, "alice", trade.id, part);
      expect(resultOf(answer, "close_trade")).toMatchObject({
        trade: { closeId: trade.id, quantity: "0.5", margin: "100", remainingQuantity: "0" },
        remaining: null,
      });
      expect(outputs.map((o) => o.type)).toEqual(["closed_order", "balances_changed", "order_response"]);
    }
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("closing all but the last step releases ⌊M × (q − 1) / q⌋ and keeps the rest: every micro accounted for", () => {
    const h = given({ eth: ["2000", "2000.01"] });
    const trade = opened(h, "alice"); // ⌊1e9 / 200001⌋ = 4999 steps at 2000.01
    // liquidation ⌊1e6 × (200001 × 4999 − 1e8) / (4999 × 995000)⌋ = ⌊899,804,999e6 / 4,974,005,000⌋ = 180901
    expect(trade).toMatchObject({ quantity: "0.4999", liquidationPrice: "1809.01" });
    const first = resultOf(closeSome(h, "alice", trade.id, { quantity: "0.4998" }).answer, "close_trade");
    // released ⌊1e8 × 4998 / 4999⌋ = 99,979,995 (4999 × 99,979,996 = 499,800,000,004 > 4998e8); 20,005 stay.
    // pnl at the bid 2000: (200000 − 200001) × 4998 = −4998 micros
    expect(first.trade).toMatchObject({ quantity: "0.4998", margin: "99.979995", pnl: "-0.004998" });
    // the rest's level from what it keeps: ⌊1e6 × (200001 − 20005) / 995000⌋ = ⌊179,996e6 / 995,000⌋ = 180900
    expect(first.remaining).toMatchObject({ quantity: "0.0001", margin: "0.020005", liquidationPrice: "1809" });
    expect(first.balances.USD).toBe("9999.974997"); // 9900 + 99.979995 − 0.004998
    const last = resultOf(close(h, "alice", trade.id).answer, "close_trade");
    // the last step: pnl −1 micro, margin 0.020005 back less it
    expect(last.trade).toMatchObject({ closeId: trade.id, quantity: "0.0001", margin: "0.020005", pnl: "-0.000001" });
    // 99,979,995 + 20,005 = the whole 100 USD released; the user lost exactly 1 tick × 4999 steps = 4999 micros
    expect(last.balances.USD).toBe("9999.995001");
    expect(isOpen(h, "alice", trade.id)).toBe(false);
  });

  it("the rest's stop-loss fires on the rest alone", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900", takeProfit: "2200" });
    resultOf(closeSome(h, "alice", trade.id, { percent: "50" }).answer, "close_trade"); // 2500 steps, 50 USD, pnl 0
    expect(usdOf(h, "alice")).toBe("9950");
    const [closed] = ofType(h.price(ETH, "1900", "1900"), "closed_order");
    // (190000 − 200000) × 2500 = −25,000,000 micros on the remaining 50 USD
    expect(closed?.trade).toMatchObject({
      id: trade.id,
      closeId: trade.id,
      closeReason: "stop_loss",
      quantity: "0.25",
      margin: "50",
      pnl: "-25",
      remainingQuantity: "0",
    });
    expect(usdOf(h, "alice")).toBe("9975"); // 9950 + 50 − 25
  });

  it("the rest is liquidated at its level, where its equity is at most its maintenance margin", () => {
    const h = given();
    const trade = opened(h, "alice"); // liquidation 1809.04
    resultOf(closeSome(h, "alice", trade.id, { quantity: "0.2" }).answer, "close_trade"); // 3000 steps, 60 USD stay
    expect(ofType(h.price(ETH, "1809.05", "1809.05"), "closed_order")).toEqual([]);
    const [closed] = ofType(h.price(ETH, "1809.04", "1810"), "closed_order");
    // (180904 − 200000) × 3000 = −57,288,000; 60 − 57.288 = 2.712 returns; maintenance 0.005 × 0.3 × 1809.04 = 2.71356
    expect(closed?.trade).toMatchObject({ closeReason: "liquidation", quantity: "0.3", margin: "60", pnl: "-57.288" });
    expect(usdOf(h, "alice")).toBe("9942.712"); // 9900 + 40 + 2.712
  });

  it("a duplicate request id gets the same answer and closes once", () => {
    const h = given();
    const trade = opened(h, "alice");
    const first = closeSome(h, "alice", trade.id, { percent: "40" }, "part-1");
    h.price(ETH, "2100", "2100");
    const again = closeSome(h, "alice", trade.id, { percent: "40" }, "part-1");
    expect(again.answer).toEqual(first.answer);
    expect(again.outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(held(h, "alice", trade.id)).toEqual({ steps: 3000, micros: 60_000_000 });
    expect(usdOf(h, "alice")).toBe("9940");
  });

  it("a duplicate of the open gets the trade as it opened, not as it is after a partial close", () => {
    const h = given();
    const first = open(h, "alice", {}, "open-1");
    const trade = resultOf(first.answer, "open_trade").trade;
    resultOf(closeSome(h, "alice", trade.id, { quantity: "0.1" }).answer, "close_trade");
    expect(open(h, "alice", {}, "open-1").answer).toEqual(first.answer);
  });

  it("the part closed shows the trailing stop the trade had, as the rest keeps it", () => {
    const h = given({ eth: ["1999.5", "2000"] });
    const trade = opened(h, "alice", { trailingStop: { distance: "50" } }); // 0.5 ETH, trailing from bid 1999.5
    const { trade: part, remaining } = resultOf(
      closeSome(h, "alice", trade.id, { percent: "40" }).answer,
      "close_trade",
    );
    // 40% of 5000 steps = 2000 steps closed; best bid 1999.5, level 1949.5
    const stop = {
      distance: "50",
      percent: null,
      activationPrice: null,
      activated: true,
      bestPrice: "1999.5",
      level: "1949.5",
    };
    expect([part.quantity, part.trailingStop]).toEqual(["0.2", stop]);
    expect([remaining?.quantity, remaining?.trailingStop]).toEqual(["0.3", stop]);
  });
});

// The rest's liquidation level is computed again from the margin and quantity it keeps. Trades here: ETH quoted
// 2973.10 / 2973.20, margin 0.115304, leverage 69 → ⌊7,955,976 / 297,320⌋ = 26 steps, liquidation
// ⌊(297320 × 26 − 115304) × 1e6 / (26 × 995000)⌋ = 294357 (2943.57). Two closes of one step release ⌊115304 / 26⌋ =
// 4434 and ⌊110870 / 25⌋ = 4434, leaving 106436 micros on 24 steps: ⌊(7135680 − 106436) × 1e6 / 23,880,000⌋ = 294356.
describe("the rest's liquidation level after partial closes", () => {
  const QUOTE: [string, string] = ["2973.1", "2973.2"];
  const FIGURES = { margin: "0.115304", leverage: 69 };

  /** Closes one step of the trade twice; returns the second answer's rest and its trade_updated. */
  function closeTwoSteps(h: EngineHarness, tradeId: string) {
    resultOf(closeSome(h, "alice", tradeId, { quantity: "0.0001" }).answer, "close_trade");
    const { answer, outputs } = closeSome(h, "alice", tradeId, { quantity: "0.0001" });
    return { remaining: resultOf(answer, "close_trade").remaining!, updated: ofType(outputs, "trade_updated")[0] };
  }

  it("a long's rest is liquidated where the rule holds for it, as a trade opened with its figures is", () => {
    const h = given({ eth: QUOTE });
    const trade = opened(h, "alice", FIGURES);
    expect(trade).toMatchObject({ quantity: "0.0026", liquidationPrice: "2943.57" });
    const { remaining, updated } = closeTwoSteps(h, trade.id);
    expect(remaining).toMatchObject({ quantity: "0.0024", margin: "0.106436", liquidationPrice: "2943.56" });
    expect(updated).toMatchObject({ change: "partial_close", trade: remaining });
    // a fresh trade of the rest's figures: 24 steps, the same level
    const fresh = opened(h, "alice", { margin: "0.106436", leverage: 69 });
    expect(fresh).toMatchObject({ quantity: "0.0024", liquidationPrice: "2943.56" });
    // At 2943.57 the rest's equity is 106436 + (294357 − 297320) × 24 = 35324 micros, above its maintenance margin
    // 0.005 × 24 × 294357 = 35322.84: not liquidated. At 2943.56: 35300 ≤ 35322.72, liquidated with the fresh one.
    expect(closedBy(h.price(ETH, "2943.57", "2943.6"))).toEqual([]);
    const closed = closedBy(h.price(ETH, "2943.56", "2943.6"));
    expect(closed.map((t) => [t.id, t.closeReason, t.pnl])).toEqual([
      [trade.id, "liquidation", "-0.071136"], // (294356 − 297320) × 24
      [fresh.id, "liquidation", "-0.071136"],
    ]);
  });

  it("a short's rest: its level moves up, away from the ask", () => {
    // short at the bid 2973.10, margin 0.100004, leverage 50: ⌊5,000,200 / 297,310⌋ = 16 steps, liquidation
    // ⌈(100004 + 297310 × 16) × 1e6 / (16 × 1005000)⌉ = 302050. Two one-step closes release 6250 each: 87504 micros
    // on 14 steps, ⌈(87504 + 4162340) × 1e6 / 14,070,000⌉ = 302051. At 302050 the rest's equity would be
    // 87504 − 4740 × 14 = 21144 micros, above its maintenance margin 0.005 × 14 × 302050 = 21143.5.
    const h = given({ eth: ["2973.1", "2973.2"] });
    const trade = opened(h, "alice", { side: "short", margin: "0.100004", leverage: 50 });
    expect(trade).toMatchObject({ quantity: "0.0016", liquidationPrice: "3020.5" });
    const { remaining } = closeTwoSteps(h, trade.id);
    expect(remaining).toMatchObject({ quantity: "0.0014", margin: "0.087504", liquidationPrice: "3020.51" });
    expect(closedBy(h.price(ETH, "3020.4", "3020.5"))).toEqual([]);
    expect(closedBy(h.price(ETH, "3020.4", "3020.51"))[0]).toMatchObject({
      id: trade.id,
      closeReason: "liquidation",
      pnl: "-0.066374", // (297310 − 302051) × 14
    });
  });

  it("a stop-loss inside the level stays the exit; one at the new level is now allowed and wins the tie", () => {
    const h = given({ eth: QUOTE });
    const trade = opened(h, "alice", { ...FIGURES, stopLoss: "2950" });
    const { remaining } = closeTwoSteps(h, trade.id);
    expect(remaining).toMatchObject({ stopLoss: "2950", liquidationPrice: "2943.56" });
    // at the new level, one tick beyond the old one
    const moved = modify(h, "alice", trade.id, { stopLoss: "2943.56" }).answer;
    expect(resultOf(moved, "modify_trade").trade).toMatchObject({ stopLoss: "2943.56", liquidationPrice: "2943.56" });
    expect(closedBy(h.price(ETH, "2943.57", "2943.6"))).toEqual([]);
    expect(closedBy(h.price(ETH, "2943.56", "2943.6"))[0]).toMatchObject({ closeReason: "stop_loss" });
  });

  it("a stop-loss a gapped fill left beyond the level: the rest's new level reaches it, and the stop-loss fires", () => {
    // A long stop at 2973 (26 steps there, liquidation 2943.37) with its stop-loss at 2943.56 fills through a gap
    // at the ask 2973.20: liquidation 2943.57, the stop-loss kept one tick beyond it.
    const h = given({ eth: ["2970", "2970.1"] });
    placed(h, "alice", "2973", { type: "stop", ...FIGURES, stopLoss: "2943.56" });
    const trade = ofType(h.advance(1).price(ETH, ...QUOTE), "trade_opened")[0]!.trade;
    expect(trade).toMatchObject({ quantity: "0.0026", stopLoss: "2943.56", liquidationPrice: "2943.57" });
    const { remaining } = closeTwoSteps(h, trade.id);
    expect(remaining).toMatchObject({ stopLoss: "2943.56", liquidationPrice: "2943.56" });
    expect(closedBy(h.price(ETH, "2943.57", "2943.6"))).toEqual([]);
    expect(closedBy(h.price(ETH, "2943.56", "2943.6"))[0]).toMatchObject({ closeReason: "stop_loss" });
  });

  it("a trailing stop at the new level is no longer beaten by liquidation", () => {
    // trailing from the bid 2973.10 at a distance of 29.54: level 2943.56, one tick below the old liquidation
    // level, at the new one; a tie between trailing stop and liquidation goes to the trailing stop
    const h = given({ eth: QUOTE });
    const trade = opened(h, "alice", { ...FIGURES, trailingStop: { distance: "29.54" } });
    expect(trade.trailingStop).toMatchObject({ level: "2943.56" });
    // another long with its stop-loss at the old level, so the exit heap holds two trades to order
    const other = opened(h, "alice", { stopLoss: "2943.57" });
    const { remaining } = closeTwoSteps(h, trade.id);
    expect(remaining).toMatchObject({ liquidationPrice: "2943.56", trailingStop: { level: "2943.56" } });
    expect(closedBy(h.price(ETH, "2943.57", "2943.6")).map((t) => t.id)).toEqual([other.id]);
    expect(closedBy(h.price(ETH, "2943.56", "2943.6"))[0]).toMatchObject({
      id: trade.id,
      closeReason: "trailing_stop",
      closePrice: "2943.56",
    });
  });
});

describe("partial close refusals", () => {
  const refusal = (part: { quantity?: string; percent?: string }) => {
    const h = given();
    const trade = opened(h, "alice");
    const { answer, outputs } = closeSome(h, "alice", trade.id, part);
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(held(h, "alice", trade.id)).toEqual({ steps: 5000, micros: 100_000_000 });
    expect(usdOf(h, "alice")).toBe("9900");
    return { code: codeOf(answer), message: messageOf(answer) };
  };

  it("more than the quantity", () => {
    expect(refusal({ quantity: "0.5001" })).toEqual({
      code: "INVALID_CLOSE_QUANTITY",
      message: "The quantity to close is not valid for this trade. quantity 0.5001 is more than the trade's 0.5 ETH.",
    });
  });

  it("both quantity and percent", () => {
    expect(refusal({ quantity: "0.1", percent: "10" })).toEqual({
      code: "INVALID_CLOSE_QUANTITY",
      message:
        'The quantity to close is not valid for this trade. Give quantity or percent, not both; received quantity "0.1" and percent "10".',
    });
  });

  it.each(["0", "0.00001", "0.0000"])("quantity %j", (quantity) => {
    expect(refusal({ quantity })).toEqual({
      code: "INVALID_CLOSE_QUANTITY",
      message:
        "The quantity to close is not valid for this trade. quantity must be a positive amount of ETH with at most " +
        `4 decimals; received "${quantity}".`,
    });
  });

  it("quantity finer than ADA's single decimal: the step worded in the singular", () => {
    const h = given();
    h.price("ADA_USDC_PERP", "0.45677", "0.45678");
    const trade = opened(h, "alice", { asset: "ADA", margin: "10", leverage: 3 });
    expect(messageOf(closeSome(h, "alice", trade.id, { quantity: "0.05" }).answer)).toBe(
      "The quantity to close is not valid for this trade. quantity must be a positive amount of ADA with at most " +
        '1 decimal; received "0.05".',
    );
  });

  it.each(["0", "100.01", "12.345", "101"])("percent %j", (percent) => {
    expect(refusal({ percent })).toEqual({
      code: "INVALID_CLOSE_QUANTITY",
      message:
        "The quantity to close is not valid for this trade. percent must be more than 0 and at most 100, with at " +
        `most 2 decimals; received "${percent}".`,
    });
  });

  it("a percent that rounds down to no step", () => {
    // ⌊5000 × 1 / 10000⌋ = 0; 0.03 % would be ⌊1.5⌋ = 1 step
    expect(refusal({ percent: "0.01" })).toEqual({
      code: "INVALID_CLOSE_QUANTITY",
      message:
        "The quantity to close is not valid for this trade. percent 0.01 of the trade's 0.5 ETH is less than one " +
        "step (0.0001 ETH).",
    });
  });

  it("a remainder below the market's minimum; at the minimum, or nothing left, is fine", () => {
    const assets = ASSETS.map((a) => (a.symbol === "ETH" ? { ...a, minQuantitySteps: 100 } : a));
    const h = given({ params: { assets } });
    const trade = opened(h, "alice"); // 5000 steps
    const below = closeSome(h, "alice", trade.id, { quantity: "0.4901" }).answer;
    expect(codeOf(below)).toBe("REMAINDER_TOO_SMALL");
    expect(messageOf(below)).toBe(
      "What would stay open is below the market's minimum quantity. Closing 0.4901 ETH of 0.5 ETH would leave " +
        "0.0099 ETH open; the minimum is 0.01 ETH. Close all of it, or less.",
    );
    expect(held(h, "alice", trade.id)).toEqual({ steps: 5000, micros: 100_000_000 });
    const atMinimum = resultOf(closeSome(h, "alice", trade.id, { quantity: "0.49" }).answer, "close_trade");
    expect(atMinimum.remaining).toMatchObject({ quantity: "0.01", margin: "2" });
    expect(resultOf(closeSome(h, "alice", trade.id, { percent: "100" }).answer, "close_trade").remaining).toBeNull();
  });

  it("TRADE_NOT_FOUND for another user's trade, which stays whole", () => {
    const h = given({ users: ["alice", "bob"] });
    const trade = opened(h, "alice");
    const { answer, outputs } = closeSome(h, "bob", trade.id, { quantity: "0.1" });
    expect(codeOf(answer)).toBe("TRADE_NOT_FOUND");
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(held(h, "alice", trade.id)).toEqual({ steps: 5000, micros: 100_000_000 });
    expect(usdOf(h, "bob")).toBe("10000");
  });

  it("STALE_PRICE leaves the trade whole", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.advance(30_001);
    expect(codeOf(closeSome(h, "alice", trade.id, { percent: "50" }).answer)).toBe("STALE_PRICE");
    expect(held(h, "alice", trade.id)).toEqual({ steps: 5000, micros: 100_000_000 });
  });
});
