/**
 * `npm start`: the whole system on this machine. Finds or starts Redis and Postgres (platform/local-infra.ts: the
 * configured URL, else a reachable local server, else one of its own in the data folder), then runs the engine,
 * worker, poller and API as separate processes under a supervisor that restarts any that dies. Ctrl-C stops them
 * all cleanly, in order; running it again resumes the same state from the data folder (`DATA_DIR`, default .data).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { COMPONENTS } from "../platform/components.ts";
import { ConfigError, runMain, stopOnSignals } from "../platform/config.ts";
import { ensurePostgres, ensureRedis } from "../platform/local-infra.ts";
import { createLogger } from "../platform/log.ts";
import { REPO_ROOT, Supervisor } from "../platform/supervisor.ts";

runMain("start", async () => {
  const envFile = resolve(REPO_ROOT, ".env");
  if (existsSync(envFile)) process.loadEnvFile(envFile);
  const env = process.env;
  const log = createLogger("start");
  const dataDir = resolve(REPO_ROOT, env.DATA_DIR?.trim() || ".data");
  mkdirSync(dataDir, { recursive: true });
  claimPidFile(resolve(dataDir, "start.pid"));
  const stop = stopOnSignals(log);

  const redis = await ensureRedis({ dataDir, log, env });
  const postgres = await ensurePostgres({ dataDir, log, env });
  const port = env.PORT?.trim() || "3000";
  const appUrl = env.APP_URL?.trim() || `http://localhost:${port}`;
  const childEnv: NodeJS.ProcessEnv = { ...env, REDIS_URL: redis.url, DATABASE_URL: postgres.url, DATA_DIR: dataDir, PORT: port, APP_URL: appUrl };

  const supervisor = new Supervisor(COMPONENTS, { env: childEnv, log, logDir: resolve(dataDir, "logs") });
  try {
    if (!stop.aborted) {
      const ready = await Promise.race([supervisor.start(), new Promise<undefined>((r) => stop.addEventListener("abort", () => r(undefined)))]);
      if (ready !== undefined) printBanner(appUrl, dataDir, env, typeof ready.poller?.source === "string" ? ready.poller.source : "unknown");
    }
    if (!stop.aborted) await new Promise((r) => stop.addEventListener("abort", r, { once: true }));
  } finally {
    await supervisor.stop();
    await postgres.stop();
    await redis.stop();
    log.info("stopped");
  }
});

/** One `npm start` per data folder: a second would fight the first over ports and the engine lease. */
function claimPidFile(file: string): void {
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, "utf8"));
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new ConfigError(`already running (pid ${pid}, ${file}); stop it first, or set DATA_DIR for a second stack`);
    }
  }
  writeFileSync(file, String(process.pid));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function printBanner(appUrl: string, dataDir: string, env: NodeJS.ProcessEnv, feedSource: string): void {
  const lines = [
    "",
    "  paper-broker is running",
    `    API          ${appUrl}`,
    `    API docs     ${appUrl}/api/v1/docs  (OpenAPI: ${appUrl}/api/v1/openapi.json)`,
    env.RESEND_API_KEY?.trim() ? "    email        sent through Resend" : `    dev mailbox  ${appUrl}/api/v1/dev/mailbox  (sign-in links; no RESEND_API_KEY set)`,
    `    prices       ${feedSource === "sim" ? "SIMULATED (sim feed: Backpack could not be reached or FEED=sim)" : feedSource}`,
    `    data, logs   ${dataDir}`,
    "  Ctrl-C stops everything; npm start again resumes the same state.",
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
