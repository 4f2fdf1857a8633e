/**
 * The two heaps trailing stops need (trailing-book.ts): a binary heap that keeps each item's position on the item
 * (so an arbitrary item leaves or moves in O(log n)), and a pairing heap whose melds cost O(1) (a group of trailing
 * stops joins another in one step when the price makes a new best). Both take a strict total order, so what comes
 * out first never depends on how the heap happens to be laid out (e.g. after a restore).
 */

export interface Positioned {
  /** Position in the one PosHeap holding it; -1 when in none. */
  pos: number;
}

export class PosHeap<T extends Positioned> {
  private readonly items: T[] = [];

  /** `before(a, b)`: a comes out before b; must be a strict total order. */
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(x: T): void {
    this.items.push(x);
    x.pos = this.items.length - 1;
    this.up(x.pos);
  }

  remove(x: T): void {
    const i = x.pos;
    if (i < 0 || this.items[i] !== x) throw new Error("item is not in this heap");
    x.pos = -1;
    const last = this.items.pop() as T;
    if (i === this.items.length) return;
    this.items[i] = last;
    last.pos = i;
    this.fix(last);
  }

  /** Restores order after `x`'s key changed. */
  fix(x: T): void {
    this.down(x.pos);
    this.up(x.pos);
  }

  /** Checks order and positions; for invariant checks. */
  verify(): void {
    this.items.forEach((x, i) => {
      if (x.pos !== i) throw new Error(`heap position ${i} is stale`);
      if (i > 0 && this.before(x, this.items[(i - 1) >> 1]!)) throw new Error(`heap order broken at ${i}`);
    });
  }

  *[Symbol.iterator](): IterableIterator<T> {
    yield* this.items;
  }

  private up(i: number): void {
    const items = this.items;
    const x = items[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p]!;
      if (!this.before(x, parent)) break;
      items[i] = parent;
      parent.pos = i;
      i = p;
    }
    items[i] = x;
    x.pos = i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const x = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(items[r]!, items[l]!) ? r : l;
      const child = items[c]!;
      if (!this.before(child, x)) break;
      items[i] = child;
      child.pos = i;
      i = c;
    }
    items[i] = x;
    x.pos = i;
  }
}

/** A pairing-heap node: leftmost child, right sibling, and `prev` (left sibling, or parent for a leftmost child). */
export interface PairingNode<T extends PairingNode<T>> {
  child: T | null;
  sibling: T | null;
  prev: T | null;
}

/** Pairing-heap operations over nodes ordered by `before` (a strict total order). Roots have no prev or sibling. */
export class PairingHeap<T extends PairingNode<T>> {
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  meld(a: T | null, b: T | null): T | null {
    if (a === null) return b;
    if (b === null) return a;
    if (this.before(b, a)) [a, b] = [b, a];
    b.prev = a;
    b.sibling = a.child;
    if (a.child !== null) a.child.prev = b;
    a.child = b;
    return a;
  }

  /** The heap `root` without `x` (a node of it); returns the new root. */
  delete(root: T, x: T): T | null {
    if (x === root) return this.popRoot(x);
    const prev = x.prev!;
    if (prev.child === x) prev.child = x.sibling;
    else prev.sibling = x.sibling;
    if (x.sibling !== null) x.sibling.prev = prev;
    x.prev = null;
    x.sibling = null;
    return this.meld(root, this.popRoot(x));
  }

  /** What is left of a root's heap once the root goes: its children, melded in two passes. */
  private popRoot(root: T): T | null {
    let first = root.child;
    root.child = null;
    if (first === null) return null;
    first.prev = null;
    // First pass: meld pairs left to right, keeping the results on a list (linked through `sibling`, reversed).
    let pairs: T | null = null;
    while (first !== null) {
      const a: T = first;
      const b: T | null = a.sibling;
      first = b === null ? null : b.sibling;
      a.sibling = null;
      a.prev = null;
      if (b !== null) {
        b.sibling = null;
        b.prev = null;
      }
      const m = this.meld(a, b)!;
      m.sibling = pairs;
      pairs = m;
    }
    // Second pass: meld right to left (the list is already reversed).
    let result: T | null = null;
    while (pairs !== null) {
      const next: T | null = pairs.sibling;
      pairs.sibling = null;
      result = this.meld(result, pairs);
      pairs = next;
    }
    return result;
  }
}
