/**
 * The engine process. Reads its configuration once, waits as a standby until it holds the lease, restores the
 * latest snapshot, starts the snapshotting follower in a worker thread, then leads: replays the log tail and
 * follows it live. SIGINT/SIGTERM stop it cleanly (the follower takes a final snapshot, the lease is released);
 * any failure exits non-zero so a supervisor restarts it and recovery starts over from snapshot + log.
 */
import { hostname } from "node:os";
import { Worker } from "node:worker_threads";
import { keyspace } from "../contract/names.ts";
import { runMain, text, url, wholeNumber } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { connectPostgres, localProxyFromEnv } from "../platform/postgres.ts";
import { migrate } from "../platform/migrate.ts";
import { checkDurability, connectRedis } from "../platform/redis.ts";
import { makeParams } from "./core/params.ts";
import { PostgresSnapshotStore } from "./snapshot/postgres-store.ts";
import type { FollowerThreadData } from "./runner/follower-thread.ts";
import { runLeader } from "./runner/leader.ts";
import { EngineLease } from "./runner/lease.ts";
import { restoreState } from "./runner/restore.ts";

let failed = false;

runMain("engine", async () => {
  const env = process.env;
  const config = {
    redisUrl: url(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    databaseUrl: url(env, "DATABASE_URL", undefined, ["postgres:", "postgresql:"]),
    prefix: text(env, "KEY_PREFIX", ""),
    snapshotEveryMs: wholeNumber(env, "SNAPSHOT_EVERY_MS", 10_000, 100, 3_600_000),
    leaseTtlMs: wholeNumber(env, "ENGINE_LEASE_TTL_MS", 5_000, 300, 60_000),
    statsEveryMs: wholeNumber(env, "ENGINE_STATS_EVERY_MS", 10_000, 100, 3_600_000),
    initialBalanceMicros: wholeNumber(env, "INITIAL_BALANCE_USD", 10_000, 0, 1_000_000_000) * 1_000_000,
  };
  const holder = `${hostname()}:${process.pid}`;
  const log = createLogger("engine", { base: { holder } });
  log.info("start", { snapshotEveryMs: config.snapshotEveryMs, leaseTtlMs: config.leaseTtlMs, statsEveryMs: config.statsEveryMs, prefix: config.prefix });

  const stop = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => {
    log.info("stopping", { signal: sig });
    stop.abort();
  });

  const writer = connectRedis(config.redisUrl, log, "engine-writer");
  const reader = connectRedis(config.redisUrl, log, "engine-reader");
  await checkDurability(writer, log);
  const viaLocalProxy = localProxyFromEnv(env.PG_VIA_WS_PROXY);
  const db = await connectPostgres(config.databaseUrl, log, viaLocalProxy === undefined ? {} : { viaLocalProxy });
  await migrate(db, log);
  const keys = keyspace(config.prefix);
  const lease = new EngineLease(writer, keys, holder, config.leaseTtlMs, log);
  let exitCode = 0;
  try {
    if (!(await lease.acquire(stop.signal))) return;
    // Restore only once leading: a standby's snapshot would be stale by the time it takes over.
    const state = await restoreState(new PostgresSnapshotStore(db), makeParams({ initialBalanceMicros: config.initialBalanceMicros }), log);
    const follower = startFollower({ ...config, leaseValue: lease.value ?? "" }, log);
    const end = await runLeader({ reader, writer, keys, log, lease, state, statsEveryMs: config.statsEveryMs }, stop.signal);
    if (end === "lease_lost") {
      // Another engine leads now: its follower owns snapshots and trimming. Leave without a final snapshot.
      exitCode = 1;
      await follower.terminate();
    } else {
      await follower.stop();
    }
  } finally {
    await lease.release().catch(() => undefined);
    reader.disconnect();
    writer.disconnect();
    await db.close();
  }
  if (failed) exitCode = 1;
  log.info("stopped", { exitCode });
  process.exit(exitCode);
});

function startFollower(data: FollowerThreadData, log: ReturnType<typeof createLogger>) {
  // Workers do not inherit the main thread's module hooks: give the thread the TypeScript loader itself.
  const worker = new Worker(new URL("./runner/follower-thread.mjs", import.meta.url), { workerData: data });
  const stopped = new Promise<void>((resolve) => {
    worker.on("message", (m) => {
      if (m === "stopped") resolve();
    });
    worker.on("exit", () => resolve());
  });
  worker.on("error", (err) => {
    // The snapshotter failing must not go unnoticed: without snapshots the log cannot be trimmed.
    log.error("snapshotter_crashed", { error: err });
    failed = true;
    process.kill(process.pid, "SIGTERM");
  });
  return {
    /** Final snapshot, then the thread ends. */
    stop: async () => {
      worker.postMessage("stop");
      await stopped;
    },
    terminate: () => worker.terminate(),
  };
}
