/**
 * A Postgres that is down, for the worker. A Postgres restarting, failing over or not reachable for a while says so
 * plainly: the connection is refused or reset, the server ends it (administrator command, another process's crash),
 * or it answers that it is starting up, shutting down or in recovery, that it has no connection slot left (53300),
 * that it takes no write (25006, a primary failing over to a node that is read-only), or that it is out of disk (53100,
 * what Neon answers once a project reaches its size limit) or memory (53200). None of that is the batch's fault, and
 * trading needs only Redis: so the worker goes on without Postgres (worker.ts), each batch's Redis part handled and
 * its Postgres writes left in the backlog (postgres-backlog.ts), and tries Postgres again 1 s after the failure, then
 * doubling to one try per 10 s, until one succeeds. An outage is logged once (`postgres_unavailable` at its first
 * failure, with the SQLSTATE or socket error's `code` and, for a SQLSTATE above, Postgres's name for it, `condition`,
 * e.g. `disk_full`; `postgres_recovered` with how long it lasted once a try succeeds). Every statement the worker
 * writes is idempotent (history-writes.ts, candles.ts), so a batch's writes run again whole, whatever part of them had
 * landed; each runs on its own, and the pool drops the connection of any statement that failed, so a try after a
 * failover opens a new one.
 *
 * A try succeeds when it writes, not when Postgres answers. A node that is read-only answers a SELECT, and so does one
 * whose disk is full, which refuses only a write that needs a new page (Neon's size limit too), so no question about
 * its state (pg_is_in_recovery(), transaction_read_only) tells that a write would go through. Counted back on an
 * answer, such a node would end the outage at every try and begin another at the next write: two lines a try, the
 * pause back at its first. So the worker's lane tries by writing what is owed; when it has nothing to write (nothing
 * owed, or another worker writing it), the outage is put on trial (`answered`): the batches write Postgres again, and
 * the first that writes ends the outage, or fails and goes on with it, the pause doubled.
 *
 * What an outage is, is decided once for every process (platform/postgres-errors.ts: its kind `outage`); what the
 * worker does about it is its own. A Postgres that answers with any other error (a constraint, a statement it
 * refuses, a bug) is no outage: no try could succeed, and the error ends the worker as before. Nor are credentials or
 * a database it refuses (`refused`: a ConfigError at start, exit 2). Nor a deadlock or a serialization conflict
 * (`conflict`): the statement was sent again already (platform/postgres.ts), and the worker writes its rows in one
 * order (key-order.ts), so a conflict that outlasts those tries is a bug to see. Nor, on purpose, a Postgres that
 * stops answering (`stalled`): a statement's timeout or the watchdog (watchdog.ts), which bounds each try on its own,
 * catches it, and the worker ends, to be restarted on new connections, since a connection that went silent is not
 * known to come back and a statement that timed out may still run. The pauses between tries are no step, so the
 * watchdog does not count them.
 */
import type { Logger } from "../platform/log.ts";
import { classifyPostgresError, postgresCondition, postgresErrorCode } from "../platform/postgres-errors.ts";

/** How soon what failed on an outage is tried again: `firstMs`, then doubling to `maxMs`. */
export interface PostgresRetry {
  readonly firstMs: number;
  readonly maxMs: number;
}

export const DEFAULT_POSTGRES_RETRY: PostgresRetry = { firstMs: 1_000, maxMs: 10_000 };

/** What one worker knows of Postgres: whether it is down, and when to try it again. */
export interface PostgresOutages {
  /** Down since a try failed on an outage, until a write succeeds; not while on trial (`answered`). */
  isDown(): boolean;
  /**
   * A try failed: true when `err` is an outage (Postgres is then down, `postgres_unavailable` logged at the first
   * failure of the outage, and the next try due after the pause), false for any other error, which changes nothing.
   */
  failed(err: unknown): boolean;
  /**
   * A write succeeded: ends an outage, if one was under way, with `postgres_recovered` and `fields` in its line (after
   * those `answered` was given).
   */
  succeeded(fields?: Record<string, unknown>): void;
  /**
   * A try reached Postgres and wrote nothing: the outage goes on, on trial (not down: batches write Postgres), until a
   * write succeeds or fails. `fields` go into the `postgres_recovered` line, if one follows.
   */
  answered(fields?: Record<string, unknown>): void;
  /** Down, and the pause after the last failed try is over. */
  tryDue(): boolean;
}

export function watchPostgresOutages(
  log: Logger,
  retry: PostgresRetry = DEFAULT_POSTGRES_RETRY,
  now: () => number = () => performance.now(),
): PostgresOutages {
  let downSince: number | undefined;
  // While on trial: the fields `answered` was given.
  let trial: Record<string, unknown> | undefined;
  let pauseMs = retry.firstMs;
  let nextTryAt = 0;
  const isDown = () => downSince !== undefined && trial === undefined;
  return {
    isDown,
    failed(err) {
      if (!isPostgresOutage(err)) return false;
      if (downSince === undefined) {
        downSince = now();
        pauseMs = retry.firstMs;
        const code = postgresErrorCode(err);
        const condition = code === undefined ? undefined : postgresCondition(code);
        log.warn("postgres_unavailable", {
          error: (err as Error).message,
          ...(code === undefined ? {} : { code }),
          ...(condition === undefined ? {} : { condition }),
        });
      } else pauseMs = Math.min(retry.maxMs, pauseMs * 2);
      trial = undefined;
      nextTryAt = now() + pauseMs;
      return true;
    },
    succeeded(fields = {}) {
      if (downSince === undefined) return;
      log.info("postgres_recovered", { downMs: Math.round(now() - downSince), ...trial, ...fields });
      downSince = undefined;
      trial = undefined;
    },
    answered(fields = {}) {
      if (downSince !== undefined) trial = fields;
    },
    tryDue: () => isDown() && now() >= nextTryAt,
  };
}

/**
 * Whether `err` says Postgres is down rather than that it refused the work: an `outage` as platform/postgres-errors.ts
 * decides it for every process, found on the error itself or what it wraps (a start's "cannot reach Postgres at …", a
 * failed migration's message, an AggregateError of a host name's several addresses).
 */
export function isPostgresOutage(err: unknown): boolean {
  return classifyPostgresError(err) === "outage";
}
