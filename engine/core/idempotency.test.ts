// Idempotency: the same request id twice gives the same answer and acts once. Transient refusals
// (NO_PRICE, STALE_PRICE) are not remembered, so a retry may act. The memory is bounded by log time and count.
import { describe, expect, it } from "vitest";
import { ETH, SOL, close, codeOf, given, open, opened, resultOf, usdOf } from "../testing/spec-support.ts";
import { decodeSnapshot, encodeSnapshot } from "../snapshot/codec.ts";
import { EngineHarness } from "../testing/engine-harness.ts";

describe("the same request id twice", () => {
  it("gives the same answer and acts once", () => {
    const h = given();
    const first = open(h, "alice", {}, "req-1");
    h.price(ETH, "2100", "2100"); // the market moves in between: a re-execution would answer differently
    const again = open(h, "alice", {}, "req-1");
    expect(again.answer).toEqual(first.answer);
    expect(again.outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(again.response.requestId).toBe("req-1");
    expect(usdOf(h, "alice")).toBe("9900");
    expect(h.state.accounts.get("alice")?.openTrades.size).toBe(1);
  });

  it("repeats a close's answer without paying twice", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.price(ETH, "2100", "2100");
    const first = h.instruct("alice", { kind: "close_trade", tradeId: trade.id }, "close-1");
    h.price(ETH, "2200", "2200");
    const again = h.instruct("alice", { kind: "close_trade", tradeId: trade.id }, "close-1");
    expect(again.answer).toEqual(first.answer);
    expect(resultOf(again.answer, "close_trade").trade.pnl).toBe("50"); // (2100 − 2000) × 0.5, not re-priced
    expect(usdOf(h, "alice")).toBe("10050");
  });

  it("repeats a spot order's answer without trading twice", () => {
    const h = given();
    const order = { kind: "spot_order", asset: "ETH", side: "buy", quantity: "1" } as const;
    const first = h.instruct("alice", order, "buy-1");
    const again = h.instruct("alice", order, "buy-1");
    expect(again.answer).toEqual(first.answer);
    expect(usdOf(h, "alice")).toBe("8000");
  });

  it("repeats a non-transient refusal even when the request would now succeed", () => {
    const h = given();
    const big = opened(h, "alice", { margin: "9950", leverage: 1 });
    expect(codeOf(open(h, "alice", {}, "req-2").answer)).toBe("INSUFFICIENT_BALANCE"); // 50 USD free
    resultOf(close(h, "alice", big.id).answer, "close_trade");
    expect(codeOf(open(h, "alice", {}, "req-2").answer)).toBe("INSUFFICIENT_BALANCE");
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("repeats a refusal's message as first sent, its numbers of that moment, after a restore too", () => {
    const h = given({ eth: ["1985", "2000"] });
    const first = open(h, "alice", { leverage: 100 }, "req-3").answer; // liquidation 1989.94 ≥ bid 1985
    expect(codeOf(first)).toBe("WOULD_LIQUIDATE");
    h.price(ETH, "1980", "2001"); // a re-execution would name other prices
    expect(JSON.stringify(open(h, "alice", { leverage: 100 }, "req-3").answer)).toBe(JSON.stringify(first));
    const restored = EngineHarness.resume(decodeSnapshot(encodeSnapshot(h.state)));
    expect(JSON.stringify(open(restored, "alice", { leverage: 100 }, "req-3").answer)).toBe(JSON.stringify(first));
  });

  it("is per user: the same id from another user is a different request", () => {
    const h = given({ users: ["alice", "bob"] });
    const a = resultOf(open(h, "alice", {}, "same").answer, "open_trade");
    const b = resultOf(open(h, "bob", {}, "same").answer, "open_trade");
    expect(a.trade.id).not.toBe(b.trade.id);
    expect(usdOf(h, "alice")).toBe("9900");
    expect(usdOf(h, "bob")).toBe("9900");
  });

  it("also for create_account: the repeat still says granted", () => {
    const h = new EngineHarness();
    h.instruct("alice", { kind: "create_account" }, "signup");
    const again = h.instruct("alice", { kind: "create_account" }, "signup");
    expect(resultOf(again.answer, "create_account").granted).toBe(true);
    expect(h.state.house.usd).toBe(-10_000_000_000n);
  });
});

describe("transient refusals are not remembered", () => {
  it("NO_PRICE: a retry with the same id acts once the price arrives", () => {
    const h = given();
    expect(codeOf(open(h, "alice", { asset: "SOL" }, "sol-1").answer)).toBe("NO_PRICE");
    h.price(SOL, "100", "100");
    // 1e9 micros / (10000 ticks × 100) = 1000 steps = 10 SOL
    expect(resultOf(open(h, "alice", { asset: "SOL" }, "sol-1").answer, "open_trade").trade.quantity).toBe("10");
    expect(codeOf(open(h, "alice", { asset: "SOL", margin: "0" }, "sol-2").answer)).toBe("INVALID_AMOUNT");
  });

  it("ACCOUNT_NOT_FOUND: a retry with the same id acts once the account exists", () => {
    const h = given({ users: [] });
    const early = { kind: "spot_order" as const, asset: "ETH", side: "buy" as const, quantity: "1" };
    expect(codeOf(h.instruct("zoe", early, "buy-1").answer)).toBe("ACCOUNT_NOT_FOUND");
    expect(h.state.idempotency.size).toBe(0);
    h.createAccount("zoe");
    expect(resultOf(h.instruct("zoe", early, "buy-1").answer, "spot_order").order.total).toBe("2000"); // 1 ETH at the ask 2000
    expect(usdOf(h, "zoe")).toBe("8000");
  });

  it("STALE_PRICE: a retry with the same id acts once the price is fresh", () => {
    const h = given();
    h.advance(30_001);
    expect(codeOf(open(h, "alice", {}, "eth-1").answer)).toBe("STALE_PRICE");
    h.price(ETH, "2000", "2000");
    expect(resultOf(open(h, "alice", {}, "eth-1").answer, "open_trade").trade.quantity).toBe("0.5");
    // and from then on the success is what is remembered
    expect(open(h, "alice", {}, "eth-1").outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(usdOf(h, "alice")).toBe("9900");
  });
});

describe("the memory is bounded", () => {
  // A forgotten create_account re-runs and answers granted:false, so which ids are remembered is observable.
  const signup = (h: EngineHarness, user: string) =>
    resultOf(h.instruct(user, { kind: "create_account" }, `signup-${user}`).answer, "create_account");

  it("by log time: kept exactly idempotencyWindowMs, dropped one ms later", () => {
    const h = new EngineHarness({ idempotencyWindowMs: 1000 });
    signup(h, "alice");
    h.advance(1000);
    signup(h, "bob"); // alice's entry is exactly 1000 ms old: kept
    expect(signup(h, "alice").granted).toBe(true);
    h.advance(1);
    signup(h, "carol"); // alice's entry is now 1001 ms old: dropped; bob's (1 ms) kept
    expect(signup(h, "bob").granted).toBe(true);
    expect(signup(h, "alice").granted).toBe(false);
    expect(h.state.house.usd).toBe(-30_000_000_000n); // still three grants: re-running did not pay again
  });

  it("an expired id seen again with nothing in between acts again, and is then remembered anew", () => {
    const h = given({ params: { idempotencyWindowMs: 1000 } });
    open(h, "alice", {}, "late");
    h.advance(1001);
    h.price(ETH, "2000", "2000"); // keep the quote fresh; prices do not touch the window
    const second = open(h, "alice", {}, "late"); // the old entry is past its window: this acts
    expect(usdOf(h, "alice")).toBe("9800");
    const third = open(h, "alice", {}, "late"); // and the new answer is the one remembered
    expect(third.answer).toEqual(second.answer);
    expect(usdOf(h, "alice")).toBe("9800");
    expect([...h.state.idempotency.keys()].filter((k) => k === "alice late")).toHaveLength(1);
  });

  it("by count: at most idempotencyMaxEntries; among users holding one each, the oldest goes first", () => {
    const h = new EngineHarness({ idempotencyMaxEntries: 2 });
    signup(h, "alice");
    signup(h, "bob");
    signup(h, "carol");
    expect(h.state.idempotency.size).toBe(2);
    expect(signup(h, "carol").granted).toBe(true);
    expect(signup(h, "alice").granted).toBe(false);
  });

  it("per user: another user's traffic never evicts my requests", () => {
    const h = given({ users: ["victim", "attacker"], params: { idempotencyMaxPerUser: 3 } });
    const first = open(h, "victim", {}, "client-order-1");
    for (let i = 0; i < 20; i++)
      h.instruct("attacker", { kind: "spot_order", asset: "NOPE", side: "buy", quantity: "1" }, `junk-${i}`);
    const retry = open(h, "victim", {}, "client-order-1");
    expect(retry.answer).toEqual(first.answer);
    expect(h.state.accounts.get("victim")?.openTrades.size).toBe(1);
    expect(h.state.idempotency.size).toBe(1 + 1 + 3); // victim's grant and order, the attacker's last three
  });

  it("per user: past the cap a user forgets their own oldest requests", () => {
    const h = given({ params: { idempotencyMaxPerUser: 2 } });
    open(h, "alice", {}, "a");
    open(h, "alice", {}, "b"); // alice holds "b" and "a"; her signup entry was her oldest and went first
    open(h, "alice", {}, "c"); // now "b" and "c": "a" is forgotten
    expect(usdOf(h, "alice")).toBe("9700");
    open(h, "alice", {}, "a"); // acts again
    expect(usdOf(h, "alice")).toBe("9600");
    open(h, "alice", {}, "c"); // still remembered: no new trade
    expect(usdOf(h, "alice")).toBe("9600");
  });

  it("by count, fairly: a flood from one user at the total cap evicts only that user's requests", () => {
    const h = given({ users: ["victim", "bystander", "flooder"], params: { idempotencyMaxEntries: 6 } });
    const first = open(h, "victim", {}, "client-order-1");
    // 3 signups + the victim's order = 4 remembered. junk-0 and junk-1 fill the window to 6; from junk-2 on each
    // add makes 7 and the flooder, holding the most (4, then 4 again after each add), gives up its oldest.
    for (let i = 0; i < 20; i++)
      h.instruct("flooder", { kind: "spot_order", asset: "NOPE", side: "buy", quantity: "1" }, `junk-${i}`);
    expect([...h.state.idempotency.keys()]).toEqual([
      "victim r1",
      "bystander r2",
      "victim client-order-1",
      "flooder junk-17",
      "flooder junk-18",
      "flooder junk-19",
    ]);
    // The retry after a lost answer gets the first answer and opens nothing more.
    const retry = open(h, "victim", {}, "client-order-1");
    expect(retry.answer).toEqual(first.answer);
    expect(retry.outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(h.state.accounts.get("victim")?.openTrades.size).toBe(1);
    expect(usdOf(h, "victim")).toBe("9900");
  });

  it("by count, fairly: between users holding equally many, the one whose oldest is older gives it up", () => {
    const h = new EngineHarness({ idempotencyMaxEntries: 4 });
    const junk = (user: string, requestId: string) =>
      h.instruct(user, { kind: "spot_order", asset: "NOPE", side: "buy", quantity: "1" }, requestId);
    h.createAccount("alice"); // r1
    h.createAccount("bob"); // r2
    junk("alice", "a1");
    junk("bob", "b1");
    h.createAccount("carol"); // r3: 5 entries; alice and bob hold 2 each, alice's r1 is the older: it goes
    expect([...h.state.idempotency.keys()]).toEqual(["bob r2", "alice a1", "bob b1", "carol r3"]);
    junk("alice", "a2"); // alice and bob hold 2 each again; bob's r2 is now the oldest of the two: it goes
    expect([...h.state.idempotency.keys()]).toEqual(["alice a1", "bob b1", "carol r3", "alice a2"]);
    junk("carol", "c1"); // carol holds 2 as alice does, but alice's oldest (a1) is older than carol's (r3): a1 goes
    expect([...h.state.idempotency.keys()]).toEqual(["bob b1", "carol r3", "alice a2", "carol c1"]);
  });

  it("idempotencyMaxEntries 0 remembers nothing", () => {
    const h = given({ params: { idempotencyMaxEntries: 0 } });
    open(h, "alice", {}, "again");
    open(h, "alice", {}, "again");
    expect(usdOf(h, "alice")).toBe("9800");
    expect(h.state.idempotency.size).toBe(0);
  });
});
