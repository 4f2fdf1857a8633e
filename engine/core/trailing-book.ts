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
 * Levels (docs/trading-rules.md): long by distance best − d, by percent floor(best × (10000 − p) / 10000); short
 * by distance best + d, by percent ceil(best × (10000 + p) / 10000), p in hundredths of a percent: rounded away from
 * the price, so the level is never nearer the price than the exact level the user asked for.
 */
import { divFloor } from "../../contract/money.ts";
import type { Trade } from "./state.ts";
import { PairingHeap, PosHeap, type PairingNode, type Positioned } from "./trailing-heap.ts";

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

export interface TrailSide {
  readonly byDistance: TrailSystem;
  readonly byPercent: TrailSystem;
  /** Not yet activated, by activation price (long: lowest first; short: highest first), then trade sequence. */
  readonly pending: PosHeap<TrailingStop>;
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
    pending: new PosHeap<TrailingStop>((a, b) =>
      a.activationTicks !== b.activationTicks
        ? isLong === a.activationTicks < b.activationTicks
        : a.trade.seq < b.trade.seq,
    ),
  });
  return { long: side(true), short: side(false), work };
}

export function newTrailingStop(trade: Trade, byPercent: boolean, amount: number, activationTicks: number) {
  const stop: TrailingStop = {
    trade,
    byPercent,
    amount,
    activationTicks,
    activated: false,
    group: null,
    finalBestTicks: 0,
    child: null,
    sibling: null,
    prev: null,
    pos: -1,
  };
  return stop;
}

export function systemOf(book: TrailBook, stop: TrailingStop): TrailSystem {
  const side = stop.trade.isLong ? book.long : book.short;
  return stop.byPercent ? side.byPercent : side.byDistance;
}

