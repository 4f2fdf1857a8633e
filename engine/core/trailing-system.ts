/**
 * The active trailing stops of one market side and one kind of distance: groups of stops sharing a best price, on
 * a stack ordered by best, with a heap of groups by level (the design: trailing-book.ts).
 */
import { PairingHeap, BY_POS } from "./trailing-heap.ts";
import { PositionedHeap } from "./positioned-heap.ts";
import { groupOf, levelAt, type TrailGroup, type TrailingStop, type TrailWork } from "./trailing-stop.ts";
import { ANY_NUMBER } from "./any-number.ts";

/**
 * Whether group `a` fires before `b` when a price reaches both: long, the higher level first; short, the lower; ties
 * by the first stop's trade sequence (the older trade).
 */
export function firesBefore(a: TrailGroup, b: TrailGroup, isLong: boolean): boolean {
  return a.level !== b.level ? isLong === a.level > b.level : a.levelSeq < b.levelSeq;
}

export class TrailSystem {
  /** The group with the least good best (the most recent); its `better` chain is the rest of the stack. */
  private top: TrailGroup | null = null;
  private readonly levels: PositionedHeap<TrailGroup>;
  private readonly stops: PairingHeap<TrailingStop>;
  private restoring: Map<number, TrailGroup> | undefined;

  constructor(
    readonly isLong: boolean,
    readonly byPercent: boolean,
    private readonly work: TrailWork,
  ) {
    this.stops = new PairingHeap((a, b) => (a.amount !== b.amount ? a.amount < b.amount : a.trade.seq < b.trade.seq));
    this.levels = new PositionedHeap<TrailGroup>((a, b) => firesBefore(a, b, isLong), BY_POS);
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
    // Both keys change before the heap is fixed: its order is by level, then age (levelSeq).
    const level = levelAt(this.isLong, this.byPercent, g.root.amount, g.best);
    const levelSeq = g.root.trade.seq;
    if (level !== g.level || levelSeq !== g.levelSeq) {
      g.level = level;
      g.levelSeq = levelSeq;
      this.levels.fix(g);
    }
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
      if (g.levelSeq !== g.root.trade.seq) throw new Error("a trailing group's age is stale");
    }
    if (groups !== this.levels.size) throw new Error("trailing groups and their level heap disagree");
    return count;
  }

  /** Whether `a` is a better best price than `b` (long: higher; short: lower). */
  private improves(a: number, b: number): boolean {
    return this.isLong ? a > b : a < b;
  }

  private newGroup(best: number, stop: TrailingStop): TrailGroup {
    // Its prices take any number, as a stop's do (see `ANY_NUMBER`).
    const g: TrailGroup = {
      best: ANY_NUMBER,
      root: stop,
      size: 1,
      parent: null,
      level: ANY_NUMBER,
      levelSeq: stop.trade.seq,
      pos: -1,
      worse: null,
      better: null,
    };
    g.best = best;
    g.level = levelAt(this.isLong, this.byPercent, stop.amount, best);
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
