// Spot market orders: buy at the ask, sell at the bid, total = quantity × price exactly; the house is
// the counterparty. ETH: 1 micro per tick × step; SOL: 100 micros per tick × step.
import { describe, expect, it } from "vitest";
import { ETH, SOL, codeOf, given, messageOf, resultOf, usdOf } from "../testing/spec-support.ts";
import type { EngineHarness } from "../testing/engine-harness.ts";

const spot = (h: EngineHarness, side: "buy" | "sell", quantity: string, asset = "ETH", user = "alice") =>
  h.instruct(user, { kind: "spot_order", asset, side, quantity });

describe("spot_order", () => {
  it("buys at the ask", () => {
    const h = given({ eth: ["2000", "2000.5"] });
    const { answer, outputs } = spot(h, "buy", "0.5");
    // 5000 steps × 200050 ticks = 1,000,250,000 micros
    expect(resultOf(answer, "spot_order")).toEqual({
      kind: "spot_order",
      order: {
        id: "O0-1",
        asset: "ETH",
        side: "buy",
        quantity: "0.5",
        price: "2000.5",
        total: "1000.25",
        executedAt: new Date(h.nowMs).toISOString(),
      },
      balances: { USD: "8999.75", ETH: "0.5", BTC: "0", SOL: "0", ADA: "0" },
    });
    expect(outputs.map((o) => o.type)).toEqual(["balances_changed", "order_response"]);
    expect(h.state.house.holdings[0]).toBe(-5000n);
  });

  it("sells at the bid", () => {
    const h = given({ eth: ["2000", "2000.5"] });
    spot(h, "buy", "0.5");
    const { order, balances } = resultOf(spot(h, "sell", "0.2").answer, "spot_order");
    // 2000 steps × 200000 ticks = 400,000,000 micros; 8999.75 + 400
    expect(order).toMatchObject({ id: "O0-2", side: "sell", quantity: "0.2", price: "2000", total: "400" });
    expect(balances).toMatchObject({ USD: "9399.75", ETH: "0.3" });
  });

  it("prices a market with a coarser step exactly", () => {
    const h = given();
    h.price(SOL, "150.2", "150.25");
    // 150 steps × 15025 ticks × 100 micros = 225,375,000 micros (1.5 × 150.25 = 225.375)
    const buy = resultOf(spot(h, "buy", "1.5", "SOL").answer, "spot_order");
    expect(buy.order).toMatchObject({ price: "150.25", total: "225.375" });
    expect(buy.balances).toMatchObject({ USD: "9774.625", SOL: "1.5" });
    // 1 step × 15020 × 100 = 1,502,000 micros
    const sell = resultOf(spot(h, "sell", "0.01", "SOL").answer, "spot_order");
    expect(sell.order).toMatchObject({ price: "150.2", total: "1.502" });
    expect(sell.balances).toMatchObject({ USD: "9776.127", SOL: "1.49" });
  });

  it("a round trip loses exactly the spread", () => {
    const h = given({ eth: ["1999.99", "2000.01"] });
    spot(h, "buy", "1");
    spot(h, "sell", "1");
    // bought at 2000.01, sold at 1999.99: 1 × 0.02 = 0.02 USD
    expect(usdOf(h, "alice")).toBe("9999.98");
    expect(h.state.house.holdings[0]).toBe(0n);
  });

  it("spends the whole balance exactly, and not a step more", () => {
    const h = given();
    const short = spot(h, "buy", "5.0001").answer; // 5.0001 × 2000 = 10000.2
    expect(codeOf(short)).toBe("INSUFFICIENT_BALANCE");
    expect(messageOf(short)).toBe("The balance does not cover this order. It costs 10000.2 USD; 10000 USD is free.");
    expect(resultOf(spot(h, "buy", "5").answer, "spot_order").balances).toMatchObject({ USD: "0", ETH: "5" });
  });

  it("selling more than held → INSUFFICIENT_BALANCE, nothing changes", () => {
    const h = given();
    spot(h, "buy", "0.3");
    const { answer, outputs } = spot(h, "sell", "0.3001");
    expect(codeOf(answer)).toBe("INSUFFICIENT_BALANCE");
    expect(messageOf(answer)).toBe("The balance does not cover this order. It sells 0.3001 ETH; 0.3 ETH is held.");
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(usdOf(h, "alice")).toBe("9400"); // 10000 − 0.3 × 2000
    expect(codeOf(spot(h, "sell", "0.01", "SOL").answer)).toBe("NO_PRICE");
    h.price(SOL, "100", "100");
    expect(codeOf(spot(h, "sell", "0.01", "SOL").answer)).toBe("INSUFFICIENT_BALANCE");
  });

  it.each(["0", "0.00001", "-1", "1e1", "", "abc"])("quantity %j → INVALID_AMOUNT", (quantity) => {
    const h = given();
    expect(codeOf(spot(h, "buy", quantity).answer)).toBe("INVALID_AMOUNT");
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("INVALID_AMOUNT names the quantity's rule and echoes what was received", () => {
    expect(messageOf(spot(given(), "buy", "0.00001").answer)).toBe(
      "The amount is not a valid positive decimal at this asset's precision. quantity must be a positive amount of " +
        'ETH up to 100000000000 with at most 4 decimals; received "0.00001".',
    );
  });

  it("words a precision of one decimal in the singular", () => {
    expect(messageOf(spot(given(), "buy", "0.05", "ADA").answer)).toContain(
      'quantity must be a positive amount of ADA up to 100000000000000 with at most 1 decimal; received "0.05".',
    );
  });

  it("accepts zeros beyond the step", () => {
    const h = given();
    expect(resultOf(spot(h, "buy", "0.100000").answer, "spot_order").order.quantity).toBe("0.1");
  });

  it("UNKNOWN_ASSET for anything but a configured symbol", () => {
    const h = given();
    for (const asset of ["DOGE", "USD", "eth"]) expect(codeOf(spot(h, "buy", "1", asset).answer)).toBe("UNKNOWN_ASSET");
    expect(messageOf(spot(h, "buy", "1", "USD").answer)).toBe(
      'The asset is not traded here. asset must be one of ETH, BTC, SOL, ADA; received "USD".',
    );
  });

  it("NOTIONAL_TOO_LARGE above maxNotionalMicros; exactly at it is fine", () => {
    const h = given({ params: { maxNotionalMicros: 1_000_000_000 } }); // 1000 USD
    expect(codeOf(spot(h, "buy", "0.5001").answer)).toBe("NOTIONAL_TOO_LARGE"); // 0.5001 × 2000 = 1000.2
    expect(messageOf(spot(h, "sell", "0.5001").answer)).toBe(
      "The order is larger than a limit allows. A spot order may be worth at most 1000 USD; received quantity " +
        "0.5001 ETH, at the current bid 2000.",
    );
    expect(resultOf(spot(h, "buy", "0.5").answer, "spot_order").order.total).toBe("1000");
  });

  it("uses a fresh quote only", () => {
    const h = given();
    h.advance(30_001);
    expect(codeOf(spot(h, "buy", "1").answer)).toBe("STALE_PRICE");
    h.price(ETH, "2000", "2000");
    expect(resultOf(spot(h, "buy", "1").answer, "spot_order").order.total).toBe("2000");
  });

  it("spot holdings and leveraged margin draw on the same USD", () => {
    const h = given();
    spot(h, "buy", "4.9"); // 9800 USD
    expect(
      codeOf(
        h.instruct("alice", { kind: "open_trade", asset: "ETH", side: "long", margin: "200.000001", leverage: 2 })
          .answer,
      ),
    ).toBe("INSUFFICIENT_BALANCE");
  });
});
