/**
 * A binary heap that stores each item's position on the item (through `pos`), so any item leaves in O(log n): the
 * pending-order fill and expiry indexes, the trailing stops' activation and group-level heaps, and the idempotency
 * window's owners by how many requests each has remembered. `before` must be a strict total order (ties broken by
 * sequence), so which item is on top, and the order items leave in, never depends on how the heap happens to be
 * laid out — a restore rebuilds these heaps by heapify and behaves exactly as the original. (trigger-heap.ts is the same structure,
 * specialised to open trades' two level slots.)
 */
export interface HeapPosition<T> {
  get(item: T): number;
  set(item: T, i: number): void;
}

export class PositionedHeap<T> {
  private items: T[] = [];

  constructor(
    private readonly before: (a: T, b: T) => boolean,
    private readonly pos: HeapPosition<T>,
  ) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    this.items.push(item);
    this.pos.set(item, this.items.length - 1);
    this.up(this.items.length - 1);
  }

  /** Adds without ordering; call `heapify` once after a bulk load (restore). */
  pushUnordered(item: T): void {
    this.items.push(item);
    this.pos.set(item, this.items.length - 1);
  }

  heapify(): void {
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  remove(item: T): void {
    const i = this.pos.get(item);
    if (i < 0 || this.items[i] !== item) throw new Error("item is not in this heap");
    this.pos.set(item, -1);
    const last = this.items.pop() as T;
    if (i === this.items.length) return;
    this.items[i] = last;
    this.pos.set(last, i);
    this.down(i);
    this.up(i);
  }

  /** Restores order after `item`'s key changed. */
  fix(item: T): void {
    const i = this.pos.get(item);
    this.down(i);
    this.up(this.pos.get(item));
  }

  /** Checks the heap property and position fields; for tests and invariant checks. */
  verify(): void {
    for (let i = 0; i < this.items.length; i++) {
      const item = this.items[i] as T;
      if (this.pos.get(item) !== i) throw new Error(`heap position ${i} is stale`);
      if (i > 0 && this.before(item, this.items[(i - 1) >> 1] as T)) throw new Error(`heap order broken at ${i}`);
    }
  }

  *[Symbol.iterator](): IterableIterator<T> {
    yield* this.items;
  }

  private up(i: number): void {
    const items = this.items;
    const item = items[i] as T;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as T;
      if (!this.before(item, parent)) break;
      items[i] = parent;
      this.pos.set(parent, i);
      i = p;
    }
    items[i] = item;
    this.pos.set(item, i);
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i] as T;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.before(items[r] as T, items[l] as T)) c = r;
      const child = items[c] as T;
      if (!this.before(child, item)) break;
      items[i] = child;
      this.pos.set(child, i);
      i = c;
    }
    items[i] = item;
    this.pos.set(item, i);
  }
}
