import { describe, expect, it } from "vitest";
import { codeOf, close, given, isOpen, ofType, open, resultOf, usdOf } from "../testing/spec-support.ts";
import { EngineHarness } from "../testing/engine-harness.ts";

const zeroAssets = { ETH: "0", BTC: "0", SOL: "0", ADA: "0" };

describe("create_account", () => {
  it("grants the starting balance, paid by the house", () => {
    const h = new EngineHarness();
    const { answer, outputs } = h.createAccount("alice");
    expect(resultOf(answer, "create_account")).toEqual({
      kind: "create_account",
      granted: true,
      balances: { USD: "10000", ...zeroAssets },
    });
    expect(outputs.map((o) => o.type)).toEqual(["balances_changed", "order_response"]);
    expect(ofType(outputs, "balances_changed")[0]).toMatchObject({
      userId: "alice",
      seq: 1, // the user's first private output
      balances: { USD: "10000", ...zeroAssets },
    });
    // 10,000 USD = 10,000,000,000 micros left the house
    expect(h.state.house.usd).toBe(-10_000_000_000n);
  });

  it("grants exactly once: a second create_account changes nothing", () => {
    const h = new EngineHarness();
    h.createAccount("alice");
    const { answer, outputs } = h.createAccount("alice");
    expect(resultOf(answer, "create_account")).toEqual({
      kind: "create_account",
      granted: false,
      balances: { USD: "10000", ...zeroAssets },
    });
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(h.state.accounts.get("alice")?.eventSeq).toBe(1);
    expect(usdOf(h, "alice")).toBe("10000");
    expect(h.state.house.usd).toBe(-10_000_000_000n);
  });

  it("a repeated create_account reports the current balances, not a fresh grant", () => {
    const h = given();
    open(h, "alice"); // locks 100 USD of margin
    const { answer } = h.createAccount("alice");
    expect(resultOf(answer, "create_account")).toMatchObject({ granted: false, balances: { USD: "9900" } });
  });

  it("grants each user separately, each numbering its own outputs from 1", () => {
    const h = new EngineHarness();
    h.createAccount("alice");
    const bob = h.createAccount("bob");
    expect(resultOf(bob.answer, "create_account").granted).toBe(true);
    expect(ofType(bob.outputs, "balances_changed")[0]).toMatchObject({ userId: "bob", seq: 1 });
    expect(h.state.house.usd).toBe(-20_000_000_000n);
  });

  it("grants the configured starting balance", () => {
    const h = new EngineHarness({ initialBalanceMicros: 250_500_001 });
    expect(resultOf(h.createAccount("alice").answer, "create_account").balances.USD).toBe("250.500001");
  });
});

describe("instructions from a user without an account", () => {
  it.each([
    ["open_trade", { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 }],
    ["close_trade", { kind: "close_trade", tradeId: "T0-1" }],
    ["spot_order", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "1" }],
  ] as const)("%s → ACCOUNT_NOT_FOUND, and no account appears", (_kind, instruction) => {
    const h = given();
    const { answer, outputs } = h.instruct("mallory", instruction);
    expect(codeOf(answer)).toBe("ACCOUNT_NOT_FOUND");
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
    expect(h.state.accounts.has("mallory")).toBe(false);
  });

  it("cannot close another user's trade by having no account", () => {
    const h = given();
    const trade = resultOf(open(h, "alice").answer, "open_trade").trade;
    expect(codeOf(close(h, "mallory", trade.id).answer)).toBe("ACCOUNT_NOT_FOUND");
    expect(isOpen(h, "alice", trade.id)).toBe(true);
  });
});
