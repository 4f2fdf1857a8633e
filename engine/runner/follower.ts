/**
 * The snapshotting follower: the same deterministic core, fed the same log, so its state equals the leader's
 * at every input id. It applies only up to the leader's published cursor (a snapshot must never be ahead of
 * outputs that went out), takes a snapshot every `everyMs`, and trims `engine:input` once a snapshot is durably
 * saved, below the snapshot before it: a hot standby (standby.ts) a little behind this follower keeps the entries
 * it has yet to apply. Because the follower pays for encoding, the leader never pauses for it; it runs in a worker
 * thread beside the leader.
 */
import type { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";
import type { Logger } from "../../platform/log.ts";
import type { EngineState } from "../core/state.ts";
import { isAfterId } from "../core/step.ts";
import type { SnapshotFigures } from "../metrics.ts";
import { ByteWriter } from "../snapshot/bytes.ts";
import { SNAPSHOT_VERSION, encodeSnapshot } from "../snapshot/codec.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import type { SaveOptions, SnapshotHeadInput, SnapshotSave, SnapshotStore } from "../snapshot/store.ts";
import { FailureRun } from "./failure-run.ts";
import { sleep, unlessAborted } from "./lease.ts";
import { applyRaw, type RawEntry } from "./log-stream.ts";
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
  /**
   * How long a caught-up follower waits before it looks again (default 250 ms: it only has to keep up for its next
   * snapshot, and each look is a command).
   */
  readonly pollMs?: number;
  /**
   * Set when `state` was restored past an unusable latest snapshot: given to saves until one is not skipped, so that
   * one deletes the unusable snapshot rather than keep it as the previous (SaveOptions.pastUnusable).
   */
  readonly pastUnusable?: SaveOptions["pastUnusable"];
  /** After each saved snapshot, its figures (the same as snapshot_saved's): the thread posts them for metrics. */
  readonly onSaved?: (figures: SnapshotFigures) => void;
  /**
   * After each snapshot turn that leaves Postgres with this state or a newer one: a save, one skipped for a newer
   * snapshot, or nothing new to save.
   */
  readonly onCurrent?: () => void;
  /** After each failed save (tried again later). */
  readonly onFailed?: () => void;
  /**
   * Whether the leader has asked this follower to stop (default: the signal has aborted), counting a request not yet
   * delivered: the leader asks before it releases the lease, so a trim the release refuses finds it here.
   */
  readonly stopRequested?: () => boolean;
  /**
   * How many publishes the leader has had acknowledged so far. While it has not changed since this follower last found
   * nothing to apply, the published cursor has not moved either, and the follower does not ask Redis for it (an idle
   * leader's follower sends nothing). Without it, the follower asks every `pollMs`.
   */
  readonly publishes?: () => number;
  /** How long the final catch-up after a stop may wait for Redis (default FINAL_CATCH_UP_WAIT_MS). */
  readonly finalCatchUpWaitMs?: number;
}

/**
 * How long a stopping follower waits for Redis to answer its final catch-up: a healthy one answers in milliseconds;
 * one out of reach would hold the stop, and with it the handover, until it is back.
 */
export const FINAL_CATCH_UP_WAIT_MS = 5_000;

/**
 * Follows until `signal` aborts, then catches up and saves a final snapshot. A read or trim that Redis leaves
 * unanswered is not waited out once `signal` aborts, and the final catch-up waits at most `finalCatchUpWaitMs`: the
 * final snapshot is then of the state as far as this follower got (a restart replays the rest). A save that fails (Postgres down or
 * unreachable, or not answering: PostgresSnapshotStore gives a save up after its deadline) is tried again, sooner
 * than `everyMs` at first (FailureRun's pauses, at most `everyMs`), with the state as it is by then, while the
 * follower keeps applying the log: nothing is trimmed meanwhile, so the log only grows.
 * Only the final snapshot's failure is thrown, as there is no later turn to try it again.
 */
