/** Where an open trade sits in its market's trigger heaps (see state.ts, TriggerBook): one routing rule. */
import type { TriggerHeap } from "./trigger-heap.ts";
import { exitLevel, type Trade, type TriggerBook } from "./state.ts";
import { detachStop } from "./trailing-book.ts";

/** A book's four heaps, in the one order a snapshot lists them. */
export function heapsOf(book: TriggerBook): [TriggerHeap, TriggerHeap, TriggerHeap, TriggerHeap] {
  return [book.longExit, book.longProfit, book.shortExit, book.shortProfit];
}

/** Adds a trade to the heaps its levels call for; `ordered: false` defers ordering to a later `heapify` (restore). */
export function indexTrade(book: TriggerBook, t: Trade, ordered = true): void {
  if (t.exitTicks !== 0) {
    const heap = t.isLong ? book.longExit : book.shortExit;
    if (ordered) heap.push(t);
    else heap.pushUnordered(t);
  }
  if (t.takeProfitTicks !== 0) {
    const heap = t.isLong ? book.longProfit : book.shortProfit;
    if (ordered) heap.push(t);
    else heap.pushUnordered(t);
  }
}

/**
 * Puts a restored trade back where it was in its heaps (positions as saved, -1 for none; see TriggerHeap.place).
 * Which heaps it is in must follow from its levels, as `indexTrade` routes it.
 */
export function placeTrade(book: TriggerBook, t: Trade, exitPos: number, profitPos: number): void {
  if ((t.exitTicks !== 0) !== exitPos >= 0 || (t.takeProfitTicks !== 0) !== profitPos >= 0) {
    throw new Error(`trade #${t.seq} is saved in trigger heaps that do not match its levels`);
  }
  if (exitPos >= 0) (t.isLong ? book.longExit : book.shortExit).place(t, exitPos);
  if (profitPos >= 0) (t.isLong ? book.longProfit : book.shortProfit).place(t, profitPos);
}

/** Takes a closing trade out of every index: its heaps and its trailing stop (which stays on it, for its view). */
export function unindexTrade(book: TriggerBook, t: Trade): void {
  unindexExits(book, t);
  if (t.trailing !== null) detachStop(book.trailing, t.trailing);
}

/**
 * Moves a trade's stop-loss and take-profit (0: none) and re-files it in its heaps, its exit level taken from them
 * and its liquidation level as it is now (a partial close calls it with the exits unchanged, after a new level).
 */
export function moveExits(book: TriggerBook, t: Trade, stopLossTicks: number, takeProfitTicks: number): void {
  unindexExits(book, t);
  t.stopLossTicks = stopLossTicks;
  t.takeProfitTicks = takeProfitTicks;
  t.exitTicks = exitLevel(t.isLong, stopLossTicks, t.liquidationTicks);
  indexTrade(book, t);
}

function unindexExits(book: TriggerBook, t: Trade): void {
  if (t.exitPos >= 0) (t.isLong ? book.longExit : book.shortExit).remove(t);
  if (t.profitPos >= 0) (t.isLong ? book.longProfit : book.shortProfit).remove(t);
}
