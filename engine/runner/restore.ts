/** Recovery's first half: the latest snapshot, checked against its hash, or a fresh state when there is none. */
import type { Logger } from "../../platform/log.ts";
import type { EngineParams } from "../core/params.ts";
import { createState, type EngineState } from "../core/state.ts";
import { decodeSnapshot } from "../snapshot/codec.ts";
import type { SnapshotStore } from "./follower.ts";

export async function restoreState(store: SnapshotStore, freshParams: EngineParams, log: Logger): Promise<EngineState> {
  const t0 = performance.now();
  const loaded = await store.load();
  if (loaded === null) {
    log.info("restore_fresh", { reason: "no snapshot yet" });
    return createState(freshParams);
  }
  // The store checked the bytes against the head's length and SHA-256.
  const loadMs = performance.now() - t0;
  const state = decodeSnapshot(loaded.bytes);
  let trades = 0;
  for (const a of state.accounts.values()) trades += a.openTrades.size;
  log.info("restore_snapshot", {
    lastInputId: state.lastInputId, bytes: loaded.bytes.length, loadMs: Math.round(loadMs), decodeMs: Math.round(performance.now() - t0 - loadMs),
    accounts: state.accounts.size, openTrades: trades,
  });
  return state;
}
