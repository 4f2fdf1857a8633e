// Trailing stops. Every trade: ETH opened at 2000 (bid = ask = 2000 unless said), margin 100, leverage 10 → 0.5 ETH
// (5000 steps × 1 micro per tick), so pnl = Δprice × 0.5 USD; a long's liquidation price is 1809.04, a short's 2189.06.
import { describe, expect, it } from "vitest";
import type { EngineOutput, TradeView } from "../../contract/messages.ts";
import { decodeSnapshot, encodeSnapshot } from "../snapshot/codec.ts";
import { stateHash } from "../snapshot/hash.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { ETH, codeOf, entry, given, messageOf, ofType, open, opened, resultOf } from "../testing/spec-support.ts";
import { apply } from "./apply.ts";
import { tradeSeq } from "./state.ts";
import { tradeView } from "./views.ts";

const closedBy = (outputs: readonly EngineOutput[]) => ofType(outputs, "closed_order").map((o) => o.trade);
const updatesIn = (outputs: readonly EngineOutput[]) => ofType(outputs, "trade_updated");

/** The trade's trailing stop as the state holds it now (outputs show it only when the trade changes). */
function trailingNow(h: EngineHarness, user: string, trade: TradeView) {
  const t = h.state.accounts.get(user)!.openTrades.get(tradeSeq(0, trade.id))!;
  return tradeView(h.state, t).trailingStop;
}

describe("a long's trailing stop", () => {
  it("activates at its activation price, trails the highest bid, and fires on the pull-back at that bid", () => {
    const h = given();
    const trade = opened(h, "alice", { trailingStop: { distance: "50", activationPrice: "2100" } });
    expect(trade.trailingStop).toEqual({
      distance: "50",
      percent: null,
      activationPrice: "2100",
      activated: false,
      bestPrice: null,
      level: null,
    });
    // below the activation price: nothing
    expect(updatesIn(h.price(ETH, "2099.99", "2100.5"))).toEqual([]);
    // the bid reaches it: activated, best 2100, level 2100 − 50 = 2050
    const [activated] = updatesIn(h.price(ETH, "2100", "2100.5"));
    expect(activated).toMatchObject({ change: "trailing_activated", userId: "alice" });
    expect(activated!.trade.trailingStop).toMatchObject({ activated: true, bestPrice: "2100", level: "2050" });
    // a new high moves the level (no output: the view is as of the last output) to 2150 − 50 = 2100
    expect(updatesIn(h.price(ETH, "2150", "2151"))).toEqual([]);
    expect(trailingNow(h, "alice", trade)).toMatchObject({ bestPrice: "2150", level: "2100" });
    expect(closedBy(h.price(ETH, "2100.01", "2101"))).toEqual([]);
    const [closed] = closedBy(h.price(ETH, "2100", "2101"));
    // (2100 − 2000) × 0.5 = +50
    expect(closed).toMatchObject({ id: trade.id, closeReason: "trailing_stop", closePrice: "2100", pnl: "50" });
    expect(closed!.trailingStop).toMatchObject({ bestPrice: "2150", level: "2100" });
  });

  it("activation and pull-back on consecutive ticks", () => {
    const h = given();
    const trade = opened(h, "alice", { trailingStop: { distance: "50", activationPrice: "2100" } });
    expect(updatesIn(h.price(ETH, "2120", "2121"))[0]!.trade.trailingStop).toMatchObject({
      bestPrice: "2120",
      level: "2070",
    });
    const [closed] = closedBy(h.price(ETH, "2070", "2071"));
    // (2070 − 2000) × 0.5 = 35
    expect(closed).toMatchObject({ id: trade.id, closeReason: "trailing_stop", closePrice: "2070", pnl: "35" });
  });

  it("one tick that passes the activation price trails from that tick's bid, not from the activation price", () => {
    const h = given();
    const trade = opened(h, "alice", { trailingStop: { distance: "50", activationPrice: "2100" } });
    const outputs = h.price(ETH, "2130", "2131");
    expect(closedBy(outputs)).toEqual([]); // the tick that activates never fires it: level 2080 < bid 2130
    expect(updatesIn(outputs)[0]!.trade.trailingStop).toMatchObject({ bestPrice: "2130", level: "2080" });
    // from the activation price the level would be 2050 and 2080 would not fire
    const [closed] = closedBy(h.price(ETH, "2080", "2081"));
    expect(closed).toMatchObject({ id: trade.id, closeReason: "trailing_stop", closePrice: "2080" });
  });

  it("without an activation price (or one the bid already passed) trails from the current bid at once", () => {
    const h = given({ eth: ["2000", "2000.5"] });
    const plain = opened(h, "alice", { trailingStop: { distance: "20" } });
    const passed = opened(h, "alice", { trailingStop: { distance: "20", activationPrice: "1990" } });
    for (const t of [plain, passed])
      expect(t.trailingStop).toMatchObject({ activated: true, bestPrice: "2000", level: "1980" });
  });

  it("the level never moves against the user", () => {
    const h = given();
    const trade = opened(h, "alice", { trailingStop: { distance: "50" } });
    h.price(ETH, "2040", "2041");
    expect(trailingNow(h, "alice", trade)).toMatchObject({ bestPrice: "2040", level: "1990" });
    h.price(ETH, "2010", "2011"); // falls back: best and level stay
    expect(trailingNow(h, "alice", trade)).toMatchObject({ bestPrice: "2040", level: "1990" });
    h.price(ETH, "2039.99", "2040");
    expect(trailingNow(h, "alice", trade)).toMatchObject({ bestPrice: "2040", level: "1990" });
    h.price(ETH, "2040.01", "2041");
    expect(trailingNow(h, "alice", trade)).toMatchObject({ bestPrice: "2040.01", level: "1990.01" });
  });
});

