/**
 * Recovery's first half: the latest snapshot, checked against its hash, or a fresh state when there is none. A latest
 * snapshot that is unusable (its bytes do not match its head, or they do but do not decode) is passed over for the
 * previous one: the log is kept back to it, so the replay after it reaches the same state (docs/architecture.md, Recovery).
 * Then whether the log still reaches back to the state restored (checkRestored).
 */
import type { Redis } from "ioredis";
import type { AssetConfig } from "../../contract/markets.ts";
import type { Logger } from "../../platform/log.ts";
import type { EngineParams } from "../core/params.ts";
import { createState, type EngineState } from "../core/state.ts";
import type { ByteSource } from "../snapshot/bytes.ts";
import { decodeSnapshot, type IdempotencyScan } from "../snapshot/codec.ts";
import { SnapshotIntegrityError, SnapshotLoadStalledError, type SnapshotHead } from "../snapshot/store.ts";
import { logTrimmedAfter } from "./follower.ts";

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

/**
 * Restores from `load`; when what it loads is unusable and `loadPrevious` is given, from that instead (a fresh state
 * when it has none: nothing was saved before the latest, so the log is whole from its start unless someone trimmed
 * it, which the caller's trim check then reports). `onFallback` then hears the generation found unusable (when known)
 * and the one it restored from instead (null: fresh). When the previous is unusable too, rejects with
 * SnapshotsUnusableError.
 */
export async function restoreState(
  load: () => Promise<LoadedSnapshot | null>,
  freshParams: EngineParams,
  log: Logger,
  loadPrevious?: () => Promise<LoadedSnapshot | null>,
  onFallback?: (unusable: number | undefined, restoredFrom: number | null) => void,
): Promise<EngineState> {
  return (await restoreNewest(load, freshParams, log, loadPrevious, onFallback)).state;
}

/**
 * As restoreState, with the generation of the newest snapshot the load found (`newest`): the one restored, or the
 * unusable one passed over for the previous; null when there was none (or its head could not be read).
 */
export async function restoreNewest(
  load: () => Promise<LoadedSnapshot | null>,
  freshParams: EngineParams,
  log: Logger,
  loadPrevious?: () => Promise<LoadedSnapshot | null>,
  onFallback?: (unusable: number | undefined, restoredFrom: number | null) => void,
): Promise<{ state: EngineState; newest: number | null }> {
  try {
    const { state, generation } = await restoreOne(load, freshParams, log);
    return { state, newest: generation };
  } catch (err) {
    if (loadPrevious === undefined || !(err instanceof SnapshotIntegrityError)) throw err;
    log.error("restore_fallback", { reason: err.message, to: "the previous snapshot" });
    let restored: Awaited<ReturnType<typeof restoreOne>>;
    try {
      restored = await restoreOne(loadPrevious, freshParams, log);
    } catch (previousErr) {
      if (!(previousErr instanceof SnapshotIntegrityError)) throw previousErr;
      throw new SnapshotsUnusableError(err, previousErr);
    }
    onFallback?.(err.generation, restored.generation);
    return { state: restored.state, newest: err.generation ?? null };
  }
}

/**
 * The latest snapshot and the one before it are both unusable (written by a newer release, damaged at rest): there is
 * nothing left to restore from, and no retry changes that while the rows stay as they are. `latest` and `previous`
 * say why, each naming its generation when its head could be read.
 */
export class SnapshotsUnusableError extends Error {
  override name = "SnapshotsUnusableError";

  constructor(
    readonly latest: SnapshotIntegrityError,
    readonly previous: SnapshotIntegrityError,
  ) {
    super(
      `both stored snapshots are unusable: the latest (${describeGeneration(latest)}): ${latest.message}; ` +
        `the one before it (${describeGeneration(previous)}): ${previous.message}`,
      { cause: previous },
    );
  }
}

function describeGeneration(err: SnapshotIntegrityError): string {
  return err.generation === undefined ? "its head unreadable" : `generation ${err.generation}`;
}

/** What checkRestored finds. */
export type RestoredCheck = "reaches" | "newer_snapshot" | "mismatch";

/**
 * Whether the log (`input`) reaches back to a state just restored, at `cursor`, by restoreNewest from the newest
 * snapshot `newest`: "reaches" when nothing after the cursor may be missing (logTrimmedAfter). When something may be,
 * the newest snapshot's head is read again, after that check: "newer_snapshot" when it is no longer `newest` and the
 * log reaches back to it, else "mismatch". A leader's follower trims the log only below a snapshot it saved before
 * the one it has just saved (follower.ts), so its trim past the cursor, made while this engine restored, came after a
 * save newer than anything the restore found, which the log reaches: a restore again does too. A trim with the newest
 * unchanged was no such trim: the entries in between are gone for good (another Redis or database, a log lost). Nor
 * is a newer snapshot the log does not reach: another deployment saving to this database with a log of its own.
 */
