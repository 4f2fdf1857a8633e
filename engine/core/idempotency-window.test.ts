// The idempotency window against a plain model, over random traffic: owners growing past and shrinking below the
// small-owner scan, per-owner caps, eviction by time and count, queue compaction, and restores (packed, lazily
// indexed) taken at random points and then used on.
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../platform/testing/seeded-random.ts";
import type { Receipt } from "./receipts.ts";
import { IdempotencyWindow, SMALL_OWNER, type IdempotencyOwner, type PackedReceipts } from "./idempotency-window.ts";

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

/** A window holding the model's entries as a restore builds it: packed receipts, nothing indexed. */
function restored(model: readonly Remembered[]) {
  const window = new IdempotencyWindow();
  const owners = new Map<string, IdempotencyOwner>();
  const packed: PackedReceipts = {
    bytes: new Uint8Array(0),
    unpack: (offset) => receiptFor(model[offset]!),
    key: (offset) => model[offset]!.id,
    keyEquals: (offset, other) => model[offset]!.id === (typeof other === "string" ? other : model[other]!.id),
  };
  // Ids packed too (as a snapshot restores them), except every third: the window takes either.
  model.forEach((e, i) => {
    let owner = owners.get(e.user);
    if (owner === undefined) owners.set(e.user, (owner = window.owner(e.user)));
    window.addPacked(owner, i % 3 === 0 ? e.id : i, e.atMs, packed, i);
  });
  return window;
}

/**
 * The total cap done the slow, obvious way: while over `max`, count each user's entries, take the user with the
 * most (ties: whose first entry comes first in log order) and drop that user's first entry.
 */
function evictBusiestFromModel(model: readonly Remembered[], max: number): Remembered[] {
  const kept = [...model];
  while (kept.length > max) {
    const counts = new Map<string, number>();
    for (const e of kept) counts.set(e.user, (counts.get(e.user) ?? 0) + 1);
    let busiest = kept[0]!.user;
    // `counts` iterates users by their first entry, so a later user wins only with strictly more.
    for (const [user, count] of counts) if (count > counts.get(busiest)!) busiest = user;
    kept.splice(
      kept.findIndex((e) => e.user === busiest),
      1,
    );
  }
  return kept;
}

describe("IdempotencyWindow against a model", () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`agrees on every lookup, the order and the size (seed ${seed})`, () => {
      const rand = seededRandom(seed);
      const userCount = 12;
      const pick = (n: number) => Math.floor(rand() * n);
      let window = restored([]);
      let model: Remembered[] = [];
      let now = 0;
      let ids = 0;
      const check = () => {
        expect(window.size).toBe(model.length);
        expect(window.keys()).toEqual(model.map((e) => `${e.user} ${e.id}`));
        for (const e of model) {
          const slot = window.find(e.user, e.id);
          expect(slot).toBeGreaterThanOrEqual(0);
          expect(window.atMs(slot)).toBe(e.atMs);
          expect(window.receipt(slot)).toEqual(receiptFor(e));
        }
        expect(window.find("u0", "never-used")).toBe(-1);
        // An owner record per user with a remembered request, and none for a user whose last one left.
        expect(window.ownerCount).toBe(new Set(model.map((e) => e.user)).size);
      };
      for (let step = 0; step < 20_000; step++) {
        now += pick(3);
        const r = rand();
        const user = `u${pick(rand() < 0.5 ? 2 : userCount)}`; // two busy users cross the small-owner line often
        const owner = user; // the window is keyed by user id
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
        } else if (r < 0.82) {
          const oldest = now - 200 - pick(400);
          window.evict(oldest);
          model = model.filter((e) => e.atMs >= oldest);
        } else if (r < 0.9) {
          const max = 50 + pick(400);
          window.evictBusiest(max);
          model = evictBusiestFromModel(model, max);
        }
        // Restores from what is remembered now, then traffic goes on against the restored window (long enough for
        // the queue to compact under the restored entries).
        if (step === 1_000 || step === 2_000 || step === 12_000) window = restored(model);
        if (step % 500 === 0) check();
      }
      check();
    });
  }

  it("scans small owners and maps big ones, both ways through a restore", () => {
    const window = restored([]);
    for (let i = 0; i < SMALL_OWNER * 3; i++)
      window.add("u0", `b${i}`, i, receiptFor({ user: "u0", id: `b${i}`, atMs: i }));
    for (let i = 0; i < SMALL_OWNER; i++)
      window.add("u1", `s${i}`, i, receiptFor({ user: "u1", id: `s${i}`, atMs: i }));
    const big = window.owner("u0");
    expect(big.requests?.size).toBe(SMALL_OWNER * 3);
    expect(window.owner("u1").requests).toBeUndefined();
    window.evictOwn("u0", 3); // the map stays and shrinks with it
    expect(big.requests?.size).toBe(3);
    expect(window.find("u0", `b${SMALL_OWNER * 3 - 1}`)).toBeGreaterThanOrEqual(0);
    expect(window.find("u0", "b0")).toBe(-1);
  });

  it("takes the total cap from a restored owner's chain without indexing it, by counts made at the restore", () => {
    // u0 holds 20 (past SMALL_OWNER, so indexing it would build its map), u1 holds 2, interleaved at the start.
    const model: Remembered[] = [
      { user: "u1", id: "x0", atMs: 0 },
      ...Array.from({ length: 20 }, (_, i) => ({ user: "u0", id: `b${i}`, atMs: i + 1 })),
      { user: "u1", id: "x1", atMs: 30 },
    ];
    const window = restored(model);
    window.evictBusiest(19); // 22 → 19: u0 holds the most throughout, so its three oldest go
    expect(window.owner("u0").requests).toBeUndefined();
    expect(window.keys()).toEqual(["u1 x0", ...Array.from({ length: 17 }, (_, i) => `u0 b${i + 3}`), "u1 x1"]);
    window.evictBusiest(4); // 19 → 4: u0 still holds the most until it is down to 2, as u1 holds
    expect(window.keys()).toEqual(["u1 x0", "u0 b18", "u0 b19", "u1 x1"]);
    window.evictBusiest(2); // 2 each: u1's x0 is the older oldest and goes; then u0 holds the most: b18 goes
    expect(window.keys()).toEqual(["u0 b19", "u1 x1"]);
    expect(window.get("u1", "x1")?.receipt).toEqual(receiptFor(model[21]!));
  });

  it("forgets an owner whose last entry left, by its cap or by time", () => {
    const window = restored([{ user: "u0", id: "old", atMs: 1 }]);
    window.add("u1", "x", 2, receiptFor({ user: "u1", id: "x", atMs: 2 }));
    expect(window.ownerCount).toBe(2);
    window.evict(2); // u0's restored entry is older
    expect(window.ownerCount).toBe(1);
    expect(window.find("u0", "old")).toBe(-1);
    window.evictOwn("u1", 0);
    expect(window.ownerCount).toBe(0);
    expect(window.size).toBe(0);
  });
});
