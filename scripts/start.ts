/**
 * `npm start`: the whole system on this machine. Finds or starts Redis and Postgres (platform/local-redis.ts and
 * platform/local-postgres.ts: the configured URL, else a reachable local server, else one of its own in the data
 * folder), builds the bundles the processes run (platform/build.ts), then runs the engine, worker, poller and API
 * as separate processes under a supervisor that restarts any that dies. Ctrl-C stops them all cleanly, in order;
 * running it again resumes the same state from the data folder (`DATA_DIR`, default .data).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { buildBundles } from "../platform/build.ts";
import { COMPONENTS } from "../platform/components.ts";
import { ConfigError, runMain, stopOnSignals } from "../platform/config.ts";
import { ensurePostgres } from "../platform/local-postgres.ts";
import { ensureRedis } from "../platform/local-redis.ts";
import { createLogger } from "../platform/log.ts";
import { metricsBannerLines } from "../platform/metrics.ts";
import { REPO_ROOT, Supervisor } from "../platform/supervisor.ts";

runMain("start", async () => {
  const envFile = resolve(REPO_ROOT, ".env");
  // process.loadEnvFile exists from Node 20.12.
  if (existsSync(envFile) && typeof process.loadEnvFile === "function") process.loadEnvFile(envFile);
  const env = process.env;
  const log = createLogger("start");
  const dataDir = resolve(REPO_ROOT, env.DATA_DIR?.trim() || ".data");
  mkdirSync(dataDir, { recursive: true });
  const pidFile = resolve(dataDir, "start.pid");
  claimPidFile(pidFile);
  const stop = stopOnSignals(log);
  const cleanup: (() => Promise<void>)[] = [() => Promise.resolve(rmSync(pidFile, { force: true }))];
  try {
    const redis = await ensureRedis({ dataDir, log, env });
    cleanup.unshift(() => redis.stop());
    const postgres = await ensurePostgres({ dataDir, log, env });
    cleanup.unshift(() => postgres.stop());
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
    cleanup.unshift(() => supervisor.stop());
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
  } finally {
    // In reverse order of starting: the components, then Postgres and Redis if this run started them.
    for (const step of cleanup) await step();
    log.info("stopped");
  }
});

/** One `npm start` per data folder: a second would fight the first over ports and the engine lease. */
function claimPidFile(file: string): void {
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" }); // atomic: two starts cannot both create it
    return;
  } catch {
    const pid = Number(readFileSync(file, "utf8"));
    if (Number.isInteger(pid) && pid > 0 && isStart(pid)) {
      throw new ConfigError(`already running (pid ${pid}, ${file}); stop it first, or set DATA_DIR for a second stack`);
    }
  }
  // Left by a run that was killed: take it over.
  writeFileSync(file, String(process.pid));
}

/** Whether `pid` is a running `npm start` (after a reboot the number may belong to an unrelated process). */
function isStart(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("start");
  } catch {
    return true; // no /proc (macOS): alive is the best we know
  }
}

function printBanner(appUrl: string, dataDir: string, env: NodeJS.ProcessEnv, feedSource: string): void {
  const lines = [
    "",
    "  paper-broker is running",
    `    API          ${appUrl}`,
    `    API docs     ${appUrl}/api/v1/docs  (OpenAPI: ${appUrl}/api/v1/openapi.json)`,
    env.RESEND_API_KEY?.trim()
      ? "    email        sent through Resend"
      : `    dev mailbox  ${appUrl}/api/v1/dev/mailbox  (sign-in links; no RESEND_API_KEY set)`,
    `    prices       ${feedSource === "sim" ? "SIMULATED (sim feed: Backpack could not be reached or FEED=sim)" : feedSource}`,
    ...metricsBannerLines(env, COMPONENTS),
    `    data, logs   ${dataDir}`,
    "  Ctrl-C stops everything; npm start again resumes the same state.",
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