export async function checkRestored(
  redis: Redis,
  input: string,
  cursor: string,
  newest: number | null,
  latestHead: () => Promise<Pick<SnapshotHead, "generation" | "lastInputId"> | null>,
): Promise<RestoredCheck> {
  if (!(await logTrimmedAfter(redis, input, cursor))) return "reaches";
  const head = await latestHead();
  if (head === null || head.generation === newest) return "mismatch";
  return (await logTrimmedAfter(redis, input, head.lastInputId)) ? "mismatch" : "newer_snapshot";
}

/** The state, and the generation of the snapshot it came from (null: fresh). */
async function restoreOne(
  load: () => Promise<LoadedSnapshot | null>,
  freshParams: EngineParams,
  log: Logger,
): Promise<{ state: EngineState; generation: number | null }> {
  const t0 = performance.now();
  const loaded = await load();
  if (loaded === null) {
    log.info("restore_fresh", { reason: "no snapshot yet" });
    return { state: createState(freshParams), generation: null };
  }
  const headMs = performance.now() - t0;
  let state: EngineState;
  try {
    state = decodeSnapshot(loaded.bytes, loaded.more, loaded.idempotency);
  } catch (err) {
    // Bytes that failed to load (cut short, or not matching the head) explain a failed decode better. The load ends
    // one way or the other: a store gives up on a Postgres that stops answering (SnapshotLoadStalledError).
    await loaded.verified;
    // A decode that gave up waiting for bytes says nothing about them.
    if (err instanceof SnapshotLoadStalledError) throw err;
    // Bytes just as saved that do not decode (a codec fault, a version this engine cannot read) are as unusable.
    throw new SnapshotIntegrityError(
      `snapshot generation ${loaded.head.generation} matches its head but does not decode: ${String(err)}`,
      loaded.head.generation,
      { cause: err },
    );
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
  warnParamsKept(state.params, freshParams, log);
  return { state, generation: loaded.head.generation };
}

/**
 * A restored state keeps the parameters it was created with (a replay must answer as the original run did), so a
 * setting changed since (INITIAL_BALANCE_USD) or a default changed by a release does nothing: say so, by name.
 */
function warnParamsKept(restored: EngineParams, configured: EngineParams, log: Logger): void {
  const kept: Record<string, unknown> = {};
  const ignored: Record<string, unknown> = {};
  for (const key of Object.keys(configured) as (keyof EngineParams)[]) {
    if (JSON.stringify(restored[key]) === JSON.stringify(configured[key])) continue;
    if (key === "assets") [kept[key], ignored[key]] = assetDifferences(restored.assets, configured.assets);
    else [kept[key], ignored[key]] = [restored[key], configured[key]];
  }
  if (Object.keys(kept).length > 0) log.warn("params_from_snapshot", { kept, ignored });
}

/**
 * The assets' terms that differ, by symbol and field (an asset on one side only: null on the other), so that a
 * release changing one field of one asset (its maxPriceTicks) says which.
 */
function assetDifferences(
  restored: readonly AssetConfig[],
  configured: readonly AssetConfig[],
): [Record<string, unknown>, Record<string, unknown>] {
  const kept: Record<string, Record<string, unknown> | null> = {};
  const ignored: Record<string, Record<string, unknown> | null> = {};
  const symbols = new Set([...restored, ...configured].map((a) => a.symbol));
  for (const symbol of symbols) {
    const was = restored.find((a) => a.symbol === symbol);
    const now = configured.find((a) => a.symbol === symbol);
    if (was === undefined || now === undefined) {
      [kept[symbol], ignored[symbol]] = [was === undefined ? null : { ...was }, now === undefined ? null : { ...now }];
      continue;
    }
    const fields = (Object.keys({ ...was, ...now }) as (keyof AssetConfig)[]).filter(
      (f) => JSON.stringify(was[f]) !== JSON.stringify(now[f]),
    );
    if (fields.length === 0) continue;
    kept[symbol] = Object.fromEntries(fields.map((f) => [f, was[f]]));
    ignored[symbol] = Object.fromEntries(fields.map((f) => [f, now[f]]));
  }
  return [kept, ignored];
}
