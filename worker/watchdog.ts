/**
 * The worker's bound on its own waits. Each step it awaits (a Redis command or script, a batch's Postgres writes, a
 * group read past its block time) normally ends well within a second. One that has not ended after `stuckAfterMs`
 * waits on a connection that stopped answering (a blackholed path, a dead proxy, Neon suspended under a query), which
 * neither driver notices by itself: left alone, the worker would wait for ever, every answer with it, and a stop would
 * wait too. So the first step past the bound logs `worker_stuck` and fails every bounded wait at once with a
 * WorkerStuckError: the worker ends, and its process exits non-zero for its supervisor to start it again on new
 * connections. What it left pending is handled as after any crash (claimed, or handled first under the same name).
 *
 * A Redis outage is another matter: ioredis knows its connection is down, reconnects, and sends what waited once it is
 * back, which is all a new process would do, only later. So time while a Redis connection is down (`RedisOutages`)
 * does not count: a step's bound runs from its start or from the connections' return, whichever is later. A
 * connection that came back and then says nothing is caught as before. Only a stop does not wait out an outage: once
 * it is asked, a step that has waited the bound since its start ends the worker all the same.
 *
 * A Postgres that is down is no step either (postgres-outages.ts): the batches go on without it, and each try at it
 * (the Postgres lane's, worker.ts) is a step of its own, bounded from its start; the pauses between tries are none.
 */
import type { Logger } from "../platform/log.ts";

export class WorkerStuckError extends Error {
  override readonly name = "WorkerStuckError";
}

/**
 * `work`, or a WorkerStuckError once it ran `stuckAfterMs` plus `extraMs` (Redis outages aside), or at once when any
 * other step did.
 */
export type Bounded = <T>(step: string, work: Promise<T>, extraMs?: number) => Promise<T>;

/** What the watchdog knows of the worker's Redis connections. */
export interface RedisOutages {
  /** undefined while one is down; else when (performance.now()) the last one came back, -Infinity if none went. */
  upSince(): number | undefined;
}

const NEVER_DOWN: RedisOutages = { upSince: () => -Infinity };

export function watchdog(
  stuckAfterMs: number,
  log: Logger,
  outages: RedisOutages = NEVER_DOWN,
  stop?: AbortSignal,
): Bounded {
  // Each waiting step races a rejection of its own, dropped when it ends. One shared promise raced by every step
  // would never settle while the worker runs, and each race would leave on it a reaction holding the step's result:
  // every reply and batch the worker ever handled would stay in memory.
  const waiting = new Set<(err: WorkerStuckError) => void>();
  let tripped: WorkerStuckError | undefined;
  const fail = (err: WorkerStuckError) => {
    tripped = err;
    for (const failStep of waiting) failStep(err);
    waiting.clear();
  };
  return <T>(step: string, work: Promise<T>, extraMs = 0) => {
    // After a trip, a step fails at once: the worker is ending.
    if (tripped !== undefined) return Promise.race([work, Promise.reject(tripped)]);
    const limitMs = stuckAfterMs + extraMs;
    const startedAt = performance.now();
    const check = () => {
      if (tripped !== undefined) return;
      const upSince = outages.upSince();
      const redisDown = upSince === undefined;
      // Looked at again a bound later: the wait then counts from the return, if Redis is back.
      if (redisDown && stop?.aborted !== true) return void (timer = setTimeout(check, limitMs));
      const leftMs = Math.max(startedAt, upSince ?? startedAt) + limitMs - performance.now();
      if (leftMs > 0) return void (timer = setTimeout(check, leftMs));
      const waitedMs = Math.round(performance.now() - startedAt);
      log.error("worker_stuck", { step, waitedMs, stuckAfterMs, ...(redisDown ? { redisDown } : {}) });
      const why = redisDown ? "a stop while Redis is down" : "a connection stopped answering";
      fail(new WorkerStuckError(`${step} did not end within ${limitMs} ms: ${why}`));
    };
    let failStep!: (err: WorkerStuckError) => void;
    const stuck = new Promise<never>((_, reject) => (failStep = reject));
    waiting.add(failStep);
    let timer = setTimeout(check, limitMs);
    return Promise.race([work, stuck]).finally(() => {
      clearTimeout(timer);
      waiting.delete(failStep);
    });
  };
}
