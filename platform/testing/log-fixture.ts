/**
 * A process that logs, for platform/log.e2e.test.ts: `node --import tsx log-fixture.ts <how> <lines>`.
 * - `exit` logs then calls process.exit; `throw` logs then throws; `thread` has a worker thread log and the main
 *   thread exit the moment the thread says it is done (the engine's threads log, and the engine exits on a broken
 *   invariant). Every line logged before the end must reach the reader.
 * - `epipe` logs to a reader that is gone, then says on stderr that it is still running.
 * - `serve` stands in for a component under the supervisor: logs a line at each level (`ready` at info), prints a
 *   line that is not JSON, then logs `<lines>` long lines every 5 ms (a busy component) until it is asked to stop,
 *   as components are (onStopRequest: a signal, or its supervisor gone), and logs `stopped` `[stopMs]` (default 0)
 *   later: a slow clean stop.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { onStopRequest } from "../config.ts";
import { createLogger } from "../log.ts";

const [how, count] = isMainThread ? [process.argv[2], Number(process.argv[3])] : (workerData as [string, number]);
const log = createLogger("fixture", { base: { thread: isMainThread ? "main" : "worker" } });
// A line longer than the 4 KiB a pipe writes in one piece, and many of them: more than a pipe holds.
const padding = "x".repeat(5_000);

function logAll(): void {
  for (let i = 0; i < count; i++) log.info("line", { i, padding });
  log.info("last", { i: count });
}

if (!isMainThread) {
  logAll();
  parentPort!.postMessage("done");
} else if (how === "thread") {
  // Through ts-thread.mjs, as threads.ts starts a thread from source: a thread does not inherit tsx's loader.
  const worker = new Worker(new URL("../ts-thread.mjs", import.meta.url), {
    argv: [import.meta.url],
    workerData: [how, count],
  });
  worker.once("message", () => process.exit(0));
} else if (how === "epipe") {
  logAll();
  process.stderr.write("still running\n");
} else if (how === "serve") {
  const stopMs = Number(process.argv[4]) || 0; // not given: the bundle path the supervisor appends is there
  let i = 0;
  const timer = setInterval(
    () => {
      for (let n = 0; n < count; n++) log.info("line", { i: i++, padding });
    },
    count > 0 ? 5 : 60_000,
  );
  onStopRequest(() => {
    clearInterval(timer);
    setTimeout(() => log.info("stopped"), stopMs);
  });
  log.debug("detail", { logFormat: process.env.LOG_FORMAT, logLevel: process.env.LOG_LEVEL });
  log.info("ready", { logFormat: process.env.LOG_FORMAT, logLevel: process.env.LOG_LEVEL });
  log.warn("slow", { ms: 1500 });
  process.stdout.write("not a JSON line\n");
} else {
  logAll();
  if (how === "exit") process.exit(3);
  throw new Error("broken invariant");
}
