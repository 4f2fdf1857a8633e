// checkInvariants must be able to fail: every engine spec leans on it after each step.
import { describe, expect, it } from "vitest";
import { MAX_UNITS } from "../../contract/money.ts";
import { checkInvariants } from "./invariants.ts";
import { DEFAULT_PARAMS, makeParams, validateParams } from "./params.ts";
import { given, opened } from "../testing/spec-support.ts";

const withTrade = () => {
  const h = given();
  opened(h, "alice", { stopLoss: "1900", takeProfit: "2100" });
  const account = h.state.accounts.get("alice");
  const trade = account?.openTrades.get(1); // T0-1
  if (account === undefined || trade === undefined) throw new Error("setup failed");
  return { state: h.state, account, trade };
};

describe("checkInvariants", () => {
  it("passes on a healthy state", () => {
    expect(() => checkInvariants(withTrade().state)).not.toThrow();
  });

  it("catches USD created from nothing", () => {
    const { state, account } = withTrade();
    account.usd += 1;
    expect(() => checkInvariants(state)).toThrow("USD is not conserved: off by 1 micros");
  });

  it("catches an asset created from nothing", () => {
    const { state, account } = withTrade();
    account.holdings[2] = 7;
    expect(() => checkInvariants(state)).toThrow("asset 2 is not conserved: off by 7");
  });

  it("catches a negative balance even when the books balance", () => {
    const { state, account } = withTrade();
    state.house.usd += BigInt(account.usd + 1);
    account.usd = -1;
    expect(() => checkInvariants(state)).toThrow("usd of alice is negative: -1");
  });

  it("catches a fractional amount", () => {
    const { state, account } = withTrade();
    account.usd += 0.5;
    expect(() => checkInvariants(state)).toThrow(/usd of alice is not an exact amount/);
  });

  it("catches an eventSeq that is not a count", () => {
    for (const bad of [-1, 0.5, Number.NaN]) {
      const { state, account } = withTrade();
      account.eventSeq = bad;
      expect(() => checkInvariants(state)).toThrow(`eventSeq of alice is not a count: ${bad}`);
    }
  });

  it("catches margin that vanished with its trade", () => {
    const { state, account, trade } = withTrade();
    account.openTrades.delete(trade.seq);
    account.openMarginMicros -= trade.marginMicros; // gone from the running sum too: only conservation can tell
    expect(() => checkInvariants(state)).toThrow("USD is not conserved: off by -100000000 micros");
  });

  it("catches an account past the limit only with its open trades' margin counted", () => {
    const { state, account } = withTrade(); // 100 USD of margin open
    const more = MAX_UNITS - 50_000_000 - account.usd;
    account.usd += more;
    state.house.usd -= BigInt(more);
    expect(() => checkInvariants(state)).toThrow(
      "USD of alice (free, reserved and in open trades) is not an exact amount: 1000000050000000",
    );
  });

  it("catches an open margin that is not the sum of the open trades' margins", () => {
    const { state, account } = withTrade();
    account.openMarginMicros -= 1;
    expect(() => checkInvariants(state)).toThrow(
      "open margin of alice is 99999999 micros; its open trades hold 100000000",
    );
  });

  it("catches an open trade missing from its trigger heap", () => {
    const { state, trade } = withTrade();
    state.books[0]!.longExit.remove(trade);
    expect(() => checkInvariants(state)).toThrow("trade T0-1 exit indexing is wrong");
  });

  it("catches a trade the current quote should already have closed", () => {
    const { state } = withTrade();
    const quote = state.quotes[0]!;
    state.quotes[0] = { ...quote, bidTicks: 190_000 }; // the stop-loss level, 1900.00
    expect(() => checkInvariants(state)).toThrow(
      "market 0 has an open trade that should have fired at the current quote",
    );
  });

  it("catches a broken heap order", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1900" });
    opened(h, "alice", { stopLoss: "1950" });
    const [a, b] = [...h.state.accounts.get("alice")!.openTrades.values()];
    // swap the two trades' heap slots behind the heap's back
    const heap = h.state.books[0]!.longExit as unknown as { items: unknown[] };
    [heap.items[0], heap.items[1]] = [heap.items[1], heap.items[0]];
    [a!.exitPos, b!.exitPos] = [b!.exitPos, a!.exitPos];
    expect(() => checkInvariants(h.state)).toThrow(/heap order broken/);
  });
});

describe("engine params", () => {
  it("keep only known keys, so nothing else can ride into a snapshot", () => {
    const p = makeParams({ shard: 2, ...({ redisUrl: "redis://secret@host" } as object) });
    expect(p.shard).toBe(2);
    expect(Object.keys(p)).toEqual(Object.keys(DEFAULT_PARAMS));
    expect(() => validateParams({ ...p, ...({ extra: 1 } as object) })).toThrow("unknown engine parameter(s): extra");
  });
});
