// Placing, cancelling and expiring pending entry orders. Defaults: ETH long limit, margin 100 USD, leverage 10;
// ETH quotes bid 2000 / ask 2001 unless said otherwise. ETH is 1 micro per tick × step.
import { describe, expect, it } from "vitest";
import type { OrderView } from "../../contract/messages.ts";
import {
  codeOf,
  entry,
  ETH,
  given,
  messageOf,
  ofType,
  place,
  placed,
  resultOf,
  usdOf,
} from "../testing/spec-support.ts";

const DAY = 24 * 3600 * 1000;

describe("place_order", () => {
  it("reserves the margin from free USD and shows the order pending", () => {
    const h = given({ eth: ["2000", "2001"] });
    const { answer, outputs } = place(h, "alice", "1990", { stopLoss: "1900", takeProfit: "2100" });
    const { order, balances } = resultOf(answer, "place_order");
    const at = new Date(h.nowMs).toISOString();
    expect(order).toEqual<OrderView>({
      id: "P0-1",
      asset: "ETH",
      side: "long",
      type: "limit",
      price: "1990",
      margin: "100",
      leverage: 10,
      stopLoss: "1900",
      takeProfit: "2100",
      trailingStop: null,
      expiresAt: null,
      ocoWith: null,
      status: "pending",
      placedAt: at,
      updatedAt: at,
      fillPrice: null,
      tradeId: null,
      reason: null,
    });
    expect(balances.USD).toBe("9900");
    expect(outputs.map((o) => o.type)).toEqual(["order_updated", "balances_changed", "order_response"]);
    expect(ofType(outputs, "order_updated")[0]).toMatchObject({ userId: "alice", order });
    expect(h.state.accounts.get("alice")!.pendingOrders.size).toBe(1);
  });

  it("refuses each kind on the wrong side of the market (it would fill at once); one tick away is accepted", () => {
    const h = given({ eth: ["2000", "2001"] });
    // long limit fills when ask ≤ price; long stop when ask ≥ price; short limit when bid ≥ price; short stop bid ≤ price
    const refused = [
      { price: "2001", fields: {} },
      { price: "2001", fields: { type: "stop" as const } },
      { price: "2000", fields: { side: "short" as const } },
      { price: "2000", fields: { side: "short" as const, type: "stop" as const } },
    ];
    for (const { price, fields } of refused)
      expect(codeOf(place(h, "alice", price, fields).answer)).toBe("WOULD_FILL_NOW");
    expect(messageOf(place(h, "alice", "2001").answer)).toContain(
      "A long limit at 2001 would fill at the current ask 2001.",
    );
    expect(usdOf(h, "alice")).toBe("10000");
    placed(h, "alice", "2000.99");
    placed(h, "alice", "2001.01", { type: "stop" });
    placed(h, "alice", "2000.01", { side: "short" });
    placed(h, "alice", "1999.99", { side: "short", type: "stop" });
    expect(usdOf(h, "alice")).toBe("9600");
  });

  it("checks exits against the order price, and a stop-loss beyond the liquidation level at that price", () => {
    const h = given({ eth: ["2000", "2001"] });
    expect(codeOf(place(h, "alice", "1990", { stopLoss: "1990" }).answer)).toBe("INVALID_STOP_LOSS");
    expect(codeOf(place(h, "alice", "1990", { takeProfit: "1990" }).answer)).toBe("INVALID_TAKE_PROFIT");
    expect(codeOf(place(h, "alice", "2010", { side: "short", stopLoss: "2010" }).answer)).toBe("INVALID_STOP_LOSS");
    expect(codeOf(place(h, "alice", "2010", { side: "short", takeProfit: "2010" }).answer)).toBe("INVALID_TAKE_PROFIT");
    // At 1990: 1e9 / 199000 → 5025 steps; liquidation ⌊(199000 × 5025 − 1e8) × 1e6 / (5025 × 995000)⌋ = 179999.
    const beyond = place(h, "alice", "1990", { stopLoss: "1799.98" }).answer;
    expect(codeOf(beyond)).toBe("INVALID_STOP_LOSS");
    expect(messageOf(beyond)).toContain("liquidation price 1799.99");
    // The stop-loss is checked against the order price (1990), not the current bid (2000): 1995 is refused.
    expect(codeOf(place(h, "alice", "1990", { stopLoss: "1995" }).answer)).toBe("INVALID_STOP_LOSS");
    expect(placed(h, "alice", "1990", { stopLoss: "1799.99" }).stopLoss).toBe("1799.99");
  });

  it("refuses a bad price, expiry, trailing stop, size, balance or count, naming what was wrong", () => {
    const h = given({ eth: ["2000", "2001"], params: { maxPendingOrdersPerUser: 2 } });
    expect(codeOf(place(h, "alice", "0").answer)).toBe("INVALID_PRICE");
    expect(messageOf(place(h, "alice", "1990.001").answer)).toContain("at most 2 decimals; received 1990.001");
    expect(messageOf(place(h, "alice", "1000000.01").answer)).toContain(
      "Use a positive price up to 1000000 with at most 2 decimals; received 1000000.01.",
    );
    expect(codeOf(place(h, "alice", "1990", { expiresAtMs: h.nowMs }).answer)).toBe("INVALID_EXPIRY");
    expect(codeOf(place(h, "alice", "1990", { expiresAtMs: h.nowMs + 90 * DAY + 1 }).answer)).toBe("INVALID_EXPIRY");
    const iso = (ms: number) => new Date(ms).toISOString();
    // Named as the request names it, with what came.
    expect(messageOf(place(h, "alice", "1990", { expiresAtMs: h.nowMs }).answer)).toBe(
      `expiresAt must be a time after now and within the allowed range. Allowed: after ${iso(h.nowMs)}, up to ` +
        `${iso(h.nowMs + 90 * DAY)}; received ${iso(h.nowMs)}.`,
    );
    // Past any date a clock can show: refused, and said as the number received.
    expect(messageOf(place(h, "alice", "1990", { expiresAtMs: 9e15 }).answer)).toContain("received 9000000000000000.");
    expect(codeOf(place(h, "alice", "1990", { margin: "0.0001", leverage: 1 }).answer)).toBe("QUANTITY_TOO_SMALL");
    expect(codeOf(place(h, "alice", "1990", { margin: "10000.01" }).answer)).toBe("INSUFFICIENT_BALANCE");
    expect(codeOf(place(h, "alice", "1990", { asset: "DOGE" }).answer)).toBe("UNKNOWN_ASSET");
    expect(codeOf(place(h, "alice", "30000", { asset: "BTC" }).answer)).toBe("NO_PRICE");
    expect(placed(h, "alice", "1990", { expiresAtMs: h.nowMs + 90 * DAY }).expiresAt).toBe(
      new Date(h.nowMs + 90 * DAY).toISOString(),
    );
    placed(h, "alice", "1980");
    expect(codeOf(place(h, "alice", "1970").answer)).toBe("TOO_MANY_PENDING_ORDERS");
    expect(messageOf(place(h, "alice", "1970").answer)).toBe(
      "The account has reached its limit of pending orders. The limit is 2; 2 are pending.",
    );
    expect(usdOf(h, "alice")).toBe("9800");
  });

  it("TOO_MANY_PENDING_ORDERS for an OCO pair counts both legs, and says so", () => {
    const h = given({ eth: ["2000", "2001"], params: { maxPendingOrdersPerUser: 3 } });
    placed(h, "alice", "1990");
    placed(h, "alice", "1980");
    const { answer } = h.instruct("alice", { kind: "place_oco", legs: [entry("1970"), entry("1960")] });
    expect(messageOf(answer)).toBe(
      "The account has reached its limit of pending orders. The limit is 3; 2 are pending, and a pair adds 2.",
    );
  });

  it("refuses a trailing stop before anything else, whatever its terms, as not supported on pending orders", () => {
    const h = given({ eth: ["2000", "2001"] });
    const unsupported =
      "The trailing stop is not valid for this trade. A trailing stop is not supported on pending orders yet.";
    for (const fields of [
      { trailingStop: { distance: "10" } },
      { trailingStop: { distance: "0" } },
      { trailingStop: { distance: "10", percent: "1" } },
      { trailingStop: { percent: "100" } },
      { trailingStop: { distance: "10" }, asset: "DOGE" },
      { trailingStop: { distance: "10" }, margin: "0" },
    ]) {
      expect(messageOf(place(h, "alice", "1990", fields).answer)).toBe(unsupported);
    }
    const oco = h.instruct("alice", {
      kind: "place_oco",
      legs: [entry("1990"), entry("1980", { trailingStop: { distance: "0" } })],
    });
    expect(messageOf(oco.answer)).toBe(`legs.1: ${unsupported}`);
    // The second leg's before the first leg's other checks: 2100 is above the ask, a long limit there would fill now.
    const secondFirst = h.instruct("alice", {
      kind: "place_oco",
      legs: [entry("2100"), entry("1900", { trailingStop: { distance: "10" } })],
    });
    expect(messageOf(secondFirst.answer)).toBe(`legs.1: ${unsupported}`);
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("a leg's refusal that names its field names it within the leg, as the API names a leg's field", () => {
    const h = given({ eth: ["2000", "2001"] });
    const oco = h.instruct("alice", { kind: "place_oco", legs: [entry("1990"), entry("1980", { leverage: 500 })] });
    expect(codeOf(oco.answer)).toBe("INVALID_LEVERAGE");
    expect(messageOf(oco.answer)).toBe("legs.1.leverage: expected a whole number from 1 to 100, received 500.");
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("WOULD_LIQUIDATE at the order price names the leverage, the price and the liquidation price", () => {
    // Unreachable under valid params (maintenanceMarginPpm × maxLeverage < 100 %: a trade opened at a price is never
    // liquidatable at it); a maintenance margin of 2 % at leverage 100 reaches the check.
    const h = given({ eth: ["2000", "2001"] });
    Object.assign(h.state, { params: { ...h.state.params, maintenanceMarginPpm: 20_000 } });
    const { answer } = place(h, "alice", "1990", { leverage: 100 });
    expect(codeOf(answer)).toBe("WOULD_LIQUIDATE");
    // 1e10 / 199000 → 50251 steps; liquidation ⌊(199000 × 50251 − 1e8) × 1e6 / (50251 × 980000)⌋ = 201030.
    expect(messageOf(answer)).toBe(
      "The trade would be liquidated as soon as it opened; lower the leverage. At leverage 100, a long opened at " +
        "the order price 1990 has liquidation price 2010.3, at or above that price.",
    );
  });

  it("needs a fresh quote, as open_trade does", () => {
    const h = given({ eth: ["2000", "2001"] });
    h.advance(30_001);
    expect(codeOf(place(h, "alice", "1990").answer)).toBe("STALE_PRICE");
  });

  it("a duplicate request id gets the same answer and acts once", () => {
    const h = given({ eth: ["2000", "2001"] });
    const first = place(h, "alice", "1990", {}, "same");
    const again = place(h, "alice", "1990", {}, "same");
    expect(again.answer).toEqual(first.answer);
    expect(again.outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(h.state.accounts.get("alice")!.pendingOrders.size).toBe(1);
    expect(usdOf(h, "alice")).toBe("9900");
    const cancel = h.instruct("alice", { kind: "cancel_order", orderId: "P0-1" }, "c");
    expect(h.instruct("alice", { kind: "cancel_order", orderId: "P0-1" }, "c").answer).toEqual(cancel.answer);
    expect(usdOf(h, "alice")).toBe("10000");
  });
});

describe("cancel_order", () => {
  it("returns the reservation and shows the order cancelled by the user", () => {
    const h = given({ users: ["alice", "bob"], eth: ["2000", "2001"] });
    placed(h, "alice", "1990");
    h.advance(5);
    const { answer, outputs } = h.instruct("alice", { kind: "cancel_order", orderId: "P0-1" });
    const { order, balances } = resultOf(answer, "cancel_order");
    expect(order).toMatchObject({
      id: "P0-1",
      status: "cancelled",
      updatedAt: new Date(h.nowMs).toISOString(),
      reason: { code: "USER_CANCELLED" },
    });
    expect(balances.USD).toBe("10000");
    expect(outputs.map((o) => o.type)).toEqual(["order_updated", "balances_changed", "order_response"]);
  });

  it("refuses an unknown id, another user's order, and one no longer pending", () => {
    const h = given({ users: ["alice", "bob"], eth: ["2000", "2001"] });
    placed(h, "alice", "1990");
    for (const orderId of ["P0-2", "T0-1", "O0-1", "P0-01", "P1-1"]) {
      expect(codeOf(h.instruct("alice", { kind: "cancel_order", orderId }).answer)).toBe("ORDER_NOT_FOUND");
    }
    expect(codeOf(h.instruct("bob", { kind: "cancel_order", orderId: "P0-1" }).answer)).toBe("ORDER_NOT_FOUND");
    // The field first, then what it takes and the id received, as the API's own checks word a refusal.
    expect(messageOf(h.instruct("bob", { kind: "cancel_order", orderId: "P0-1" }).answer)).toBe(
      'orderId: expected the id of a pending order of this account, received "P0-1".',
    );
    expect(usdOf(h, "alice")).toBe("9900");
    // Filled: ask 1990 ≤ 1990. A cancel that arrives after the fill is refused and changes nothing.
    h.price(ETH, "1989", "1990");
    expect(h.state.accounts.get("alice")!.openTrades.size).toBe(1);
    expect(codeOf(h.instruct("alice", { kind: "cancel_order", orderId: "P0-1" }).answer)).toBe("ORDER_NOT_FOUND");
    expect(usdOf(h, "alice")).toBe("9900");
    expect(h.state.accounts.get("alice")!.openTrades.size).toBe(1);
  });
});

describe("expiry by log time", () => {
  it("an order expiring at T fills on an input before T, and expires before an input at T is applied", () => {
    const h = given({ users: ["alice", "bob"], eth: ["2000", "2001"] });
    const t = h.nowMs + 1_000;
    placed(h, "alice", "1990", { expiresAtMs: t }); // P0-1
    placed(h, "bob", "1990", { expiresAtMs: t }); // P0-2
    h.advance(999); // T − 1: bob's fills
    h.price(ETH, "1989", "1990");
    expect(h.state.accounts.get("bob")!.openTrades.size).toBe(1);
    // alice's was filled too at T − 1; place another to watch expire exactly at T.
    expect(h.state.accounts.get("alice")!.openTrades.size).toBe(1);
    h.price(ETH, "2000", "2001");
    const expiring = placed(h, "alice", "1990", { expiresAtMs: t });
    expect(expiring.id).toBe("P0-5"); // T0-3 and T0-4 were the two fills
    h.advance(1); // T: a quote that would fill it arrives, but the order has expired first
    const outputs = h.price(ETH, "1989", "1990");
    expect(outputs.map((o) => o.type)).toEqual(["order_updated", "balances_changed", "quote_updated"]);
    expect(ofType(outputs, "order_updated")[0]!.order).toMatchObject({
      id: "P0-5",
      status: "expired",
      updatedAt: new Date(t).toISOString(),
      reason: { code: "EXPIRED" },
      tradeId: null,
    });
    expect(h.state.accounts.get("alice")!.openTrades.size).toBe(1);
    expect(usdOf(h, "alice")).toBe("9900");
  });

  it("any input expires due orders, an instruction of another user included", () => {
    const h = given({ users: ["alice", "bob"], eth: ["2000", "2001"] });
    placed(h, "alice", "1990", { expiresAtMs: h.nowMs + 10 });
    h.advance(10);
    const { outputs } = h.createAccount("carol");
    expect(outputs.map((o) => o.type)).toEqual([
      "order_updated",
      "balances_changed",
      "balances_changed",
      "order_response",
    ]);
    expect(outputs[1]).toMatchObject({ userId: "alice", balances: { USD: "10000" } });
    expect(h.state.expiries.size).toBe(0);
  });
});
