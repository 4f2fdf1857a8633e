/**
 * The snapshotting follower: the same deterministic core, fed the same log, so its state equals the leader's
 * at every input id. It applies only up to the leader's published cursor (a snapshot must never be ahead of
 * outputs that went out), takes a snapshot every `everyMs`, and trims `engine:input` below a snapshot only once
 * that snapshot is durably saved. Because the follower pays for encoding, the leader never pauses for it; run
 * it in a worker thread beside a lone leader, or as the standby engine.
 */
import type { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";
import type { Logger } from "../../platform/log.ts";
import type { EngineState } from "../core/state.ts";
import type { SnapshotFigures } from "../metrics.ts";
import { isAfterId } from "../core/step.ts";
import { ByteWriter } from "../snapshot/bytes.ts";
import { SNAPSHOT_VERSION, encodeSnapshot } from "../snapshot/codec.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import type { SnapshotHeadInput, SnapshotStore } from "../snapshot/store.ts";
import { sleep } from "./lease.ts";
import { applyRaw } from "./log-stream.ts";
import { FencedError } from "./publisher.ts";

export interface FollowerOptions {
  readonly redis: Redis;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly state: EngineState;
  /** Where snapshots go (PostgresSnapshotStore in production); the follower only saves. */
  readonly store: Pick<SnapshotStore, "save">;
  /** The lease value of the leader this follower serves: trimming the log is fenced by it. */
  readonly leaseValue: string;
  readonly everyMs: number;
  readonly batchSize?: number;
  readonly pollMs?: number;
  /** After each saved snapshot, its figures (the same as snapshot_saved's): the thread posts them for metrics. */
  readonly onSaved?: (figures: SnapshotFigures) => void;
}

export async function runFollower(o: FollowerOptions, signal: AbortSignal): Promise<void> {
  const writer = new ByteWriter();
  let snapshotAt = o.state.lastInputId;
  let lastSnapshotMs = Date.now();
  const snapshot = async () => {
    if (o.state.lastInputId === snapshotAt) return;
    await takeSnapshot(o, writer);
    snapshotAt = o.state.lastInputId;
  };
  while (!signal.aborted) {
    const caughtUp = await catchUp(o);
    if (Date.now() - lastSnapshotMs >= o.everyMs) {
      await snapshot();
      lastSnapshotMs = Date.now();
    }
    if (caughtUp) await sleep(o.pollMs ?? 50, signal);
  }
  // Graceful stop: what the leader published is in the final snapshot, so a restart replays nothing of it.
  while (!(await catchUp(o)));
  await snapshot();
}

/** Applies one batch up to the published cursor; true when there was nothing left to apply. */
async function catchUp(o: FollowerOptions): Promise<boolean> {
  const published = await o.redis.get(o.keys.enginePublished);
  if (published === null || !isAfterId(published, o.state.lastInputId)) return true;
  const cursor = o.state.lastInputId;
  const entries = await o.redis.xrange(o.keys.input, `(${cursor}`, published, "COUNT", o.batchSize ?? 5000);
  // Another follower may have trimmed the log past this one's cursor (a fenced-out engine's, still running while its
  // leader stalls; or this one, stale, behind the new leader's): what is left would skip entries and the next
  // snapshot would be a wrong state. A trim keeps its own cursor entry, so while ours is still there (checked after
  // the read) nothing after it was trimmed before the read.
  if (entries.length > 0 && cursor !== "0-0" && (await o.redis.xrange(o.keys.input, cursor, cursor)).length === 0) {
    throw new LogGapError(`engine:input was trimmed past this follower's cursor ${cursor}: refusing to skip entries`);
  }
  for (const entry of entries) applyRaw(o.state, entry);
  return entries.length === 0;
}

/** Trims the log below a saved snapshot, only while this engine still holds the lease (-1 when it does not). */
const FENCED_TRIM = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('XTRIM', KEYS[2], 'MINID', ARGV[2])`;

/** The log no longer holds what this follower must apply next: it stops rather than snapshot a wrong state. */
export class LogGapError extends Error {
  override name = "LogGapError";
}

async function takeSnapshot(o: FollowerOptions, writer: ByteWriter): Promise<void> {
  const t0 = performance.now();
  const bytes = encodeSnapshot(o.state, writer);
  const encodeMs = performance.now() - t0;
  const stateHash = hashSnapshot(bytes);
  const hashMs = performance.now() - t0 - encodeMs;
  const head: SnapshotHeadInput = {
    version: SNAPSHOT_VERSION,
    shard: o.state.params.shard,
    lastInputId: o.state.lastInputId,
    stateHash,
    takenAt: new Date().toISOString(),
  };
  const { writeMs, skipped } = await o.store.save(bytes, head);
  if (skipped) {
    o.log.warn("snapshot_skipped", { lastInputId: head.lastInputId, reason: "a newer snapshot is already saved" });
    return;
  }
  // Only now is everything up to the cursor recoverable without the log: trim below it (the cursor entry stays).
  // Fenced: the follower of an engine that lost its lease (its leader stalled) must not trim under the new one.
  const trimmed = (await o.redis.eval(
    FENCED_TRIM,
    2,
    o.keys.engineLease,
    o.keys.input,
    o.leaseValue,
    head.lastInputId,
  )) as number;
  if (trimmed < 0) throw new FencedError("engine lease lost: this follower may not trim the log");
  o.onSaved?.({ bytes: bytes.length, encodeMs, hashMs, writeMs });
  o.log.info("snapshot_saved", {
    lastInputId: head.lastInputId,
    bytes: bytes.length,
    encodeMs: round(encodeMs),
    hashMs: round(hashMs),
    writeMs: round(writeMs),
    trimmed,
    accounts: o.state.accounts.size,
  });
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
