/**
 * The pending-orders section of a snapshot (version 4 on; layout in codec.ts). Canonical: accounts in the accounts
 * section's order (by user id), each account's orders in sequence order. Heap layouts are not saved: the fill and
 * expiry heaps are rebuilt by heapify, which is exact because their orders are total (price or expiry, then
 * sequence), so the restored heaps fill and expire exactly as the saved ones would.
 */
import { addPendingOrder, makePendingOrder } from "../core/pending-book.ts";
import type { Account, EngineState, PendingOrder } from "../core/state.ts";
import type { ByteReader, ByteWriter } from "./bytes.ts";

/** Varints per pending order: seqDelta and the nine of its terms (a prescan steps over the section by it). */
export const PENDING_ORDER_VARINTS = 10;

export function writePendingOrders(w: ByteWriter, state: EngineState, userIds: readonly string[]): void {
  for (const userId of userIds) {
    const orders = state.accounts.get(userId)!.pendingOrders;
    w.uint(orders.size);
    let prevSeq = 0;
    for (const o of orders.values()) {
      // Orders enter an account in sequence order and the map keeps it; a restore re-inserts in it.
      if (o.seq <= prevSeq) throw new Error(`pending orders of ${userId} are out of sequence order`);
      w.uint(o.seq - prevSeq);
      w.uint(o.assetIndex * 4 + (o.isStop ? 2 : 0) + (o.isLong ? 1 : 0));
      w.uint(o.priceTicks);
      w.uint(o.marginMicros);
      w.uint(o.leverage);
      w.uint(o.stopLossTicks);
      w.uint(o.takeProfitTicks);
      w.uint(o.expiresAtMs);
      w.uint(o.placedAtMs);
      w.uint(o.oco?.seq ?? 0);
      prevSeq = o.seq;
    }
  }
}

export function readPendingOrders(r: ByteReader, state: EngineState, accounts: readonly Account[]): void {
  const assetCount = state.params.assets.length;
  for (const account of accounts) {
    const count = r.uint();
    // Each order takes more than a byte: a count beyond what is left is a cut or corrupt snapshot.
    if (count > r.length - r.position) throw new RangeError("snapshot truncated");
    // Made only for an account with linked orders: most accounts have no pending order at all.
    let links: [PendingOrder, number][] | undefined;
    let seq = 0;
    for (let i = 0; i < count; i++) {
      const delta = r.uint();
      if (delta === 0) throw new Error("snapshot holds pending orders out of sequence order");
      seq += delta;
      const kind = r.uint();
      const assetIndex = Math.floor(kind / 4);
      if (assetIndex >= assetCount) throw new Error("snapshot names an unknown asset");
      const order = makePendingOrder(account, {
        seq,
        assetIndex,
        isLong: (kind & 1) === 1,
        isStop: (kind & 2) === 2,
        priceTicks: r.uint(),
        marginMicros: r.uint(),
        leverage: r.uint(),
        stopLossTicks: r.uint(),
        takeProfitTicks: r.uint(),
        expiresAtMs: r.uint(),
        placedAtMs: r.uint(),
      });
      if (order.priceTicks === 0 || order.marginMicros === 0 || order.leverage === 0) {
        throw new Error("snapshot holds a pending order without a price, margin or leverage");
      }
      const ocoSeq = r.uint();
      if (ocoSeq !== 0) (links ??= []).push([order, ocoSeq]);
      addPendingOrder(state, order, false);
    }
    if (links === undefined) continue;
    for (const [order, ocoSeq] of links) {
      const partner = account.pendingOrders.get(ocoSeq);
      if (partner === undefined || partner === order) throw new Error("snapshot links an order to no other order");
      order.oco = partner;
    }
    for (const [order] of links) {
      if (order.oco?.oco !== order) throw new Error("snapshot holds a one-sided one-cancels-other link");
    }
  }
  for (const book of state.pendingBooks) {
    for (const heap of [book.longLimit, book.longStop, book.shortLimit, book.shortStop]) heap.heapify();
  }
  state.expiries.heapify();
}
