/**
 * The worker process: reads its configuration once, then consumes engine:output until SIGINT/SIGTERM, connecting to
 * Postgres and migrating (idempotent) beside it, not before it (worker.ts). Several could run (the consumer group
 * shares the work, and each claims what a dead one left pending), but run one, restarted under its old name
 * (WORKER_NAME) so that it first finishes what it left pending: with two at once, or one under a new name, an answer
 * can come before an earlier batch's rows are written (docs/operations.md, Recovery). A worker stuck on a connection
 * that stopped answering (`worker_stuck`) exits 1, a stop included; a Redis outage it waits out, and a Postgres outage
 * it works through (worker.ts), one at its start too: started while Postgres is down (a machine's boot, a Postgres
 * restarting) or does not answer, or while another process holds the migration lock, it handles batches without
 * Postgres, and connects and migrates once Postgres answers (postgres-outages.ts). A refused DATABASE_URL ends it with
 * exit 2 whenever the refusal comes, what it handled before then owed. A Redis whose eviction policy may delete keys
 * stops it with exit 2 before it writes anything (platform/redis.ts, checkDurability).
 */
import { hostname } from "node:os";
import { keyspace } from "../contract/names.ts";
import {
  keyPrefix,
  redisUrl,
  runMain,
  settledWithin,
  stopOnSignals,
  text,
  url,
  wholeNumber,
} from "../platform/config.ts";
import { createLogger, type Logger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { migrate } from "../platform/migrate.ts";
import { classifyPostgresError } from "../platform/postgres-errors.ts";
import { connectPostgres, type Postgres, type Queryable, type Row } from "../platform/postgres.ts";
import { checkDurability, connectRedis } from "../platform/redis.ts";
import { mergeHoursAtStart } from "./candles.ts";
import { workerMetrics } from "./metrics.ts";
import { watchRedisOutages } from "./redis-outages.ts";
import { DEFAULT_OUTPUT_KEEP_MS, DEFAULT_STUCK_AFTER_MS, runWorker } from "./worker.ts";

/**
 * How long a Postgres statement waits for its answer: half the stuck bound, so a connection that stopped answering
 * fails its batch with the driver's own error before the watchdog has to end the worker. A Postgres that is down fails
 * a statement at once anyway, and the worker goes on without it (postgres-outages.ts). The Redis connections have no
 * such timeout: ioredis's counts the time a command waits for a reconnect, so a Redis restart would fail the batch; the
 * watchdog, which does not count that time, bounds them.
 */
const QUERY_TIMEOUT_MS = DEFAULT_STUCK_AFTER_MS / 2;

/** How long the start waits for Redis's eviction check: as long as the watchdog lets any step take. */
const DURABILITY_WAIT_MS = DEFAULT_STUCK_AFTER_MS;

runMain("worker", async () => {
  const env = process.env;
  const config = {
    redisUrl: redisUrl(env),
    databaseUrl: url(env, "DATABASE_URL", undefined, ["postgres:", "postgresql:"]),
    prefix: keyPrefix(env),
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
  // Watched before either connects (ioredis says so on a later tick).
  const outages = watchRedisOutages([reader, writer]);
  // Waited for before the worker makes its group or writes anything, since it no longer waits for Postgres first: an
  // evicting Redis stops it with no key written. Bounded, as on a Redis that accepted the connection and says nothing
  // it would wait for ever: past the bound the worker starts anyway, under its watchdog, its commands queued behind
  // the check's on the same connection, and a refusal that comes later still stops it.
  await settledWithin(
    checkDurability(writer, log).then(
      () => undefined,
      (err: unknown) => {
        refusal = err instanceof Error ? err : new Error(String(err));
        refused.abort();
      },
    ),
    DURABILITY_WAIT_MS,
    stop,
  );
  // Connected (and migrated) by the worker's lane, beside its batches: at its start, or, if Postgres is down then,
  // once it answers.
  let db: Postgres | undefined;
  const postgres: Queryable = {
    query: <R extends Row>(text: string, params?: unknown[]) =>
      db === undefined ? Promise.reject(new Error("Postgres is not connected yet")) : db.query<R>(text, params),
  };
  try {
    // Stopped (or refused) before its start: not even the consumer group is made.
    if (!stop.aborted)
      await runWorker(
        {
          reader,
          writer,
          db: postgres,
          prepareDb: async () => {
            const prepared = await connectAndMigrate(config.databaseUrl, log);
            // A stop does not wait for this (worker.ts): what it made after the stop is closed here.
            if (stop.aborted) await prepared.close();
            else db = prepared;
          },
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
  } finally {
    reader.disconnect();
    writer.disconnect();
    await db?.close();
    await metricsServer?.close();
  }
  if (refusal !== undefined) throw refusal;
  log.info("stopped");
  // A preparation of Postgres may still be under way (a connect to a Postgres that does not answer, a migration
  // waiting on another's lock): it must not hold the exit. Postgres rolls back what the connection had begun.
  process.exit(0);
});

/**
 * Connects to Postgres, migrates and merges minutes into their hours again (mergeHoursAtStart: those a worker of the
 * release before candles_1h wrote), tried again as a whole while Postgres is down (the worker's prepareDb). A connect
 * that got no answer in time (`stalled`) fails as an outage (ETIMEDOUT, as a socket's own connect timeout does): it
 * sent no statement, so nothing of it may still run, and trying again later is all a Postgres not reachable yet
 * needs; the worker meanwhile goes on without it, rather than end and meet the same stall at each restart.
 */
async function connectAndMigrate(databaseUrl: string, log: Logger): Promise<Postgres> {
  const db = await connectPostgres(databaseUrl, log, { queryTimeoutMs: QUERY_TIMEOUT_MS }).catch((err: unknown) => {
    if (classifyPostgresError(err) !== "stalled") throw err;
    throw Object.assign(new Error((err as Error).message, { cause: err }), { code: "ETIMEDOUT" });
  });
  try {
    await migrate(db, log);
    await mergeHoursAtStart(db, Date.now(), log);
    return db;
  } catch (err) {
    await db.close();
    throw err;
  }
}
