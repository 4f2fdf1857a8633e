/**
 * The follower as a worker thread beside a lone leader: its own Redis and Postgres connections, its own copy of
 * the state (restored from the latest snapshot), so the encode time of a snapshot never blocks the leader's
 * event loop. It posts each saved snapshot's figures (`{ type: "snapshot_saved" }`), each snapshot turn that left
 * Postgres current (`snapshot_current`) and each failed save or restore (`snapshot_failed`) for the engine's metrics.
 * The parent posts "stop" (before it releases the lease); the thread takes a final snapshot, posts "stopped" and ends.
 *
 * The leader trades without it: a restore that fails (Postgres down or unreachable, when the engine took over during
 * an outage) is tried again, with FailureRun's pauses, for as long as it takes; a stop meanwhile ends the thread with
 * nothing to save. The log is not trimmed until this thread saves, so it reaches back to whatever it restores. A
 * LogGapError (the log no longer reaches back to the restored state) restores again, the newest snapshot by then,
 * up to GAP_RESTORES times in a row; past that the gap is not one a newer snapshot closes, and the thread fails.
 */
import { parentPort, workerData } from "node:worker_threads";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { connectPostgres, type Postgres } from "../../platform/postgres.ts";
import { connectRedis } from "../../platform/redis.ts";
import { backoffMs } from "../../platform/restart-backoff.ts";
import { makeParams } from "../core/params.ts";
import type { EngineState } from "../core/state.ts";
import { PostgresSnapshotStore } from "../snapshot/postgres-store.ts";
import type { UnusableLatest } from "../snapshot/store.ts";
import { FailureRun } from "./failure-run.ts";
import { restoreState } from "./restore.ts";
import { LogGapError, runFollower } from "./follower.ts";
import { sleep } from "./lease.ts";
import { stopRequestedOn } from "./stop-request.ts";

export interface FollowerThreadData {
  readonly redisUrl: string;
  readonly databaseUrl: string;
  readonly prefix: string;
  readonly snapshotEveryMs: number;
  /** A save not done this long after it began is given up, and tried again (PostgresSnapshotStore saveTimeoutMs). */
  readonly snapshotSaveTimeoutMs: number;
  readonly initialBalanceMicros: number;
  /** The leader's lease value; the follower's trims are fenced by it. */
  readonly leaseValue: string;
  /** One Int32 word: how many publishes the leader has had acknowledged (FollowerOptions.publishes). */
  readonly publishes: SharedArrayBuffer;
}

/** LogGapErrors in a row (no snapshot saved in between) that restore again; the next one ends the thread. */
const GAP_RESTORES = 3;

const data = workerData as FollowerThreadData;
const log = createLogger("engine", { base: { role: "snapshotter" } });
const stop = new AbortController();
parentPort?.on("message", (message) => {
  if (message === "stop") stop.abort();
});
const stopRequested = stopRequestedOn(parentPort, stop);
const publishes = new Int32Array(data.publishes);
const params = makeParams({ initialBalanceMicros: data.initialBalanceMicros });
const post = (message: unknown) => parentPort?.postMessage(message);

const redis = connectRedis(data.redisUrl, log, "engine-snapshotter");
let db: Postgres | undefined;
try {
  let gaps = 0;
  for (;;) {
    const restored = await restoreWhenReachable();
    if (restored === undefined) break; // stopped before it could restore: it has nothing to save
    try {
      await runFollower(
        {
          redis,
          keys: keyspace(data.prefix),
          log,
          state: restored.state,
          store: restored.store,
          leaseValue: data.leaseValue,
          everyMs: data.snapshotEveryMs,
          pastUnusable: restored.pastUnusable,
          stopRequested,
          publishes: () => Atomics.load(publishes, 0),
          // To the main thread, whose registry serves the engine's metrics.
          onSaved: (figures) => {
            gaps = 0;
            post({ type: "snapshot_saved", figures });
          },
          onCurrent: () => post({ type: "snapshot_current" }),
          onFailed: () => post({ type: "snapshot_failed" }),
        },
        stop.signal,
      );
      break;
    } catch (err) {
      if (!(err instanceof LogGapError) || ++gaps > GAP_RESTORES) throw err;
      log.warn("restore_again", { reason: err.message, lastInputId: restored.state.lastInputId, attempt: gaps });
      // A state with a gap behind it is no snapshot to save on a stop.
      await sleep(backoffMs(gaps), stop.signal);
      if (stop.signal.aborted) break;
    }
  }
} finally {
  redis.disconnect();
  await db?.close();
}
post("stopped");

/** The latest snapshot restored, once Postgres answers; undefined when asked to stop before that. */
async function restoreWhenReachable(): Promise<
  { state: EngineState; store: PostgresSnapshotStore; pastUnusable: UnusableLatest | undefined } | undefined
> {
  const restores = new FailureRun(
    log,
    { failed: "snapshot_failed", recovered: "snapshot_recovered" },
    { step: "restore" },
  );
  for (;;) {
    try {
      db ??= await connectPostgres(data.databaseUrl, log, { maxConnections: 1 });
      const store = new PostgresSnapshotStore(db, { saveTimeoutMs: data.snapshotSaveTimeoutMs });
      let pastUnusable: UnusableLatest | undefined;
      const state = await restoreState(
        () => store.load(),
        params,
        log,
        () => store.load("previous"),
        // Without the unusable one's generation (its head could not be read), its first save keeps it as the previous.
        (generation, restoredFrom) =>
          (pastUnusable = generation === undefined ? undefined : { generation, restoredFrom }),
      );
      restores.succeeded({ lastInputId: state.lastInputId });
      return { state, store, pastUnusable };
    } catch (err) {
      const retryInMs = restores.failed(err, data.snapshotEveryMs);
      post({ type: "snapshot_failed" });
      await sleep(retryInMs, stop.signal);
      if (stopRequested()) return undefined;
    }
  }
}
