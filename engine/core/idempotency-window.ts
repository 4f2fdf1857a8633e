/**
 * The idempotency window's storage: remembered requests in log order, oldest first.
 *
 * Each user with remembered requests has an owner record here (by user id; dropped when its last entry leaves),
 * which maps its request ids to a slot (a small integer, so the map holds no object per entry) and keeps its own
 * slots in order, so a per-user cap evicts that user's oldest entry in O(1). The slots are parallel queue arrays
 * (owner, request id, time, receipt); entries leave from the front by time, or anywhere by their owner's cap or
 * by the total cap (then the slot is left dead and skipped). The queue avoids evicting from a Map's front and
 * iterating it from its start (V8 keeps deleted slots until a rehash, so that walk is quadratic over a full window).
 *
 * The total cap is fair (`evictBusiest`): past it, the entry that leaves is the oldest of the owner holding the most
 * entries; between owners holding equally many, of the one whose oldest entry is older (so among equals the cap
 * acts as a plain oldest-first queue). Both keys are facts of the remembered entries in log order, which a snapshot
 * keeps, so a restored window picks the same entry. Guarantee: an owner loses an entry to the total cap only while
 * it holds at least as many as every other owner, so one user's volume never shortens the horizon of a user holding
 * fewer; and with `u` owners and a cap of `E`, the owner that loses one still holds ⌊E / u⌋ after (adds come
 * before the cap is applied, so `E + 1` entries are shared at that moment): a user at or below the fair share
 * ⌊E / u⌋ is never touched. Owners sit in a max-heap by (count, oldest entry), each knowing its place in it, so an
 * add or an eviction costs O(log owners).
 *
 * A restored window is built lazily, because most of what it remembers is never asked for again and a restore
 * must be quick (at 1M remembered requests, decoding every receipt into objects would take seconds and hundreds of
 * MB of heap, and filling every account's request map a few tenths of a second):
 * - receipts stay packed, as offsets into the snapshot's bytes: decoded on first use (a repeated request), copied
 *   as bytes by the next snapshot; so do request ids, compared as bytes when their account is used, until it grows
 *   a map or a snapshot lists them (a replay touches tens of thousands of accounts);
 * - an account's slot list is filled on its first use. Until then its restored slots are only linked into a chain
 *   (`chain`, then `chainNext`).
 * An account with few requests has no map at all: its handful of slots is scanned (cheaper than hashing into a map,
 * and a restore touching 50k accounts builds none); past SMALL_OWNER it gets one.
 * Per-owner counts come free with the restore (each restored entry adds one to its owner as it is added); the heap
 * is built once, in the same pass that links the chains, in O(owners).
 */
import { PositionedHeap, type HeapPosition } from "./positioned-heap.ts";
import type { Receipt } from "./receipts.ts";

/** An owner's place in the window's heap of owners lives on the owner (-1: not in it). */
const BY_HEAP_INDEX: HeapPosition<IdempotencyOwner> = {
  get: (owner) => owner.heapIndex,
  set: (owner, i) => {
    owner.heapIndex = i;
  },
};

/** One user's remembered requests. Outside this file only a handle: what `owner()` gives for `addPacked`. */
export interface IdempotencyOwner {
  readonly userId: string;
  /** Request id → absolute slot in the window, once the owner has had more than SMALL_OWNER at a time. */
  requests: Map<string, number> | undefined;
  /** This owner's slots, oldest first from `head`. */
  slots: number[];
  head: number;
  /** The first of this owner's restored slots not yet in `requests` (relative to the restore), or -1. */
  chain: number;
  /** Live entries: its slots from `head` plus its restored chain. */
  count: number;
  /** Its place in the window's heap of owners, or -1 (not in it: no entries, or restored and not linked yet). */
  heapIndex: number;
}

export interface IdempotencyEntry {
  readonly atMs: number;
  readonly receipt: Receipt;
}

/** Receipts and request ids still in encoded form (see the file comment): the bytes, and how to decode them. */
export interface PackedReceipts {
  readonly bytes: Uint8Array;
  /** The receipt encoded at `offset`, remembered at `atMs`. */
  unpack(offset: number, atMs: number): Receipt;
  /** The request id encoded at `offset`. */
  key(offset: number): string;
  /** Whether the request id encoded at `offset` is `other` (a request id, or the offset of another), decoding neither. */
  keyEquals(offset: number, other: string | number): boolean;
}

/** Up to this many remembered requests, an owner's are found by scanning its slots. */
export const SMALL_OWNER = 16;

