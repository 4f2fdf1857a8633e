/**
 * `npm start`: the whole system on this machine. Finds or starts Redis and Postgres (platform/local-redis.ts and
 * platform/local-postgres.ts with `prefer: "own"`: the configured URL, else servers of its own in the data folder,
 * so that all local state is in that one folder), builds the bundles the processes run (platform/build.ts), then
 * runs the engine (two processes: a leader and a hot standby), worker, poller, API and stream as separate processes
 * under a supervisor that restarts any that dies. A Redis or Postgres of its own that dies is started again too, on
 * the same port and data (the components reconnect by themselves).
 * Ctrl-C (or SIGTERM to the pid in `<dataDir>/start.pid`) stops them all cleanly, in order; running it again resumes
 * the same state from the data folder (`DATA_DIR`, default .data).
 *
 * A data folder whose log was kept in the Redis at 127.0.0.1:6379 (no Redis of its own yet, Postgres state present,
 * the engine's input stream there) stays on that Redis, with a warning: an empty Redis of its own would drop that log.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { keyspace } from "../contract/names.ts";
import { buildBundles } from "../platform/build.ts";
import { COMPONENTS, componentNamed, replicasOf } from "../platform/components.ts";
import {
  ConfigError,
  keyPrefix,
  runMain,
  runStopSteps,
  stopOrForceOnSignals,
  type StopStep,
} from "../platform/config.ts";
import { claimPidFile } from "../platform/pid-file.ts";
import { ensurePostgres } from "../platform/local-postgres.ts";
import { ensureRedis, RedisNoAnswerError, redisPersistence, withRedis } from "../platform/local-redis.ts";
import { DEFAULT_LOCAL_REDIS_URL, readPort, where, type Env } from "../platform/local-servers.ts";
import { createLogger, stdoutText, type Logger } from "../platform/log.ts";
import { metricsBannerLines } from "../platform/metrics.ts";
import { REPO_ROOT, Supervisor } from "../platform/supervisor.ts";
import { WatchedServer } from "../platform/watched-server.ts";

runMain("start", async () => {
  const envFile = resolve(REPO_ROOT, ".env");
  // start.mjs has refused a Node without process.loadEnvFile.
  if (existsSync(envFile)) process.loadEnvFile(envFile);
  const env = process.env;
  // Checked before anything starts, as each process checks it again: a prefix one of them refuses stops them all.
  const prefix = keyPrefix(env);
  const log = createLogger("start");
  const dataDir = resolve(REPO_ROOT, env.DATA_DIR?.trim() || ".data");
  mkdirSync(dataDir, { recursive: true });
  const pidFile = resolve(dataDir, "start.pid");
  // This process runs scripts/start.mjs (argv[1], absolute): a run of it, or of another checkout, holds the file.
  claimPidFile(pidFile, process.argv[1] ?? "");
  const { stop, force } = stopOrForceOnSignals(log);
  const cleanup: StopStep[] = [{ name: "pid_file", run: () => Promise.resolve(rmSync(pidFile, { force: true })) }];
  const ran = await runUntilStopped({ env, prefix, log, dataDir, stop, force, cleanup }).then(
    () => undefined,
    (error: unknown) => ({ error }),
  );
  // In reverse order of starting: the components, then Postgres and Redis if this run started them, then the pid
  // file; every step, whatever the ones before did.
  const stopFailed = await runStopSteps(cleanup, log);
  if (stopFailed === undefined) log.info("stopped", force.aborted ? { forced: true } : {});
  // The run's own failure first (a configuration error exits 2); a failed stop step is logged, and exits 1, as does
  // a forced stop: its components did not stop cleanly.
  if (ran !== undefined) throw ran.error;
  if (stopFailed !== undefined) throw stopFailed.error;
  if (force.aborted) process.exitCode = 1;
});

/**
 * Starts or finds Redis and Postgres, builds, starts the components and prints the banner, then waits for `stop`;
 * each thing started puts the step that stops it first in `cleanup`.
 */
