// modify_trade: set, move or remove an open trade's exits. Every trade: ETH long opened at 2000 (bid = ask = 2000
// unless said), margin 100, leverage 10 → 0.5 ETH, liquidation price 1809.04 (a short's: 2189.06).
import { describe, expect, it } from "vitest";
import type { EngineOutput, Instruction } from "../../contract/messages.ts";
import type { EngineHarness } from "../testing/engine-harness.ts";
import { ETH, close, codeOf, given, messageOf, ofType, opened, placed, resultOf } from "../testing/spec-support.ts";

type ModifyFields = Omit<Extract<Instruction, { kind: "modify_trade" }>, "kind" | "tradeId">;

function modify(h: EngineHarness, user: string, tradeId: string, fields: ModifyFields, requestId?: string) {
  const instruction = { kind: "modify_trade" as const, tradeId, ...fields };
  return requestId === undefined ? h.instruct(user, instruction) : h.instruct(user, instruction, requestId);
}

const closedBy = (outputs: readonly EngineOutput[]) => ofType(outputs, "closed_order").map((o) => o.trade);

describe("modify_trade sets, moves and removes exits", () => {
  it("sets a stop-loss and take-profit, answers the trade and emits trade_updated before the answer", () => {
    const h = given();
    const trade = opened(h, "alice");
    const { answer, outputs } = modify(h, "alice", trade.id, { stopLoss: "1900", takeProfit: "2100" });
    const modified = resultOf(answer, "modify_trade").trade;
    expect(modified).toEqual({ ...trade, stopLoss: "1900", takeProfit: "2100" });
    expect(outputs.map((o) => o.type)).toEqual(["trade_updated", "order_response"]);
    expect(ofType(outputs, "trade_updated")[0]).toMatchObject({ userId: "alice", change: "exits", trade: modified });
    // the new levels are live: 1900.01 does nothing, 1900 fires the stop-loss at the bid
    expect(closedBy(h.price(ETH, "1900.01", "1901"))).toEqual([]);
    expect(closedBy(h.price(ETH, "1900", "1901"))[0]).toMatchObject({ closeReason: "stop_loss", closePrice: "1900" });
  });

  it("absent leaves an exit, null removes it, a value moves it", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900", takeProfit: "2100" });
    const moved = resultOf(modify(h, "alice", trade.id, { takeProfit: null, stopLoss: "1950" }).answer, "modify_trade");
    expect(moved.trade).toMatchObject({ stopLoss: "1950", takeProfit: null });
    // the removed take-profit no longer fires; the moved stop-loss does at its new level
    expect(closedBy(h.price(ETH, "2100", "2100"))).toEqual([]);
    expect(closedBy(h.price(ETH, "1950", "1951"))[0]).toMatchObject({ closeReason: "stop_loss", closePrice: "1950" });
  });

  it("removing the stop-loss leaves liquidation as the trade's exit", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900" });
    modify(h, "alice", trade.id, { stopLoss: null });
    expect(closedBy(h.price(ETH, "1850", "1851"))).toEqual([]);
    expect(closedBy(h.price(ETH, "1809.04", "1810"))[0]).toMatchObject({ closeReason: "liquidation" });
  });

  it("sets, replaces and removes a trailing stop", () => {
    const h = given();
    const trade = opened(h, "alice");
    const set = resultOf(modify(h, "alice", trade.id, { trailingStop: { distance: "40" } }).answer, "modify_trade");
    expect(set.trade.trailingStop).toMatchObject({ distance: "40", activated: true, bestPrice: "2000", level: "1960" });
    h.price(ETH, "2050", "2051"); // best 2050, level 2010
    // replaced: trails again from the current bid 2050
    const replaced = modify(h, "alice", trade.id, { trailingStop: { percent: "1" } }).answer;
    // floor(205000 × 0.99) = 202950 → 2029.5
    expect(resultOf(replaced, "modify_trade").trade.trailingStop).toMatchObject({
      percent: "1",
      bestPrice: "2050",
      level: "2029.5",
    });
    const removed = modify(h, "alice", trade.id, { trailingStop: null }).answer;
    expect(resultOf(removed, "modify_trade").trade.trailingStop).toBeNull();
    expect(closedBy(h.price(ETH, "2000", "2001"))).toEqual([]);
  });

  it("the same trailing terms again are no change: the stop keeps its best price", () => {
    const h = given();
    const trade = opened(h, "alice", { trailingStop: { distance: "40" } });
    h.price(ETH, "2050", "2051");
    expect(codeOf(modify(h, "alice", trade.id, { trailingStop: { distance: "40" } }).answer)).toBe("NOTHING_TO_MODIFY");
    const withStop = modify(h, "alice", trade.id, { stopLoss: "1990", trailingStop: { distance: "40" } }).answer;
    expect(resultOf(withStop, "modify_trade").trade.trailingStop).toMatchObject({ bestPrice: "2050", level: "2010" });
  });
});

