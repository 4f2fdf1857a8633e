/**
 * The idempotency window's storage: remembered requests in log order, oldest first.
 *
 * Each account maps its request ids to a slot here (a small integer, so the map holds no object per entry) and
 * keeps its own slots in order, so a per-account cap evicts that account's oldest entry in O(1): one user's
 * traffic can never push another user's requests out. The slots are parallel queue arrays (owner, request id,
 * time, receipt); entries leave from the front by time or global count, or anywhere by their owner's cap
 * (then the slot is left dead and skipped). Going through the account avoids a second user lookup and a
 * combined "user request" key; the queue avoids evicting from a Map's front and iterating it from its start
 * (V8 keeps deleted slots until a rehash, so that walk is quadratic over a full window).
 */
import type { Receipt } from "./receipts.ts";

export interface RequestOwner {
  readonly userId: string;
  /** Request id → absolute slot in the window. */
  readonly requests: Map<string, number>;
  /** This owner's slots, oldest first from `requestHead`. */
  requestSlots: number[];
  requestHead: number;
}

export interface DedupEntry {
  readonly atMs: number;
  readonly receipt: Receipt;
}

export class RequestWindow {
  private owners: (RequestOwner | undefined)[] = [];
  private requestIds: string[] = [];
  private times: number[] = [];
  private receipts: (Receipt | undefined)[] = [];
  /** Queue position of the oldest slot, the absolute slot of position 0, and how many slots are alive. */
  private head = 0;
  private base = 0;
  private live = 0;

  constructor(private readonly accounts: ReadonlyMap<string, RequestOwner>) {}

  get size(): number {
    return this.live;
  }

  /** The slot of a remembered request, or -1. */
  find(owner: RequestOwner, requestId: string): number {
    return owner.requests.get(requestId) ?? -1;
  }

  atMs(slot: number): number {
    return this.times[slot - this.base]!;
  }

  receipt(slot: number): Receipt {
    return this.receipts[slot - this.base]!;
  }

  /** Convenience lookup by user id (tests, tools); the engine goes through `find`. */
  get(userId: string, requestId: string): DedupEntry | undefined {
    const owner = this.accounts.get(userId);
    const slot = owner === undefined ? -1 : this.find(owner, requestId);
    return slot < 0 ? undefined : { atMs: this.atMs(slot), receipt: this.receipt(slot) };
  }

  /** Adds a request that is not in the window, as the newest entry. */
  add(owner: RequestOwner, requestId: string, atMs: number, receipt: Receipt): void {
    const slot = this.base + this.owners.length;
    const before = owner.requests.size;
    owner.requests.set(requestId, slot);
    // One map operation, not has() + set(): a set that added nothing replaced an entry, which is a bug upstream.
    if (owner.requests.size === before) throw new Error(`request ${owner.userId} ${requestId} is already remembered`);
    owner.requestSlots.push(slot);
    this.owners.push(owner);
    this.requestIds.push(requestId);
    this.times.push(atMs);
    this.receipts.push(receipt);
    this.live++;
  }

  /** Drops the oldest entries until all are at or after `oldestKeptMs` and at most `maxEntries` remain. */
  evict(oldestKeptMs: number, maxEntries: number): void {
    while (this.head < this.owners.length) {
      const owner = this.owners[this.head];
      if (owner !== undefined) {
        if (this.times[this.head]! >= oldestKeptMs && this.live <= maxEntries) break;
        // Slots are in time order for every owner too, so this is the owner's oldest.
        owner.requestHead++;
        this.kill(owner, this.head);
        compactOwner(owner);
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

  /** Drops `owner`'s oldest entries until it has at most `maxEntries`. */
  evictOwn(owner: RequestOwner, maxEntries: number): void {
    while (owner.requests.size > maxEntries) {
      const slot = owner.requestSlots[owner.requestHead++]!;
      this.kill(owner, slot - this.base);
    }
    compactOwner(owner);
  }

  /** Keys as "<userId> <requestId>" (neither contains a space), oldest first. */
  keys(): string[] {
    return [...this].map(([key]) => key);
  }

  *[Symbol.iterator](): IterableIterator<[string, DedupEntry]> {
    for (let i = this.head; i < this.owners.length; i++) {
      const owner = this.owners[i];
      if (owner === undefined) continue;
      yield [`${owner.userId} ${this.requestIds[i]!}`, { atMs: this.times[i]!, receipt: this.receipts[i]! }];
    }
  }

  private kill(owner: RequestOwner, position: number): void {
    owner.requests.delete(this.requestIds[position]!);
    this.owners[position] = undefined;
    this.receipts[position] = undefined;
    this.live--;
  }
}

function compactOwner(owner: RequestOwner): void {
  if (owner.requestHead > 64 && owner.requestHead * 2 > owner.requestSlots.length) {
    owner.requestSlots = owner.requestSlots.slice(owner.requestHead);
    owner.requestHead = 0;
  }
}
