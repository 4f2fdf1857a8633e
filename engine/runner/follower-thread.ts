/**
 * The follower as a worker thread beside a lone leader: its own Redis and Postgres connections, its own copy of
 * the state (restored from the latest snapshot), so the encode time of a snapshot never blocks the leader's
 * event loop. It posts each saved snapshot's figures (`{ type: "snapshot_saved" }`) for the engine's metrics. The
 * parent posts "stop" (before it releases the lease); the thread takes a final snapshot, posts "stopped" and ends.
 */
import { parentPort, workerData } from "node:worker_threads";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { connectPostgres } from "../../platform/postgres.ts";
import { connectRedis } from "../../platform/redis.ts";
import { makeParams } from "../core/params.ts";
import { PostgresSnapshotStore } from "../snapshot/postgres-store.ts";
import type { UnusableLatest } from "../snapshot/store.ts";
import { restoreState } from "./restore.ts";
import { runFollower } from "./follower.ts";
import { stopRequestedOn } from "./stop-request.ts";

export interface FollowerThreadData {
  readonly redisUrl: string;
  readonly databaseUrl: string;
  readonly prefix: string;
  readonly snapshotEveryMs: number;
  readonly initialBalanceMicros: number;
  /** The leader's lease value; the follower's trims are fenced by it. */
  readonly leaseValue: string;
  /** One Int32 word: how many publishes the leader has had acknowledged (FollowerOptions.publishes). */
  readonly publishes: SharedArrayBuffer;
}

const data = workerData as FollowerThreadData;
const log = createLogger("engine", { base: { role: "snapshotter" } });
const stop = new AbortController();
parentPort?.on("message", (message) => {
  if (message === "stop") stop.abort();
});
const stopRequested = stopRequestedOn(parentPort, stop);
const publishes = new Int32Array(data.publishes);

const redis = connectRedis(data.redisUrl, log, "engine-snapshotter");
const db = await connectPostgres(data.databaseUrl, log, { maxConnections: 1 });
try {
  const store = new PostgresSnapshotStore(db);
  let pastUnusable: UnusableLatest | undefined;
  const state = await restoreState(
    () => store.load(),
    makeParams({ initialBalanceMicros: data.initialBalanceMicros }),
    log,
    () => store.load("previous"),
    // Without the unusable one's generation (its head could not be read), its first save keeps it as the previous.
    (generation, restoredFrom) => (pastUnusable = generation === undefined ? undefined : { generation, restoredFrom }),
  );
  await runFollower(
    {
      redis,
      keys: keyspace(data.prefix),
      log,
      state,
      store,
      leaseValue: data.leaseValue,
      everyMs: data.snapshotEveryMs,
      pastUnusable,
      stopRequested,
      publishes: () => Atomics.load(publishes, 0),
      // To the main thread, whose registry serves the engine's metrics.
      onSaved: (figures) => parentPort?.postMessage({ type: "snapshot_saved", figures }),
    },
    stop.signal,
  );
} finally {
  redis.disconnect();
  await db.close();
}
parentPort?.postMessage("stopped");