describe("request ids of trades with a trailing stop", () => {
  it("a repeated open or close gets its first answer again, with the trailing stop as it stood then", () => {
    const h = given();
    const first = open(h, "alice", { trailingStop: { distance: "50", activationPrice: "2100" } }, "o-1");
    const trade = resultOf(first.answer, "open_trade").trade;
    h.price(ETH, "2120", "2121"); // activates: best 2120
    expect(open(h, "alice", {}, "o-1").answer).toEqual(first.answer); // still pending in that answer
    const closing = h.instruct("alice", { kind: "close_trade", tradeId: trade.id }, "c-1");
    // closed by hand at the bid 2120: (2120 − 2000) × 0.5 = 60
    expect(resultOf(closing.answer, "close_trade").trade).toMatchObject({
      pnl: "60",
      trailingStop: { activated: true, bestPrice: "2120", level: "2070" },
    });
    h.price(ETH, "2200", "2201");
    const again = h.instruct("alice", { kind: "close_trade", tradeId: trade.id }, "c-1");
    expect(again.answer).toEqual(closing.answer);
    expect(again.outputs.map((o) => o.type)).toEqual(["order_response"]);
  });
});

describe("a short's trailing stop mirrors on the ask", () => {
  it("trails the lowest ask and fires when the ask rises to its level, at that ask", () => {
    const h = given();
    const trade = opened(h, "alice", { side: "short", trailingStop: { distance: "40", activationPrice: "1950" } });
    expect(updatesIn(h.price(ETH, "1949", "1950.01"))).toEqual([]);
    expect(updatesIn(h.price(ETH, "1949", "1950"))[0]!.trade.trailingStop).toMatchObject({
      bestPrice: "1950",
      level: "1990",
    });
    h.price(ETH, "1900", "1901"); // new low: best 1901, level 1941
    expect(trailingNow(h, "alice", trade)).toMatchObject({ bestPrice: "1901", level: "1941" });
    h.price(ETH, "1930", "1940.99");
    const [closed] = closedBy(h.price(ETH, "1930", "1941"));
    // short: (2000 − 1941) × 0.5 = 29.5
    expect(closed).toMatchObject({ id: trade.id, closeReason: "trailing_stop", closePrice: "1941", pnl: "29.5" });
  });
});

