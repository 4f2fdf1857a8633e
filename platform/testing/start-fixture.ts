/**
 * `npm start` reduced, for platform/supervisor.e2e.test.ts: `node --import tsx start-fixture.ts <logDir> [lines]
 * [stopMs]` runs one stand-in component (log-fixture.ts `serve`, given `lines` and `stopMs`) under a Supervisor
 * relaying to this process's stdout, stops as scripts/start.ts does on a stop request (a second one forces it), and
 * says `ready`, then `servers stopped` (standing in for its Postgres, Redis and pid file steps) and `stopped cleanly`
 * or `stopped by force`, on stderr. A forced stop exits 1, as npm start's does.
 */
import type { Component } from "../components.ts";
import { runStopSteps, stopOrForceOnSignals } from "../config.ts";
import { createLogger } from "../log.ts";
import { Supervisor } from "../supervisor.ts";

const [logDir, lines = "0", stopMs = "0"] = process.argv.slice(2);
const FIXTURE: Component = {
  name: "api",
  entry: "platform/testing/log-fixture.ts",
  nodeFlags: ["--import", "tsx", "platform/testing/log-fixture.ts", "serve", lines, stopMs],
  readyEvent: "ready",
  metricsPort: 0,
  replicas: 1,
};

const log = createLogger("start");
const { stop, force } = stopOrForceOnSignals(log);
const supervisor = new Supervisor([FIXTURE], {
  env: { ...process.env, LOG_FORMAT: "json" },
  log,
  logDir: logDir!,
});
await supervisor.start();
process.stderr.write("ready\n");
await new Promise((resolve) => stop.addEventListener("abort", resolve, { once: true }));
await runStopSteps(
  [
    { name: "components", run: () => supervisor.stop(force) },
    { name: "servers", run: () => Promise.resolve(void process.stderr.write("servers stopped\n")) },
  ],
  log,
);
process.stderr.write(force.aborted ? "stopped by force\n" : "stopped cleanly\n");
if (force.aborted) process.exitCode = 1;