export class IdempotencyWindow {
  /** Owners by user id: every user with a live entry, and no other. */
  private readonly byUser = new Map<string, IdempotencyOwner>();
  private owners: (IdempotencyOwner | undefined)[] = [];
  /** A request id, or the offset of a packed one (only ever of an owner not indexed since the restore). */
  private requestIds: (string | number)[] = [];
  private times: number[] = [];
  private receipts: (Receipt | number | undefined)[] = [];
  private packed: PackedReceipts | undefined;
  /** Receipts plus request ids still packed: the snapshot's bytes are kept while any is. */
  private packedLive = 0;
  /** Restored entries not linked into their owners' chains yet (see `addPacked`). */
  private unlinked = 0;
  /** Per restored entry, the same owner's next one (-1: none); indexes count from the absolute slot `chainFrom`. */
  private chainNext: Int32Array | undefined;
  private chainFrom = 0;
  private chainedOwners = 0;
  /** Owners with live entries, busiest first (see `busier`); holds every such owner whenever `unlinked` is 0. */
  private readonly heap = new PositionedHeap<IdempotencyOwner>((a, b) => this.busier(a, b), BY_HEAP_INDEX);
  /** Queue position of the oldest slot, the absolute slot of position 0, and how many slots are alive. */
  private head = 0;
  private base = 0;
  private live = 0;

  get size(): number {
    return this.live;
  }

  /** Users with at least one remembered request. */
  get ownerCount(): number {
    return this.byUser.size;
  }

  /** The slot of a remembered request, or -1. */
  find(userId: string, requestId: string): number {
    const owner = this.byUser.get(userId);
    if (owner === undefined) return -1;
    this.ensureIndexed(owner);
    return this.lookup(owner, requestId);
  }

  /** `userId`'s owner record, made if it has none: the handle `addPacked` takes. */
  owner(userId: string): IdempotencyOwner {
    let owner = this.byUser.get(userId);
    if (owner === undefined) {
      owner = { userId, requests: undefined, slots: [], head: 0, chain: -1, count: 0, heapIndex: -1 };
      this.byUser.set(userId, owner);
    }
    return owner;
  }

  atMs(slot: number): number {
    return this.times[slot - this.base]!;
  }

  receipt(slot: number): Receipt {
    const position = slot - this.base;
    const stored = this.receipts[position]!;
    if (typeof stored !== "number") return stored;
    const receipt = this.packed!.unpack(stored, this.times[position]!);
    this.receipts[position] = receipt;
    this.releasePacked();
    return receipt;
  }

  /** The bytes packed receipts point into; undefined once none is left. */
  get packedBytes(): Uint8Array | undefined {
    return this.packed?.bytes;
  }

  /** An entry with its receipt decoded (tests, tools); the engine goes through `find`. */
  get(userId: string, requestId: string): IdempotencyEntry | undefined {
    const slot = this.find(userId, requestId);
    return slot < 0 ? undefined : { atMs: this.atMs(slot), receipt: this.receipt(slot) };
  }

  /** Adds a request that is not in the window, as the newest entry. */
  add(userId: string, requestId: string, atMs: number, receipt: Receipt): void {
    const owner = this.owner(userId);
    this.ensureIndexed(owner);
    // Adding a request already remembered would be a bug upstream (the caller looks it up first).
    if (!this.index(owner, requestId, this.base + this.owners.length))
      throw new Error(`request ${userId} ${requestId} is already remembered`);
    this.owners.push(owner);
    this.requestIds.push(requestId);
    this.times.push(atMs);
    this.receipts.push(receipt);
    this.live++;
    owner.count++;
    if (owner.heapIndex < 0) this.heap.push(owner);
    else this.heap.fix(owner);
  }

  /**
   * Restores an entry whose receipt stays encoded at `offset` in `packed.bytes` (and its request id too, when
   * given as an offset), as the newest entry, without indexing it (see the file comment). For a window being
   * restored: all its restored entries come first, from one snapshot, and each is remembered once (checked when
   * its owner is indexed).
   */
  addPacked(
    owner: IdempotencyOwner,
    requestId: string | number,
    atMs: number,
    packed: PackedReceipts,
    offset: number,
  ): void {
    if (this.live !== this.unlinked || (this.packed !== undefined && this.packed !== packed)) {
      throw new Error("packed entries are restored into a fresh window, from one snapshot");
    }
    this.packed = packed;
    this.packedLive += typeof requestId === "number" ? 2 : 1;
    this.unlinked++;
    this.owners.push(owner);
    this.requestIds.push(requestId);
    this.times.push(atMs);
    this.receipts.push(offset);
    this.live++;
    owner.count++;
  }