describe("percent trailing stops round away from the price", () => {
  it("long: floor(best × (1 − p)) to the tick; short: ceil(best × (1 + p))", () => {
    const h = given({ eth: ["2000.01", "2000.01"] });
    const long = opened(h, "alice", { trailingStop: { percent: "1.5" } });
    // 2000.01 × 0.985 = 1970.00985 → 1970.00 (down: never above the exact level)
    expect(long.trailingStop).toMatchObject({ percent: "1.5", bestPrice: "2000.01", level: "1970" });
    const short = opened(h, "alice", { side: "short", trailingStop: { percent: "1.5" } });
    // 2000.01 × 1.015 = 2030.01015 → 2030.02 (up: never below the exact level)
    expect(short.trailingStop).toMatchObject({ bestPrice: "2000.01", level: "2030.02" });
    expect(closedBy(h.price(ETH, "1970.01", "2030.01"))).toEqual([]);
    const closed = closedBy(h.price(ETH, "1970", "2030.02"));
    expect(closed.map((c) => [c.id, c.closeReason, c.closePrice])).toEqual([
      [long.id, "trailing_stop", "1970"],
      [short.id, "trailing_stop", "2030.02"],
    ]);
  });

  it("refuses terms that are not exactly one positive distance or percent at its precision", () => {
    const h = given();
    const refusal = (trailingStop: { distance?: string; percent?: string; activationPrice?: string }) =>
      messageOf(open(h, "alice", { trailingStop }).answer);
    expect(refusal({})).toContain("Give exactly one of distance and percent; received neither.");
    expect(refusal({ distance: "1", percent: "1" })).toContain("received both");
    expect(refusal({ distance: "0.001" })).toContain(
      'distance must be a positive price up to 1000000 with at most 2 decimals; received "0.001"',
    );
    expect(refusal({ distance: "1000000.01" })).toContain(
      'up to 1000000 with at most 2 decimals; received "1000000.01"',
    );
    expect(refusal({ percent: "100" })).toContain("percent must be above 0 and below 100 with at most 2 decimals");
    expect(refusal({ percent: "0.005" })).toContain('received "0.005"');
    expect(refusal({ percent: "0" })).toContain('received "0"');
    expect(refusal({ distance: "2000" })).toContain(
      "A long's trailing distance must be below the price it trails from, the current bid 2000; distance 2000 is not.",
    );
    expect(refusal({ distance: "1", activationPrice: "x" })).toContain(
      'activationPrice must be a positive price up to 1000000 with at most 2 decimals; received "x"',
    );
    expect(codeOf(open(h, "alice", { trailingStop: { percent: "-1" } }).answer)).toBe("INVALID_TRAILING_STOP");
    // the widest allowed: 99.99 % of 2000 → floor(200000 × 1 / 10000) = 20 ticks
    expect(opened(h, "alice", { trailingStop: { percent: "99.99" } }).trailingStop).toMatchObject({ level: "0.2" });
  });
});

describe("trailing stop, stop-loss and liquidation on the same tick", () => {
  it("the level the bid reached first decides: here the trailing stop (1970 above the stop-loss 1960)", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1960", trailingStop: { distance: "30" } });
    expect(closedBy(h.price(ETH, "1950", "1951"))[0]).toMatchObject({
      closeReason: "trailing_stop",
      closePrice: "1950",
    });
  });

  it("the stop-loss when it is above the trailing level, and at a tie", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1980", trailingStop: { distance: "30" } }); // level 1970
    opened(h, "alice", { stopLoss: "1970", trailingStop: { distance: "30" } }); // tie at 1970
    const closed = closedBy(h.price(ETH, "1965", "1966"));
    expect(closed.map((c) => c.closeReason)).toEqual(["stop_loss", "stop_loss"]);
  });

  it("liquidation when the trailing level is beyond it; the trailing stop at a tie with liquidation", () => {
    const h = given();
    opened(h, "alice", { trailingStop: { distance: "250" } }); // level 1750, below liquidation 1809.04
    opened(h, "alice", { trailingStop: { distance: "190.96" } }); // level 1809.04 = liquidation
    const closed = closedBy(h.price(ETH, "1800", "1801"));
    expect(closed.map((c) => c.closeReason).sort()).toEqual(["liquidation", "trailing_stop"]);
    expect(closed.find((c) => c.closeReason === "trailing_stop")?.trailingStop?.distance).toBe("190.96");
  });
});