export async function runFollower(o: FollowerOptions, signal: AbortSignal): Promise<void> {
  const writer = new ByteWriter();
  let snapshotAt = o.state.lastInputId;
  // Where the next trim may go: the cursor of the last snapshot this follower saved (none yet: no trim).
  let trimTo: string | undefined;
  // On the monotonic clock: a wall clock stepped back must not put off snapshots, and with them the log's trim.
  let nextSnapshotMs = performance.now() + o.everyMs;
  const stopRequested = o.stopRequested ?? (() => signal.aborted);
  // Only until a save is not skipped: given to a later one, it would delete this follower's own last snapshot.
  let pastUnusable = o.pastUnusable;
  const saves = new FailureRun(o.log, { failed: "snapshot_failed", recovered: "snapshot_recovered" }, { step: "save" });
  const snapshot = async (final: boolean) => {
    if (o.state.lastInputId !== snapshotAt) {
      // The final one is taken as the leader hands the lease over: trimming is the next leader's business.
      const outcome = await takeSnapshot(o, writer, final ? undefined : trimTo, stopRequested, signal, pastUnusable);
      if (typeof outcome === "object") {
        if (final) throw outcome.failed;
        nextSnapshotMs =
          performance.now() + saves.failed(outcome.failed, o.everyMs, { lastInputId: o.state.lastInputId });
        o.onFailed?.();
        return;
      }
      if (outcome === "saved") {
        trimTo = o.state.lastInputId;
        pastUnusable = undefined;
      }
      saves.succeeded({ lastInputId: o.state.lastInputId });
      snapshotAt = o.state.lastInputId;
    }
    o.onCurrent?.();
    nextSnapshotMs = performance.now() + o.everyMs;
  };
  // One read of the published tail at a time: one the stop stopped waiting for is awaited, not sent again.
  let reading: Promise<boolean> | undefined;
  const read = (): Promise<boolean> => {
    if (reading !== undefined) return reading;
    const r = catchUp(o);
    reading = r;
    const done = () => {
      if (reading === r) reading = undefined;
    };
    r.then(done, done);
    return r;
  };
  // The leader's publish count when this follower last found nothing left to apply.
  let caughtUpAt: number | undefined;
  while (!signal.aborted) {
    const publishes = o.publishes?.();
    const caughtUp = publishes !== undefined && publishes === caughtUpAt ? true : await unlessAborted(read(), signal);
    if (caughtUp === undefined) break; // stopped while Redis had not answered
    // Read before the cursor: a publish acknowledged after that read counts again next time round.
    if (caughtUp) caughtUpAt = publishes;
    if (performance.now() >= nextSnapshotMs) await snapshot(false);
    if (caughtUp) await sleep(o.pollMs ?? 250, signal);
  }
  // Graceful stop: what the leader published is in the final snapshot, so a restart replays nothing of it.
  const waitMs = o.finalCatchUpWaitMs ?? FINAL_CATCH_UP_WAIT_MS;
  const waited = new AbortController();
  const timer = setTimeout(() => waited.abort(), waitMs);
  try {
    for (;;) {
      const caughtUp = await unlessAborted(read(), waited.signal);
      if (caughtUp === true) break;
      if (caughtUp === undefined) {
        o.log.warn("final_catch_up_unanswered", { waitedMs: waitMs, lastInputId: o.state.lastInputId });
        break;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  await snapshot(true);
}

/**
 * Lua that reads, for a reader of the published log at cursor ARGV[1] (`published` already read from the published
 * cursor's key, `log` the log's key), up to ARGV[2] entries after the cursor and no further than `published`, as
 * `entries`, and whether everything after the cursor is still in the log, as `kept` (1 or 0).
 *
 * Decided as logTrimmedAfter decides it (trims remove a prefix): an entry at or before the cursor is still there, or
 * nothing was ever removed from the log and the cursor is its start (0-0): a cursor past 0-0 with nothing at or
 * before it in a log that never lost an entry came from another log (the key lost and written anew), whose entries
 * after it this one lacks. The cursor's own entry may be gone (an XDEL) with nothing after it missing.
 * Another follower (a fenced-out engine's, still running while its leader stalls; or this one, stale, behind the new
 * leader's) may have trimmed past the cursor, and what is left would then skip entries. Inside one script, the check
 * and the read see the same log.
 */
export const PUBLISHED_TAIL_LUA = `
local entries = {}
local kept = 1
if published then
  entries = redis.call('XRANGE', log, '(' .. ARGV[1], published, 'COUNT', ARGV[2])
  if #entries > 0 and #redis.call('XRANGE', log, '-', ARGV[1], 'COUNT', 1) == 0 then
    local info = redis.call('XINFO', 'STREAM', log)
    local added, length
    for i = 1, #info, 2 do
      if info[i] == 'entries-added' then added = info[i + 1] elseif info[i] == 'length' then length = info[i + 1] end
    end
    if added ~= length or ARGV[1] ~= '0-0' then kept = 0 end
  end
end`;

/** KEYS[1] the published cursor, KEYS[2] the log; ARGV as PUBLISHED_TAIL_LUA's. */
const READ_PUBLISHED_TAIL = `
local published = redis.call('GET', KEYS[1])
local log = KEYS[2]
${PUBLISHED_TAIL_LUA}
return {entries, kept}`;

/**
 * True when the log may lack entries after `cursor`. Trims remove a prefix (XTRIM MINID), and XTRIM does not move
 * Redis' max-deleted-entry-id, so: the first entry left is not after the cursor, or nothing was ever deleted
 * (entries-added = length) and the cursor is 0-0, means everything after it is there. A log that never lost an entry
 * and starts after a cursor past 0-0 is another log than the cursor's (the key lost and written anew): what came
 * after the cursor in its own log is missing. So is a missing log for a cursor past 0-0: the log a cursor came from
 * is never missing (a trim keeps the entry at its MINID, and a stream trimmed or deleted empty keeps its key), so it
 * was lost, or this is another Redis. (Conservative: a trim that stopped exactly at the cursor's successor also
 * counts, costing one needless restore.)
 */
export async function logTrimmedAfter(redis: Redis, stream: string, cursor: string): Promise<boolean> {
  // A missing stream is asked as such (not read from an error's wording, which may differ between Redis and a hosted
  // one); any XINFO failure (a dropped connection, a key of another type, the stream deleted in between) says nothing
  // about the log, and answering "not trimmed" would let an engine lead across a gap.
  if ((await redis.exists(stream)) === 0) return cursor !== "0-0";
  const info = (await redis.xinfo("STREAM", stream)) as unknown[];
  const field = (name: string) => info[info.indexOf(name) + 1];
  const first = field("first-entry") as [string, string[]] | null;
  if (Number(field("entries-added")) === Number(field("length"))) {
    return cursor !== "0-0" && first !== null && isAfterId(first[0], cursor);
  }
  return isAfterId(first === null ? String(field("last-generated-id")) : first[0], cursor);
}

/**
 * Applies one batch up to the published cursor, read with it in one command (billed once on Upstash); true when there
 * was nothing left to apply.
 */
export async function catchUp(o: Pick<FollowerOptions, "redis" | "keys" | "state" | "batchSize">): Promise<boolean> {
  const [entries, kept] = (await o.redis.eval(
    READ_PUBLISHED_TAIL,
    2,
    o.keys.enginePublished,
    o.keys.input,
    o.state.lastInputId,
    String(o.batchSize ?? 5000),
  )) as [RawEntry[], number];
  return applyTail(o.state, entries, kept === 1);
}

/**
 * Applies entries read after the state's cursor (PUBLISHED_TAIL_LUA), refusing them when entries after the cursor
 * may be missing from the log (`kept` false); true when there were none.
 */
export function applyTail(state: EngineState, entries: readonly RawEntry[], kept: boolean): boolean {
  if (entries.length > 0 && !kept) {
    throw new LogGapError(
      `engine:input was trimmed past this engine's cursor ${state.lastInputId}: refusing to skip entries`,
    );
  }
  for (const entry of entries) applyRaw(state, entry);
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

/**
 * Saves a snapshot of the state, then trims the log below `trimTo` (if given): "skipped" when a newer one was saved,
 * `failed` with the save's error (nothing saved, nothing trimmed). A trim's failure is thrown.
 */
async function takeSnapshot(
  o: FollowerOptions,
  writer: ByteWriter,
  trimTo: string | undefined,
  stopRequested: () => boolean,
  stopSignal: AbortSignal,
  pastUnusable: SaveOptions["pastUnusable"],
): Promise<"saved" | "skipped" | { failed: unknown }> {
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
  let save: SnapshotSave;
  try {
    save = await o.store.save(bytes, head, { pastUnusable });
  } catch (err) {
    return { failed: err };
  }
  const { writeMs, skipped, deletedUnusable } = save;
  if (skipped) {
    o.log.warn("snapshot_skipped", { lastInputId: head.lastInputId, reason: "a newer snapshot is already saved" });
    return "skipped";
  }
  // Everything up to the cursor is now recoverable without the log; what is trimmed is below the snapshot before
  // (the entry at `trimTo` stays). Fenced: the follower of an engine that lost its lease (its leader stalled) must
  // not trim under the new one.
  let trimmed: number | undefined;
  if (trimTo !== undefined) {
    const trim = o.redis.eval(FENCED_TRIM, 2, o.keys.engineLease, o.keys.input, o.leaseValue, trimTo);
    // A trim Redis leaves unanswered is not waited for once stopping: the next leader's follower trims.
    trimmed = (await unlessAborted(trim, stopSignal)) as number | undefined;
    if (trimmed === undefined) trimmed = 0;
    // Refused after the stop request: the leader handed the lease over (the next leader's follower trims), not lost.
    if (trimmed < 0 && !stopRequested()) throw new FencedError("engine lease lost: this follower may not trim the log");
    trimmed = Math.max(0, trimmed);
  }
  o.onSaved?.({ bytes: bytes.length, encodeMs, hashMs, writeMs });
  o.log.info("snapshot_saved", {
    lastInputId: head.lastInputId,
    bytes: bytes.length,
    encodeMs: round(encodeMs),
    hashMs: round(hashMs),
    writeMs: round(writeMs),
    trimmed: trimmed ?? 0,
    accounts: o.state.accounts.size,
    // The unusable snapshot this state was restored past, deleted by this save.
    ...(deletedUnusable !== undefined && { deletedUnusableGeneration: deletedUnusable }),
  });
  return "saved";
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
