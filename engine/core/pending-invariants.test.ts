// The pending-order invariants must be able to fail: every engine spec leans on them after each step.
import { describe, expect, it } from "vitest";
import { checkInvariants } from "./invariants.ts";
import { entry, given, placed, resultOf } from "../testing/spec-support.ts";

/** alice: P0-1 long limit 1990 (100 USD) and the pair P0-2 long stop 2010 (100) / P0-3 short stop 1990 (60). */
const withOrders = () => {
  const h = given({ eth: ["2000", "2001"] });
  placed(h, "alice", "1990", { expiresAtMs: h.nowMs + 1_000 });
  resultOf(
    h.instruct("alice", {
      kind: "place_oco",
      legs: [entry("2010", { type: "stop" }), entry("1990", { side: "short", type: "stop", margin: "60" })],
    }).answer,
    "place_oco",
  );
  const account = h.state.accounts.get("alice")!;
  const [lone, first, second] = [...account.pendingOrders.values()];
  return { h, state: h.state, account, lone: lone!, first: first!, second: second! };
};

describe("checkInvariants: pending orders", () => {
  it("passes on a healthy state, counting the pair's reservation once, at its larger margin", () => {
    const { state, account } = withOrders();
    expect(account.usd).toBe((10_000 - 100 - 100) * 1_000_000);
    expect(() => checkInvariants(state)).not.toThrow();
  });

  it("catches a reservation that vanished with its order", () => {
    const { state, account, lone } = withOrders();
    account.pendingOrders.delete(lone.seq);
    expect(() => checkInvariants(state)).toThrow("USD is not conserved: off by -100000000 micros");
  });

  it("catches a one-sided OCO link", () => {
    const { state, first } = withOrders();
    first.oco = undefined;
    expect(() => checkInvariants(state)).toThrow("order P0-3 has a broken one-cancels-other link");
  });

  it("catches an order left in the book that the current quote fills", () => {
    const { state, lone } = withOrders();
    state.quotes[0] = { ...state.quotes[0]!, askTicks: lone.priceTicks };
    expect(() => checkInvariants(state)).toThrow("market 0 has a pending order that should have filled");
  });

  it("catches an order past its expiry still pending", () => {
    const { state, lone } = withOrders();
    state.lastInputMs = lone.expiresAtMs;
    expect(() => checkInvariants(state)).toThrow("order P0-1 should have expired");
  });

  it("catches an order missing from its fill heap", () => {
    const { state, second } = withOrders();
    state.pendingBooks[0]!.shortStop.remove(second);
    expect(() => checkInvariants(state)).toThrow("order P0-3 is not in its fill heap");
  });
});