  /** Drops the entries remembered before `oldestKeptMs` (the oldest first). */
  evict(oldestKeptMs: number): void {
    if (this.unlinked !== 0) this.link();
    while (this.head < this.owners.length) {
      const owner = this.owners[this.head];
      if (owner !== undefined) {
        if (this.times[this.head]! >= oldestKeptMs) break;
        // Slots are in time order for every owner too, so this is the owner's oldest.
        if (this.dropOldest(owner) !== this.head)
          throw new Error(`requests of ${owner.userId} are out of order in the window`);
      }
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > this.owners.length) {
      this.owners = this.owners.slice(this.head);
      this.requestIds = this.requestIds.slice(this.head);
      this.times = this.times.slice(this.head);
      this.receipts = this.receipts.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }

  /**
   * Drops entries until at most `maxEntries` remain, each the oldest of the owner then holding the most (ties: the
   * owner whose oldest is older). See the file comment for what this guarantees.
   */
  evictBusiest(maxEntries: number): void {
    if (this.unlinked !== 0) this.link();
    while (this.live > maxEntries) this.dropOldest(this.heap.peek()!);
  }

  /** Drops `owner`'s oldest entries until it has at most `maxEntries`. */
  evictOwn(userId: string, maxEntries: number): void {
    const owner = this.byUser.get(userId);
    if (owner === undefined) return;
    if (this.unlinked !== 0) this.link();
    while (owner.count > maxEntries) this.dropOldest(owner);
  }

  /** Keys as "<userId> <requestId>" (neither contains a space), oldest first. */
  keys(): string[] {
    // Not through the iterator: that would decode every packed receipt just to list the keys.
    const keys: string[] = [];
    this.forEachStored((userId, requestId) => keys.push(`${userId} ${requestId}`));
    return keys;
  }

  /** Entries with their receipts decoded, and kept so (tests, tools; a snapshot uses `forEachStored`). */
  *[Symbol.iterator](): IterableIterator<[string, IdempotencyEntry]> {
    for (let i = this.head; i < this.owners.length; i++) {
      const owner = this.owners[i];
      if (owner === undefined) continue;
      yield [`${owner.userId} ${this.requestIdAt(i)}`, { atMs: this.times[i]!, receipt: this.receipt(this.base + i) }];
    }
  }

  /** Entries as stored, oldest first (a packed receipt stays an offset into `packedBytes`): what a snapshot writes. */
  forEachStored(visit: (userId: string, requestId: string, atMs: number, receipt: Receipt | number) => void): void {
    for (let i = this.head; i < this.owners.length; i++) {
      const owner = this.owners[i];
      if (owner !== undefined) visit(owner.userId, this.requestIdAt(i), this.times[i]!, this.receipts[i]!);
    }
  }

  /**
   * Drops `owner`'s oldest entry and returns its queue position: the head of its restored chain if it was not used
   * since the restore (then its map is empty and stays so), else of its slots.
   */
  private dropOldest(owner: IdempotencyOwner): number {
    let position: number;
    if (owner.chain >= 0) {
      const i = owner.chain;
      position = this.chainFrom + i - this.base;
      owner.chain = this.chainNext![i]!;
      if (owner.chain < 0 && --this.chainedOwners === 0) this.chainNext = undefined;
    } else {
      position = owner.slots[owner.head++]! - this.base;
    }
    this.kill(owner, position);
    this.compact(owner);
    return position;
  }

  /** After `owner` lost entries: forgets it when it has none left, else trims its spent slots now and then. */
  private compact(owner: IdempotencyOwner): void {
    if (owner.chain < 0 && owner.head === owner.slots.length) {
      this.byUser.delete(owner.userId);
      owner.slots = [];
      owner.head = 0;
    } else if (owner.head > 64 && owner.head * 2 > owner.slots.length) {
      owner.slots = owner.slots.slice(owner.head);
      owner.head = 0;
    }
  }

  private kill(owner: IdempotencyOwner, position: number): void {
    const requestId = this.requestIds[position]!;
    if (typeof requestId === "number") this.releasePacked();
    else owner.requests?.delete(requestId);
    if (typeof this.receipts[position] === "number") this.releasePacked();
    this.owners[position] = undefined;
    this.receipts[position] = undefined;
    this.live--;
    // It lost its oldest: fewer entries and a newer oldest, so it can only move down the heap (or leave it).
    if (--owner.count === 0) this.heap.remove(owner);
    else this.heap.fix(owner);
  }

  /** Fills `owner`'s slots (and map) from its restored entries, on its first use after a restore. */
  private ensureIndexed(owner: IdempotencyOwner): void {
    if (this.unlinked !== 0) this.link();
    if (owner.chain < 0) return;
    // Every entry still in an owner's chain is alive: an eviction takes its entry out of the chain (`dropOldest`).
    const next = this.chainNext!;
    for (let i = owner.chain; i >= 0; i = next[i]!) {
      const slot = this.chainFrom + i;
      if (!this.index(owner, this.requestIds[slot - this.base]!, slot)) {
        throw new Error(
          `the restored snapshot remembers request ${owner.userId} ${this.requestIdAt(slot - this.base)} twice`,
        );
      }
    }
    owner.chain = -1;
    if (--this.chainedOwners === 0) this.chainNext = undefined;
  }

  /**
   * An indexed owner's slot for `requestId` (or for the packed id at that offset), or -1: from its map, or by
   * scanning its few live slots, whose ids may still be packed.
   */
  private lookup(owner: IdempotencyOwner, requestId: string | number): number {
    if (owner.requests !== undefined)
      return owner.requests.get(typeof requestId === "string" ? requestId : this.packed!.key(requestId)) ?? -1;
    const slots = owner.slots;
    for (let i = owner.head; i < slots.length; i++) {
      const stored = this.requestIds[slots[i]! - this.base]!;
      const same =
        typeof stored === "number"
          ? this.packed!.keyEquals(stored, requestId)
          : typeof requestId === "number"
            ? this.packed!.keyEquals(requestId, stored)
            : stored === requestId;
      if (same) return slots[i]!;
    }
    return -1;
  }

  /**
   * Files `slot` as `owner`'s newest, for `requestId` (or the packed id at that offset, the slot's own); false (and
   * nothing changed) if the owner has that id already. An owner's map holds decoded ids, and so do its slots then.
   */
  private index(owner: IdempotencyOwner, requestId: string | number, slot: number): boolean {
    if (this.lookup(owner, requestId) >= 0) return false;
    const slots = owner.slots;
    if (owner.requests === undefined && slots.length - owner.head >= SMALL_OWNER) {
      const map = new Map<string, number>();
      for (let i = owner.head; i < slots.length; i++) map.set(this.requestIdAt(slots[i]! - this.base), slots[i]!);
      owner.requests = map;
    }
    owner.requests?.set(typeof requestId === "string" ? requestId : this.requestIdAt(slot - this.base), slot);
    slots.push(slot);
    return true;
  }

  /**
   * Links the restored entries into per-owner chains, oldest first (one backwards pass, no maps), and puts their
   * owners in the heap (they all come from one restore into an empty window, so the heap is built from scratch).
   */
  private link(): void {
    const from = this.owners.length - this.unlinked;
    const next = new Int32Array(this.unlinked);
    for (let p = this.owners.length - 1; p >= from; p--) {
      const owner = this.owners[p]!;
      if (owner.chain < 0) {
        this.chainedOwners++;
        if (owner.heapIndex < 0) this.heap.pushUnordered(owner);
      }
      next[p - from] = owner.chain;
      owner.chain = p - from;
    }
    this.chainNext = next;
    this.chainFrom = this.base + from;
    this.unlinked = 0;
    this.heap.heapify();
  }

  /** Absolute slot of `owner`'s oldest live entry. */
  private oldestSlot(owner: IdempotencyOwner): number {
    return owner.chain >= 0 ? this.chainFrom + owner.chain : owner.slots[owner.head]!;
  }

  /** Whether `a` goes before `b` in the heap: more entries, or as many and an older oldest (distinct owners differ). */
  private busier(a: IdempotencyOwner, b: IdempotencyOwner): boolean {
    return a.count !== b.count ? a.count > b.count : this.oldestSlot(a) < this.oldestSlot(b);
  }

  /** The request id at a queue position, decoded (and kept so) if it was still packed. */
  private requestIdAt(position: number): string {
    const stored = this.requestIds[position]!;
    if (typeof stored === "string") return stored;
    const requestId = this.packed!.key(stored);
    this.requestIds[position] = requestId;
    this.releasePacked();
    return requestId;
  }

  /** One packed receipt or id fewer; the snapshot's bytes go when none is left. */
  private releasePacked(): void {
    if (--this.packedLive === 0) this.packed = undefined;
  }
}
