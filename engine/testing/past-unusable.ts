/**
 * What every SnapshotStore does with SaveOptions.pastUnusable, run against a store that is empty at the start: the
 * first save past an unusable latest deletes it and keeps the snapshot the state was restored from (or none) as the
 * previous; a save told so once the head has moved on (another snapshotter's first save past the same one included),
 * or skipped, changes nothing it would not have. `stored`, when
 * given, lists the generations whose bytes the store still holds.
 */
import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { SNAPSHOT_VERSION } from "../snapshot/codec.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import type { SnapshotStore } from "../snapshot/store.ts";

export async function expectSavesPastUnusable(store: SnapshotStore, stored?: () => Promise<number[]>): Promise<void> {
  /** Saves as a state restored past the unusable `generation` from `restoredFrom`, when given. */
  const save = (lastInputId: string, generation?: number, restoredFrom: number | null = null) => {
    const bytes = new Uint8Array(randomBytes(300));
    const head = {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId,
      stateHash: hashSnapshot(bytes),
      takenAt: new Date(0).toISOString(),
    };
    return store.save(bytes, head, generation === undefined ? {} : { pastUnusable: { generation, restoredFrom } });
  };
  const generations = async () => {
    const latest = (await store.load())?.head.generation ?? null;
    const previous = (await store.load("previous"))?.head.generation ?? null;
    if (stored !== undefined) expect(await stored()).toEqual([previous, latest].filter((g) => g !== null));
    return [latest, previous];
  };

  // None saved before the unusable latest (generation 1): the state was restored fresh.
  await save("1-0");
  expect(await save("2-0", 1, null)).toMatchObject({ skipped: false, deletedUnusable: 1 });
  expect(await generations()).toEqual([2, null]);

  await save("3-0"); // 3, previous 2
  // Skipped (not newer): nothing is deleted.
  const skipped = await save("3-0", 3, 2);
  expect([skipped.skipped, skipped.deletedUnusable]).toEqual([true, undefined]);
  expect(await generations()).toEqual([3, 2]);
  // Restored from 2 past the unusable 3, which is still the head: 3 goes, 2 stays the previous.
  expect(await save("4-0", 3, 2)).toMatchObject({ skipped: false, deletedUnusable: 3 });
  expect(await generations()).toEqual([4, 2]);
  await expect(store.load()).resolves.toMatchObject({ head: { lastInputId: "4-0" } });
  await expect(store.load("previous")).resolves.toMatchObject({ head: { lastInputId: "2-0" } });

  // Another snapshotter restored past the same 3 from 2: the head (4, previous 2) is usable, and stays.
  expect((await save("5-0", 3, 2)).deletedUnusable).toBeUndefined();
  expect(await generations()).toEqual([5, 4]);
  // The head is the generation named, but its previous is not the one restored from: an ordinary save.
  expect((await save("6-0", 5, 2)).deletedUnusable).toBeUndefined();
  expect(await generations()).toEqual([6, 5]);
}
