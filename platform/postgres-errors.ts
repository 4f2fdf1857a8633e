/**
 * What a Postgres error means, decided here once for every process, so the worker, the engine and the API agree on
 * what an outage is. `classifyPostgresError` sorts an error from node-postgres (`pg`), Neon's serverless driver (its
 * WebSocket Pool, and `neon()` over HTTP), or a wrapper of theirs into one of five kinds:
 *
 * - `outage`: Postgres is down, not reachable, or takes no session or no write now, and says so at once: a socket
 *   refused, reset or unreachable; the driver's "Connection terminated …" of a connection closed under a statement;
 *   SQLSTATE class 08 (connection exception; not 08P01, protocol_violation, which Postgres also gives a query sent
 *   with the wrong number of parameters), 57P01–57P03 (a shutdown, another backend's crash, starting up or in
 *   recovery), 25006 (read_only_sql_transaction: a write reached a node that is read-only now, as a primary failing
 *   over answers), class 53, insufficient resources, but 53400: 53300 (too many connections: slots free up as other
 *   clients leave), 53100 (disk_full; Neon answers it, "could not extend file because project size limit … has been
 *   exceeded", once a project reaches its storage limit), 53200 (out_of_memory) and 53000, a server out of room
 *   rather than a statement at fault (53400, configuration_limit_exceeded, is a statement past a limit such as
 *   temp_file_limit: `other`); Neon's proxy answering 5xx but 507, or fetch failing to reach it. Waiting mends it, or
 *   an operator freeing room: no process need end for it, and trading, which needs only Redis, goes on.
 * - `stalled`: Postgres took a connection or a statement and did not answer in time: the pool's connect timeout, a
 *   statement's `query_timeout`, a Neon HTTP request's time limit. Postgres may be down, or a connection silent.
 * - `refused`: Postgres answered and refused the connection: its credentials (class 28; Neon's proxy over HTTP says
 *   so only in words) or its database (3D000). No wait mends it, unless the configuration is changing meanwhile.
 * - `conflict`: the statement lost a deadlock or a serialization conflict (40P01, 40001) and was rolled back whole:
 *   sent again, it meets no conflict once the other side went on.
 * - `other`: anything else: a statement Postgres refused (a constraint, a missing table, a syntax error), a stall or
 *   a failure of something else, a bug.
 *
 * What each caller does with each kind, on purpose (the callers' comments say why):
 *
 * | kind       | worker                            | engine                                | API                    |
 * | ---------- | --------------------------------- | ------------------------------------- | ---------------------- |
 * | `outage`   | goes on, its history owed         | waits at start; snapshots try again   | 503                    |
 * | `stalled`  | ends (restarted, new connections) | waits at start; snapshots try again   | 503                    |
 * | `refused`  | exits 2 at start, ends later      | exits 2 at start; snapshots try again | 503 (secret rotation)  |
 * | `conflict` | ends, past `query`'s own retries  | snapshots try again                   | 500 (a lock order bug) |
 * | `other`    | ends (class 22/23: skips the row) | snapshots try again                   | 500                    |
 *
 * The stream reads Postgres only to load candle buckets (stream/postgres.ts): a `refused` connect exits 2 (at start
 * or from its background connect), any other failed connect is tried again in the background; once connected,
 * every kind fails the one load, which is tried again.
 *
 * (worker/postgres-outages.ts; engine/main.ts and engine/runner/failure-run.ts; functions/backend-failure.ts.)
 *
 * Beneath every policy, in the long-running processes (postgres.ts): a statement run on its own is sent again on a
 * conflict, a few times; and a transaction whose statement met an outage gives its connection up, since a node that
 * turned read-only keeps answering 25006 on it while a new connection reaches wherever the address leads now.
 *
 * Errors nest: a start's "cannot reach Postgres at …" or a ConfigError wraps the driver's on `cause`, a host name
 * with several addresses fails with an AggregateError of each one's, and `neon()` puts the error fetch threw on
 * `sourceError`. They are read from the outside in, and the first that says something decides: a pool's "Connection
 * terminated due to connection timeout" is a stall, whatever the connection it gave up on said.
 */

export type PostgresErrorKind = "outage" | "stalled" | "refused" | "conflict" | "other";

/** Of an AggregateError's errors, the kind that decides: the most telling one found. */
const PRECEDENCE: readonly PostgresErrorKind[] = ["refused", "outage", "stalled", "conflict"];

/**
 * SQLSTATEs of a server that ended the connection or takes none, or no write, now, with Postgres's names for them
 * (its manual's Appendix A), which the worker's `postgres_unavailable` line carries: a fast shutdown or a terminated
 * backend, another server process's crash (the server restarts), starting up, shutting down or in recovery; the
 * insufficient resources class but 53400 (see the module comment); a write on a read-only node.
 */
