/**
 * The worker's bound on its own waits. Each step it awaits (a Redis command or script, a batch's Postgres writes, a
 * group read past its block time) normally ends well within a second. One that has not ended after `stuckAfterMs`
 * waits on a connection that stopped answering (a blackholed path, a dead proxy, Neon suspended under a query), which
 * neither driver notices by itself: left alone, the worker would wait for ever, every answer with it, and a stop would
 * wait too. So the first step past the bound logs `worker_stuck` and fails every bounded wait at once with a
 * WorkerStuckError: the worker ends, and its process exits non-zero for its supervisor to start it again on new
 * connections. What it left pending is handled as after any crash (claimed, or handled first under the same name).
 */
import type { Logger } from "../platform/log.ts";

export class WorkerStuckError extends Error {
  override readonly name = "WorkerStuckError";
}

/** `work`, or a WorkerStuckError once it ran `stuckAfterMs` plus `extraMs`, or at once when any other step did. */
export type Bounded = <T>(step: string, work: Promise<T>, extraMs?: number) => Promise<T>;

export function watchdog(stuckAfterMs: number, log: Logger): Bounded {
  let fail!: (err: WorkerStuckError) => void;
  const stuck = new Promise<never>((_, reject) => (fail = reject));
  stuck.catch(() => undefined); // raced by each step; not unhandled when no step is waiting
  let tripped = false;
  return <T>(step: string, work: Promise<T>, extraMs = 0) => {
    const limitMs = stuckAfterMs + extraMs;
    const startedAt = performance.now();
    const timer = setTimeout(() => {
      if (tripped) return;
      tripped = true;
      const waitedMs = Math.round(performance.now() - startedAt);
      log.error("worker_stuck", { step, waitedMs, stuckAfterMs });
      fail(new WorkerStuckError(`${step} did not end within ${limitMs} ms: a connection stopped answering`));
    }, limitMs);
    return Promise.race([work, stuck]).finally(() => clearTimeout(timer));
  };
}
