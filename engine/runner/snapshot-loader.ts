/**
 * Recovery's snapshot load on the other core. A worker thread (snapshot-loader-thread.ts) reads the latest
 * snapshot from Postgres chunk by chunk into shared memory; the engine decodes each byte as soon as it lands and
 * blocks (Atomics.wait) only when it catches up with the load. The load alone — the transfer, decoding each
 * chunk's base64, the SHA-256 — costs about half as much as the decode, and here it overlaps it.
 *
 * The bytes are provisional until `verified` resolves: the thread checks the length and SHA-256 against the head
 * at the end (PostgresSnapshotStore.stream), and restoreState waits for that before it trusts what it decoded.
 */
import { receiveMessageOnPort, type MessagePort, type Worker } from "node:worker_threads";
import { endThread, startThread } from "../../platform/threads.ts";
import type { ByteSource } from "../snapshot/bytes.ts";
import type { IdempotencyScan } from "../snapshot/codec.ts";
import { SnapshotIntegrityError, SnapshotLoadStalledError, type SnapshotHead } from "../snapshot/store.ts";
import type { LoadedSnapshot } from "./restore.ts";

export interface LoaderThreadData {
  readonly databaseUrl: string;
}

/**
 * Control words (an Int32Array over shared memory): bytes filled so far, load state, a change counter to wait on,
 * and the idempotency prescan's state.
 */
export const FILLED = 0;
export const STATE = 1;
export const VERSION = 2;
export const PRESCAN = 3;
export const CONTROL_WORDS = 4;
/** STATE values. */
export const LOADING = 0;
export const DONE = 1;
export const FAILED = 2;
/** PRESCAN values: running (or not started), its scan posted on the head's `idempotency` port, or none coming. */
export const SCANNING = 0;
export const SCANNED = 1;
export const NO_SCAN = 2;

export type FromLoader =
  | { type: "head"; head: SnapshotHead; bytes: SharedArrayBuffer; control: SharedArrayBuffer; idempotency: MessagePort }
  | { type: "none" }
  | { type: "done"; loadMs: number }
  | { type: "error"; name: string; message: string; generation?: number | undefined };

/** A decode blocked this long without a new byte gives up: the load is stuck (a hung connection). */
const STALL_MS = 30_000;

/**
 * Blocks this thread until the loader has filled at least `needed` bytes or stopped (done or failed); returns how
 * many are there. Throws when `stallMs` pass with no change at all.
 */
export function waitForBytes(control: Int32Array, needed: number, stallMs: number): number {
  let filled = 0;
  waitUntil(
    control,
    () => (filled = Atomics.load(control, FILLED)) >= needed || Atomics.load(control, STATE) !== LOADING,
    stallMs,
    () => `snapshot load stalled: no bytes for ${stallMs} ms (${filled} there, ${needed} needed)`,
  );
  return filled;
}

/**
 * Blocks this thread until the loader's idempotency prescan has ended, and returns its scan (undefined when it made none:
 * a version-1 snapshot, a failed load, bytes it could not read). Throws when `stallMs` pass with no change at all.
 */
export function waitForPrescan(control: Int32Array, port: MessagePort, stallMs: number): IdempotencyScan | undefined {
  waitUntil(
    control,
    () => Atomics.load(control, PRESCAN) !== SCANNING,
    stallMs,
    () => `snapshot loader stalled: no idempotency scan for ${stallMs} ms`,
  );
  // Posted before PRESCAN was set, so it is in the port's queue now.
  return Atomics.load(control, PRESCAN) === SCANNED
    ? (receiveMessageOnPort(port)?.message as IdempotencyScan | undefined)
    : undefined;
}

function waitUntil(control: Int32Array, done: () => boolean, stallMs: number, stalled: () => string): void {
  for (;;) {
    // The counter first: a change after this read makes the wait return at once.
    const version = Atomics.load(control, VERSION);
    if (done()) return;
    if (Atomics.wait(control, VERSION, version, stallMs) === "timed-out") throw new SnapshotLoadStalledError(stalled());
  }
}