describe("a trailing stop that beats the stop-loss on the same tick fires with the trailing stops", () => {
  it("long: exits first, then trailing stops by trailing level, whatever each trade's stop-loss", () => {
    const h = given();
    const b = opened(h, "alice", { stopLoss: "1945" }); // an exit only
    const a = opened(h, "alice", { stopLoss: "1950", trailingStop: { distance: "10" } }); // level 1990
    const e = opened(h, "alice", { trailingStop: { distance: "5" } }); // level 1995: the falling bid reaches it first
    const closed = closedBy(h.price(ETH, "1940", "1940"));
    expect(closed.map((t) => [t.id, t.closeReason, t.closePrice])).toEqual([
      [b.id, "stop_loss", "1940"],
      [e.id, "trailing_stop", "1940"],
      [a.id, "trailing_stop", "1940"],
    ]);
  });

  it("short: mirrored on the ask", () => {
    const h = given();
    const b = opened(h, "alice", { side: "short", stopLoss: "2055" });
    const a = opened(h, "alice", { side: "short", stopLoss: "2050", trailingStop: { distance: "10" } }); // 2010
    const e = opened(h, "alice", { side: "short", trailingStop: { distance: "5" } }); // 2005
    const closed = closedBy(h.price(ETH, "2060", "2060"));
    expect(closed.map((t) => [t.id, t.closeReason, t.closePrice])).toEqual([
      [b.id, "stop_loss", "2060"],
      [e.id, "trailing_stop", "2060"],
      [a.id, "trailing_stop", "2060"],
    ]);
  });

  it("all before the tick's pending fills, and those fills' own exits after them", () => {
    const h = given();
    const a = opened(h, "alice", { stopLoss: "1950", trailingStop: { distance: "10" } });
    const e = opened(h, "alice", { trailingStop: { distance: "5" } });
    resultOf(
      h.instruct("alice", { kind: "place_order", ...entry("1945", { stopLoss: "1942" }) }).answer,
      "place_order",
    );
    const outputs = h.price(ETH, "1940", "1940");
    const opens = ofType(outputs, "trade_opened").map((o) => o.trade);
    expect(opens).toHaveLength(1);
    const f = opens[0]!;
    const events = outputs.flatMap((o) =>
      o.type === "closed_order"
        ? [`closed ${o.trade.id} ${o.trade.closeReason}`]
        : o.type === "trade_opened"
          ? [`opened ${o.trade.id}`]
          : [],
    );
    expect(events).toEqual([
      `closed ${e.id} trailing_stop`,
      `closed ${a.id} trailing_stop`,
      `opened ${f.id}`,
      `closed ${f.id} stop_loss`,
    ]);
  });
});

describe("cost of a tick with many trailing stops", () => {
  it("a new high merges groups, never touches a stop; a tick that fires nothing does no work at all", () => {
    const h = given({ users: ["alice", "bob", "carol"] });
    const work = h.state.books[0]!.trailing.work;
    // 5 rounds at falling bids 2000, 1999.9, … : each round's 12 trades form one group at that bid
    for (let round = 0; round < 5; round++) {
      const bid = (2000 - round / 10).toFixed(1);
      h.price(ETH, bid, bid);
      for (const user of ["alice", "bob", "carol"])
        for (let i = 1; i <= 4; i++) opened(h, user, { margin: "10", trailingStop: { distance: String(20 + i) } });
    }
    const longs = h.state.books[0]!.trailing.long.byDistance;
    expect(longs.groupCount).toBe(5);
    const before = { ...work };
    // a new high: the 5 groups become 1 (4 merges), 60 stops move, none is touched
    h.price(ETH, "2001", "2001");
    expect(longs.groupCount).toBe(1);
    expect(work).toEqual({ merges: before.merges + 4, stopTouches: before.stopTouches });
    // another new high and a pull-back that fires nothing: no merge, no stop touched
    h.price(ETH, "2002", "2002");
    h.price(ETH, "1990", "1990");
    expect(work).toEqual({ merges: before.merges + 4, stopTouches: before.stopTouches });
    // a pull-back to 1980: only the stops at distance 21 and 22 fire (levels 1981, 1980), each touched once
    const closed = closedBy(h.price(ETH, "1980", "1980"));
    expect(closed).toHaveLength(30);
    expect(closed.every((c) => c.trailingStop?.distance === "21" || c.trailingStop?.distance === "22")).toBe(true);
    expect(work.stopTouches).toBe(before.stopTouches + 30);
  });
});

