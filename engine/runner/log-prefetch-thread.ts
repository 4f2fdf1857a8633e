/**
 * The log prefetch's thread (log-prefetch.ts): its own Redis connection reads `engine:input` after the cursor it
 * is given, decodes each entry against the contract, and hands the batches over on the port it is given, at most
 * `window` ahead of the leader taking them.
 */
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import type { FromPrefetch, LogPrefetchThreadData, ToPrefetch } from "./log-prefetch.ts";
import { decodeEntry, rangeAfter } from "./log-stream.ts";
import { LOADING, STATE } from "./snapshot-loader.ts";

const data = workerData as LogPrefetchThreadData;
const port = parentPort!;
const log = createLogger("engine", { base: { role: "log_prefetch" } });
const redis = connectRedis(data.redisUrl, log, "engine-log-prefetch");
let waiting = 0;
let closed = false;
let wake: (() => void) | undefined;
let batches: MessagePort | undefined;

port.on("message", (m: ToPrefetch) => {
  if (m.type === "start") {
    batches = m.batches;
    void loadEnded(m.loading).then(() => prefetch(m.after));
  } else if (m.type === "taken") waiting--;
  else {
    closed = true;
    redis.disconnect();
    batches?.close();
    port.close();
  }
  wake?.();
});

/** Resolves once the snapshot load behind these control words is no longer running (at once without them). */
async function loadEnded(loading: SharedArrayBuffer | undefined): Promise<void> {
  if (loading === undefined) return;
  const control = new Int32Array(loading);
  // Polled: a 10 ms look costs nothing beside a load of a second or more.
  while (!closed && Atomics.load(control, STATE) === LOADING) await new Promise((resolve) => setTimeout(resolve, 10));
}

async function prefetch(after: string): Promise<void> {
  const post = (m: FromPrefetch) => {
    if (closed) return;
    batches!.postMessage(m);
    port.postMessage("posted");
  };
  const started = performance.now();
  let entries = 0;
  let cursor = after;
  try {
    for (;;) {
      while (waiting >= data.window && !closed) await new Promise<void>((resolve) => (wake = resolve));
      if (closed) return;
      const raw = await rangeAfter(redis, data.stream, cursor, data.batch);
      if (raw.length === 0 || closed) break;
      post({ type: "batch", after: cursor, entries: raw.map(decodeEntry) });
      waiting++;
      entries += raw.length;
      cursor = raw[raw.length - 1]![0];
      // A short read is the end of the log as it is now; the leader reads what came since.
      if (raw.length < data.batch) break;
    }
    post({ type: "end", entries, ms: Math.round(performance.now() - started) });
  } catch (err) {
    post({
      type: "end",
      entries,
      ms: Math.round(performance.now() - started),
      error: err instanceof Error ? err.message : String(err),
    });
  }
}
