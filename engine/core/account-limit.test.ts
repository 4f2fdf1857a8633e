// The account limit: free USD, what the account's pending orders hold and the margin in its open trades stay within
// MAX_UNITS (a billion USD), so a payout's profit is capped against all three, an order leaving unfilled can return
// its reservation, and no close pays less than its margin back on a PnL of zero or more. Out of reach under the
// default per-order limits; these take ETH from 1 to a million USD (its maxPriceTicks) to get there. Invariants,
// the limit among them, are checked after every step (the harness).
import { describe, expect, it } from "vitest";
import { MAX_UNITS, formatUsd } from "../../contract/money.ts";
import { decodeSnapshot, encodeSnapshot } from "../snapshot/codec.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import {
  ETH,
  SOL,
  close,
  codeOf,
  given,
  messageOf,
  ofType,
  opened,
  placed,
  resultOf,
  usdOf,
} from "../testing/spec-support.ts";

const LIMIT = formatUsd(MAX_UNITS); // "1000000000"

/** alice with a limit order holding 1,000 USD and a huge gain closed at a million USD: the payout hits the limit. */
function atTheLimit() {
  const h = given({ eth: ["1", "1"] });
  const order = placed(h, "alice", "0.5", { margin: "1000", leverage: 1 });
  const trade = opened(h, "alice", { margin: "9000", leverage: 100 }); // 900,000 ETH
  h.price(ETH, "1000000", "1000000");
  const closed = resultOf(close(h, "alice", trade.id).answer, "close_trade").trade;
  return { h, order, closed };
}

describe("the account limit counts pending orders' reservations", () => {
  it("caps a payout at the limit less what pending orders hold; the house keeps the rest", () => {
    const { h, closed } = atTheLimit();
    // 1e9 USD less the 1,000 the order holds; the pnl paid is that less the 9,000 margin returned
    expect(usdOf(h, "alice")).toBe("999999000");
    expect(closed.pnl).toBe("999990000");
  });

  it("an order cancelled at the limit returns its reservation to exactly the limit", () => {
    const { h, order } = atTheLimit();
    expect(h.instruct("alice", { kind: "cancel_order", orderId: order.id }).answer.ok).toBe(true);
    expect(usdOf(h, "alice")).toBe(LIMIT);
  });

  it("a zero-PnL close at the limit returns its whole margin", () => {
    const { h, order } = atTheLimit();
    h.instruct("alice", { kind: "cancel_order", orderId: order.id });
    const small = opened(h, "alice", { margin: "100", leverage: 1 });
    expect(usdOf(h, "alice")).toBe("999999900");
    const closed = resultOf(close(h, "alice", small.id).answer, "close_trade").trade;
    expect([closed.pnl, usdOf(h, "alice")]).toEqual(["0", LIMIT]);
  });

  it("refuses a spot sale that would take free USD and reservations past the limit", () => {
    const h = given({ eth: ["1", "1"] });
    expect(h.instruct("alice", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "1" }).answer.ok).toBe(true);
    placed(h, "alice", "0.5", { margin: "1000", leverage: 1 });
    const trade = opened(h, "alice", { margin: "8999", leverage: 100 });
    h.price(ETH, "1000000", "1000000");
    close(h, "alice", trade.id);
    expect(usdOf(h, "alice")).toBe("999999000");
    const sale = h.instruct("alice", { kind: "spot_order", asset: "ETH", side: "sell", quantity: "0.001" });
    expect(codeOf(sale.answer)).toBe("NOTIONAL_TOO_LARGE");
    expect(usdOf(h, "alice")).toBe("999999000");
  });
});

/**
 * alice with a 100 USD trade (100 ETH at 1, or the SOL one given) still open when a huge gain closed at a million
 * USD fills the limit: the payout leaves room for that trade's margin, not more.
 */
function openAtTheLimit(
  small: (h: EngineHarness) => string = (h) => opened(h, "alice", { margin: "100", leverage: 1 }).id,
) {
  const h = given({ eth: ["1", "1"] });
  const smallId = small(h);
  const big = opened(h, "alice", { margin: "9000", leverage: 100 }); // 900,000 ETH
  h.price(ETH, "1000000", "1000000");
  close(h, "alice", big.id);
  expect(usdOf(h, "alice")).toBe("999999900"); // the limit less the open trade's 100 USD margin
  return { h, smallId };
}

