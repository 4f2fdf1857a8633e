/**
 * A trade's trailing stop and the group it trails in (see trailing-book.ts for the design), with the level rule:
 * long by distance best − d, by percent floor(best × (10000 − p) / 10000); short by distance best + d, by percent
 * ceil(best × (10000 + p) / 10000), p in hundredths of a percent: rounded away from the price, so the level is
 * never nearer the price than the exact level the user asked for (docs/trading-rules.md).
 */
import { divFloor } from "../../contract/money.ts";
import { ANY_NUMBER, type Writable } from "./any-number.ts";
import type { Trade } from "./state.ts";
import type { PairingNode, Positioned } from "./trailing-heap.ts";

/** Percents are read and shown with this many decimals: 0.01 % steps, so 1 to 9999 hundredths. */
export const PERCENT_DECIMALS = 2;

/** One trade's trailing stop. */
export interface TrailingStop extends PairingNode<TrailingStop>, Positioned {
  readonly trade: Trade;
  /** `amount` is a distance in price ticks, or (byPercent) a percent in hundredths (1 to 9999). */
  readonly byPercent: boolean;
  readonly amount: number;
  /** 0 when none. */
  readonly activationTicks: number;
  activated: boolean;
  /** While active: its group (or one that group was merged into). Null when pending or removed. */
  group: TrailGroup | null;
  /** The best price when it was removed (closed or replaced), kept for the views of that step; 0 before. */
  finalBestTicks: number;
}

export interface TrailGroup extends Positioned {
  best: number;
  /** First stop to fire. */
  root: TrailingStop | null;
  size: number;
  /** Set when merged into another group. */
  parent: TrailGroup | null;
  /** The root's level and trade sequence, cached so the level heap can compare groups. */
  level: number;
  levelSeq: number;
  /** Neighbours on the stack: `worse` has a less good best (nearer the top), `better` a better one. */
  worse: TrailGroup | null;
  better: TrailGroup | null;
}

/** Work done, for tests that prove a tick's cost: group merges and per-stop operations. Not part of the state. */
export interface TrailWork {
  merges: number;
  stopTouches: number;
}

/** Every stop is made here so all share one shape, its price fields taking any number (see `ANY_NUMBER`). */
export function newTrailingStop(trade: Trade, byPercent: boolean, amount: number, activationTicks: number) {
  const stop: Writable<TrailingStop> = {
    trade,
    byPercent,
    amount: ANY_NUMBER,
    activationTicks: ANY_NUMBER,
    activated: false,
    group: null,
    finalBestTicks: ANY_NUMBER,
    child: null,
    sibling: null,
    prev: null,
    pos: -1,
  };
  stop.amount = amount;
  stop.activationTicks = activationTicks;
  stop.finalBestTicks = 0;
  return stop;
}

/** The group a stop is in now (following merges, shortening the path as it goes). */
export function groupOf(stop: TrailingStop): TrailGroup {
  const first = stop.group;
  if (first === null) throw new Error(`trailing stop of trade #${stop.trade.seq} is not active`);
  let root = first;
  while (root.parent !== null) root = root.parent;
  // Path compression: every group passed now links straight to the live one.
  for (let g = first; g.parent !== null && g.parent !== root;) {
    const next: TrailGroup = g.parent;
    g.parent = root;
    g = next;
  }
  stop.group = root;
  return root;
}

/** An active stop's best price; a removed one's at removal. */
export function bestOf(stop: TrailingStop): number {
  return stop.group === null ? stop.finalBestTicks : groupOf(stop).best;
}

/** Where a stop with these terms fires when its best price is `best` (see the module comment for the rounding). */
export function levelAt(isLong: boolean, byPercent: boolean, amount: number, best: number): number {
  if (!byPercent) return isLong ? best - amount : best + amount;
  const factor = isLong ? 10_000 - amount : 10_000 + amount;
  // Exact in doubles for every configured market (prices below 10^9 ticks); bigint beyond, never inexact.
  if (best <= EXACT_PERCENT_BEST)
    return isLong ? divFloor(best * factor, 10_000) : divFloor(best * factor + 9_999, 10_000);
  const product = BigInt(best) * BigInt(factor);
  return Number(isLong ? product / 10_000n : (product + 9_999n) / 10_000n);
}

/** The largest best price whose product with a percent factor (< 20000) and the rounding term stays below 2^53. */
const EXACT_PERCENT_BEST = Math.floor((Number.MAX_SAFE_INTEGER - 10_000) / 20_000);

export function levelOf(stop: TrailingStop): number {
  return levelAt(stop.trade.isLong, stop.byPercent, stop.amount, bestOf(stop));
}
