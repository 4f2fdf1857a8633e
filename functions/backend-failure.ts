/**
 * Whether an error means that Redis, Postgres or the email provider could not be reached or failed as a service (the
 * API answers 503 UNAVAILABLE: retry) rather than a bug (500 INTERNAL). Decided by what the drivers give: system error
 * codes, their error classes (by `name`, which bundling keeps), SQLSTATEs, and, only where a driver keeps nothing
 * structured, its own fixed message formats; never by loose words, so a bug whose message mentions a connection stays
 * a 500.
 *
 * Postgres's errors, from pg, Neon's WebSocket Pool and Neon over HTTP alike, are sorted once for every process
 * (platform/postgres-errors.ts), and so are the system error codes of a connection that failed or was cut, whichever
 * server it was to. The API answers 503 for three kinds:
 * - `outage`: Postgres down, unreachable, starting, shutting down or in recovery, out of connection slots (53300),
 *   read-only after a failover (25006), out of disk or memory (53100, as Neon's project size limit answers; 53200);
 *   Neon's proxy failing (5xx but 507) or out of reach.
 * - `stalled`: no answer in time (a connect timeout, a Neon HTTP request's time limit).
 * - `refused`: credentials Postgres does not take (class 28, or Neon's proxy's own password check), as during a
 *   secret rotation (docs/operations.md), or a database it does not have (3D000): until the configuration is mended,
 *   no request that needs Postgres can succeed, and none of them is at fault.
 * A deadlock or a serialization failure (`conflict`) stays a 500: the functions' statements run one at a time at read
 * committed, so they meet no serialization failure, and two of them that deadlock lock rows in orders of their own, a
 * bug to fix (as the worker gives its rows one order, worker/key-order.ts).
 *
 * What the other drivers throw when their service is down (read from their sources in node_modules):
 * - ioredis (TCP): the socket's system error code; "Connection is closed", "Command timed out", "Stream isn't
 *   writeable", MaxRetriesPerRequestError; the adapter's own "BLPOP got no reply" deadline.
 * - Redis itself, over either client, refusing every write or every command for the state it is in (REDIS_STATE):
 *   full under noeviction, busy with a script, loading its data, a replica or cut off from its primary, a cluster
 *   not serving. Redis says so by the first word of its error reply, its own error code, which ioredis keeps as the
 *   ReplyError's message and @upstash/redis as the start of "<error>, command was: …" (a script's call refused so
 *   ends the script with that reply). No command's misuse is answered with one of these codes, and the command
 *   refused did nothing: the request can be sent again once Redis recovers.
 * - Upstash over REST (@upstash/redis 1.x): fetch's TypeError "fetch failed" (its cause has the code), the
 *   request's AbortSignal.timeout as a TimeoutError. Upstash answers JSON, always; a body that is not JSON
 *   (UpstashJSONParseError: a gateway's HTML 502 page, an empty 503) came from something in front of it. The client
 *   keeps no HTTP status either: a non-2xx JSON body is thrown as "<body.error>, command was: …", so a body without
 *   Upstash's `error` field (an intermediary's `{"message": …}`) reads "undefined, command was: …" and counts as an
 *   outage too. Upstash's own refusals of every request for now, whatever the command, are outages as well, told by
 *   their documented wording (UPSTASH_REFUSALS): a database over its plan's limits, and a token it does not take (a
 *   rotated or wrong one; the REST API answers 401). Any other `{"error"}` body, a 5xx's included, but Redis's own
 *   state refusals above, cannot be told from a command Redis refused (WRONGTYPE, a script's error): a 500.
 * - A bare TimeoutError is also what Neon's query time limit (functions/postgres.ts) throws when it fires while the
 *   answer is being read.
 * - The sign-in email: the mailer sorts Resend's answers itself (auth/mailer.ts, resendRefusal) and throws
 *   EmailUnavailable for an outage, its limits, or our key or sender refused.
 *
 * The 503 says when to try again (Retry-After, retryAfterSeconds): UNAVAILABLE's seconds (errors.ts), unless the
 * error knows better, as EmailUnavailable does when Resend said when to come back or the fix is an operator's.
 */
import { classifyPostgresError, type PostgresErrorKind } from "../platform/postgres-errors.ts";
import { API_ERRORS } from "./errors.ts";