const OUTAGE_STATES: ReadonlyMap<string, string> = new Map([
  ["57P01", "admin_shutdown"],
  ["57P02", "crash_shutdown"],
  ["57P03", "cannot_connect_now"],
  ["53000", "insufficient_resources"],
  ["53100", "disk_full"],
  ["53200", "out_of_memory"],
  ["53300", "too_many_connections"],
  ["25006", "read_only_sql_transaction"],
]);
/** Class 08, connection exceptions, but for 08P01 (see the module comment). */
const CONNECTION_EXCEPTION = /^08(?!P01)[0-9A-Z]{3}$/;
/** Class 28, invalid authorization (28000, 28P01 invalid_password), and invalid_catalog_name (no such database). */
const REFUSAL_STATE = /^(28[0-9A-Z]{3}|3D000)$/;
/** deadlock_detected, serialization_failure. */
const CONFLICT_STATES: ReadonlySet<string> = new Set(["40P01", "40001"]);
/**
 * Socket errors of a server that is not there, or not reachable, now. A connection to anything fails with these, so
 * the API counts them for Redis's connections too (functions/backend-failure.ts).
 */
const SOCKET_CODES: ReadonlySet<string> = new Set([
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
 * What node-postgres (and the pg inside Neon's driver) says, with no code, of a connection that closed under a
 * statement or before it: by the server or the network ("… unexpectedly"), or by this process ending it, which only a
 * stop does, and a stop ends any wait.
 */
const CLOSED_MESSAGES: ReadonlySet<string> = new Set([
  "Connection terminated unexpectedly",
  "Connection terminated",
  "Client has encountered a connection error and is not queryable",
]);
/**
 * pg-pool's connect timeout (no client free in time, or a new connection not ready in time) and node-postgres's
 * `query_timeout`.
 */
const STALLED_MESSAGES: ReadonlySet<string> = new Set([
  "timeout exceeded when trying to connect",
  "Connection terminated due to connection timeout",
  "Query read timeout",
]);

/**
 * The message @neondatabase/serverless (1.x) gives an answer of Neon's proxy other than 200 or 400: its only record
 * of the status. A 5xx is Neon failing (500 "Couldn't connect to compute node" when the compute cannot be reached or
 * woken; the proxy's sql_over_http.rs), except 507, its "response is too large", which the query asked for and would
 * ask for again. A 400 carries Postgres's own fields, SQLSTATE included, as `code`.
 */
const NEON_SERVER_ERROR = /^Server error \(HTTP status (\d{3})\)/;
/**
 * Neon's proxy refusing a password over HTTP: it checks the password itself and answers 400 with no SQLSTATE, only
 * this message (github.com/neondatabase/neon, proxy/src/auth/mod.rs: AuthError::PasswordFailed).
 */
const NEON_PASSWORD_REFUSED = /^password authentication failed for user '/;

/** Errors nest; a few levels hold every driver's, and a cycle cannot loop. */
const MAX_DEPTH = 5;

export function classifyPostgresError(err: unknown, depth = 0): PostgresErrorKind {
  if (!(err instanceof Error) || depth > MAX_DEPTH) return "other";
  const own = kindOfItself(err);
  if (own !== undefined) return own;
  if (err instanceof AggregateError) {
    const kinds = err.errors.map((e) => classifyPostgresError(e, depth + 1));
    const found = PRECEDENCE.find((kind) => kinds.includes(kind));
    if (found !== undefined) return found;
  }
  if (err.name === "NeonDbError") {
    const source = classifyPostgresError((err as { sourceError?: unknown }).sourceError, depth + 1);
    if (source !== "other") return source;
  }
  return classifyPostgresError(err.cause, depth + 1);
}

/** What `err` says by its own code, message or Neon's status, whatever it wraps; undefined when nothing. */
function kindOfItself(err: Error): PostgresErrorKind | undefined {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") {
    if (OUTAGE_STATES.has(code) || CONNECTION_EXCEPTION.test(code) || SOCKET_CODES.has(code)) return "outage";
    if (REFUSAL_STATE.test(code)) return "refused";
    if (CONFLICT_STATES.has(code)) return "conflict";
  }
  if (CLOSED_MESSAGES.has(err.message)) return "outage";
  if (STALLED_MESSAGES.has(err.message)) return "stalled";
  if (err.name === "NeonDbError") return neonKind(err);
  return undefined;
}

/**
 * A NeonDbError of `neon()` over HTTP. When fetch itself failed, the error fetch threw is on `sourceError`: its
 * "fetch failed" (the connection's error on its cause), or the TimeoutError of the query's own time limit
 * (functions/postgres.ts).
 */
function neonKind(err: Error): PostgresErrorKind | undefined {
  const status = Number(NEON_SERVER_ERROR.exec(err.message)?.[1]);
  if (status >= 500 && status !== 507) return "outage";
  if (NEON_PASSWORD_REFUSED.test(err.message)) return "refused";
  const source = (err as { sourceError?: unknown }).sourceError;
  if (!(source instanceof Error)) return undefined;
  if (source.name === "TimeoutError" || source.name === "AbortError") return "stalled";
  if (source instanceof TypeError && source.message === "fetch failed") return "outage";
  return undefined;
}

/**
 * Postgres's name for one of the SQLSTATEs above that make an outage, for logs: `disk_full` tells an operator what to
 * do, where `53100` needs looking up. Undefined for any other code (class 08's say "connection" by their class).
 */
export function postgresCondition(code: string): string | undefined {
  return OUTAGE_STATES.get(code);
}

/** The first code in `err` or its causes, for logs: a SQLSTATE or a socket error's. */
export function postgresErrorCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth <= MAX_DEPTH; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code !== "") return code;
  }
  return undefined;
}
