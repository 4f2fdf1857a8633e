// The account limit: free USD plus what the account's pending orders hold stays within MAX_UNITS (a billion USD), so
// a payout is capped against both, an order leaving unfilled can return its reservation, and no later close pays less
// than its margin back on a zero PnL. Out of reach under the default per-order limits; these take ETH from 1 to a
// million USD (its maxPriceTicks) to get there. Invariants are checked after every step (the harness).
import { describe, expect, it } from "vitest";
import { MAX_UNITS, formatUsd } from "../../contract/money.ts";
import { ETH, close, codeOf, given, opened, placed, resultOf, usdOf } from "../testing/spec-support.ts";

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
