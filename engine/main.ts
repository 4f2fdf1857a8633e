/**
 * The engine process. Reads its configuration once, restores the latest snapshot (waiting for Postgres while it is
 * down: there is nothing else to start from), then leads if the lease is free and otherwise follows the log as a hot
 * standby (runner/standby.ts) until it can take the lease over. Leading: it replays what is left of the log, starts
 * the snapshotting follower in a worker thread and follows the log live; it needs only Redis from then on, and leads
 * through a Postgres outage while the follower tries again (runner/follower-thread.ts).
 * SIGINT/SIGTERM stop it cleanly: a leader publishes what it applied and releases the lease at once, so a standby
 * takes over, and then its follower saves a final snapshot (a leader stopped before its replay is done has none, and
 * saves none); a Redis out of reach holds neither up for long (EngineLease.release, runFollower). Any failure
 * exits non-zero so a supervisor restarts it and recovery starts over from snapshot + log.
 */
import { hostname } from "node:os";
import { keyspace } from "../contract/names.ts";
import { ConfigError, keyPrefix, redisUrl, runMain, stopOnSignals, url, wholeNumber } from "../platform/config.ts";
import { createLogger, type Logger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { startThread } from "../platform/threads.ts";
import { connectPostgres, describeDatabase, type Postgres } from "../platform/postgres.ts";
import { classifyPostgresError } from "../platform/postgres-errors.ts";
import { migrate } from "../platform/migrate.ts";
import { checkDurability, connectRedis } from "../platform/redis.ts";
import { backoffMs } from "../platform/restart-backoff.ts";
import { makeParams } from "./core/params.ts";
import type { FollowerThreadData } from "./runner/follower-thread.ts";
import { FailureRun } from "./runner/failure-run.ts";
import { LogGapError, logTrimmedAfter } from "./runner/follower.ts";
import { runLeader } from "./runner/leader.ts";
import { startLeaseKeeper, type LeaseKeeper } from "./runner/lease-keeper.ts";
import { runStandby } from "./runner/standby.ts";
import { EngineLease, sleep, unlessAborted } from "./runner/lease.ts";
import { DEFAULT_SAVE_TIMEOUT_MS, PostgresSnapshotStore } from "./snapshot/postgres-store.ts";
import { checkRestored, restoreNewest, SnapshotsUnusableError } from "./runner/restore.ts";
import { SnapshotIntegrityError } from "./snapshot/store.ts";
import { startSnapshotLoader } from "./runner/snapshot-loader.ts";
import { startLogPrefetch } from "./runner/log-prefetch.ts";
import { engineMetrics, type EngineMetrics, type SnapshotFigures } from "./metrics.ts";

let failed = false;

runMain("engine", async () => {
  const env = process.env;
  const config = {
    redisUrl: redisUrl(env),
    databaseUrl: url(env, "DATABASE_URL", undefined, ["postgres:", "postgresql:"]),
    prefix: keyPrefix(env),
    snapshotEveryMs: wholeNumber(env, "SNAPSHOT_EVERY_MS", 10_000, 100, 3_600_000),
    snapshotSaveTimeoutMs: wholeNumber(env, "SNAPSHOT_SAVE_TIMEOUT_MS", DEFAULT_SAVE_TIMEOUT_MS, 1_000, 3_600_000),
    leaseTtlMs: wholeNumber(env, "ENGINE_LEASE_TTL_MS", 500, 200, 60_000),
    standbyPollMs: wholeNumber(env, "ENGINE_STANDBY_POLL_MS", 50, 5, 1_000),
    statsEveryMs: wholeNumber(env, "ENGINE_STATS_EVERY_MS", 10_000, 100, 3_600_000),
    initialBalanceMicros: wholeNumber(env, "INITIAL_BALANCE_USD", 10_000, 0, 1_000_000_000) * 1_000_000,
  };
  const metricsConfig = readMetricsConfig(env, "engine");
  const holder = `${hostname()}:${process.pid}`;
  const log = createLogger("engine", { base: { holder } });
  log.info("start", {
    snapshotEveryMs: config.snapshotEveryMs,
    snapshotSaveTimeoutMs: config.snapshotSaveTimeoutMs,
    leaseTtlMs: config.leaseTtlMs,
    standbyPollMs: config.standbyPollMs,
    statsEveryMs: config.statsEveryMs,
    prefix: config.prefix,
  });

  // A signal, or the snapshotter crashing: either way the same clean stop (a second signal is left its default
  // action, so a crash must not send one while a stop is under way).
  const crashed = new AbortController();
  const stop = AbortSignal.any([stopOnSignals(log), crashed.signal]);
  const keys = keyspace(config.prefix);
  const registry = createRegistry("engine");
  // Leading or a hot standby, and not stopping: what a container health check asks at /ready.
  let ready = false;
  // First, so a slow recovery can be watched.
  const metricsServer = await serveMetrics(registry, metricsConfig, log, { ready: () => ready && !stop.aborted });
  // The snapshot loader's and the log prefetch's threads start first, so their start-up overlaps the connections
  // and migrations below. The prefetch reads the log tail once the snapshot's cursor is known.
  const loader = startSnapshotLoader(config.databaseUrl);
  const prefetch = startLogPrefetch(config.redisUrl, keys.input);

  const writer = connectRedis(config.redisUrl, log, "engine-writer");
  const reader = connectRedis(config.redisUrl, log, "engine-reader");
  // Before anything is restored or led: a Redis that may evict keys stops the engine with exit 2 (a ConfigError).
  await checkDurability(writer, log);
  const lease = new EngineLease(writer, keys, holder, config.leaseTtlMs, log);
  let keeper: LeaseKeeper | undefined;
  const closeAll = async (db: Postgres | undefined) => {
    // The lease first: after a crash, a standby takes over without waiting for the threads below to end (seconds).
    await keeper?.stop();
    await lease.release().catch(() => undefined);
    await Promise.all([loader.close(), prefetch.close()]);
    await metricsServer?.close();
    reader.disconnect();
    writer.disconnect();
    await db?.close();
  };
  const db = await reachPostgres(config.databaseUrl, log, stop);
  if (db === undefined) {
    // Stopped while it waited for Postgres: nothing restored, no lease taken.
    await closeAll(undefined);
    log.info("stopped", { exitCode: 0 });
    process.exit(0);
  }
  await migrate(db, log);
  const metrics = engineMetrics(registry, () => lease.value);
  let exitCode = 0;
  const params = makeParams({ initialBalanceMicros: config.initialBalanceMicros });
  const store = new PostgresSnapshotStore(db);
  let follower: ReturnType<typeof startFollower> | undefined;
  try {
    // Restore before taking the lease: decoding a large snapshot blocks for seconds, and a lease taken first
    // could expire before its first renewal.
    // Whether the last restore passed over an unusable latest snapshot: a trim check that then fails says so.
    let pastUnusable = false;
    // The generation of the newest snapshot the last restore found, used or passed over (null: none).
    let restoredNewest: number | null = null;
    const restore = async (load: Parameters<typeof restoreNewest>[0]) => {
      pastUnusable = false;
      const restored = await restoreNewest(
        load,
        params,
        log,
        () => store.load("previous"),
        () => (pastUnusable = true),
      ).catch(async (err: unknown) => {
        throw err instanceof SnapshotsUnusableError ? await unusableSnapshots(err, store, config.databaseUrl) : err;
      });
      restoredNewest = restored.newest;
      return restored.state;
    };
    let restoreFrom = performance.now();
    // The previous, on a fallback, loads on this thread: the prefetch, started from the latest's cursor, then goes
    // unused (it never applies a batch that does not follow the state's cursor).
    let state = await restore(async () => {
      const loaded = await loader.load();
      prefetch.start(loaded?.head.lastInputId ?? "0-0", loaded?.control);
      return loaded;
    });
    metrics.restored(performance.now() - restoreFrom);
    void loader.close(); // in the background (ending the thread takes a while); awaited again at the end
    // The prefetched tail is for a leader only: it may run past what the leader published, where a standby must
    // not go.
    let prefetched: typeof prefetch | undefined = prefetch;
    const dropPrefetch = () => {
      prefetched = undefined;
      void prefetch.close();
    };
    // Fresh from a restore, this engine lets a hot standby take a free lease first: that one leads with nothing to
    // replay. It only waits a couple of polls, so when no standby is left (both engines died) recovery goes on.
    const yieldMs = 2 * config.standbyPollMs;
    let leading = false;
    // restore_again in a row, before it caught up with the log as a standby: after the first, each waits a backoff.
    let restoresInRow = 0;
    /**
     * Restores the newest snapshot again until the log reaches back to it (checkRestored); false when stopped first.
     * Trimmed past it and no newer one saved meanwhile: the entries in between are gone for good, and applying the
     * rest would build a state that never existed, so it stops, and says why (exit 2: restarting cannot help).
     * Trimmed past it with a newer one saved (a leader's follower saves and trims while a slow restore runs): that one.
     */
    const restoreAgain = async (reason: string, level: "info" | "warn"): Promise<boolean> => {
      for (;;) {
        restoresInRow++;
        const waitMs = restoresInRow > 1 ? backoffMs(restoresInRow - 1) : 0;
        log[level]("restore_again", { reason, lastInputId: state.lastInputId, waitMs });
        // Again and again, never caught up in between: the newest snapshot does not help yet (a leader's follower
        // has still to save a newer one), and loading it at once, over and over, would only load Postgres.
        await sleep(waitMs, stop);
        if (stop.aborted) return false;
        restoreFrom = performance.now();
        state = await restore(() => store.load());
        metrics.restored(performance.now() - restoreFrom);
        const check = await unlessAborted(
          checkRestored(writer, keys.input, state.lastInputId, restoredNewest, () => store.latestHead()),
          stop,
        );
        if (check === undefined) return false;
        if (check === "reaches") return true;
        if (check === "mismatch") {
          const logLength = await unlessAborted(writer.exists(keys.input), stop);
          if (logLength === undefined) return false;
          throw mismatched(keys.input, state.lastInputId, { pastUnusable, logMissing: logLength === 0 }, config);
        }
        reason = "the log was trimmed past the restored snapshot while it was restored; a newer one was saved";
        level = "warn";
      }
    };
    // The reads of Redis from here until it leads or stands by wait through a Redis outage; a stop does not wait for
    // them (undefined: stopped first), as a standby's polls do not: they only read.
    if ((await unlessAborted(writer.get(keys.engineLease), stop)) === null) {
      await sleep(yieldMs, stop);
      // Stopping: the lease is not this engine's to take (the standby path below ends at once).
      if (!stop.aborted) leading = await lease.tryAcquire();
    }
    for (;;) {
      if (!leading) {
        dropPrefetch();
        try {
          const end = await runStandby(
            {
              redis: writer,
              keys,
              log,
              lease,
              state,
              pollMs: config.standbyPollMs,
              statsEveryMs: config.statsEveryMs,
              metrics,
              onReady: () => {
                ready = true;
                restoresInRow = 0;
                log.info("engine_ready", { role: "standby", lastInputId: state.lastInputId });
              },
            },
            stop,
          );
          if (end === "stopped") break; // stopped as a standby: nothing to hand over
          leading = true;
          restoresInRow = 0; // a takeover ends a run of restores: a restore from here on is the first of its own run
          metrics.tookOver();
        } catch (err) {
          if (!(err instanceof LogGapError)) throw err;
          // The log was trimmed past this standby's cursor (it fell a whole snapshot interval behind): start over.
          ready = false;
          if (!(await restoreAgain(err.message, "warn"))) break;
          continue;
        }
      }
      // While this engine restored or stood by, a snapshot may have been taken and the log trimmed past its cursor.
      const trimmed = await unlessAborted(logTrimmedAfter(writer, keys.input, state.lastInputId), stop);
      if (trimmed !== true) break; // not trimmed: it leads; stopped: a lease it took over is released at the end
      // Not while holding the lease: a long restore would let it lapse. Another engine may lead meanwhile.
      await lease.release();
      dropPrefetch();
      ready = false;
      const restored = await restoreAgain("the log was trimmed past the restored snapshot", "info");
      // Stopping: the released lease is the standby's (it would only be held here until the stop ends).
      if (!restored || stop.aborted) {
        leading = false;
        break;
      }
      leading = await lease.tryAcquire();
    }
    // Stopped before it leads, as this renewal waits through a Redis outage too: the lease is released at the end.
    const held = leading ? await unlessAborted(lease.renew(), stop) : undefined;
    if (held === false) throw new Error("lost the engine lease before leading: it lapsed after it was taken");
    if (held === true) {
      // Counted by the leader, read by its follower thread (FollowerOptions.publishes).
      const publishes = new SharedArrayBuffer(4);
      const publishCount = new Int32Array(publishes);
      keeper = startLeaseKeeper(
        {
          redisUrl: config.redisUrl,
          prefix: config.prefix,
          value: lease.value ?? "",
          ttlMs: config.leaseTtlMs,
          // A main thread silent for several TTLs is stuck, not paused for a GC: let the lease go to a standby.
          stallMs: 6 * config.leaseTtlMs,
        },
        log,
        // A leader without progress as long: the live loop's blocking read (1 s) waits on top of it.
        6 * config.leaseTtlMs + 1000,
      );
      const end = await runLeader(
        {
          reader,
          writer,
          keys,
          log,
          lease,
          state,
          statsEveryMs: config.statsEveryMs,
          prefetched,
          metrics,
          renewer: keeper,
          onPublished: () => Atomics.add(publishCount, 0, 1),
          // The follower restores its own copy; started once the leader is live, so recovery has both cores.
          onLive: () => {
            dropPrefetch();
            ready = true;
            log.info("engine_ready", { role: "leader", lastInputId: state.lastInputId });
            follower = startFollower({ ...config, leaseValue: lease.value ?? "", publishes }, log, metrics, () =>
              crashed.abort(),
            );
          },
        },
        stop,
      );
      if (follower === undefined) {
        // Stopped during replay: nothing to snapshot from this engine.
      } else if (end === "lease_lost") {
        // Another engine leads now: its follower owns snapshots and trimming. Leave without a final snapshot.
        await follower.terminate();
      } else {
        // Hand over at once: everything applied is published, so a standby takes over within one poll. The final
        // snapshot, saved alongside the release, spares a lone restart the replay; it never trims (the next leader's
        // follower does). The follower is asked first: a trim of a snapshot it is saving now, refused once the lease
        // is released, is then the handover and not a lost lease.
        const followerStopped = follower.stop();
        await keeper?.stop();
        // Not when the lease was already another's: deposed before the leader noticed (its snapshotter's trim was
        // fenced, which stops it as on SIGTERM), it handed nothing over.
        if ((await lease.release()) !== "not_held") log.info("handover", { lastInputId: state.lastInputId });
        await followerStopped;
      }
      if (end === "lease_lost") exitCode = 1;
    }
  } finally {
    await closeAll(db);
  }
  if (failed) exitCode = 1;
  log.info("stopped", { exitCode });
  process.exit(exitCode);
});

function startFollower(data: FollowerThreadData, log: Logger, metrics: EngineMetrics, onCrash: () => void) {
  const worker = startThread("engine-follower", data);
  metrics.snapshotterStarted();
  const stopped = new Promise<void>((resolve) => {
    worker.on("message", (m: unknown) => {
      if (m === "stopped") resolve();
      else if (isSnapshotSaved(m)) metrics.snapshotSaved(m.figures);
      else if (isMessage(m, "snapshot_current")) metrics.snapshotCurrent();
      else if (isMessage(m, "snapshot_failed")) metrics.snapshotFailed();
    });
    worker.on("exit", () => resolve());
  });
  worker.on("error", (err) => {
    // The snapshotter failing must not go unnoticed: without snapshots the log cannot be trimmed.
    log.error("snapshotter_crashed", { error: err });
    failed = true;
    onCrash();
  });
  return {
    /** Asks for the final snapshot at once; resolves once the thread has ended. */
    stop: () => {
      worker.postMessage("stop");
      return stopped;
    },
    terminate: () => worker.terminate(),
  };
}

function isMessage(m: unknown, type: string): boolean {
  return typeof m === "object" && m !== null && (m as { type?: unknown }).type === type;
}

function isSnapshotSaved(m: unknown): m is { type: "snapshot_saved"; figures: SnapshotFigures } {
  return isMessage(m, "snapshot_saved");
}

/**
 * Postgres, once it answers. Without it an engine has no snapshot to start from, so while Postgres is down,
 * unreachable or silent it waits (`postgres_waiting` once, with the error and its kind; `postgres_connected` once
 * through), trying again every few seconds, rather than exit and be restarted over and over; undefined when stopped
 * first. Whatever else fails a connect waits too: a restart would only meet it again. A Postgres that answers and
 * refuses (a wrong password, no such database: `refused`, platform/postgres-errors.ts) is a mistake no wait mends:
 * that is thrown, a ConfigError (exit 2).
 */
async function reachPostgres(databaseUrl: string, log: Logger, stop: AbortSignal): Promise<Postgres | undefined> {
  const waits = new FailureRun(log, { failed: "postgres_waiting" }, describeDatabase(databaseUrl));
  for (;;) {
    try {
      return await connectPostgres(databaseUrl, log);
    } catch (err) {
      if (classifyPostgresError(err) === "refused") throw err;
      await sleep(waits.failed(err, 5_000), stop);
      if (stop.aborted) return undefined;
    }
  }
}

/**
 * Both stored snapshots unusable: exit 2 (a ConfigError), as restarting meets the same rows, naming the database, both
 * generations and why. Unless the head moved since the loads (a save committed between the latest's load and the
 * previous's, which each read the head afresh): then the error as it is, exit 1, and a restart loads the new one.
 */
async function unusableSnapshots(
  err: SnapshotsUnusableError,
  store: PostgresSnapshotStore,
  databaseUrl: string,
): Promise<Error> {
  let moved: boolean;
  try {
    moved = (await store.latestHead())?.generation !== err.latest.generation;
  } catch (headErr) {
    moved = !(headErr instanceof SnapshotIntegrityError); // a head still unreadable has not moved
  }
  if (moved) return err;
  const db = describeDatabase(databaseUrl);
  return new ConfigError(
    `no snapshot in this Postgres (DATABASE_URL ${db.database} at ${db.host}:${db.port}) can be restored: ` +
      `${err.message}. Restarting cannot help: replace them as docs/operations.md says ("When both stored ` +
      'snapshots are unusable"), or start over with an empty database and an empty Redis.',
  );
}

/**
 * The log was trimmed past the newest snapshot in this database, or is missing while that snapshot stands on one:
 * exit 2, as restarting cannot help. The message names the Redis and the Postgres (hosts and database, no password).
 */
function mismatched(
  input: string,
  lastInputId: string,
  why: { pastUnusable: boolean; logMissing: boolean },
  config: { redisUrl: string; databaseUrl: string },
): ConfigError {
  const restored = lastInputId === "0-0" ? "none" : lastInputId;
  const db = describeDatabase(config.databaseUrl);
  const redis = `REDIS_URL ${new URL(config.redisUrl).host}`;
  const postgres = `DATABASE_URL ${db.database} at ${db.host}:${db.port}`;
  if (why.logMissing) {
    return new ConfigError(
      `${input} is not in this Redis (${redis}), but this Postgres (${postgres}) holds a snapshot taken from it, ` +
        `at ${restored}: this Redis and this Postgres do not belong together (a Redis that lost its data, ` +
        "or another one). An engine cannot go on from a snapshot without its log: point REDIS_URL (and KEY_PREFIX) " +
        "at the Redis that holds it, or start over with an empty database and an empty Redis (docs/operations.md, " +
        "Recovery).",
    );
  }
  // The newest snapshot was unusable and the one before it (if any) is older than the log: the log and the database
  // belong together, but what bridged them is damaged.
  if (why.pastUnusable) {
    return new ConfigError(
      `${input} was trimmed past the newest usable snapshot in this database (${restored}): the newest is unusable ` +
        "(restore_fallback says why) and no snapshot before it reaches the log. Replace it as docs/operations.md " +
        'says ("When the newest snapshot is unusable"), or start over with an empty database and an empty Redis.',
    );
  }
  return new ConfigError(
    `${input} in this Redis (${redis}) was trimmed past the newest snapshot in this Postgres (${postgres}, ` +
      `${restored}): this Redis and this Postgres do not belong together. Point DATABASE_URL at the database whose ` +
      "snapshots this log was trimmed against, or start over with an empty database and an empty Redis (or a fresh " +
      "KEY_PREFIX).",
  );
}
