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
 * The batches wait on a port of their own and are received (deserialized into this thread's heap) one at a time,
 * as the leader takes them. Received as they arrive, the whole window would land at once when the snapshot decode
 * ends (the event loop was blocked meanwhile), and be copied by every young-generation collection until applied,
 * delaying the replay's start. The thread's message on the worker itself only says that one was posted.
 *
 * Why this is safe before the lease is held: it only reads, and the log only ever loses a prefix (XTRIM MINID).
 * The engine checks, once it holds the lease, that nothing after the restored cursor was trimmed (main.ts), which
 * also proves every prefetched read was gap-free.
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker } from "node:worker_threads";
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

export type ToPrefetch =
  | { type: "start"; after: string; loading: SharedArrayBuffer | undefined; batches: MessagePort }
  | { type: "taken" }
  | { type: "close" };

/** What the thread posts on the `batches` port; after each, it posts "posted" to the worker. */
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

export function startLogPrefetch(
  redisUrl: string,
  stream: string,
  options: { batch?: number; window?: number } = {},
): LogPrefetch {
  const data: LogPrefetchThreadData = { redisUrl, stream, batch: options.batch ?? 5000, window: options.window ?? 30 };
  const worker: Worker = startThread("engine-log-prefetch", data);
  const { port1: batches, port2: threadEnd } = new MessageChannel();
  let posted = 0;
  let received = 0;
  /** Why the thread stopped without an "end" of its own (it failed or exited). */
  let failure: PrefetchEnd | undefined;
  let wake: (() => void) | undefined;
  let ended: PrefetchEnd | undefined;
  let started = false;
  let closing: Promise<void> | undefined;
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  worker.on("message", () => {
    posted++;
    wake?.();
  });
  const fail = (error: string) => {
    failure ??= { entries: 0, ms: 0, error };
    wake?.();
  };
  worker.on("error", (err) => fail(`log prefetch thread failed: ${err.message}`));
  worker.once("exit", (code) => fail(`log prefetch thread exited (${code})`));
  const send = (m: ToPrefetch, transfer: MessagePort[] = []) => {
    if (closing === undefined) worker.postMessage(m, transfer);
  };
  const finish = (end: PrefetchEnd) => {
    ended ??= end;
    void close(); // nothing more will be taken: free the thread, its connection and what it still holds
    return undefined;
  };

  /** The next message the thread posted, once it is there; undefined if the thread stopped first or `signal` aborted. */
  async function receive(signal?: AbortSignal): Promise<FromPrefetch | PrefetchEnd | undefined> {
    for (;;) {
      const got = receiveMessageOnPort(batches);
      if (got !== undefined) {
        received++;
        return got.message as FromPrefetch;
      }
      if (received < posted) {
        // Announced but not on the port yet: the two travel separately.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      if (failure !== undefined) return failure;
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
  }

  async function next(after: string, signal?: AbortSignal): Promise<DecodedEntry[] | undefined> {
    if (ended !== undefined) return undefined;
    if (!started) return finish({ entries: 0, ms: 0, error: "never started" });
    const m = await receive(signal);
    if (m === undefined) return undefined;
    if (!("type" in m) || m.type === "end") return finish(m);
    if (m.after !== after)
      return finish({ entries: 0, ms: 0, error: `prefetched after ${m.after}, needed after ${after}` });
    send({ type: "taken" });
    return m.entries;
  }

  function close(): Promise<void> {
    // The thread ends once its connection has closed; what it posted and nobody took goes with the port.
    closing ??= endThread(worker, exited, { type: "close" } satisfies ToPrefetch).finally(() => batches.close());
    return closing;
  }

  return {
    start(after, loading) {
      if (started) return;
      started = true;
      send({ type: "start", after, loading, batches: threadEnd }, [threadEnd]);
    },
    next,
    get ended() {
      return ended;
    },
    close,
  };
}
