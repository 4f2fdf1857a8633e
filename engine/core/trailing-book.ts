/**
 * The index of a market's trailing stops, built so a tick costs O(log n + fired) however many stops trail.
 *
 * The problem: when the bid makes a new high, every active long trailing stop's best price (and level) moves.
 * Instead of touching each stop, stops that share a best price form a GROUP holding that price once:
 * - A stop activated now has best = the current price. Every existing group's best is at least as good (it is the
 *   best price since that group formed, including now), so the new stop joins the group with the least good best
 *   when that equals the current price, or else starts a new one there. Groups thus form a stack ordered by best.
 * - A new best price b pops every group whose best is worse than (or equal to) b and MERGES them into one group at
 *   b: one merge per group, and a group is made only by an activation, so merges cost amortised O(1) per
 *   activation; a tick that makes no new best compares one number; no tick touches a stop that does not fire.
 * - In a group, stops sit in a pairing heap (meld O(1)) by their distance (price or percent), smallest first,
 *   then trade sequence: the smallest distance has the level nearest the price and fires first.
 * - A heap of groups, keyed by the level of each group's first stop, puts the next stop to fire at the top.
 * Stops by price distance and by percent are kept in separate systems (their levels move differently with the
 * best price). A stop's group is found through `group` links (union-find: an absorbed group links to the one
 * that absorbed it), followed only when that stop is shown, removed or saved.
 * Equal best price ⇔ same group, so groups follow from the stops' best prices alone: a restore rebuilds them.
 * Pending stops (activation price not reached) wait in an activation heap, lowest (long) / highest (short) first.
 *
 * A stop and its level rule: trailing-stop.ts; one system of groups: trailing-system.ts.
 */
import { BY_POS } from "./trailing-heap.ts";
import { PositionedHeap } from "./positioned-heap.ts";
import type { TrailingStop, TrailWork } from "./trailing-stop.ts";
import { TrailSystem } from "./trailing-system.ts";

export interface TrailSide {
  readonly byDistance: TrailSystem;
  readonly byPercent: TrailSystem;
  /** Not yet activated, by activation price (long: lowest first; short: highest first), then trade sequence. */
  readonly pending: PositionedHeap<TrailingStop>;
}

export interface TrailBook {
  readonly long: TrailSide;
  readonly short: TrailSide;
  readonly work: TrailWork;
}

export function createTrailBook(): TrailBook {
  const work: TrailWork = { merges: 0, stopTouches: 0 };
  const side = (isLong: boolean): TrailSide => ({
    byDistance: new TrailSystem(isLong, false, work),
    byPercent: new TrailSystem(isLong, true, work),
    pending: new PositionedHeap<TrailingStop>(
      (a, b) =>
        a.activationTicks !== b.activationTicks
          ? isLong === a.activationTicks < b.activationTicks
          : a.trade.seq < b.trade.seq,
      BY_POS,
    ),
  });
  return { long: side(true), short: side(false), work };
}

export function systemOf(book: TrailBook, stop: TrailingStop): TrailSystem {
  const side = stop.trade.isLong ? book.long : book.short;
  return stop.byPercent ? side.byPercent : side.byDistance;
}

function sideOf(book: TrailBook, stop: TrailingStop): TrailSide {
  return stop.trade.isLong ? book.long : book.short;
}

/**
 * Indexes a new stop at the market's current quote: active at once (best = the current bid for a long, ask for a
 * short) when it has no activation price or the price has reached it; otherwise pending.
 */
export function attachStop(book: TrailBook, stop: TrailingStop, bidTicks: number, askTicks: number): void {
  const isLong = stop.trade.isLong;
  const price = isLong ? bidTicks : askTicks;
  if (stop.activationTicks === 0 || (isLong ? price >= stop.activationTicks : price <= stop.activationTicks)) {
    systemOf(book, stop).join(stop, price);
  } else {
    book.work.stopTouches++;
    sideOf(book, stop).pending.push(stop);
  }
}

export function detachStop(book: TrailBook, stop: TrailingStop): void {
  if (stop.activated) {
    systemOf(book, stop).remove(stop);
  } else {
    book.work.stopTouches++;
    sideOf(book, stop).pending.remove(stop);
  }
}

/** Activates the long (bid) or short (ask) stops whose activation price `price` reached; returns them, in order. */
export function activateReached(book: TrailBook, isLong: boolean, price: number): TrailingStop[] | undefined {
  const side = isLong ? book.long : book.short;
  let s: TrailingStop | undefined;
  let activated: TrailingStop[] | undefined;
  while (
    (s = side.pending.peek()) !== undefined &&
    (isLong ? price >= s.activationTicks : price <= s.activationTicks)
  ) {
    side.pending.remove(s);
    systemOf(book, s).join(s, price);
    (activated ??= []).push(s);
  }
  return activated;
}

/** Checks a book against its market's quote; returns how many stops it holds. For invariant checks. */
export function verifyTrailBook(book: TrailBook, bidTicks: number | undefined, askTicks: number | undefined): number {
  let count = 0;
  for (const [side, price] of [
    [book.long, bidTicks],
    [book.short, askTicks],
  ] as const) {
    side.pending.verify();
    count += side.pending.size;
    for (const system of [side.byDistance, side.byPercent]) {
      count += system.verify(price);
      const next = system.peek();
      if (next !== undefined && price !== undefined && (side === book.long ? price <= next.level : price >= next.level))
        throw new Error("a trailing stop should have fired at the current quote");
    }
    const first = side.pending.peek();
    if (first !== undefined && price !== undefined) {
      if (side === book.long ? price >= first.activationTicks : price <= first.activationTicks)
        throw new Error("a trailing stop should have activated at the current quote");
    }
  }
  return count;
}