/** A snapshot still streaming in, with the loader's control words (STATE leaves LOADING when the load ends). */
export interface StreamingSnapshot extends LoadedSnapshot {
  readonly control: SharedArrayBuffer;
}

export interface SnapshotLoader {
  /** The latest snapshot, still streaming in; null when none was ever saved. One load at a time. */
  load(): Promise<StreamingSnapshot | null>;
  /** Ends the thread (and its connection); later calls return the same promise. */
  close(): Promise<void>;
}

/**
 * Starts the loader thread now, so its start-up (module loading, the Postgres connection) overlaps the caller's
 * own; a `load` waits for it.
 */
export function startSnapshotLoader(databaseUrl: string, stallMs = STALL_MS): SnapshotLoader {
  const data: LoaderThreadData = { databaseUrl };
  const worker: Worker = startThread("engine-snapshot-loader", data);
  let onMessage: ((m: FromLoader) => void) | undefined;
  let ended: Error | undefined;
  let closing: Promise<void> | undefined;
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const end = (err: Error) => {
    ended ??= err;
    onMessage?.({ type: "error", name: err.name, message: err.message });
  };
  worker.on("message", (m: FromLoader) => onMessage?.(m));
  worker.on("error", (err) => end(new Error(`snapshot loader thread failed: ${err.message}`, { cause: err })));
  worker.once("exit", (code) => end(new Error(`snapshot loader thread exited (${code})`)));

  const load = () =>
    new Promise<StreamingSnapshot | null>((resolve, reject) => {
      if (ended !== undefined) return reject(ended);
      let settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
      let loadMs = NaN;
      let waitMs = 0;
      let scanWaitMs = 0;
      onMessage = (m) => {
        switch (m.type) {
          case "none":
            onMessage = undefined;
            return resolve(null);
          case "head": {
            const control = new Int32Array(m.control);
            m.idempotency.unref(); // read synchronously (waitForPrescan), never listened to
            const verified = new Promise<void>((res, rej) => (settle = { resolve: res, reject: rej }));
            verified.catch(() => undefined); // awaited by restoreState; may settle while the decode blocks
            const more: ByteSource = (needed) => {
              const t0 = performance.now();
              const filled = waitForBytes(control, needed, stallMs);
              waitMs += performance.now() - t0;
              return filled;
            };
            const idempotency = () => {
              const t0 = performance.now();
              const scan = waitForPrescan(control, m.idempotency, stallMs);
              scanWaitMs += performance.now() - t0;
              m.idempotency.close();
              return scan;
            };
            return resolve({
              head: m.head,
              bytes: new Uint8Array(m.bytes),
              more,
              verified,
              control: m.control,
              idempotency,
              stats: () => ({
                loadMs: Math.round(loadMs),
                waitMs: Math.round(waitMs),
                scanWaitMs: Math.round(scanWaitMs),
              }),
            });
          }
          case "done":
            onMessage = undefined;
            loadMs = m.loadMs;
            return settle?.resolve();
          case "error": {
            onMessage = undefined;
            // Rebuilt as the classes restoreState tells apart (an unusable snapshot, a stall).
            const err =
              m.name === "SnapshotIntegrityError"
                ? new SnapshotIntegrityError(m.message, m.generation)
                : m.name === "SnapshotLoadStalledError"
                  ? new SnapshotLoadStalledError(m.message)
                  : new Error(m.message);
            if (settle === undefined) return reject(err);
            return settle.reject(err);
          }
        }
      };
      worker.postMessage("load");
    });

  return {
    load,
    close: () => {
      closing ??= (async () => {
        if (ended !== undefined) return;
        await endThread(worker, exited, "close"); // the thread ends once its pool has closed
      })();
      return closing;
    },
  };
}
