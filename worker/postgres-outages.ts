/**
 * A Postgres that is down, for the worker. A Postgres restarting, failing over or not reachable for a while says so
 * plainly: the connection is refused or reset, the server ends it (administrator command, another process's crash),
 * or it answers that it is starting up, shutting down or in recovery, that it has no connection slot left (53300), or
 * that it takes no write (25006, a primary failing over to a node that is read-only). None of that is the batch's
 * fault, and a worker that exits on it only crash-loops until Postgres is back, then starts from a claim: every answer
 * later still. So the worker waits instead, as it waits out a Redis outage (redis-outages.ts): what failed is tried
 * again, 1 s after the failure, then doubling to one try per 10 s, logged once per outage (`postgres_unavailable` at
 * its first failure, `postgres_recovered` with how long it lasted once a try succeeds). Every statement the worker
 * writes is idempotent (history-writes.ts, candles.ts), so a batch's writes run again whole, whatever part of them had
 * landed; each runs on its own, and the pool drops the connection of any statement that failed, so a try after a
 * failover opens a new one.
 *
 * What an outage is, is decided once for every process (platform/postgres-errors.ts); what is waited for is the
 * worker's own. A Postgres that answers with any other error (a constraint, a statement it refuses, a bug) is not
 * waited for: no try could succeed, and the error ends the worker as before. Nor are credentials or a database it
 * refuses (a ConfigError at start, exit 2). Nor a deadlock or a serialization conflict: the statement was sent again
 * already (platform/postgres.ts), and the worker writes its rows in one order (key-order.ts), so a conflict that
 * outlasts those tries is a bug to see. Nor a Postgres that stops answering: a statement's timeout or the watchdog
 * (watchdog.ts), which bounds each try on its own, catches it, and the worker ends, to be restarted on new
 * connections (a statement that timed out may still run). The pauses between tries are no step, so the watchdog does
 * not count them. A stop during a pause ends the wait at once (PostgresWaitStopped): what waited is left
 * unacknowledged, for the next worker, or this one restarted under its name, to handle.
 */
import type { Logger } from "../platform/log.ts";
import { classifyPostgresError, postgresErrorCode } from "../platform/postgres-errors.ts";

/** How soon what failed on an outage is tried again: `firstMs`, then doubling to `maxMs`. */
export interface PostgresRetry {
  readonly firstMs: number;
  readonly maxMs: number;
}

export const DEFAULT_POSTGRES_RETRY: PostgresRetry = { firstMs: 1_000, maxMs: 10_000 };

/** A stop came while the worker waited for Postgres to come back. */
export class PostgresWaitStopped extends Error {
  override readonly name = "PostgresWaitStopped";
}

/** Runs `attempt`, again after each failure that is a Postgres outage, until it succeeds. */
export type UntilPostgres = <T>(attempt: () => Promise<T>) => Promise<T>;

/**
 * Whether `err` says Postgres is down rather than that it refused the work: an `outage` as platform/postgres-errors.ts
 * decides it for every process, found on the error itself or what it wraps (a start's "cannot reach Postgres at …", a
 * failed migration's message, an AggregateError of a host name's several addresses).
 */
export function isPostgresOutage(err: unknown): boolean {
  return classifyPostgresError(err) === "outage";
}

/**
 * An UntilPostgres for one process (or one runWorker): an outage that spans several batches is logged once. `stop`
 * ends a wait at once with a PostgresWaitStopped.
 */
export function waitForPostgres(
  log: Logger,
  stop: AbortSignal,
  retry: PostgresRetry = DEFAULT_POSTGRES_RETRY,
): UntilPostgres {
  let downSince: number | undefined;
  return async <T>(attempt: () => Promise<T>): Promise<T> => {
    for (let delayMs = retry.firstMs; ; delayMs = Math.min(retry.maxMs, delayMs * 2)) {
      try {
        const result = await attempt();
        if (downSince !== undefined) {
          log.info("postgres_recovered", { downMs: Math.round(performance.now() - downSince) });
          downSince = undefined;
        }
        return result;
      } catch (err) {
        if (!isPostgresOutage(err)) throw err;
        if (downSince === undefined) {
          downSince = performance.now();
          const code = postgresErrorCode(err);
          log.warn("postgres_unavailable", { error: (err as Error).message, ...(code === undefined ? {} : { code }) });
        }
        if (stop.aborted || (await pauseUnlessStopped(delayMs, stop)))
          throw new PostgresWaitStopped("stopped while waiting for Postgres", { cause: err });
      }
    }
  };
}

/** Waits `ms`, or less if `stop` comes first: true then. */
function pauseUnlessStopped(ms: number, stop: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const onStop = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      stop.removeEventListener("abort", onStop);
      resolve(false);
    }, ms);
    stop.addEventListener("abort", onStop, { once: true });
  });
}
