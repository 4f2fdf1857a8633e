/**
 * The two heaps trailing stops need (trailing-book.ts): a binary heap that keeps each item's position on the item
 * (positioned-heap.ts, through `pos`: an arbitrary item leaves or moves in O(log n)), and a pairing heap whose
 * melds cost O(1) (a group of trailing stops joins another in one step when the price makes a new best). Both take a strict total order, so what comes
 * out first never depends on how the heap happens to be laid out (e.g. after a restore).
 */
import type { HeapPosition } from "./positioned-heap.ts";

export interface Positioned {
  /** Position in the one positioned heap holding it; -1 when in none. */
  pos: number;
}

/** Where a Positioned item sits in its heap, for PositionedHeap (positioned-heap.ts). */
export const BY_POS: HeapPosition<Positioned> = {
  get: (x) => x.pos,
  set: (x, i) => {
    x.pos = i;
  },
};

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
