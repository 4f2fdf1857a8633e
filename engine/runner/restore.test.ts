// Recovery's first half on the in-memory store: the saved state comes back hash for hash, a fresh one when nothing
// was saved, and a snapshot that does not match its head is refused.
import { describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { makeParams } from "../core/params.ts";
import { encodeSnapshot, SNAPSHOT_VERSION } from "../snapshot/codec.ts";
import { hashSnapshot, stateHash } from "../snapshot/hash.ts";
import { MemorySnapshotStore, SnapshotIntegrityError } from "../snapshot/store.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { restoreState } from "./restore.ts";

const quiet = createLogger("test", { sink: () => undefined });

function someState() {
  const h = new EngineHarness();
  h.price("ETH_USDC_PERP", "4300.00", "4300.10");
  for (let u = 0; u < 20; u++) {
    h.createAccount(`user-${u}`);
    h.instruct(`user-${u}`, { kind: "open_trade", asset: "ETH", side: "long", margin: "10", leverage: 5 });
    h.advance(1);
  }
  return h.state;
}

describe("restoreState from a SnapshotStore", () => {
  it("starts fresh when nothing was saved", async () => {
    const store = new MemorySnapshotStore();
    const state = await restoreState(() => store.load(), makeParams(), quiet);
    expect(state.accounts.size).toBe(0);
    expect(state.lastInputId).toBe("0-0");
  });

  it("restores the saved state, hash for hash", async () => {
    const store = new MemorySnapshotStore(256);
    const original = someState();
    const bytes = encodeSnapshot(original);
    await store.save(bytes, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: original.lastInputId,
      stateHash: hashSnapshot(bytes),
      takenAt: new Date(0).toISOString(),
    });
    const restored = await restoreState(() => store.load(), makeParams(), quiet);
    expect(stateHash(restored)).toBe(stateHash(original));
    expect(restored.accounts.size).toBe(20);
  });

  it("refuses a snapshot whose bytes do not match its head", async () => {
    const store = new MemorySnapshotStore();
    const bytes = encodeSnapshot(someState());
    await store.save(bytes, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: "9-9",
      stateHash: hashSnapshot(bytes.subarray(1)),
      takenAt: new Date(0).toISOString(),
    });
    await expect(restoreState(() => store.load(), makeParams(), quiet)).rejects.toThrow(SnapshotIntegrityError);
  });
});
