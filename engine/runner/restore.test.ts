// Recovery's first half on the in-memory store: the saved state comes back hash for hash, a fresh one when nothing
// was saved, and a snapshot that does not match its head is refused, or passed over for the previous one when the
// caller gives a way to load it.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../platform/log.ts";
import { makeParams } from "../core/params.ts";
import { encodeSnapshot, SNAPSHOT_VERSION } from "../snapshot/codec.ts";
import { hashSnapshot, stateHash } from "../snapshot/hash.ts";
import { MemorySnapshotStore, SnapshotIntegrityError, SnapshotLoadStalledError } from "../snapshot/store.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { restoreState, SnapshotsUnusableError } from "./restore.ts";

const quiet = createLogger("test", { sink: () => undefined });

function someState(users = 20) {
  const h = new EngineHarness();
  h.price("ETH_USDC_PERP", "4300.00", "4300.10");
  for (let u = 0; u < users; u++) {
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

  it("keeps the saved state's parameters, and names each configured one it ignores", async () => {
    const store = new MemorySnapshotStore();
    const bytes = encodeSnapshot(someState());
    await store.save(bytes, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: "1-0",
      stateHash: hashSnapshot(bytes),
      takenAt: new Date(0).toISOString(),
    });
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const configured = makeParams({ initialBalanceMicros: 50_000_000_000 });
    const restored = await restoreState(() => store.load(), configured, log);
    expect(restored.params.initialBalanceMicros).toBe(makeParams().initialBalanceMicros);
    expect(lines.filter((l) => l["event"] === "params_from_snapshot")).toMatchObject([
      {
        level: "warn",
        kept: { initialBalanceMicros: 10_000_000_000 },
        ignored: { initialBalanceMicros: 50_000_000_000 },
      },
    ]);
    // One field of one asset changed by a release: named by asset and field, not as the whole list of symbols.
    lines.length = 0;
    const changed = makeParams().assets.map((a) => (a.symbol === "ETH" ? { ...a, maxPriceTicks: 123_456 } : a));
    await restoreState(() => store.load(), makeParams({ assets: changed }), log);
    const eth = makeParams().assets.find((a) => a.symbol === "ETH")!;
    expect(lines.filter((l) => l["event"] === "params_from_snapshot")).toEqual([
      expect.objectContaining({
        kept: { assets: { ETH: { maxPriceTicks: eth.maxPriceTicks } } },
        ignored: { assets: { ETH: { maxPriceTicks: 123_456 } } },
      }),
    ]);
    // The same parameters: nothing to say
    lines.length = 0;
    await restoreState(() => store.load(), makeParams(), log);
    expect(lines.map((l) => l["event"])).not.toContain("params_from_snapshot");
    expect(lines.map((l) => l["event"])).toContain("restore_snapshot");
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

describe("restoreState falling back to the previous snapshot", () => {
  const saveState = (store: MemorySnapshotStore, state: ReturnType<typeof someState>) => {
    const bytes = encodeSnapshot(state);
    return store.save(bytes, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: state.lastInputId,
      stateHash: hashSnapshot(bytes),
      takenAt: new Date(0).toISOString(),
    });
  };
  /** Also what onFallback heard: the unusable generation and the one restored from (null: fresh); none: undefined. */
  const restoreWithFallback = async (store: MemorySnapshotStore, log: Logger = quiet) => {
    let fallback: { unusable: number | undefined; restoredFrom: number | null } | undefined;
    const state = await restoreState(
      () => store.load(),
      makeParams(),
      log,
      () => store.load("previous"),
      (unusable, restoredFrom) => (fallback = { unusable, restoredFrom }),
    );
    return Object.assign(state, { fallback });
  };
  const recording = () => {
    const lines: Record<string, unknown>[] = [];
    return {
      lines,
      log: createLogger("test", { sink: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) }),
    };
  };

  it("restores the previous snapshot when the latest's bytes no longer match its head, and says so", async () => {
    const store = new MemorySnapshotStore(256);
    const older = someState(5);
    await saveState(store, older);
    await saveState(store, someState(20));
    store.corrupt("latest", 100);
    const { lines, log } = recording();
    const restored = await restoreWithFallback(store, log);
    expect(stateHash(restored)).toBe(stateHash(older));
    expect(restored.accounts.size).toBe(5);
    expect(restored.fallback).toEqual({ unusable: 2, restoredFrom: 1 });
    const fallbacks = lines.filter((l) => l.event === "restore_fallback");
    expect(fallbacks.map((l) => l.level)).toEqual(["error"]);
    expect(fallbacks[0]?.reason).toMatch(/generation 2 is corrupt/);
  });

  it("restores the previous snapshot when the latest matches its head but does not decode", async () => {
    const store = new MemorySnapshotStore();
    const older = someState(5);
    await saveState(store, older);
    const garbage = new Uint8Array(randomBytes(500));
    await store.save(garbage, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: "99999999999999-0",
      stateHash: hashSnapshot(garbage),
      takenAt: new Date(0).toISOString(),
    });
    const { lines, log } = recording();
    const restored = await restoreWithFallback(store, log);
    expect(stateHash(restored)).toBe(stateHash(older));
    expect(restored.fallback).toEqual({ unusable: 2, restoredFrom: 1 });
    expect(lines.find((l) => l.event === "restore_fallback")?.reason).toMatch(
      /generation 2 matches its head but does not decode: Error: not an engine snapshot/,
    );
  });

  it("starts fresh when the latest is unusable and none was saved before it", async () => {
    const store = new MemorySnapshotStore();
    await saveState(store, someState(5));
    const usable = await restoreWithFallback(store);
    expect(usable.fallback).toBeUndefined();
    store.corrupt("latest", 0);
    const restored = await restoreWithFallback(store);
    expect(restored.accounts.size).toBe(0);
    expect(restored.lastInputId).toBe("0-0");
    expect(restored.fallback).toEqual({ unusable: 1, restoredFrom: null });
  });

  it("fails naming both generations and why when the previous is unusable too: nothing is left to restore from", async () => {
    const store = new MemorySnapshotStore();
    await saveState(store, someState(5));
    await saveState(store, someState(6));
    store.corrupt("latest", 10);
    store.corrupt("previous", 10);
    const restore = restoreState(
      () => store.load(),
      makeParams(),
      quiet,
      () => store.load("previous"),
    );
    const err: unknown = await restore.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SnapshotsUnusableError);
    const unusable = err as SnapshotsUnusableError;
    expect([unusable.latest.generation, unusable.previous.generation]).toEqual([2, 1]);
    expect(unusable.message).toMatch(
      /^both stored snapshots are unusable: the latest \(generation 2\): snapshot generation 2 is corrupt: .*; the one before it \(generation 1\): snapshot generation 1 is corrupt: /,
    );
  });

  it("passes a load of the previous that failed for another reason on as it is (a retry may load it)", async () => {
    const store = new MemorySnapshotStore();
    await saveState(store, someState(5));
    store.corrupt("latest", 10);
    const restore = restoreState(
      () => store.load(),
      makeParams(),
      quiet,
      () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432")),
    );
    await expect(restore).rejects.toThrow(/^connect ECONNREFUSED/);
  });

  it("does not fall back when the load failed for another reason (Postgres down): a retry may load the latest", async () => {
    let previousLoads = 0;
    const restore = restoreState(
      () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432")),
      makeParams(),
      quiet,
      () => {
        previousLoads++;
        return Promise.resolve(null);
      },
    );
    await expect(restore).rejects.toThrow("ECONNREFUSED");
    expect(previousLoads).toBe(0);
  });
});

describe("restoreState on a load that stalled", () => {
  it("reports the stall and does not fall back: it says nothing about the latest snapshot's bytes", async () => {
    const bytes = encodeSnapshot(someState(2));
    let previousLoads = 0;
    const restore = restoreState(
      () =>
        Promise.resolve({
          head: {
            version: SNAPSHOT_VERSION,
            shard: 0,
            lastInputId: "1-0",
            stateHash: hashSnapshot(bytes),
            bytes: bytes.length,
            generation: 1,
            chunks: 1,
            takenAt: new Date(0).toISOString(),
          },
          bytes: new Uint8Array(bytes.length),
          // The decode finds no byte there yet and gives up, as waitForBytes does after its stall time; the bytes
          // then arrive whole and verified.
          more: () => {
            throw new SnapshotLoadStalledError("snapshot load stalled: no bytes for 30000 ms (0 there, 9 needed)");
          },
          verified: Promise.resolve(),
        }),
      makeParams(),
      quiet,
      () => {
        previousLoads++;
        return Promise.resolve(null);
      },
    );
    await expect(restore).rejects.toThrow(SnapshotLoadStalledError);
    expect(previousLoads).toBe(0);
  });
});
