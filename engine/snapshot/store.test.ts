// The in-memory SnapshotStore keeps the promises every store keeps (store.ts): the head never moves back, the
// snapshot a save replaces stays readable as the previous, a load is verified against the head, a stream fills the
// sink in order.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SNAPSHOT_VERSION } from "./codec.ts";
import { expectSavesPastUnusable } from "../testing/past-unusable.ts";
import { hashSnapshot } from "./hash.ts";
import { MemorySnapshotStore, SnapshotIntegrityError, type SnapshotHeadInput } from "./store.ts";

function headFor(bytes: Uint8Array, lastInputId: string): SnapshotHeadInput {
  return {
    version: SNAPSHOT_VERSION,
    shard: 0,
    lastInputId,
    stateHash: hashSnapshot(bytes),
    takenAt: new Date(0).toISOString(),
  };
}

describe("MemorySnapshotStore", () => {
  it("returns null when nothing was ever saved", async () => {
    const store = new MemorySnapshotStore();
    expect(await store.load()).toBeNull();
    expect(await store.stream({ open: () => new Uint8Array(0), progress: () => undefined })).toBeNull();
  });

  it("round-trips the bytes, which it copies: the caller may reuse its buffer", async () => {
    const store = new MemorySnapshotStore(1000);
    const bytes = new Uint8Array(randomBytes(2500));
    const { head, skipped } = await store.save(bytes, headFor(bytes, "1-0"));
    expect(skipped).toBe(false);
    expect(head).toMatchObject({ bytes: 2500, chunks: 3, generation: 1, lastInputId: "1-0" });
    const copy = Buffer.from(bytes);
    bytes.fill(0);
    const loaded = await store.load();
    expect(loaded?.head).toEqual(head);
    expect(Buffer.from(loaded!.bytes).equals(copy)).toBe(true);
  });

  it("never moves the head back: an older or equal snapshot is skipped and the newer one stays", async () => {
    const store = new MemorySnapshotStore();
    const newer = new Uint8Array(randomBytes(100));
    await store.save(newer, headFor(newer, "5-3"));
    const older = new Uint8Array(randomBytes(100));
    const late = await store.save(older, headFor(older, "5-2"));
    expect(late.skipped).toBe(true);
    expect(late.head.lastInputId).toBe("5-3");
    expect((await store.save(older, headFor(older, "5-3"))).skipped).toBe(true);
    const next = await store.save(older, headFor(older, "6-0"));
    expect(next.head.generation).toBe(2);
    expect(Buffer.from((await store.load())!.bytes).equals(Buffer.from(older))).toBe(true);
  });

  it("keeps the snapshot a save replaced as the previous, and only that one", async () => {
    const store = new MemorySnapshotStore();
    const [first, second, third] = [1, 2, 3].map(() => new Uint8Array(randomBytes(100)));
    await store.save(first!, headFor(first!, "1-0"));
    expect(await store.load("previous")).toBeNull();
    await store.save(second!, headFor(second!, "2-0"));
    await store.save(first!, headFor(first!, "1-5")); // skipped: the previous stays what it was
    const previous = await store.load("previous");
    expect(previous?.head).toMatchObject({ generation: 1, lastInputId: "1-0" });
    expect(Buffer.from(previous!.bytes).equals(Buffer.from(first!))).toBe(true);
    await store.save(third!, headFor(third!, "3-0"));
    expect((await store.load("previous"))?.head).toMatchObject({ generation: 2, lastInputId: "2-0" });
    expect((await store.load())?.head).toMatchObject({ generation: 3, lastInputId: "3-0" });
  });

  it("deletes an unusable latest on the first save past it, keeping the one the state was restored from", async () => {
    await expectSavesPastUnusable(new MemorySnapshotStore());
  });

  it("streams piece by piece into the sink's buffer, what it reports as there being there", async () => {
    const store = new MemorySnapshotStore(1000);
    const bytes = new Uint8Array(randomBytes(2500));
    await store.save(bytes, headFor(bytes, "1-0"));
    let buffer: Uint8Array | undefined;
    const seen: { filled: number; matches: boolean }[] = [];
    await store.stream({
      open: (h) => (buffer = new Uint8Array(h.bytes)),
      progress: (filled) =>
        seen.push({ filled, matches: Buffer.from(buffer!.subarray(0, filled)).equals(bytes.subarray(0, filled)) }),
    });
    expect(seen).toEqual([
      { filled: 1000, matches: true },
      { filled: 2000, matches: true },
      { filled: 2500, matches: true },
    ]);
  });

  it("refuses to load a snapshot that does not match its head's hash", async () => {
    const store = new MemorySnapshotStore();
    const bytes = new Uint8Array(randomBytes(100));
    await store.save(bytes, { ...headFor(bytes, "1-0"), stateHash: "0".repeat(64) });
    const load = store.load();
    await expect(load).rejects.toThrow(SnapshotIntegrityError);
    await expect(load).rejects.toThrow(/is corrupt: SHA-256 [0-9a-f]{64}, head says 0{64}/);
  });
});
