/**
 * The worker process: reads its configuration once, runs migrations (idempotent), then consumes engine:output
 * until SIGINT/SIGTERM. Several may run: the consumer group shares the work, and each claims what a dead one
 * left pending. A worker stuck on a connection that stopped answering (`worker_stuck`) exits 1, a stop included; a
 * Redis or Postgres outage it waits out, one at its start too: started while Postgres is down (a machine's boot, a
 * Postgres restarting), it waits for it rather than exit into a crash loop (postgres-outages.ts). A Redis whose
 * eviction policy may delete keys stops it with exit 2 (platform/redis.ts, checkDurability).
 */
import { hostname } from "node:os";
import { keyspace } from "../contract/names.ts";
import { runMain, stopOnSignals, text, url, wholeNumber } from "../platform/config.ts";
import { createLogger, type Logger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { migrate } from "../platform/migrate.ts";
import { connectPostgres, type Postgres } from "../platform/postgres.ts";
import { checkDurability, connectRedis } from "../platform/redis.ts";
import { workerMetrics } from "./metrics.ts";
import { PostgresWaitStopped, waitForPostgres } from "./postgres-outages.ts";
import { watchRedisOutages } from "./redis-outages.ts";
import { DEFAULT_OUTPUT_KEEP_MS, DEFAULT_STUCK_AFTER_MS, runWorker } from "./worker.ts";

/**
 * How long a Postgres statement waits for its answer: half the stuck bound, so a connection that stopped answering
 * fails its batch with the driver's own error before the watchdog has to end the worker. A Postgres that is down fails
 * a statement at once anyway, and the worker waits for it (postgres-outages.ts). The Redis connections have no such
 * timeout: ioredis's counts the time a command waits for a reconnect, so a Redis restart would fail the batch; the
 * watchdog, which does not count that time, bounds them.
 */
const QUERY_TIMEOUT_MS = DEFAULT_STUCK_AFTER_MS / 2;

runMain("worker", async () => {
  const env = process.env;
  const config = {
    redisUrl: url(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    databaseUrl: url(env, "DATABASE_URL", undefined, ["postgres:", "postgresql:"]),
    prefix: text(env, "KEY_PREFIX", ""),
    consumer: text(env, "WORKER_NAME", `${hostname()}:${process.pid}`),
    // How long an entry must sit unacknowledged on another consumer before this one takes it over.
    claimIdleMs: wholeNumber(env, "WORKER_CLAIM_IDLE_MS", 30_000, 100, 3_600_000),
    statsEveryMs: wholeNumber(env, "WORKER_STATS_EVERY_MS", 10_000, 100, 3_600_000),
    // How long acknowledged engine outputs stay on engine:output for inspection before they are trimmed.
    outputKeepMs: wholeNumber(env, "WORKER_OUTPUT_KEEP_MS", DEFAULT_OUTPUT_KEEP_MS, 0, 7 * 24 * 3_600_000),
  };
  const metricsConfig = readMetricsConfig(env, "worker");
  const log = createLogger("worker", { base: { consumer: config.consumer } });
  // Before "start", which tells npm start the worker is up: a metrics port in use stops it first.
  const registry = createRegistry("worker");
  const metrics = workerMetrics(registry);
  const metricsServer = await serveMetrics(registry, metricsConfig, log);
  const { prefix, claimIdleMs, statsEveryMs, outputKeepMs } = config;
  log.info("start", { prefix, claimIdleMs, statsEveryMs, outputKeepMs });
  // A Redis that may evict keys refuses the worker (checkDurability): the refusal stops it as a signal would, and is
  // then thrown, so it exits 2 with the reason.
  const refused = new AbortController();
  let refusal: Error | undefined;
  const stop = AbortSignal.any([stopOnSignals(log), refused.signal]);
  const writer = connectRedis(config.redisUrl, log, "worker-writer");
  // A group read Redis may have run must not run again: it would take the next entries (worker.ts).
  const reader = connectRedis(config.redisUrl, log, "worker-reader", { resendUnanswered: false });
  // Watched before either connects (ioredis says so on a later tick), as Postgres and migrations come first.
  const outages = watchRedisOutages([reader, writer]);
  // Not waited for: on a Redis that accepted the connection and says nothing it would wait for ever, while the
  // worker's start, queued behind it on the same connection, is bounded by the watchdog. Its few commands go first on
  // that connection, so an evicting Redis stops the worker before its first batch in practice (Postgres and the
  // migrations come before that).
  checkDurability(writer, log).catch((err: unknown) => {
    refusal = err instanceof Error ? err : new Error(String(err));
    refused.abort();
  });
  let db: Postgres | undefined;
  try {
    db = await waitForPostgres(log, stop)(() => connectAndMigrate(config.databaseUrl, log));
    // Stopped (or refused) while it migrated: not even the consumer group is made.
    if (!stop.aborted)
      await runWorker(
        {
          reader,
          writer,
          db,
          keys: keyspace(config.prefix),
          log,
          consumer: config.consumer,
          claimIdleMs: config.claimIdleMs,
          statsEveryMs: config.statsEveryMs,
          outputKeepMs: config.outputKeepMs,
          metrics,
          outages,
        },
        stop,
      );
  } catch (err) {
    // Stopped before Postgres came back at start: nothing was read, nothing is left undone.
    if (!(err instanceof PostgresWaitStopped)) throw err;
  } finally {
    reader.disconnect();
    writer.disconnect();
    await db?.close();
    await metricsServer?.close();
  }
  if (refusal !== undefined) throw refusal;
  log.info("stopped");
});

/** Connects to Postgres and migrates, tried again as a whole while Postgres is down (main's waitForPostgres). */
async function connectAndMigrate(databaseUrl: string, log: Logger): Promise<Postgres> {
  const db = await connectPostgres(databaseUrl, log, { queryTimeoutMs: QUERY_TIMEOUT_MS });
  try {
    await migrate(db, log);
    return db;
  } catch (err) {
    await db.close();
    throw err;
  }
}
