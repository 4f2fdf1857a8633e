/**
 * modify_trade: sets, moves or removes an open trade's stop-loss, take-profit and trailing stop. Per exit: absent
 * leaves it, null removes it, a value sets or moves it. The exits the trade would have are checked as at placement
 * (trading.ts, checkLevels) against the current quote, with the trade's own entry and liquidation price, except that a
 * stop-loss the request leaves where it is is not held to the liquidation price, nor a take-profit it leaves where it
 * is to the entry price (a stop entry filled through a gap can open with either so, and its other exits must still
 * be changeable); a trailing stop given with the terms it already has is kept as it is (its best price too). A
 * request that changes nothing is refused.
 * The answer is remembered whole (rare instruction: receipts.ts, `remembered`).
 */
import type { Answer, Instruction } from "../../contract/messages.ts";
import { tradableQuote } from "./quotes.ts";
import {
  isRefusal,
  priceRule,
  refuse,
  refuseField,
  refuseTradeNotFound,
  remembered,
  type Outcome,
} from "./receipts.ts";
import { assetAt, tradeSeq, type Account, type EngineState } from "./state.ts";
import { emitTradeUpdated, type Step } from "./step.ts";
import { checkLevels, optionalPrice } from "./trading.ts";
import { checkTrailingTerms, readTrailingTerms, sameTerms, setTrailingStop, type TrailingTerms } from "./trailing.ts";
import { moveExits } from "./trigger-index.ts";
import { tradeView } from "./views.ts";

type ModifyTrade = Extract<Instruction, { kind: "modify_trade" }>;

export function modifyTrade(state: EngineState, step: Step, account: Account, instruction: ModifyTrade): Outcome {
  // Another user's trade, or one already closed, is indistinguishable from a missing one.
  const trade = account.openTrades.get(tradeSeq(state.params.shard, instruction.tradeId));
  if (trade === undefined) return refuseTradeNotFound(instruction.tradeId);
  const asset = assetAt(state, trade.assetIndex);
  const { priceDecimals, maxPriceTicks } = asset;
  const stopLossTicks = level(instruction.stopLoss, trade.stopLossTicks, priceDecimals, maxPriceTicks);
  if (stopLossTicks < 0)
    return refuse("INVALID_STOP_LOSS", `Use ${priceRule(asset)}, or null; received ${instruction.stopLoss}.`);
  const takeProfitTicks = level(instruction.takeProfit, trade.takeProfitTicks, priceDecimals, maxPriceTicks);
  if (takeProfitTicks < 0)
    return refuse("INVALID_TAKE_PROFIT", `Use ${priceRule(asset)}, or null; received ${instruction.takeProfit}.`);
  const spec = instruction.trailingStop;
  let trailing: TrailingTerms | null | undefined;
  if (spec === null) trailing = null;
  else if (spec !== undefined) {
    const terms = readTrailingTerms(state, trade.assetIndex, spec);
    if (isRefusal(terms)) return terms;
    trailing = terms;
  }
  const trailingChanges = trailing !== undefined && !sameTerms(trade.trailing, trailing);
  if (stopLossTicks === trade.stopLossTicks && takeProfitTicks === trade.takeProfitTicks && !trailingChanges)
    return refuseUnchanged(instruction);
  const quote = tradableQuote(state, step, trade.assetIndex);
  if (isRefusal(quote)) return quote;
  const exits = {
    assetIndex: trade.assetIndex,
    isLong: trade.isLong,
    leverage: trade.leverage,
    stopLossTicks,
    takeProfitTicks,
    stopLossKept: stopLossTicks === trade.stopLossTicks,
    takeProfitKept: takeProfitTicks === trade.takeProfitTicks,
  };
  const misplaced = checkLevels(asset, exits, trade.openPriceTicks, quote, trade.liquidationTicks);
  if (misplaced !== undefined) return misplaced;
  if (trailingChanges && trailing !== null) {
    const bad = checkTrailingTerms(state, trade, trailing!, quote);
    if (bad !== undefined) return bad;
  }

  if (stopLossTicks !== trade.stopLossTicks || takeProfitTicks !== trade.takeProfitTicks)
    moveExits(state.books[trade.assetIndex]!, trade, stopLossTicks, takeProfitTicks);
  if (trailingChanges) setTrailingStop(state, trade, trailing!, quote);
  const view = tradeView(state, trade);
  emitTradeUpdated(step, account, "exits", view);
  const answer: Answer = { ok: true, result: { kind: "modify_trade", trade: view } };
  return remembered(answer);
}

/** The level an exit will have: `current` when absent, 0 for null, else the price (negative when invalid). */
function level(text: string | null | undefined, current: number, decimals: number, maxTicks: number): number {
  if (text === undefined) return current;
  if (text === null) return 0;
  return optionalPrice(text, decimals, maxTicks);
}

const EXITS = ["stopLoss", "takeProfit", "trailingStop"] as const;

/**
 * NOTHING_TO_MODIFY, naming the exits the request may change and those it gave, each as the trade already has it:
 * `stopLoss, takeProfit and trailingStop: expected at least one that sets, moves or removes an exit, received
 * stopLoss at 1900, as the trade already has it.` A level is named by its price, not quoted: the API hands the engine
 * one spelling per price (functions/schemas.ts), so `1.9e3` and `"1900.00"` both arrive as "1900".
 */
function refuseUnchanged(instruction: ModifyTrade): Outcome {
  const given = EXITS.filter((exit) => instruction[exit] !== undefined).map((exit) => {
    const value = instruction[exit];
    if (value === null) return `${exit} null`;
    return typeof value === "object" ? `${exit} with its current terms` : `${exit} at ${value}`;
  });
  const received =
    given.length === 0
      ? "none of them"
      : `${listed(given)}, as the trade already has ${given.length === 1 ? "it" : "them"}`;
  return refuseField("NOTHING_TO_MODIFY", listed(EXITS), "at least one that sets, moves or removes an exit", received);
}

function listed(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)!}`;
}
