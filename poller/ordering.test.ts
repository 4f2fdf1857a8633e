// The ordering gate: per market, only newer frames with a changed quote pass; ids compare as big integers.
import { describe, expect, it } from "vitest";
import type { FeedQuote } from "./frames.ts";
import { aheadOfEngine, QuoteGate } from "./ordering.ts";

const quote = (updateId: string, bid = "100", ask = "101", market = "ETH_USDC_PERP"): FeedQuote => ({
  market,
  bid,
  ask,
  updateId,
  exchangeTimeUs: "1",
});

describe("QuoteGate", () => {
  it("accepts increasing ids and drops out-of-order and duplicate ones as stale", () => {
    const gate = new QuoteGate();
    const verdicts = [
      gate.admit(quote("10", "100")),
      gate.admit(quote("9", "99")), // older
      gate.admit(quote("10", "98")), // duplicate id
      gate.admit(quote("12", "97")),
      gate.admit(quote("11", "96")), // arrived late
    ];
    expect(verdicts).toEqual(["accept", "stale", "stale", "accept", "stale"]);
  });

  it("drops a newer frame whose bid and ask did not change, but remembers its id", () => {
    const gate = new QuoteGate();
    expect(gate.admit(quote("1"))).toBe("accept");
    expect(gate.admit(quote("2"))).toBe("unchanged");
    expect(gate.admit(quote("2", "100.5"))).toBe("stale");
    expect(gate.admit(quote("3", "100", "101.5"))).toBe("accept");
  });

  it("compares ids as big integers, not as JS numbers or text", () => {
    const gate = new QuoteGate();
    expect(gate.admit(quote("9007199254740993", "1"))).toBe("accept");
    // Equal as JS numbers (both round to 2^53), yet smaller: must be stale.
    expect(Number("9007199254740992")).toBe(Number("9007199254740993"));
    expect(gate.admit(quote("9007199254740992", "2"))).toBe("stale");
    expect(gate.admit(quote("9007199254740994", "3"))).toBe("accept");
    // Longer is larger even where text order says otherwise.
    expect(gate.admit(quote("10000000000000000000000000", "4"))).toBe("accept");
    expect(gate.admit(quote("9999999999999999999999999", "5"))).toBe("stale");
  });

  it("keeps each market's sequence apart", () => {
    const gate = new QuoteGate();
    expect(gate.admit(quote("50", "1", "2", "BTC_USDC_PERP"))).toBe("accept");
    expect(gate.admit(quote("5", "1", "2", "ETH_USDC_PERP"))).toBe("accept");
    expect(gate.admit(quote("6", "1", "3", "BTC_USDC_PERP"))).toBe("stale");
  });

  it("restarts id comparison on a new connection but still drops an unchanged quote", () => {
    const gate = new QuoteGate();
    expect(gate.admit(quote("1000", "100"))).toBe("accept");
    gate.newConnection();
    expect(gate.admit(quote("1", "100"))).toBe("unchanged");
    expect(gate.admit(quote("2", "101"))).toBe("accept");
    expect(gate.admit(quote("1", "102"))).toBe("stale");
  });
});

describe("aheadOfEngine", () => {
  it("is the engine's rule: more than its 5 s (in whole ms) ahead of log time is from the future", () => {
    const nowMs = 1_736_172_778_000;
    const us = (ms: number) => String(ms * 1000);
    expect(aheadOfEngine(us(nowMs + 5_000), nowMs)).toBe(false);
    expect(aheadOfEngine(String((nowMs + 5_000) * 1000 + 999), nowMs)).toBe(false); // truncated to whole ms
    expect(aheadOfEngine(us(nowMs + 5_001), nowMs)).toBe(true);
    expect(aheadOfEngine(us(nowMs - 60_000), nowMs)).toBe(false); // behind is not this rule's business
  });
});