describe("the account limit counts the margin in open trades", () => {
  it("a zero-PnL close of a trade opened before the limit filled returns its whole margin", () => {
    const { h, smallId } = openAtTheLimit();
    h.advance(1).price(ETH, "1", "1");
    const closed = resultOf(close(h, "alice", smallId).answer, "close_trade").trade;
    expect([closed.pnl, closed.lossWaived, usdOf(h, "alice")]).toEqual(["0", null, LIMIT]);
  });

  it("a winning close returns its margin, its profit capped at what the limit leaves (none here)", () => {
    const { h, smallId } = openAtTheLimit();
    h.advance(1).price(ETH, "2", "2"); // +100 USD on 100 ETH
    const closed = resultOf(close(h, "alice", smallId).answer, "close_trade").trade;
    expect([closed.pnl, closed.lossWaived, usdOf(h, "alice")]).toEqual(["0", null, LIMIT]);
  });

  it("a partial close at zero PnL returns the part's margin", () => {
    const { h, smallId } = openAtTheLimit();
    h.advance(1).price(ETH, "1", "1");
    const answer = h.instruct("alice", { kind: "close_trade", tradeId: smallId, percent: "50" }).answer;
    const { trade, remaining } = resultOf(answer, "close_trade");
    expect([trade.margin, trade.pnl, remaining?.margin, usdOf(h, "alice")]).toEqual(["50", "0", "50", "999999950"]);
    const rest = resultOf(close(h, "alice", smallId).answer, "close_trade").trade;
    expect([rest.pnl, usdOf(h, "alice")]).toEqual(["0", LIMIT]);
  });

  it("a take-profit (a trigger's close) returns its margin", () => {
    const { h, smallId } = openAtTheLimit((h) => {
      h.price(SOL, "100", "100");
      return opened(h, "alice", { asset: "SOL", margin: "100", leverage: 1, takeProfit: "150" }).id; // 1 SOL
    });
    const closed = ofType(h.advance(1).price(SOL, "150", "150"), "closed_order").map((o) => o.trade);
    expect(closed.map((t) => [t.id, t.closeReason, t.pnl])).toEqual([[smallId, "take_profit", "0"]]);
    expect(usdOf(h, "alice")).toBe(LIMIT);
  });

  it("refuses a spot sale that would take the account past the limit with its open trades' margin", () => {
    const h = given({ eth: ["1", "1"] });
    expect(h.instruct("alice", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "1" }).answer.ok).toBe(true);
    const big = opened(h, "alice", { margin: "9999", leverage: 100 });
    h.price(ETH, "1000000", "1000000");
    close(h, "alice", big.id);
    opened(h, "alice", { margin: "1000", leverage: 1 }); // 0.001 ETH at a million
    expect(usdOf(h, "alice")).toBe("999999000");
    const sale = h.instruct("alice", { kind: "spot_order", asset: "ETH", side: "sell", quantity: "0.001" });
    expect(codeOf(sale.answer)).toBe("NOTIONAL_TOO_LARGE");
    expect(messageOf(sale.answer)).toBe(
      "The order is larger than a limit allows. An account's USD (free, reserved and in open trades) may be at most 1000000000 USD; this sale pays 1000 USD " +
        "and only 0 USD more fits.",
    );
    expect(usdOf(h, "alice")).toBe("999999000");
  });

  it("holds across a snapshot: a restore sums each account's open margin again", () => {
    const { h, smallId } = openAtTheLimit();
    const resumed = EngineHarness.resume(decodeSnapshot(encodeSnapshot(h.state)));
    expect(resumed.state.accounts.get("alice")!.openMarginMicros).toBe(100_000_000);
    resumed.price(ETH, "1", "1");
    // A request id of its own: the resumed harness numbers its requests from r1 again.
    const answer = resumed.instruct("alice", { kind: "close_trade", tradeId: smallId }, "after-restore").answer;
    const closed = resultOf(answer, "close_trade").trade;
    expect([closed.pnl, usdOf(resumed, "alice")]).toEqual(["0", LIMIT]);
  });
});