/** The kinds of Postgres error the API answers 503 for (see the module comment). */
const UNAVAILABLE_POSTGRES: ReadonlySet<PostgresErrorKind> = new Set(["outage", "stalled", "refused"]);

/** ioredis's messages when a connection is down or too slow, the ioredis adapter's BLPOP deadline, and fetch's. */
const BACKEND_MESSAGES =
  /^(Connection is closed|Command timed out|Stream isn't writeable|BLPOP got no reply|fetch failed)/;

/**
 * Redis's error codes for a refusal by the server's state, not the command's (see the module comment): OOM (used memory
 * over `maxmemory` with noeviction), BUSY (a script or function past its time limit), LOADING, READONLY, MASTERDOWN,
 * CLUSTERDOWN, TRYAGAIN, MISCONF (writes stopped after a failed RDB save), NOREPLICAS (fewer replicas than
 * min-replicas-to-write). Each is checked before the command writes anything. Whole words: BUSYKEY and BUSYGROUP are
 * a command's own refusals.
 */
const REDIS_STATE = /^(OOM|BUSY|LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MISCONF|NOREPLICAS)\b/;

/** What @upstash/redis throws for a non-2xx JSON body that has no `error` field (see the module comment). */
const UPSTASH_FOREIGN_ERROR = /^undefined, command was: /;

/**
 * Upstash refusing every request for now, as @upstash/redis reports it ("<error>, command was: …"). The wording is
 * Upstash's troubleshooting pages' (upstash.com/docs/redis/troubleshooting/): max_requests_limit "ERR max requests
 * limit exceeded" (the monthly count), max_daily_request_limit "ERR max daily request limit exceeded" (followed by the
 * limit and usage), db_capacity_quota_exceeded "ERR DB capacity quota exceeded" (writes refused while the database is
 * full), http_unauthorized "WRONGPASS invalid or missing auth token". A refused token has also come back as a bare
 * "Unauthorized" (github.com/upstash/redis-js/issues/711, #335), which is what the local peer answers; the REST API
 * documents the status alone ("401 Unauthorized: when authentication fails; auth token is missing or invalid",
 * upstash.com/docs/redis/features/restapi). No Redis error reply starts with any of these.
 */
const UPSTASH_REFUSALS =
  /^(ERR max requests limit exceeded|ERR max daily request limit exceeded|ERR DB capacity quota exceeded|WRONGPASS invalid or missing auth token|Unauthorized)\b.*, command was: /s;

/** Errors nest on `cause`; a few levels hold every driver's, and a cycle cannot loop. */
const MAX_DEPTH = 5;

export function isBackendFailure(err: unknown): boolean {
  return UNAVAILABLE_POSTGRES.has(classifyPostgresError(err)) || isOtherServiceFailure(err, 0);
}

/** Redis's, Upstash's, the email provider's and fetch's failures, on `err` or what it wraps. */
function isOtherServiceFailure(err: unknown, depth: number): boolean {
  if (!(err instanceof Error) || depth > MAX_DEPTH) return false;
  if (
    ["MaxRetriesPerRequestError", "TimeoutError", "AbortError", "UpstashJSONParseError", "EmailUnavailable"].includes(
      err.name,
    )
  )
    return true;
  if (
    err.name === "UpstashError" &&
    (UPSTASH_FOREIGN_ERROR.test(err.message) || UPSTASH_REFUSALS.test(err.message) || REDIS_STATE.test(err.message))
  )
    return true;
  if (err.name === "ReplyError" && REDIS_STATE.test(err.message)) return true;
  return BACKEND_MESSAGES.test(err.message) || isOtherServiceFailure(err.cause, depth + 1);
}

/**
 * The Retry-After of the 503 for `err` (one isBackendFailure accepts): the `retryAfterSeconds` of the first error in
 * its chain that carries one (EmailUnavailable), else UNAVAILABLE's.
 */
export function retryAfterSeconds(err: unknown, depth = 0): number {
  if (err instanceof Error && depth <= MAX_DEPTH) {
    const own = (err as { retryAfterSeconds?: unknown }).retryAfterSeconds;
    if (typeof own === "number" && Number.isInteger(own) && own >= 1) return own;
    return retryAfterSeconds(err.cause, depth + 1);
  }
  return API_ERRORS.UNAVAILABLE.retryAfterSeconds;
}
