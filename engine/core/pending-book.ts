/**
 * Pending entry orders: where they live and how they leave. An order is in its account's `pendingOrders`, in one of
 * its market's four fill heaps (state.ts, PendingBook) and, when it has an expiry, in the expiry heap.
 *
 * Reservation: a lone order reserves its margin from free USD; an OCO pair reserves the larger of its two margins
 * (at most one leg can fill). When a leg fills, the trade locks that leg's margin and the rest of the pair's
 * reservation returns; when a leg leaves unfilled (cancelled, expired, rejected at fill), the other leg stays
 * pending on its own, reserving its own margin, and the difference returns.
 */
import type { OrderView } from "../../contract/messages.ts";
import { ANY_NUMBER, type Writable } from "./any-number.ts";
import type { PositionedHeap } from "./positioned-heap.ts";
import { orderView, type OrderChange } from "./pending-view.ts";
import { amountsOf, type Account, type EngineState, type PendingOrder, type PendingOrderFacts } from "./state.ts";
import { emitBalancesChanged, emitOrderUpdated, type Step } from "./step.ts";
import { balancesView } from "./views.ts";

/** A pending order from its facts; every order object is built here so all share one shape (see `ANY_NUMBER`). */
export function makePendingOrder(account: Account, f: PendingOrderFacts): PendingOrder {
  const order: Writable<PendingOrder> = {
    seq: f.seq,
    assetIndex: f.assetIndex,
    isLong: f.isLong,
    isStop: f.isStop,
    priceTicks: ANY_NUMBER,
    marginMicros: ANY_NUMBER,
    leverage: f.leverage,
    stopLossTicks: ANY_NUMBER,
    takeProfitTicks: ANY_NUMBER,
    // 0 (none) for every order of a restore, a time past 2^31 for the first live one that expires.
    expiresAtMs: ANY_NUMBER,
    placedAtMs: f.placedAtMs,
    account,
    oco: undefined,
    heapPos: -1,
    expiryPos: -1,
  };
  order.priceTicks = f.priceTicks;
  order.marginMicros = f.marginMicros;
  order.stopLossTicks = f.stopLossTicks;
  order.takeProfitTicks = f.takeProfitTicks;
  order.expiresAtMs = f.expiresAtMs;
  return order;
}

/** The fill heap an order belongs in. */
export function fillHeapOf(state: EngineState, o: PendingOrderFacts): PositionedHeap<PendingOrder> {
  const book = state.pendingBooks[o.assetIndex]!;
  return o.isLong ? (o.isStop ? book.longStop : book.longLimit) : o.isStop ? book.shortStop : book.shortLimit;
}

/**
 * Whether the quote fills the order: long limit when ask ≤ price, long stop when ask ≥ price, short limit when
 * bid ≥ price, short stop when bid ≤ price.
 */
export function fillsAt(
  o: Pick<PendingOrderFacts, "isLong" | "isStop" | "priceTicks">,
  bidTicks: number,
  askTicks: number,
): boolean {
  if (o.isLong) return o.isStop ? askTicks >= o.priceTicks : askTicks <= o.priceTicks;
  return o.isStop ? bidTicks <= o.priceTicks : bidTicks >= o.priceTicks;
}

/** Files and indexes an order; `ordered: false` defers heap ordering to a later heapify (restore). */
export function addPendingOrder(state: EngineState, o: PendingOrder, ordered = true): void {
  o.account.pendingOrders.set(o.seq, o);
  const heap = fillHeapOf(state, o);
  if (ordered) heap.push(o);
  else heap.pushUnordered(o);
  if (o.expiresAtMs !== 0) {
    if (ordered) state.expiries.push(o);
    else state.expiries.pushUnordered(o);
  }
}

function removePendingOrder(state: EngineState, o: PendingOrder): void {
  o.account.pendingOrders.delete(o.seq);
  fillHeapOf(state, o).remove(o);
  if (o.expiryPos >= 0) state.expiries.remove(o);
}

/** Free USD this order holds in reserve, counting an OCO pair once (on its first leg). */
export function reservedBy(o: PendingOrder): number {
  const p = o.oco;
  if (p === undefined) return o.marginMicros;
  return o.seq < p.seq ? Math.max(o.marginMicros, p.marginMicros) : 0;
}

/**
 * Free USD the account's pending orders hold in reserve (an OCO pair's larger margin, once). It is the account's
 * money too: it counts against the account limit (account-limit.ts).
 */
export function reservedMicros(account: Account): number {
  if (account.pendingOrders.size === 0) return 0;
  let sum = 0;
  for (const o of account.pendingOrders.values()) sum += reservedBy(o);
  return sum;
}

/**
 * Takes an order off the book unfilled (cancelled, expired or rejected at fill) and returns its reservation to free
 * USD; its OCO partner, if any, stays pending alone (an order_updated shows it unlinked). Emits the order's
 * order_updated, the partner's, then the balances; returns the order's view and the balances as amounts.
 */
export function leaveUnfilled(state: EngineState, step: Step, o: PendingOrder, change: OrderChange) {
  const account = o.account;
  const view = orderView(state, o, change);
  const p = o.oco;
  const refund = p === undefined ? o.marginMicros : Math.max(o.marginMicros, p.marginMicros) - p.marginMicros;
  removePendingOrder(state, o);
  account.usd += refund;
  emitOrderUpdated(step, account, view);
  if (p !== undefined) {
    o.oco = undefined;
    p.oco = undefined;
    // Still pending: `updatedAt` is when the status last changed (contract orderSchema), so still its placement.
    emitOrderUpdated(step, account, orderView(state, p, { status: "pending", atMs: p.placedAtMs }));
  }
  const amounts = amountsOf(account);
  const balances = balancesView(state, amounts);
  emitBalancesChanged(step, account, balances);
  return { view, balances };
}

/**
 * Takes a filled order off the book: its margin becomes the trade's (the caller opens it), the rest of an OCO pair's
 * reservation returns to free USD, and the partner is cancelled. Returns the partner's cancelled view, to be emitted
 * after the fill's.
 */
export function leaveFilled(state: EngineState, step: Step, o: PendingOrder): OrderView | undefined {
  const p = o.oco;
  removePendingOrder(state, o);
  if (p === undefined) return undefined;
  o.account.usd += Math.max(o.marginMicros, p.marginMicros) - o.marginMicros;
  const view = orderView(state, p, {
    status: "cancelled",
    atMs: step.nowMs,
    reason: { code: "OCO_CANCELLED", message: "The other order of its one-cancels-other pair filled." },
  });
  removePendingOrder(state, p);
  // Unlinked after both views are built, so each names the other.
  o.oco = undefined;
  p.oco = undefined;
  return view;
}
