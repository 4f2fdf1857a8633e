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
import { parseInputId } from "../core/step.ts";
import { ByteWriter } from "../snapshot/bytes.ts";
import { SNAPSHOT_VERSION, encodeSnapshot } from "../snapshot/codec.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import type { PostgresSnapshotStore, SnapshotHeadInput } from "../snapshot/postgres-store.ts";
import { sleep } from "./lease.ts";
import { applyRaw } from "./log-stream.ts";

/** Where snapshots go: Postgres in production (PostgresSnapshotStore). */
export type SnapshotStore = Pick<PostgresSnapshotStore, "save" | "load">;

export interface FollowerOptions {
  readonly redis: Redis;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly state: EngineState;
  readonly store: SnapshotStore;
  readonly everyMs: number;
  readonly batchSize?: number;
  readonly pollMs?: number;
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
  if (published === null || !isAfter(published, o.state.lastInputId)) return true;
  const entries = await o.redis.xrange(o.keys.input, `(${o.state.lastInputId}`, published, "COUNT", o.batchSize ?? 5000);
  for (const entry of entries) applyRaw(o.state, entry);
  return entries.length === 0;
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
  const trimmed = await o.redis.xtrim(o.keys.input, "MINID", head.lastInputId);
  o.log.info("snapshot_saved", {
    lastInputId: head.lastInputId, bytes: bytes.length, encodeMs: round(encodeMs), hashMs: round(hashMs), writeMs: round(writeMs),
    trimmed, accounts: o.state.accounts.size,
  });
}

function isAfter(a: string, b: string): boolean {
  const x = parseInputId(a);
  const y = parseInputId(b);
  return x.ms > y.ms || (x.ms === y.ms && x.seq > y.seq);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