describe("modify_trade refusals", () => {
  it("TRADE_NOT_FOUND once the trade is closed, and for another user's trade", () => {
    const h = given({ users: ["alice", "bob"] });
    const trade = opened(h, "alice");
    expect(codeOf(modify(h, "bob", trade.id, { stopLoss: "1900" }).answer)).toBe("TRADE_NOT_FOUND");
    expect(messageOf(modify(h, "bob", trade.id, { stopLoss: "1900" }).answer)).toBe(
      `tradeId: expected the id of an open trade of this account, received "${trade.id}".`,
    );
    resultOf(close(h, "alice", trade.id).answer, "close_trade");
    const { answer, outputs } = modify(h, "alice", trade.id, { stopLoss: "1900" });
    expect(codeOf(answer)).toBe("TRADE_NOT_FOUND");
    expect(outputs.map((o) => o.type)).toEqual(["order_response"]);
  });

  it("a stop-loss beyond liquidation is refused, naming the liquidation price", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900" });
    const answer = modify(h, "alice", trade.id, { stopLoss: "1809.03" }).answer;
    expect(codeOf(answer)).toBe("INVALID_STOP_LOSS");
    expect(messageOf(answer)).toContain(
      "stopLoss 1809.03 is below this long's liquidation price 1809.04, so it could never fire: a long's " +
        "stop-loss must be at or above the liquidation price 1809.04 and below the current bid 2000.",
    );
    // at the liquidation price is fine (the tie goes to the stop-loss)
    expect(resultOf(modify(h, "alice", trade.id, { stopLoss: "1809.04" }).answer, "modify_trade").trade.stopLoss).toBe(
      "1809.04",
    );
    const short = opened(h, "alice", { side: "short" });
    expect(messageOf(modify(h, "alice", short.id, { stopLoss: "2189.07" }).answer)).toContain(
      "above this short's liquidation price 2189.06",
    );
  });

  it("a stop-loss that a gapped fill left beyond liquidation is kept by a change of the other exits", () => {
    // A long stop entry at 2000 (margin 100, leverage 20: liquidation 1909.54 at 2000) with its stop-loss at 1950
    // fills through a gap at 2100, liquidation 2005.01: the trade opens with the stop-loss beyond it.
    const h = given({ eth: ["1990", "1991"] });
    placed(h, "alice", "2000", { type: "stop", leverage: 20, stopLoss: "1950" });
    const trade = ofType(h.advance(1).price(ETH, "2098", "2100"), "trade_opened")[0]!.trade;
    expect(trade).toMatchObject({ openPrice: "2100", stopLoss: "1950", liquidationPrice: "2005.01" });
    const withTakeProfit = modify(h, "alice", trade.id, { takeProfit: "2200" }).answer;
    expect(resultOf(withTakeProfit, "modify_trade").trade).toMatchObject({ stopLoss: "1950", takeProfit: "2200" });
    // given at the level it has, the stop-loss is kept too; so it is by a trailing stop alone
    const same = modify(h, "alice", trade.id, { stopLoss: "1950", takeProfit: "2250" }).answer;
    expect(resultOf(same, "modify_trade").trade).toMatchObject({ stopLoss: "1950", takeProfit: "2250" });
    const trailing = modify(h, "alice", trade.id, { trailingStop: { distance: "50" } }).answer;
    expect(resultOf(trailing, "modify_trade").trade).toMatchObject({
      stopLoss: "1950",
      trailingStop: { level: "2048" },
    });
    // moved, the stop-loss is held to the liquidation price again, even when it moves closer to it
    const moved = modify(h, "alice", trade.id, { stopLoss: "1960" }).answer;
    expect(codeOf(moved)).toBe("INVALID_STOP_LOSS");
    expect(messageOf(moved)).toContain("stopLoss 1960 is below this long's liquidation price 2005.01");
    // a kept stop-loss is spared the liquidation rule only: a take-profit below the bid is still refused
    expect(codeOf(modify(h, "alice", trade.id, { takeProfit: "2050" }).answer)).toBe("INVALID_TAKE_PROFIT");
    // without the trailing stop, the stop-loss kept beyond liquidation never fires: liquidation closes the trade first
    resultOf(modify(h, "alice", trade.id, { trailingStop: null }).answer, "modify_trade");
    expect(closedBy(h.price(ETH, "2005.01", "2006"))[0]).toMatchObject({ closeReason: "liquidation" });
  });

  it("a take-profit that a gapped fill left below the entry is kept by a change of the other exits", () => {
    // A long stop entry at 2100 with its take-profit at 2110 fills through a gap at the ask 2120 (bid 2105): the
    // trade opens with the take-profit between the bid and the entry. 1e9 / 212000 → 4716 steps.
    const h = given({ eth: ["1999", "2000"] });
    placed(h, "alice", "2100", { type: "stop", takeProfit: "2110" });
    const trade = ofType(h.advance(1).price(ETH, "2105", "2120"), "trade_opened")[0]!.trade;
    expect(trade).toMatchObject({ openPrice: "2120", quantity: "0.4716", takeProfit: "2110" });
    // a stop-loss alone, or a trailing stop alone, leaves the take-profit where it is: accepted
    const withStopLoss = modify(h, "alice", trade.id, { stopLoss: "2000" }).answer;
    expect(resultOf(withStopLoss, "modify_trade").trade).toMatchObject({ stopLoss: "2000", takeProfit: "2110" });
    const withTrailing = modify(h, "alice", trade.id, { trailingStop: { distance: "50" } }).answer;
    expect(resultOf(withTrailing, "modify_trade").trade).toMatchObject({
      takeProfit: "2110",
      trailingStop: { level: "2055" },
    });
    // given at the level it has, the take-profit is kept too
    const same = modify(h, "alice", trade.id, { stopLoss: "2010", takeProfit: "2110" }).answer;
    expect(resultOf(same, "modify_trade").trade).toMatchObject({ stopLoss: "2010", takeProfit: "2110" });
    // a new take-profit below the entry is refused, though above the bid
    const moved = modify(h, "alice", trade.id, { takeProfit: "2115" }).answer;
    expect(codeOf(moved)).toBe("INVALID_TAKE_PROFIT");
    expect(messageOf(moved)).toContain(
      "A long's take-profit must be above its entry price 2120 and the current bid 2105; takeProfit 2115 is not.",
    );
    // the kept take-profit fires at 2110: a take_profit close at a loss, (2110 − 2120) × 0.4716
    expect(closedBy(h.price(ETH, "2110", "2111"))[0]).toMatchObject({
      closeReason: "take_profit",
      closePrice: "2110",
      pnl: "-4.716",
    });
  });

  it("a short's take-profit that a gapped fill left above the entry is kept too", () => {
    // A short stop entry at 1900 with its take-profit at 1890 fills through a gap at the bid 1880 (ask 1895).
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "1900", { side: "short", type: "stop", takeProfit: "1890" });
    const trade = ofType(h.advance(1).price(ETH, "1880", "1895"), "trade_opened")[0]!.trade;
    expect(trade).toMatchObject({ openPrice: "1880", takeProfit: "1890" });
    const withStopLoss = modify(h, "alice", trade.id, { stopLoss: "1950" }).answer;
    expect(resultOf(withStopLoss, "modify_trade").trade).toMatchObject({ stopLoss: "1950", takeProfit: "1890" });
    expect(codeOf(modify(h, "alice", trade.id, { takeProfit: "1885" }).answer)).toBe("INVALID_TAKE_PROFIT");
  });

  it("levels are checked against the current quote, not the open price", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.price(ETH, "2100", "2101");
    // 2050 was above the open price but is below the bid 2100 now: a valid stop-loss, an invalid take-profit
    expect(messageOf(modify(h, "alice", trade.id, { takeProfit: "2050" }).answer)).toContain(
      "A long's take-profit must be above its entry price 2000 and the current bid 2100; takeProfit 2050 is not.",
    );
    expect(resultOf(modify(h, "alice", trade.id, { stopLoss: "2050" }).answer, "modify_trade").trade.stopLoss).toBe(
      "2050",
    );
    expect(messageOf(modify(h, "alice", trade.id, { stopLoss: "2100" }).answer)).toContain(
      "A long's stop-loss must be below the current bid 2100; stopLoss 2100 is not.",
    );
  });

  it("a take-profit moved to the losing side of the entry is refused, though beyond the current bid", () => {
    const h = given();
    const trade = opened(h, "alice"); // long, entry 2000
    h.price(ETH, "1950", "1951");
    const answer = modify(h, "alice", trade.id, { takeProfit: "1990" }).answer;
    expect(codeOf(answer)).toBe("INVALID_TAKE_PROFIT");
    expect(messageOf(answer)).toContain(
      "A long's take-profit must be above its entry price 2000 and the current bid 1950; takeProfit 1990 is not.",
    );
  });

  it("NOTHING_TO_MODIFY names the exits, and those given as the trade already has them", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900" });
    const expected = "stopLoss, takeProfit and trailingStop: expected at least one that sets, moves or removes an exit";
    expect(messageOf(modify(h, "alice", trade.id, {}).answer)).toBe(`${expected}, received none of them.`);
    expect(messageOf(modify(h, "alice", trade.id, { stopLoss: "1900" }).answer)).toBe(
      `${expected}, received stopLoss at 1900, as the trade already has it.`,
    );
    expect(messageOf(modify(h, "alice", trade.id, { stopLoss: "1900", takeProfit: null }).answer)).toBe(
      `${expected}, received stopLoss at 1900 and takeProfit null, as the trade already has them.`,
    );
    const trailing = opened(h, "alice", { trailingStop: { distance: "40" } });
    expect(messageOf(modify(h, "alice", trailing.id, { trailingStop: { distance: "40" } }).answer)).toBe(
      `${expected}, received trailingStop with its current terms, as the trade already has it.`,
    );
  });

  it("NOTHING_TO_MODIFY when every exit stays as it is; malformed levels name the field", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900" });
    expect(codeOf(modify(h, "alice", trade.id, {}).answer)).toBe("NOTHING_TO_MODIFY");
    expect(codeOf(modify(h, "alice", trade.id, { stopLoss: "1900", takeProfit: null }).answer)).toBe(
      "NOTHING_TO_MODIFY",
    );
    expect(codeOf(modify(h, "alice", trade.id, { trailingStop: null }).answer)).toBe("NOTHING_TO_MODIFY");
    expect(codeOf(modify(h, "alice", trade.id, { stopLoss: "1900.001" }).answer)).toBe("INVALID_STOP_LOSS");
    expect(codeOf(modify(h, "alice", trade.id, { takeProfit: "0" }).answer)).toBe("INVALID_TAKE_PROFIT");
    expect(messageOf(modify(h, "alice", trade.id, { takeProfit: "1000000.01" }).answer)).toContain(
      "Use a positive price up to 1000000 with at most 2 decimals, or null; received 1000000.01.",
    );
    expect(codeOf(modify(h, "alice", trade.id, { trailingStop: {} }).answer)).toBe("INVALID_TRAILING_STOP");
  });

  it("a stale quote refuses a modification", () => {
    const h = given();
    const trade = opened(h, "alice");
    h.advance(h.state.params.staleQuoteMs + 1);
    expect(codeOf(modify(h, "alice", trade.id, { stopLoss: "1900" }).answer)).toBe("STALE_PRICE");
  });
});

