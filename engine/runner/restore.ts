/** Recovery's first half: the latest snapshot, checked against its hash, or a fresh state when there is none. */
import type { Logger } from "../../platform/log.ts";
import type { EngineParams } from "../core/params.ts";
import { createState, type EngineState } from "../core/state.ts";
import type { ByteSource } from "../snapshot/bytes.ts";
import { decodeSnapshot, type IdempotencyScan } from "../snapshot/codec.ts";
import type { SnapshotHead } from "../snapshot/store.ts";

/** A snapshot as a store hands it over: whole and verified, or still streaming in (snapshot-loader.ts). */
export interface LoadedSnapshot {
  readonly head: SnapshotHead;
  readonly bytes: Uint8Array;
  /** Present while `bytes` is still filling: waits for more of them (see ByteReader). */
  readonly more?: ByteSource;
  /** Present while the bytes are unverified: resolves once all are there and match the head, rejects if not. */
  readonly verified?: Promise<void>;
  /** Present when another thread scans the idempotency section (see decodeSnapshot). */
  readonly idempotency?: () => IdempotencyScan | undefined;
  /** Figures for the restore log line. */
  readonly stats?: () => Record<string, number>;
}

export async function restoreState(
  load: () => Promise<LoadedSnapshot | null>,
  freshParams: EngineParams,
  log: Logger,
): Promise<EngineState> {
  const t0 = performance.now();
  const loaded = await load();
  if (loaded === null) {
    log.info("restore_fresh", { reason: "no snapshot yet" });
    return createState(freshParams);
  }
  const headMs = performance.now() - t0;
  let state: EngineState;
  try {
    state = decodeSnapshot(loaded.bytes, loaded.more, loaded.idempotency);
  } catch (err) {
    // Bytes that failed to load (cut short, or not matching the head) explain a failed decode better.
    await loaded.verified;
    throw err;
  }
  const decodeMs = performance.now() - t0 - headMs;
  // Nothing decoded is used before every byte is checked against the head's length and SHA-256.
  await loaded.verified;
  let trades = 0;
  for (const a of state.accounts.values()) trades += a.openTrades.size;
  log.info("restore_snapshot", {
    lastInputId: state.lastInputId,
    bytes: loaded.bytes.length,
    headMs: Math.round(headMs),
    decodeMs: Math.round(decodeMs),
    ...loaded.stats?.(),
    accounts: state.accounts.size,
    openTrades: trades,
  });
  return state;
}
