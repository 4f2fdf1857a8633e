/**
 * Whether an error means that Redis, Postgres or the email provider could not be reached or failed as a service (the
 * API answers 503 UNAVAILABLE: retry) rather than a bug (500 INTERNAL). Decided by what the drivers give: system error codes, their
 * error classes (by `name`, which bundling keeps), SQLSTATEs, and, only where a driver keeps nothing structured, its
 * own fixed message formats; never by loose words, so a bug whose message mentions a connection stays a 500.
 *
 * What each driver throws when its service is down (read from their sources in node_modules):
 * - ioredis (TCP): the socket's system error code; "Connection is closed", "Command timed out", "Stream isn't
 *   writeable", MaxRetriesPerRequestError; the adapter's own "BLPOP got no reply" deadline.
 * - pg, and Neon's WebSocket Pool through the local proxy: system error codes, "Connection terminated …", "timeout
 *   exceeded when trying to connect"; a server that refuses or drops sessions: SQLSTATE class 08 (connection
 *   exception), 57P01–57P03 (shutting down, crashed, starting up), 53300 (too many connections).
 * - Neon over HTTP (`neon()`, @neondatabase/serverless 1.x) throws NeonDbError. When fetch itself failed, the error
 *   fetch threw is on `sourceError` (not `cause`), behind the message "Error connecting to database: TypeError:
 *   fetch failed"; so is the TimeoutError of the query's own time limit (functions/postgres.ts), which comes bare
 *   when it fires while the answer is being read. When Neon's proxy answers a status other than 200 or 400, the
 *   driver keeps no status field, only its message "Server error (HTTP status N): <body>". A 5xx there is Neon failing (500 "Couldn't connect to compute
 *   node" when the compute cannot be reached or woken; the proxy's sql_over_http.rs), except 507, the proxy's
 *   "response is too large", which the query asked for and a retry would ask for again. A 400 carries Postgres's
 *   own fields, SQLSTATE included.
 * - Upstash over REST (@upstash/redis 1.x): fetch's TypeError "fetch failed" (its cause has the code), the
 *   request's AbortSignal.timeout as a TimeoutError. Upstash answers JSON, always; a body that is not JSON
 *   (UpstashJSONParseError: a gateway's HTML 502 page, an empty 503) came from something in front of it. The client
 *   keeps no HTTP status either: a non-2xx JSON body is thrown as "<body.error>, command was: …", so a body without
 *   Upstash's `error` field (an intermediary's `{"message": …}`) reads "undefined, command was: …" and counts as an
 *   outage too. Upstash's own refusals of every request for now, whatever the command, are outages as well, told by
 *   their documented wording (UPSTASH_REFUSALS): a database over its plan's limits, and a token it does not take (a
 *   rotated or wrong one; the REST API answers 401). Any other `{"error"}` body, a 5xx's included, cannot be told from
 *   a command Redis refused (WRONGTYPE, a script's error) and stays a 500.
 * - Credentials Postgres does not take (a role's password reset, a role gone: SQLSTATE class 28) are an outage of
 *   the service for the API, as during a secret rotation (docs/operations.md). Over HTTP, Neon's proxy checks the
 *   password itself and answers 400 with no SQLSTATE, only its message "password authentication failed for user
 *   '<role>'" (github.com/neondatabase/neon, proxy/src/auth/mod.rs: AuthError::PasswordFailed).
 * - The sign-in email: the mailer sorts Resend's answers itself (auth/mailer.ts, resendRefusal) and throws
 *   EmailUnavailable for an outage, its limits, or our key or sender refused.
 */

/** System error codes of a connection that failed or was cut. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * SQLSTATEs of a server that will not take or keep a session now: the connection exceptions of class 08 that mean a
 * lost or refused connection (not 08P01, protocol_violation, which is also a query sent with the wrong number of
 * parameters: a bug to answer 500), shutdowns and start-ups (57P01–57P03), too many connections (53300), and
 * credentials refused (28000 invalid_authorization_specification, 28P01 invalid_password).
 */
const UNAVAILABLE_SQLSTATES = new Set([
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
  "57P01",
  "57P02",
  "57P03",
  "53300",
  "28000",
  "28P01",
]);

/** ioredis's and pg's messages when a connection is down or too slow, and the ioredis adapter's BLPOP deadline. */
const BACKEND_MESSAGES =
  /^(Connection is closed|Command timed out|Stream isn't writeable|BLPOP got no reply|fetch failed|Connection terminated|timeout exceeded when trying to connect)/;

/** The message @neondatabase/serverless gives an answer other than 200 or 400: its only record of the status. */
const NEON_SERVER_ERROR = /^Server error \(HTTP status (\d{3})\)/;

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

/** Neon's proxy refusing a password over HTTP: a 400 without SQLSTATE (see the module comment). */
const NEON_PASSWORD_REFUSED = /^password authentication failed for user '/;

/** Errors nest (cause, sourceError); a few levels hold every driver's, and a cycle cannot loop. */
const MAX_DEPTH = 5;

export function isBackendFailure(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > MAX_DEPTH) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && (NETWORK_CODES.has(code) || isUnavailableSqlState(code))) return true;
  if (
    ["MaxRetriesPerRequestError", "TimeoutError", "AbortError", "UpstashJSONParseError", "EmailUnavailable"].includes(
      err.name,
    )
  )
    return true;
  if (err.name === "NeonDbError") {
    const status = Number(NEON_SERVER_ERROR.exec(err.message)?.[1]);
    if (status >= 500 && status !== 507) return true;
    if (NEON_PASSWORD_REFUSED.test(err.message)) return true;
    if (isBackendFailure((err as { sourceError?: unknown }).sourceError, depth + 1)) return true;
  }
  if (err.name === "UpstashError" && (UPSTASH_FOREIGN_ERROR.test(err.message) || UPSTASH_REFUSALS.test(err.message)))
    return true;
  return BACKEND_MESSAGES.test(err.message) || isBackendFailure(err.cause, depth + 1);
}

function isUnavailableSqlState(code: string): boolean {
  return UNAVAILABLE_SQLSTATES.has(code);
}