describe("modify_trade and request ids", () => {
  it("a duplicate request id gets the first answer again and changes nothing", () => {
    const h = given();
    const trade = opened(h, "alice");
    const first = modify(h, "alice", trade.id, { stopLoss: "1900" }, "m-1").answer;
    modify(h, "alice", trade.id, { stopLoss: "1950" }, "m-2");
    const again = modify(h, "alice", trade.id, { stopLoss: "1900" }, "m-1");
    expect(again.answer).toEqual(first);
    expect(again.outputs.map((o) => o.type)).toEqual(["order_response"]);
    // the trade keeps the second request's level
    expect(closedBy(h.price(ETH, "1950", "1951"))[0]).toMatchObject({ closeReason: "stop_loss", stopLoss: "1950" });
  });

  it("the open_trade answer remembered for a request id keeps the levels it was opened with", () => {
    const h = given();
    const opening = { kind: "open_trade" as const, asset: "ETH", side: "long" as const, margin: "100", leverage: 10 };
    const first = h.instruct("alice", { ...opening, stopLoss: "1900" }, "o-1").answer;
    const id = resultOf(first, "open_trade").trade.id;
    modify(h, "alice", id, { stopLoss: "1950" });
    expect(h.instruct("alice", { ...opening, stopLoss: "1900" }, "o-1").answer).toEqual(first);
  });
});
