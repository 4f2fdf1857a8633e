/**
 * The worker threads the processes start, by name. Like the processes, each runs from its bundle,
 * `dist/<name>.mjs` (platform/build.ts builds both); a process still running from its TypeScript sources (a test
 * importing it, `node --import tsx engine/main.ts`) starts them from source through ts-thread.mjs.
 */
import { Worker } from "node:worker_threads";

/** Thread name → TypeScript entry, relative to the repository root. */
export const THREADS = {
  "engine-follower": "engine/runner/follower-thread.ts",
  "engine-snapshot-loader": "engine/runner/snapshot-loader-thread.ts",
  "engine-log-prefetch": "engine/runner/log-prefetch-thread.ts",
  "engine-lease-keeper": "engine/runner/lease-keeper-thread.ts",
} as const;

export type ThreadName = keyof typeof THREADS;

/** This module is inside a bundle in dist/ unless it is still the source file itself. */
const BUNDLED = !import.meta.url.endsWith("/platform/threads.ts");

export function startThread(name: ThreadName, workerData: unknown): Worker {
  if (BUNDLED) return new Worker(new URL(`./${name}.mjs`, import.meta.url), { workerData });
  // Worker threads do not inherit the parent's module hooks: the shim registers tsx's loader in the thread first.
  const entry = new URL(`../${THREADS[name]}`, import.meta.url);
  return new Worker(new URL("./ts-thread.mjs", import.meta.url), { argv: [entry.href], workerData });
}

/**
 * Asks a thread to end (`message`, which it answers by closing what it holds) and resolves once it has exited
 * (`exited`, taken from its "exit" event when it started); one still running after `graceMs` is stopped.
 */
export async function endThread(
  worker: Worker,
  exited: Promise<void>,
  message: unknown,
  graceMs = 2000,
): Promise<void> {
  worker.postMessage(message);
  const timer = setTimeout(() => void worker.terminate(), graceMs);
  await exited;
  clearTimeout(timer);
}
