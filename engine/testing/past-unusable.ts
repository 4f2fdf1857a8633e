/**
 * What every SnapshotStore does with SaveOptions.pastUnusable, run against a store that is empty at the start: the
 * first save past an unusable latest deletes it and keeps the snapshot the state was restored from (or none) as the
 * previous; a save told so once the head has moved on, or skipped, changes nothing it would not have. `stored`, when
 * given, lists the generations whose bytes the store still holds.
 */
import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { SNAPSHOT_VERSION } from "../snapshot/codec.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import type { SnapshotStore } from "../snapshot/store.ts";

export async function expectSavesPastUnusable(store: SnapshotStore, stored?: () => Promise<number[]>): Promise<void> {
  const save = (lastInputId: string, restoredFrom?: number | null) => {
    const bytes = new Uint8Array(randomBytes(300));
    const head = {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId,
      stateHash: hashSnapshot(bytes),
      takenAt: new Date(0).toISOString(),
    };
    return store.save(bytes, head, restoredFrom === undefined ? {} : { pastUnusable: { restoredFrom } });
  };
  const generations = async () => {
    const latest = (await store.load())?.head.generation ?? null;
    const previous = (await store.load("previous"))?.head.generation ?? null;
    if (stored !== undefined) expect(await stored()).toEqual([previous, latest].filter((g) => g !== null));
    return [latest, previous];
  };

  // None saved before the unusable latest (generation 1): the state was restored fresh.
  await save("1-0");
  expect(await save("2-0", null)).toMatchObject({ skipped: false, deletedUnusable: 1 });
  expect(await generations()).toEqual([2, null]);

  await save("3-0"); // 3, previous 2
  // Skipped (not newer): nothing is deleted.
  expect(await save("3-0", 2)).toMatchObject({ skipped: true });
  expect((await save("3-0", 2)).deletedUnusable).toBeUndefined();
  expect(await generations()).toEqual([3, 2]);
  // Restored from 2 past the unusable 3, which is still the head: 3 goes, 2 stays the previous.
  expect(await save("4-0", 2)).toMatchObject({ skipped: false, deletedUnusable: 3 });
  expect(await generations()).toEqual([4, 2]);
  await expect(store.load()).resolves.toMatchObject({ head: { lastInputId: "4-0" } });
  await expect(store.load("previous")).resolves.toMatchObject({ head: { lastInputId: "2-0" } });

  // The head moved on since (5 replaced 4): a save restored from 2 is an ordinary one.
  await save("5-0");
  const late = await save("6-0", 2);
  expect(late.deletedUnusable).toBeUndefined();
  expect(await generations()).toEqual([6, 5]);
}
