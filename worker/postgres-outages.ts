/**
 * A Postgres that is down, for the worker. A Postgres restarting, failing over or not reachable for a while says so
 * plainly: the connection is refused or reset, the server ends it (administrator command, another process's crash),
 * or it answers that it is starting up, shutting down or in recovery. None of that is the batch's fault, and a worker
 * that exits on it only crash-loops until Postgres is back, then starts from a claim: every answer later still. So
 * the worker waits instead, as it waits out a Redis outage (redis-outages.ts): what failed is tried again, 1 s after
 * the failure, then doubling to one try per 10 s, logged once per outage (`postgres_unavailable` at its first failure,
 * `postgres_recovered` with how long it lasted once a try succeeds). Every statement the worker writes is idempotent
 * (history-writes.ts, candles.ts), so a batch's writes run again whole, whatever part of them had landed.
 *
 * A Postgres that answers with any other error (a constraint, a statement it refuses, a bug) is not waited for: no try
 * could succeed, and the error ends the worker as before. Neither is one that stops answering: a statement's timeout
 * or the watchdog (watchdog.ts), which bounds each try on its own, catches it. The pauses between tries are no step,
 * so the watchdog does not count them. A stop during a pause ends the wait at once (PostgresWaitStopped): what waited
 * is left unacknowledged, for the next worker, or this one restarted under its name, to handle.
 */
import type { Logger } from "../platform/log.ts";

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
 * SQLSTATEs of a server that ended the connection or takes none now: admin_shutdown (a fast shutdown or a terminated
 * backend), crash_shutdown (another server process crashed: the server restarts), cannot_connect_now (starting up,
 * shutting down, in recovery).
 */
const OUTAGE_STATES: ReadonlySet<string> = new Set(["57P01", "57P02", "57P03"]);
/** Class 08, connection exceptions, but for 08P01: a protocol violation is a driver's or proxy's bug, not an outage. */
const CONNECTION_EXCEPTION = /^08(?!P01)[0-9A-Z]{3}$/;
/** Socket errors of a server that is not there (or not reachable) now. */
const SOCKET_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);
/** What node-postgres says, with no code, of a connection that closed under a statement or before it. */
const CLOSED_MESSAGES: ReadonlySet<string> = new Set([
  "Connection terminated unexpectedly",
  "Client has encountered a connection error and is not queryable",
]);

/**
 * Whether `err` says Postgres is down rather than that it refused the work: the error itself, or its cause (a start's
 * "cannot reach Postgres at …", a failed migration's message, wrap the driver's), or one of an AggregateError's (a
 * host name with several addresses).
 */
export function isPostgresOutage(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (OUTAGE_STATES.has(code) || CONNECTION_EXCEPTION.test(code))) return true;
    if (typeof code === "string" && SOCKET_CODES.has(code)) return true;
    if (CLOSED_MESSAGES.has(e.message)) return true;
    if (e instanceof AggregateError && e.errors.some(isPostgresOutage)) return true;
  }
  return false;
}

/** The first code in `err` or its causes: a SQLSTATE or a socket error's. */
function codeOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
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
          const code = codeOf(err);
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
