/**
 * A stand-in component for platform/supervisor.e2e.test.ts: `node --import tsx supervised-fixture.ts` (the bundle
 * path the supervisor appends is ignored). What each run does comes from FIXTURE_PLAN, a comma-separated list read
 * by run number (the runs are counted in the file FIXTURE_RUNS; the last entry repeats):
 * - `fail`: exits 1 at once, never ready (a component that cannot start);
 * - `crash`: logs `ready`, then exits 1 at once (a component that dies as it starts serving);
 * - `crash-later`: logs `ready`, serves FIXTURE_SERVE_MS (default 1,000), then exits 1 (one that died while serving);
 * - `serve`: logs `ready`, then runs until SIGTERM and logs `stopped`;
 * - `config-error`: stops as a worker with a bad variable does, exit 2, saying FIXTURE_CONFIG_ERROR;
 * - `metrics`: serves metrics as engine/main.ts does (readMetricsConfig, serveMetrics under runMain), then as `serve`.
 * The ready line carries the metrics port the process was given (ENGINE_METRICS_PORT, as an engine would read it)
 * and its WORKER_NAME.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { ConfigError, runMain } from "../config.ts";
import { createLogger } from "../log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../metrics.ts";

const plan = (process.env.FIXTURE_PLAN ?? "serve").split(",");
const runsFile = process.env.FIXTURE_RUNS;
let run = 0;
if (runsFile !== undefined) {
  try {
    run = Number(readFileSync(runsFile, "utf8"));
  } catch {
    run = 0; // the first run: no file yet
  }
  writeFileSync(runsFile, String(run + 1));
}
const how = plan[Math.min(run, plan.length - 1)];
const log = createLogger("fixture", { base: { run } });

if (how === "fail") {
  process.exit(1);
}
if (how === "config-error") {
  // As a component's main stops on a bad variable: after a line of its log, runMain's one line on stderr, exit 2.
  log.info("start");
  runMain("worker", () => Promise.reject(new ConfigError(process.env.FIXTURE_CONFIG_ERROR ?? "a bad value")));
} else if (how === "metrics") {
  runMain("engine", async () => {
    await serveMetrics(createRegistry("engine"), readMetricsConfig(process.env, "engine"), log);
    serve();
  });
} else {
  serve();
}

function serve(): void {
  // Before the ready line: a supervisor may stop it the moment it reads that line.
  const timer = setInterval(() => undefined, 60_000);
  process.once("SIGTERM", () => {
    clearInterval(timer);
    log.info("stopped");
  });
  log.info("ready", { metricsPort: process.env.ENGINE_METRICS_PORT, workerName: process.env.WORKER_NAME });
  if (how === "crash") process.exit(1);
  if (how === "crash-later") setTimeout(() => process.exit(1), Number(process.env.FIXTURE_SERVE_MS ?? 1_000));
  // The supervisor gone (a test that failed half-way): its IPC channel closes, and nothing is left running.
  process.once("disconnect", () => process.exit(0));
  process.channel?.unref();
}