describe("restore mid-trail", () => {
  it("encode → decode → continue gives the same closes, outputs and state hash as the engine never restored", () => {
    const h = given({ users: ["alice", "bob"] });
    opened(h, "alice", { trailingStop: { distance: "50" } }); // T0-1
    opened(h, "bob", { trailingStop: { percent: "2" } }); // T0-2
    opened(h, "bob", { side: "short", trailingStop: { distance: "30", activationPrice: "1980" } }); // T0-3, pending
    h.price(ETH, "2060", "2061"); // longs' best 2060: alice's level 2010, bob's floor(2060 × 0.98) = 2018.8
    h.price(ETH, "2030", "2031");
    const restored = decodeSnapshot(encodeSnapshot(h.state));
    expect(stateHash(restored)).toBe(stateHash(h.state));
    const cut = h.log.length;
    const ticks = [
      ["2040", "2041"], // no new best, nothing fires
      ["2015", "2016"], // bob's 2018.8 fires
      ["2008", "2009"], // alice's 2010 fires (restarted from 2030 or 2040 it would sit at 1980 or 1990)
      ["1975", "1976"], // the short activates: best 1976, level 2006
      ["2006", "2007"], // and fires at the ask 2007
    ] as const;
    const reference = ticks.map(([bid, ask]) => h.price(ETH, bid, ask));
    const after = h.log.slice(cut).map((e) => apply(restored, e));
    expect(after).toEqual(reference);
    expect(stateHash(restored)).toBe(stateHash(h.state));
    const closes = after.flatMap((o) => closedBy(o)).map((c) => [c.id, c.closeReason, c.closePrice]);
    expect(closes).toEqual([
      ["T0-2", "trailing_stop", "2015"],
      ["T0-1", "trailing_stop", "2008"],
      ["T0-3", "trailing_stop", "2007"],
    ]);
  });
});

describe("stops at one level fire oldest first", () => {
  it("after a group's oldest stop leaves it, as after a restore", () => {
    const h = given({ eth: ["2000", "2000"] });
    const t1 = opened(h, "alice"); // T0-1, no trailing stop yet
    h.price(ETH, "2005", "2005");
    const t2 = opened(h, "alice", { trailingStop: { distance: "15" } }); // T0-2: best 2005, level 1990
    h.price(ETH, "2000", "2000");
    const t3 = opened(h, "alice", { trailingStop: { distance: "10" } }); // T0-3: best 2000, level 1990
    // T0-1 joins T0-3's group (best 2000, level 1990) as its oldest stop, then closes: the group's level stays
    // 1990 and its age becomes T0-3's, younger than T0-2's group.
    expect(
      h.instruct("alice", { kind: "modify_trade", tradeId: t1.id, trailingStop: { distance: "10" } }).answer.ok,
    ).toBe(true);
    expect(h.instruct("alice", { kind: "close_trade", tradeId: t1.id }).answer.ok).toBe(true); // invariants checked
    const restored = EngineHarness.resume(decodeSnapshot(encodeSnapshot(h.state)));
    const fired = closedBy(h.price(ETH, "1990", "1990")).map((t) => t.id);
    expect(fired).toEqual([t2.id, t3.id]);
    expect(closedBy(restored.price(ETH, "1990", "1990")).map((t) => t.id)).toEqual(fired);
  });
});

describe("stops set by distance and by percent fire together by level, then age", () => {
  it("the higher level first, whichever kind set it; at one level the older trade first", () => {
    const h = given({ users: ["alice", "bob"] });
    const byDistance = opened(h, "alice", { trailingStop: { distance: "50" } }); // level 1950
    const byPercent = opened(h, "alice", { trailingStop: { percent: "2" } }); // 2000 × 0.98 = 1960
    const tied = opened(h, "alice", { trailingStop: { distance: "40" } }); // 1960, younger than byPercent
    const older = opened(h, "bob", { trailingStop: { percent: "2.5" } }); // 1950, younger than byDistance
    expect(closedBy(h.price(ETH, "1900", "1900")).map((t) => t.id)).toEqual([
      byPercent.id,
      tied.id,
      byDistance.id,
      older.id,
    ]);
    // Shorts mirror on the ask: the lower level first.
    const s = given();
    const sDistance = opened(s, "alice", { side: "short", trailingStop: { distance: "50" } }); // 2050
    const sPercent = opened(s, "alice", { side: "short", trailingStop: { percent: "2" } }); // 2040
    expect(closedBy(s.price(ETH, "2100", "2100")).map((t) => t.id)).toEqual([sPercent.id, sDistance.id]);
  });
});
