// The idempotency window against a plain model, over random traffic: owners growing past and shrinking below the
// small-owner scan, per-owner caps, eviction by time and count, queue compaction, and restores (packed, lazily
// indexed) taken at random points and then used on.
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../platform/testing/seeded-random.ts";
import type { Receipt } from "./receipts.ts";
import { RequestWindow, SMALL_OWNER, type PackedReceipts, type RequestOwner } from "./request-window.ts";

interface Remembered {
  readonly user: string;
  readonly id: string;
  readonly atMs: number;
}

const receiptFor = (e: Remembered): Receipt => ({
  kind: "rejected",
  code: "INVALID_INSTRUCTION",
  message: `${e.user}/${e.id}@${e.atMs}`,
});

function owners(n: number): Map<string, RequestOwner> {
  const m = new Map<string, RequestOwner>();
  for (let i = 0; i < n; i++)
    m.set(`u${i}`, { userId: `u${i}`, requests: undefined, requestSlots: [], requestHead: 0, requestChain: -1 });
  return m;
}

/** A window holding the model's entries as a restore builds it: packed receipts, nothing indexed. */
function restored(model: readonly Remembered[], userCount: number) {
  const accounts = owners(userCount);
  const window = new RequestWindow(accounts);
  const packed: PackedReceipts = {
    bytes: new Uint8Array(0),
    unpack: (offset) => receiptFor(model[offset]!),
    key: (offset) => model[offset]!.id,
    keyEquals: (offset, other) => model[offset]!.id === (typeof other === "string" ? other : model[other]!.id),
  };
  // Ids packed too (as a snapshot restores them), except every third: the window takes either.
  model.forEach((e, i) => window.addPacked(accounts.get(e.user)!, i % 3 === 0 ? e.id : i, e.atMs, packed, i));
  return { accounts, window };
}

describe("RequestWindow against a model", () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`agrees on every lookup, the order and the size (seed ${seed})`, () => {
      const rand = seededRandom(seed);
      const userCount = 12;
      const pick = (n: number) => Math.floor(rand() * n);
      let { accounts, window } = restored([], userCount);
      let model: Remembered[] = [];
      let now = 0;
      let ids = 0;
      const check = () => {
        expect(window.size).toBe(model.length);
        expect(window.keys()).toEqual(model.map((e) => `${e.user} ${e.id}`));
        for (const e of model) {
          const slot = window.find(accounts.get(e.user)!, e.id);
          expect(slot).toBeGreaterThanOrEqual(0);
          expect(window.atMs(slot)).toBe(e.atMs);
          expect(window.receipt(slot)).toEqual(receiptFor(e));
        }
        expect(window.find(accounts.get("u0")!, "never-used")).toBe(-1);
      };
      for (let step = 0; step < 20_000; step++) {
        now += pick(3);
        const r = rand();
        const user = `u${pick(rand() < 0.5 ? 2 : userCount)}`; // two busy users cross the small-owner line often
        const owner = accounts.get(user)!;
        if (r < 0.6) {
          const id = rand() < 0.2 && model.length > 0 ? model[pick(model.length)]!.id : `r${++ids}`;
          const known = model.some((e) => e.user === user && e.id === id);
          expect(window.find(owner, id) >= 0).toBe(known);
          if (!known) {
            const e = { user, id, atMs: now };
            window.add(owner, id, now, receiptFor(e));
            model.push(e);
          } else {
            expect(() => window.add(owner, id, now, receiptFor({ user, id, atMs: now }))).toThrow("already remembered");
          }
        } else if (r < 0.75) {
          const cap = pick(SMALL_OWNER * 2);
          window.evictOwn(owner, cap);
          const mine = model.filter((e) => e.user === user);
          const drop = new Set(mine.slice(0, Math.max(0, mine.length - cap)));
          model = model.filter((e) => !drop.has(e));
        } else if (r < 0.9) {
          const oldest = now - 200 - pick(400);
          const max = 50 + pick(400);
          window.evict(oldest, max);
          model = model.filter((e) => e.atMs >= oldest);
          model = model.slice(Math.max(0, model.length - max));
        }
        // Restores from what is remembered now, then traffic goes on against the restored window (long enough for
        // the queue to compact under the restored entries).
        if (step === 1_000 || step === 2_000 || step === 12_000) ({ accounts, window } = restored(model, userCount));
        if (step % 500 === 0) check();
      }
      check();
    });
  }

  it("scans small owners and maps big ones, both ways through a restore", () => {
    const { accounts, window } = restored([], 2);
    const big = accounts.get("u0")!;
    const small = accounts.get("u1")!;
    for (let i = 0; i < SMALL_OWNER * 3; i++)
      window.add(big, `b${i}`, i, receiptFor({ user: "u0", id: `b${i}`, atMs: i }));
    for (let i = 0; i < SMALL_OWNER; i++)
      window.add(small, `s${i}`, i, receiptFor({ user: "u1", id: `s${i}`, atMs: i }));
    expect(big.requests?.size).toBe(SMALL_OWNER * 3);
    expect(small.requests).toBeUndefined();
    window.evictOwn(big, 3); // the map stays and shrinks with it
    expect(big.requests?.size).toBe(3);
    expect(window.find(big, `b${SMALL_OWNER * 3 - 1}`)).toBeGreaterThanOrEqual(0);
    expect(window.find(big, "b0")).toBe(-1);
  });
});
