/**
 * Invariants of pending entry orders (called by invariants.ts): what each account reserves for them, and that every
 * order is filed, linked and indexed where its terms say, with no heap top that should already have filled or expired.
 */
import { fillHeapOf, fillsAt } from "./pending-book.ts";
import { pendingOrderId, type EngineState } from "./state.ts";

export function checkPendingOrders(state: EngineState): void {
  let orders = 0;
  let expiring = 0;
  for (const account of state.accounts.values()) {
    for (const [seq, o] of account.pendingOrders) {
      const id = pendingOrderId(state.params.shard, seq);
      if (o.seq !== seq || o.account !== account) throw new Error(`order ${id} is filed under the wrong account`);
      if (!Number.isSafeInteger(o.marginMicros) || o.marginMicros <= 0) throw new Error(`order ${id} has no margin`);
      const p = o.oco;
      if (p !== undefined && (p.oco !== o || p === o || account.pendingOrders.get(p.seq) !== p)) {
        throw new Error(`order ${id} has a broken one-cancels-other link`);
      }
      const heap = fillHeapOf(state, o);
      if (o.heapPos < 0 || o.heapPos >= heap.size) throw new Error(`order ${id} is not in its fill heap`);
      if ((o.expiresAtMs !== 0) !== o.expiryPos >= 0) throw new Error(`order ${id} expiry indexing is wrong`);
      orders++;
      if (o.expiresAtMs !== 0) expiring++;
    }
  }
  let indexed = 0;
  state.pendingBooks.forEach((book, i) => {
    const q = state.quotes[i];
    for (const heap of [book.longLimit, book.longStop, book.shortLimit, book.shortStop]) {
      heap.verify();
      indexed += heap.size;
      const top = heap.peek();
      if (q !== undefined && top !== undefined && fillsAt(top, q.bidTicks, q.askTicks)) {
        throw new Error(`market ${i} has a pending order that should have filled at the current quote`);
      }
    }
  });
  if (indexed !== orders) throw new Error(`fill heaps hold ${indexed} orders, ${orders} are pending`);
  state.expiries.verify();
  if (state.expiries.size !== expiring) {
    throw new Error(`the expiry heap holds ${state.expiries.size} orders, ${expiring} have an expiry`);
  }
  const next = state.expiries.peek();
  if (next !== undefined && next.expiresAtMs <= state.lastInputMs) {
    throw new Error(`order ${pendingOrderId(state.params.shard, next.seq)} should have expired`);
  }
}
