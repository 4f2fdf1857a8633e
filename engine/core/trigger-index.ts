/** Where an open trade sits in its market's trigger heaps (see state.ts, TriggerBook): one routing rule. */
import type { Trade, TriggerBook } from "./state.ts";

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

export function unindexTrade(book: TriggerBook, t: Trade): void {
  if (t.exitPos >= 0) (t.isLong ? book.longExit : book.shortExit).remove(t);
  if (t.profitPos >= 0) (t.isLong ? book.longProfit : book.shortProfit).remove(t);
}
