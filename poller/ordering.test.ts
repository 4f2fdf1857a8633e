// The ordering gate: per market, only frames in sequence with a changed quote pass; ids compare as big integers;
// an id that jumps implausibly is refused without moving the baseline, and ids that started over are re-based on.
import { describe, expect, it } from "vitest";
import type { FeedQuote } from "./frames.ts";
import { aheadOfEngine, MAX_IDS_PER_SECOND, QuoteGate } from "./ordering.ts";

const quote = (
  updateId: string,
  bid = "100",
  ask = "101",
  market = "ETH_USDC_PERP",
  exchangeTimeUs = "1",
): FeedQuote => ({
  market,
  bid,
  ask,
  updateId,
  exchangeTimeUs,
});
/** An ETH quote at `bid` with id `u`, stamped `ms` milliseconds into the test's exchange time. */
const at = (ms: number, u: number | string | bigint, bid: string) =>
  quote(String(u), bid, "5000", "ETH_USDC_PERP", String(1_736_172_778_000_000 + ms * 1000));

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
    gate.newConnection();
    expect(gate.admit(quote("9999999999999999999999999", "4"))).toBe("accept");
    expect(gate.admit(quote("10000000000000000000000000", "5"))).toBe("accept");
    expect(gate.admit(quote("9999999999999999999999999", "6"))).toBe("stale");
  });

  it("refuses an id that jumps further than a book can count in the time between, and keeps the baseline", () => {
    const resets: string[][] = [];
    const gate = new QuoteGate((...reset) => resets.push(reset));
    expect(gate.admit(at(0, 100, "4000"))).toBe("accept");
    expect(gate.admit(at(1, "9999999999999999999999999", "4000.5"))).toBe("implausible");
    // The next real frame follows the last accepted one, not the refused one.
    expect(gate.admit(at(200, 101, "3000"))).toBe("accept");
    // The bound: a million ids per second of exchange time between the two, plus a second's worth.
    const bound = (ms: number) => (BigInt(1_000 + ms) * MAX_IDS_PER_SECOND) / 1000n;
    expect(gate.admit(at(700, 101n + bound(500), "3001"))).toBe("accept");
    const base = 101n + bound(500);
    expect(gate.admit(at(700, base + bound(0) + 1n, "3002"))).toBe("implausible");
    expect(gate.admit(at(700, base + bound(0), "3003"))).toBe("accept");
    expect(resets).toEqual([]);
  });

  it("takes two frames in sequence with each other, stamped later than the last accepted one, as ids started over", () => {
    const resets: string[][] = [];
    const gate = new QuoteGate((...reset) => resets.push(reset));
    expect(gate.admit(at(0, 1_000_000_000, "4000"))).toBe("accept");
    expect(gate.admit(at(100, 5, "3999"))).toBe("stale"); // one frame: maybe a bad id, so not yet
    expect(gate.admit(at(200, 6, "3998"))).toBe("accept"); // a second that follows it: a new sequence
    expect(resets).toEqual([["ETH_USDC_PERP", "1000000000", "6"]]);
    expect(gate.admit(at(300, 7, "3997"))).toBe("accept");
    expect(gate.admit(at(400, 6, "3996"))).toBe("stale"); // the new baseline holds
    // Ids that restart far above: refused as implausible until a second frame follows the first.
    expect(gate.admit(at(500, "90000000000000000000", "3995"))).toBe("implausible");
    expect(gate.admit(at(600, "90000000000000000001", "3995"))).toBe("accept");
    expect(gate.admit(at(700, "90000000000000000002", "3995"))).toBe("unchanged");
    expect(resets).toHaveLength(2);
  });

  it("a baseline from a bad id holds the market for one frame, not for good", () => {
    const gate = new QuoteGate();
    // The first frame of a connection has nothing to follow, so even a broken id becomes the baseline.
    expect(gate.admit(at(0, "9999999999999999999999999", "4000.5"))).toBe("accept");
    const verdicts = [101, 102, 103].map((u, i) => gate.admit(at(200 * (i + 1), u, String(3000 - i))));
    expect(verdicts).toEqual(["stale", "accept", "accept"]);
  });

  it("never starts over on frames that are not stamped later than the last accepted one", () => {
    const resets: string[][] = [];
    const gate = new QuoteGate((...reset) => resets.push(reset));
    expect(gate.admit(at(1_000, 50, "4000"))).toBe("accept");
    const late = [at(1_000, 10, "3990"), at(999, 11, "3991"), at(500, 12, "3992"), at(1_000, 13, "3993")];
    expect(late.map((q) => gate.admit(q))).toEqual(["stale", "stale", "stale", "stale"]);
    // Out of sequence and later, but the two do not follow each other (the second's id is lower): no reset.
    expect(gate.admit(at(1_100, 30, "3994"))).toBe("stale");
    expect(gate.admit(at(1_200, 20, "3995"))).toBe("stale");
    expect(gate.admit(at(1_300, "90000000000000000000", "3996"))).toBe("implausible");
    expect(resets).toEqual([]);
    expect(gate.admit(at(1_400, 51, "3997"))).toBe("accept");
  });

  it("keeps each market's sequence apart", () => {
    const gate = new QuoteGate();
    expect(gate.admit(quote("50", "1", "2", "BTC_USDC_PERP"))).toBe("accept");
    expect(gate.admit(quote("5", "1", "2", "ETH_USDC_PERP"))).toBe("accept");
    expect(gate.admit(quote("6", "1", "3", "BTC_USDC_PERP"))).toBe("stale");
  });

  it("refuses as stale a new connection's frame stamped before the market's last accepted one", () => {
    const resets: string[][] = [];
    const gate = new QuoteGate((...reset) => resets.push(reset));
    expect(gate.admit(at(1_000, 50, "4000"))).toBe("accept");
    expect(gate.admit(at(1_500, 51, "4001"))).toBe("accept");
    expect(gate.admit(at(1_600, 52, "4001"))).toBe("unchanged"); // accepted in sequence: its time counts too
    gate.newConnection();
    // A gateway that lags: its first frames are older than what was taken, and would put the price back.
    expect(gate.admit(at(1_200, 7, "3990"))).toBe("stale");
    expect(gate.admit(at(1_599, 8, "4000"))).toBe("stale"); // still no baseline on this connection
    expect(gate.admit(at(1_600, 9, "4002"))).toBe("accept"); // as late as the last accepted one: the new baseline
    expect(gate.admit(at(1_700, 10, "4003"))).toBe("accept");
    // Within the connection, ids rule as before: ids that start over are re-based on.
    expect(gate.admit(at(1_800, 1, "4004"))).toBe("stale");
    expect(gate.admit(at(1_900, 2, "4005"))).toBe("accept");
    expect(resets).toEqual([["ETH_USDC_PERP", "10", "2"]]);
    // Each market on its own: BTC has taken nothing yet, so its first frame is its baseline whatever its time.
    expect(gate.admit(quote("3", "1", "2", "BTC_USDC_PERP"))).toBe("accept");
  });

  it("takes the log's last top, before a restart, as the last published one, from the time it began", () => {
    const gate = new QuoteGate();
    const logged = (ms: number, bid: string) => ({ bid, ask: "5000", sinceUs: at(ms, 0, bid).exchangeTimeUs });
    gate.loggedBefore("ETH_USDC_PERP", logged(1_000, "4000"));
    gate.loggedBefore("ETH_USDC_PERP", logged(900, "3000")); // an earlier floor moves nothing
    // A lagging gateway's first frame, older than the top in the log, would put the price back.
    expect(gate.admit(at(800, 7, "3990"))).toBe("stale");
    expect(gate.admit(at(999, 8, "3991"))).toBe("stale");
    expect(gate.laterThanAccepted("ETH_USDC_PERP", at(1_001, 0, "").exchangeTimeUs)).toBe(true);
    // A snapshot of the unchanged book, stamped from the time its top began: in sequence, but nothing new to publish.
    expect(gate.admit(at(1_000, 9, "4000"))).toBe("unchanged");
    expect(gate.admit(at(1_100, 10, "4001"))).toBe("accept");
    // Another market's floor is its own.
    expect(gate.admit(quote("3", "1", "2", "BTC_USDC_PERP"))).toBe("accept");
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
