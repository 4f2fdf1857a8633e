/**
 * A binary heap of trades ordered by one trigger level, with each trade's position stored on the trade so an
 * arbitrary trade (closed by hand) leaves in O(log n). Ties break by trade sequence, a total order: which trades
 * fire, and in what order, never depends on how the heap happens to be laid out (e.g. after a restore).
 *
 * `slot` says which level and position field of the trade this heap uses: "exit" (stop-loss / liquidation) or
 * "profit" (take-profit). `highestFirst` puts the highest level on top.
 */
import type { Trade } from "./state.ts";

export class TriggerHeap {
  private items: Trade[] = [];

  constructor(
    readonly slot: "exit" | "profit",
    readonly highestFirst: boolean,
  ) {}

  get size(): number {
    return this.items.length;
  }

  peek(): Trade | undefined {
    return this.items[0];
  }

  level(t: Trade): number {
    return this.slot === "exit" ? t.exitTicks : t.takeProfitTicks;
  }

  push(t: Trade): void {
    this.items.push(t);
    this.setPos(t, this.items.length - 1);
    this.up(this.items.length - 1);
  }

  /** Adds without ordering; call `heapify` once after a bulk load (restore). */
  pushUnordered(t: Trade): void {
    this.items.push(t);
    this.setPos(t, this.items.length - 1);
  }

  heapify(): void {
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** Restore: makes this empty heap `size` positions long, for `place` to fill. */
  reserve(size: number): void {
    if (this.items.length !== 0) throw new Error("only an empty heap can be reserved");
    this.items = new Array<Trade>(size);
  }

  /**
   * Restore: puts `t` at position `i` of a reserved heap, where the heap it was saved from had it. No ordering work
   * at all (a heapify of 1M trades costs a few tenths of a second): the layout is the saved heap's, whose order held.
   */
  place(t: Trade, i: number): void {
    if (!(i >= 0 && i < this.items.length) || this.items[i] !== undefined) {
      throw new Error(`${this.slot} heap position ${i} is out of range or taken twice`);
    }
    this.items[i] = t;
    this.setPos(t, i);
  }

  /** Restore: whether every reserved position has been placed. */
  get full(): boolean {
    return !this.items.includes(undefined as unknown as Trade);
  }

  remove(t: Trade): void {
    const i = this.slot === "exit" ? t.exitPos : t.profitPos;
    if (i < 0 || this.items[i] !== t) throw new Error(`trade #${t.seq} is not in this ${this.slot} heap`);
    this.setPos(t, -1);
    const last = this.items.pop() as Trade;
    if (i === this.items.length) return;
    this.items[i] = last;
    this.setPos(last, i);
    this.down(i);
    this.up(i);
  }

  /** Checks the heap property and position fields; for tests and invariant checks. */
  verify(): void {
    for (let i = 0; i < this.items.length; i++) {
      const t = this.items[i] as Trade;
      if ((this.slot === "exit" ? t.exitPos : t.profitPos) !== i)
        throw new Error(`heap position of trade #${t.seq} is stale`);
      const parent = this.items[(i - 1) >> 1];
      if (i > 0 && parent !== undefined && this.before(t, parent))
        throw new Error(`heap order broken at trade #${t.seq}`);
    }
  }

  *[Symbol.iterator](): IterableIterator<Trade> {
    yield* this.items;
  }

  private before(a: Trade, b: Trade): boolean {
    const la = this.level(a);
    const lb = this.level(b);
    if (la !== lb) return this.highestFirst ? la > lb : la < lb;
    return a.seq < b.seq;
  }

  private setPos(t: Trade, i: number): void {
    if (this.slot === "exit") t.exitPos = i;
    else t.profitPos = i;
  }

  private up(i: number): void {
    const items = this.items;
    const t = items[i] as Trade;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as Trade;
      if (!this.before(t, parent)) break;
      items[i] = parent;
      this.setPos(parent, i);
      i = p;
    }
    items[i] = t;
    this.setPos(t, i);
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const t = items[i] as Trade;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.before(items[r] as Trade, items[l] as Trade)) c = r;
      const child = items[c] as Trade;
      if (!this.before(child, t)) break;
      items[i] = child;
      this.setPos(child, i);
      i = c;
    }
    items[i] = t;
    this.setPos(t, i);
  }
}