/** The group a stop is in now (following merges, shortening the path as it goes). */
export function groupOf(stop: TrailingStop): TrailGroup {
  const first = stop.group;
  if (first === null) throw new Error(`trailing stop of trade #${stop.trade.seq} is not active`);
  let root = first;
  while (root.parent !== null) root = root.parent;
  // Path compression: every group passed now links straight to the live one.
  for (let g = first; g.parent !== null && g.parent !== root; ) {
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

/** The active trailing stops of one market side and one kind of distance. */
export class TrailSystem {
  /** The group with the least good best (the most recent); its `better` chain is the rest of the stack. */
  private top: TrailGroup | null = null;
  private readonly levels: PosHeap<TrailGroup>;
  private readonly stops: PairingHeap<TrailingStop>;
  private restoring: Map<number, TrailGroup> | undefined;

  constructor(
    readonly isLong: boolean,
    readonly byPercent: boolean,
    private readonly work: TrailWork,
  ) {
    this.stops = new PairingHeap((a, b) => (a.amount !== b.amount ? a.amount < b.amount : a.trade.seq < b.trade.seq));
    // Long: the highest level fires first; short: the lowest. Ties by the first stop's trade sequence.
    this.levels = new PosHeap((a, b) => (a.level !== b.level ? isLong === a.level > b.level : a.levelSeq < b.levelSeq));
  }

  get groupCount(): number {
    return this.levels.size;
  }

  /** The stop that fires next and its level, if any stop is active. */
  peek(): TrailGroup | undefined {
    return this.levels.peek();
  }

  /** A new price (long: bid, short: ask). Merges the groups it makes a new best for; touches no stop. */
  onPrice(price: number): void {
    const top = this.top;
    if (top === null || !this.improves(price, top.best)) return;
    let merged = top;
    let rest = top.better;
    this.levels.remove(top);
    while (rest !== null && !this.improves(rest.best, price)) {
      const next = rest.better;
      this.levels.remove(rest);
      merged = this.union(merged, rest);
      rest = next;
    }
    merged.best = price;
    merged.worse = null;
    merged.better = rest;
    if (rest !== null) rest.worse = merged;
    this.top = merged;
    merged.level = levelAt(this.isLong, this.byPercent, merged.root!.amount, price);
    merged.levelSeq = merged.root!.trade.seq;
    this.levels.push(merged);
  }

  /** Activates `stop` at the current price (which every group's best is at least as good as). */
  join(stop: TrailingStop, price: number): void {
    this.work.stopTouches++;
    stop.activated = true;
    const top = this.top;
    if (top !== null && this.improves(price, top.best)) throw new Error("trailing groups are behind the price");
    if (top !== null && top.best === price) {
      stop.group = top;
      this.add(top, stop);
      return;
    }
    const g = this.newGroup(price, stop);
    g.better = top;
    if (top !== null) top.worse = g;
    this.top = g;
    this.levels.push(g);
  }

  /** Takes an active stop out; its best price is kept on it (`finalBestTicks`) for the views of this step. */
  remove(stop: TrailingStop): void {
    this.work.stopTouches++;
    const g = groupOf(stop);
    stop.finalBestTicks = g.best;
    stop.group = null;
    g.root = this.stops.delete(g.root!, stop);
    g.size--;
    if (g.root === null) {
      this.levels.remove(g);
      if (g.worse !== null) g.worse.better = g.better;
      else this.top = g.better;
      if (g.better !== null) g.better.worse = g.worse;
      return;
    }
    const level = levelAt(this.isLong, this.byPercent, g.root.amount, g.best);
    if (level !== g.level || g.levelSeq !== g.root.trade.seq) {
      g.level = level;
      this.levels.fix(g);
    }
    g.levelSeq = g.root.trade.seq;
  }

  /** Restore: puts an active stop back with its saved best price; call `finishRestore` after the last. */
  restore(stop: TrailingStop, best: number): void {
    const groups = (this.restoring ??= new Map<number, TrailGroup>());
    stop.activated = true;
    const g = groups.get(best);
    if (g === undefined) {
      groups.set(best, this.newGroup(best, stop));
      return;
    }
    stop.group = g;
    this.add(g, stop);
  }

  /** Restore: orders the restored groups into the stack and the level heap. */
  finishRestore(): void {
    const groups = [...(this.restoring?.values() ?? [])];
    this.restoring = undefined;
    // The top has the least good best: for a long the lowest, so sort highest first and link from the bottom.
    groups.sort((a, b) => (this.isLong ? b.best - a.best : a.best - b.best));
    let better: TrailGroup | null = null;
    for (const g of groups) {
      g.better = better;
      if (better !== null) better.worse = g;
      better = g;
      this.levels.push(g);
    }
    this.top = better;
  }

  /** Checks the stack's order and the level heap; returns the number of active stops. For invariant checks. */
  verify(price: number | undefined): number {
    this.levels.verify();
    let count = 0;
    let groups = 0;
    for (let g = this.top; g !== null; g = g.better) {
      groups++;
      count += g.size;
      if (g.parent !== null || g.root === null) throw new Error("a merged or empty trailing group is still listed");
      if (g.better !== null && !this.improves(g.better.best, g.best)) throw new Error("trailing groups out of order");
      if (price !== undefined && this.improves(price, g.best)) throw new Error("a trailing group is behind the price");
      if (g.level !== levelAt(this.isLong, this.byPercent, g.root.amount, g.best))
        throw new Error("a trailing group's level is stale");
    }
    if (groups !== this.levels.size) throw new Error("trailing groups and their level heap disagree");
    return count;
  }

  /** Whether `a` is a better best price than `b` (long: higher; short: lower). */
  private improves(a: number, b: number): boolean {
    return this.isLong ? a > b : a < b;
  }

  private newGroup(best: number, stop: TrailingStop): TrailGroup {
    const g: TrailGroup = {
      best,
      root: stop,
      size: 1,
      parent: null,
      level: levelAt(this.isLong, this.byPercent, stop.amount, best),
      levelSeq: stop.trade.seq,
      pos: -1,
      worse: null,
      better: null,
    };
    stop.group = g;
    return g;
  }

  private add(g: TrailGroup, stop: TrailingStop): void {
    g.root = this.stops.meld(g.root, stop);
    g.size++;
    if (g.root === stop) {
      g.level = levelAt(this.isLong, this.byPercent, stop.amount, g.best);
      g.levelSeq = stop.trade.seq;
      if (g.pos >= 0) this.levels.fix(g);
    }
  }

  /** Merges two groups (neither in the level heap): the smaller links to the larger, whose stops heap takes both. */
  private union(a: TrailGroup, b: TrailGroup): TrailGroup {
    this.work.merges++;
    const [big, small] = a.size >= b.size ? [a, b] : [b, a];
    big.root = this.stops.meld(big.root, small.root);
    big.size += small.size;
    small.parent = big;
    small.root = null;
    small.size = 0;
    return big;
  }
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
