/**
 * The replay's reading and decoding on the other core. Recovery replays the log tail after the restored cursor;
 * on one thread, reading it (ioredis' RESP decoder) and decoding it (JSON, the contract's schemas) cost about as
 * much as applying it. A worker thread (log-prefetch-thread.ts) does both, from the moment the snapshot's cursor
 * is known, while this thread is still decoding the snapshot; the leader then only applies.
 *
 * Batches are contiguous XRANGE reads, each tagged with the id it follows; the leader takes one only if it
 * follows the state's cursor exactly, so a prefetch started from another cursor (a restore that had to start
 * over) is never applied. At most `window` batches wait unapplied, so a long tail does not pile up in memory.
 * The prefetch stops at the end of the log as it found it; the leader reads the rest itself.
 *
 * Why this is safe before the lease is held: it only reads, and the log only ever loses a prefix (XTRIM MINID).
 * The engine checks, once it holds the lease, that nothing after the restored cursor was trimmed (main.ts), which
 * also proves every prefetched read was gap-free.
 */
import type { Worker } from "node:worker_threads";
import { endThread, startThread } from "../../platform/threads.ts";
import type { DecodedEntry } from "./log-stream.ts";

export interface LogPrefetchThreadData {
  readonly redisUrl: string;
  readonly stream: string;
  /** Entries per XRANGE (and per batch handed over). */
  readonly batch: number;
  /** Batches handed over but not yet taken, at most. */
  readonly window: number;
}

export type ToPrefetch = { type: "start"; after: string; loading: SharedArrayBuffer | undefined } | { type: "taken" } | { type: "close" };

export type FromPrefetch =
  | { type: "batch"; after: string; entries: DecodedEntry[] }
  | { type: "end"; entries: number; ms: number; error?: string };

/** How a prefetch ended, for the replay's log line. */
export interface PrefetchEnd {
  readonly entries: number;
  readonly ms: number;
  readonly error?: string;
}

export interface LogPrefetch {
  /**
   * Starts reading strictly after `after`; given a snapshot load's control words (snapshot-loader.ts), once that
   * load has ended, so the two do not compete for the second core. Once; later calls are ignored.
   */
  start(after: string, loading?: SharedArrayBuffer): void;
  /**
   * The next batch, decoded, if it follows `after` exactly; undefined when there is no more to take: the prefetch
   * reached the end of the log (or failed, or started from another cursor), or `signal` aborted.
   */
  next(after: string, signal?: AbortSignal): Promise<DecodedEntry[] | undefined>;
  /** How the prefetch ended, once `next` has returned undefined. */
  readonly ended: PrefetchEnd | undefined;
  /** Ends the thread and its connection; later calls return the same promise. */
  close(): Promise<void>;
}

export function startLogPrefetch(redisUrl: string, stream: string, options: { batch?: number; window?: number } = {}): LogPrefetch {
  const data: LogPrefetchThreadData = { redisUrl, stream, batch: options.batch ?? 5000, window: options.window ?? 30 };
  const worker: Worker = startThread("engine-log-prefetch", data);
  const queue: FromPrefetch[] = [];
  let wake: (() => void) | undefined;
  let ended: PrefetchEnd | undefined;
  let started = false;
  let closing: Promise<void> | undefined;
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const receive = (m: FromPrefetch) => {
    queue.push(m);
    wake?.();
  };
  worker.on("message", receive);
  worker.on("error", (err) => receive({ type: "end", entries: 0, ms: 0, error: `log prefetch thread failed: ${err.message}` }));
  worker.once("exit", (code) => receive({ type: "end", entries: 0, ms: 0, error: `log prefetch thread exited (${code})` }));
  const send = (m: ToPrefetch) => {
    if (closing === undefined) worker.postMessage(m);
  };
  const finish = (end: PrefetchEnd) => {
    ended ??= end;
    queue.length = 0;
    void close(); // nothing more will be taken: free the thread, its connection and what it still holds
    return undefined;
  };

  async function next(after: string, signal?: AbortSignal): Promise<DecodedEntry[] | undefined> {
    if (ended !== undefined) return undefined;
    if (!started) return finish({ entries: 0, ms: 0, error: "never started" });
    while (queue.length === 0) {
      if (signal?.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          resolve();
        };
        wake = done;
        signal?.addEventListener("abort", done, { once: true });
      });
      wake = undefined;
    }
    const m = queue.shift()!;
    if (m.type === "end") return finish(m);
    if (m.after !== after) return finish({ entries: 0, ms: 0, error: `prefetched after ${m.after}, needed after ${after}` });
    send({ type: "taken" });
    return m.entries;
  }

  function close(): Promise<void> {
    // The thread ends once its connection has closed.
    closing ??= endThread(worker, exited, { type: "close" } satisfies ToPrefetch);
    return closing;
  }

  return {
    start(after, loading) {
      if (started) return;
      started = true;
      send({ type: "start", after, loading });
    },
    next,
    get ended() {
      return ended;
    },
    close,
  };
}
