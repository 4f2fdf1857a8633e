/**
 * The idempotency window's storage: remembered requests in log order, oldest first.
 *
 * Each account maps its request ids to a slot here (a small integer, so the map holds no object per entry);
 * the slots are parallel queue arrays (owner, request id, time, receipt), evicted from the front in O(1) each.
 * Looking up through the account skips a second user lookup and a combined "user request" key, and a queue
 * beside the maps avoids the trap of evicting from a Map's front and iterating it from its start (V8 keeps
 * deleted slots until a rehash, so that walk is quadratic over a full window).
 */
import type { Receipt } from "./receipts.ts";

export interface RequestOwner {
  readonly userId: string;
  /** Request id → absolute slot in the window. */
  readonly requests: Map<string, number>;
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
  /** Queue position of the oldest entry, and the absolute slot of position 0. */
  private head = 0;
  private base = 0;

  constructor(private readonly accounts: ReadonlyMap<string, RequestOwner>) {}

  get size(): number {
    return this.owners.length - this.head;
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
    if (owner.requests.has(requestId)) throw new Error(`request ${owner.userId} ${requestId} is already remembered`);
    owner.requests.set(requestId, this.base + this.owners.length);
    this.owners.push(owner);
    this.requestIds.push(requestId);
    this.times.push(atMs);
    this.receipts.push(receipt);
  }

  /** Drops the oldest entries until all are at or after `oldestKeptMs` and at most `maxEntries` remain. */
  evict(oldestKeptMs: number, maxEntries: number): void {
    const { owners, requestIds, times, receipts } = this;
    while (this.head < owners.length && (times[this.head]! < oldestKeptMs || owners.length - this.head > maxEntries)) {
      owners[this.head]!.requests.delete(requestIds[this.head]!);
      owners[this.head] = undefined;
      receipts[this.head] = undefined;
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > owners.length) {
      this.owners = owners.slice(this.head);
      this.requestIds = requestIds.slice(this.head);
      this.times = times.slice(this.head);
      this.receipts = receipts.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }

  /** Keys as "<userId> <requestId>" (neither contains a space), oldest first. */
  keys(): string[] {
    return [...this].map(([key]) => key);
  }

  *[Symbol.iterator](): IterableIterator<[string, DedupEntry]> {
    for (let i = this.head; i < this.owners.length; i++) {
      yield [`${this.owners[i]!.userId} ${this.requestIds[i]!}`, { atMs: this.times[i]!, receipt: this.receipts[i]! }];
    }
  }
}