async function runUntilStopped({
  env,
  prefix,
  log,
  dataDir,
  stop,
  force,
  cleanup,
}: {
  env: NodeJS.ProcessEnv;
  prefix: string;
  log: Logger;
  dataDir: string;
  stop: AbortSignal;
  /** A second Ctrl-C: the components are SIGKILLed rather than waited for. */
  force: AbortSignal;
  cleanup: StopStep[];
}): Promise<void> {
  const logAt = await logLeftOnLocalRedis(dataDir, env, prefix);
  const redisOptions = { dataDir, log, env: logAt ? { ...env, REDIS_URL: logAt } : env, prefer: "own" } as const;
  const redis = new WatchedServer(
    "redis",
    await ensureRedis(redisOptions),
    (port) => ensureRedis({ ...redisOptions, onlyPort: port }),
    log,
  );
  cleanup.unshift({ name: "redis", run: () => redis.stop() });
  if (logAt !== undefined) {
    log.warn("redis_log_outside_data_dir", {
      at: where(logAt),
      message: `This data folder's log and read models are in the Redis at ${where(logAt)} (an earlier npm start kept them there), not in ${dataDir}; that Redis ${(await redisPersistence(logAt)).text}. npm start keeps using it so nothing is lost. For a Redis of its own, with AOF, in the data folder: stop, delete ${dataDir} (a reset) and start again.`,
    });
  }
  const postgresOptions = { dataDir, log, env, prefer: "own" } as const;
  const postgres = new WatchedServer(
    "postgres",
    await ensurePostgres(postgresOptions),
    (port) => ensurePostgres({ ...postgresOptions, onlyPort: port }),
    log,
  );
  cleanup.unshift({ name: "postgres", run: () => postgres.stop() });
  redis.watch(stop);
  postgres.watch(stop);
  const port = env.PORT?.trim() || "3000";
  const appUrl = env.APP_URL?.trim() || `http://localhost:${port}`;
  const childEnv: NodeJS.ProcessEnv = {
    ...env,
    REDIS_URL: redis.url,
    DATABASE_URL: postgres.url,
    DATA_DIR: dataDir,
    PORT: port,
    APP_URL: appUrl,
  };
  log.info("built", { ms: Math.round(await buildBundles()) });
  const supervisor = new Supervisor(COMPONENTS, { env: childEnv, log, logDir: resolve(dataDir, "logs") });
  cleanup.unshift({ name: "components", run: () => supervisor.stop(force) });
  if (stop.aborted) return;
  const stopped = new Promise<undefined>((r) => stop.addEventListener("abort", () => r(undefined), { once: true }));
  const ready = await Promise.race([
    supervisor.start().catch((err: unknown) => {
      throw new ConfigError(err instanceof Error ? err.message : String(err));
    }),
    stopped,
  ]);
  if (ready === undefined) return;
  printBanner(appUrl, dataDir, env, typeof ready.poller?.source === "string" ? ready.poller.source : "unknown");
  await stopped;
}

/**
 * The local Redis, when it holds this data folder's log from a run that kept it there: the folder never had a Redis
 * of its own, its Postgres state exists (a cluster in it, or DATABASE_URL), and that Redis holds the engine's input
 * stream under KEY_PREFIX.
 */
async function logLeftOnLocalRedis(dataDir: string, env: Env, prefix: string): Promise<string | undefined> {
  if (env.REDIS_URL?.trim() || (await readPort(join(dataDir, "redis"))) !== undefined) return undefined;
  if (!env.DATABASE_URL?.trim() && !existsSync(join(dataDir, "postgres", "data", "PG_VERSION"))) return undefined;
  const url = env.LOCAL_REDIS_PROBE_URL?.trim() || DEFAULT_LOCAL_REDIS_URL;
  const input = keyspace(prefix).input;
  const kept = await withRedis(url, async (redis) => (await redis.exists(input)) === 1).catch((err: unknown) => {
    // Nothing there (refused) means no log to keep. A Redis that accepts but does not answer may hold it, and a Redis
    // of its own would start without it.
    if (!(err instanceof RedisNoAnswerError)) return false;
    throw new Error(
      `${err.message}. npm start asks it whether this data folder's log is kept there before it starts a Redis of its own; resume or stop that Redis, or set REDIS_URL, and start again.`,
    );
  });
  return kept ? url : undefined;
}

/** One `npm start` per data folder: a second would fight the first over ports and the engine lease. */
function printBanner(appUrl: string, dataDir: string, env: NodeJS.ProcessEnv, feedSource: string): void {
  const engines = replicasOf(componentNamed("engine")).map((r) => r.name);
  const lines = [
    "",
    "  paper-broker is running",
    `    API          ${appUrl}`,
    `    API docs     ${appUrl}/api/v1/docs  (OpenAPI: ${appUrl}/api/v1/openapi.json)`,
    `    stream       ${env.STREAM_URL?.trim() || `ws://localhost:${env.STREAM_PORT?.trim() || "3001"}/api/v1/stream`}  (docs/stream.md)`,
    env.RESEND_API_KEY?.trim()
      ? "    email        sent through Resend"
      : `    dev mailbox  ${appUrl}/api/v1/dev/mailbox  (sign-in links; no RESEND_API_KEY set)`,
    `    engine       a leader and a hot standby (${engines.join(", ")})`,
    `    prices       ${feedSource === "sim" ? "SIMULATED (sim feed: Backpack could not be reached or FEED=sim)" : feedSource}`,
    ...metricsBannerLines(env, COMPONENTS),
    `    data, logs   ${dataDir}`,
    "  Ctrl-C stops everything; npm start again resumes the same state.",
    "",
  ];
  stdoutText().write(`${lines.join("\n")}\n`);
}
