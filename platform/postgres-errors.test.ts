// What each Postgres error means, for every process: errors built as node-postgres and Neon's serverless driver build
// them (testing/driver-errors.ts), bare and wrapped as the processes wrap them.
import { describe, expect, it } from "vitest";
import { ConfigError } from "./config.ts";
import {
  classifyPostgresError,
  postgresCondition,
  postgresErrorCode,
  type PostgresErrorKind,
} from "./postgres-errors.ts";
import {
  neonFetchFailed,
  neonPostgresError,
  neonServerError,
  serverError,
  socketError,
} from "./testing/driver-errors.ts";

/** connectPostgres's wrapper of a connect that failed for another reason than a refusal (platform/postgres.ts). */
const cannotReach = (cause: unknown) =>
  new Error(`cannot reach Postgres at 127.0.0.1:5432/pb: ${(cause as Error).message}`, { cause });

const cases: [PostgresErrorKind, string, unknown][] = [
  ["outage", "a refused connection", socketError("ECONNREFUSED")],
  ["outage", "a reset connection", socketError("ECONNRESET", "read ECONNRESET")],
  ["outage", "a connection timed out by TCP", socketError("ETIMEDOUT")],
  ["outage", "a host name not found", socketError("ENOTFOUND", "getaddrinfo ENOTFOUND db")],
  ["outage", "a connection closed under a statement", new Error("Connection terminated unexpectedly")],
  ["outage", "a connection ended under a statement", new Error("Connection terminated")],
  [
    "outage",
    "a client whose connection failed",
    new Error("Client has encountered a connection error and is not queryable"),
  ],
  ["outage", "a fast shutdown", serverError("57P01", "terminating connection due to administrator command")],
  [
    "outage",
    "another process's crash",
    serverError("57P02", "terminating connection because of crash of another server process"),
  ],
  ["outage", "a start", serverError("57P03", "the database system is starting up")],
  ["outage", "a connection failure", serverError("08006", "connection failure")],
  ["outage", "a connection that does not exist", serverError("08003", "connection does not exist")],
  ["outage", "a connection lost in a COMMIT", serverError("08007", "transaction resolution unknown")],
  ["outage", "no connection slot left", serverError("53300", "sorry, too many clients already")],
  ["outage", "a full disk", serverError("53100", 'could not extend file "base/16384/16402": No space left on device')],
  [
    "outage",
    "Neon's project size limit (a 400 with its SQLSTATE)",
    neonPostgresError("could not extend file because project size limit (512 MB) has been exceeded", "53100"),
  ],
  ["outage", "a server out of memory", serverError("53200", "out of memory")],
  [
    "outage",
    "a write on a node read-only after a failover",
    serverError("25006", "cannot execute INSERT in a read-only transaction"),
  ],
  ["outage", "a start's wrapped error", cannotReach(socketError("ECONNREFUSED"))],
  [
    "outage",
    "a migration's error, wrapping a shutdown",
    new Error("migration 002_x.sql failed", { cause: serverError("57P01", "terminating connection") }),
  ],
  [
    "outage",
    "one of a host's addresses",
    new AggregateError([socketError("ECONNREFUSED"), socketError("ECONNREFUSED")], ""),
  ],
  [
    "outage",
    "an AggregateError on a cause",
    cannotReach(new AggregateError([socketError("ENETUNREACH"), socketError("ECONNREFUSED")], "")),
  ],
  ["outage", "Neon's proxy failing", neonServerError(500, '{"message":"Couldn\'t connect to compute node"}')],
  ["outage", "Neon's proxy behind a gateway's 502", neonServerError(502, "<html>")],
  [
    "outage",
    "fetch failing to reach Neon",
    neonFetchFailed(new TypeError("fetch failed", { cause: socketError("ECONNREFUSED") })),
  ],
  [
    "outage",
    "Neon's Postgres starting (a 400 with its SQLSTATE)",
    neonPostgresError("the database system is starting up", "57P03"),
  ],

  ["stalled", "a pool that found no connection in time", new Error("timeout exceeded when trying to connect")],
  [
    "stalled",
    "a connect that timed out, whatever its connection said",
    new Error("Connection terminated due to connection timeout", {
      cause: new Error("Connection terminated unexpectedly"),
    }),
  ],
  ["stalled", "a statement's timeout", new Error("Query read timeout")],
  [
    "stalled",
    "a start's connect that timed out",
    cannotReach(new Error("Connection terminated due to connection timeout", { cause: new Error("timeout expired") })),
  ],
  [
    "stalled",
    "a Neon HTTP request's time limit",
    neonFetchFailed(new DOMException("The operation was aborted", "TimeoutError")),
  ],

  ["refused", "a failed password", serverError("28P01", 'password authentication failed for user "pb"')],
  ["refused", "a role that does not exist", serverError("28000", 'role "pb" does not exist')],
  ["refused", "a missing database", serverError("3D000", 'database "pb" does not exist')],
  [
    "refused",
    "connectPostgres's configuration error",
    new ConfigError("DATABASE_URL names database …", { cause: serverError("3D000", "x") }),
  ],
  [
    "refused",
    "Neon's proxy refusing a password (no SQLSTATE)",
    neonPostgresError("password authentication failed for user 'app'", ""),
  ],
  [
    "refused",
    "one address refusing the password, another the connection",
    new AggregateError([socketError("ECONNREFUSED"), serverError("28P01", "password")], ""),
  ],

  ["conflict", "a deadlock", serverError("40P01", "deadlock detected")],
  ["conflict", "a serialization failure", serverError("40001", "could not serialize access due to concurrent update")],
  [
    "conflict",
    "a deadlock under a wrapper",
    new Error("write failed", { cause: serverError("40P01", "deadlock detected") }),
  ],

  ["other", "a unique violation", serverError("23505", "duplicate key value violates unique constraint")],
  ["other", "a missing table", serverError("42P01", 'relation "closed_orders" does not exist')],
  ["other", "a permission refused", serverError("42501", "permission denied for table users")],
  [
    "other",
    "a statement past a configured limit",
    serverError("53400", "temporary file size exceeds temp_file_limit (1024kB)"),
  ],
  [
    "other",
    "a protocol violation (a query's wrong parameters)",
    serverError("08P01", "bind message supplies 1 parameters"),
  ],
  [
    "other",
    "a failed migration",
    new Error("migration 001_x.sql failed: boom", { cause: serverError("42601", "syntax") }),
  ],
  ["other", "Neon's response too large", neonServerError(507, '{"message":"response is too large"}')],
  ["other", "Neon's request too large", neonServerError(413, '{"message":"request is too large"}')],
  ["other", "Neon's status words on an error not its driver's", new Error("Server error (HTTP status 500): x")],
  [
    "other",
    "Neon's password words on an error not its driver's",
    new Error("password authentication failed for user 'app'"),
  ],
  ["other", "fetch refusing the URL it was given", neonFetchFailed(new TypeError("Failed to parse URL from /sql"))],
  ["other", "fetch failing outside Neon's driver", new TypeError("fetch failed")],
  ["other", "a bug", new TypeError("Cannot read properties of undefined (reading 'connection')")],
  ["other", "a thrown string", "ECONNREFUSED"],
  ["other", "nothing", undefined],
];

describe("classifyPostgresError", () => {
  it.each(cases)("calls %s: %s", (kind, _, err) => {
    expect(classifyPostgresError(err)).toBe(kind);
  });

  it("reads a few levels of causes, and ends on a cycle", () => {
    let err: Error = socketError("ECONNREFUSED");
    for (let n = 0; n < 5; n++) err = new Error(`wrapper ${n}`, { cause: err });
    expect(classifyPostgresError(err)).toBe("outage");
    const looped = new Error("outer");
    looped.cause = looped;
    expect(classifyPostgresError(looped)).toBe("other");
  });
});

describe("postgresCondition", () => {
  it("names the SQLSTATEs of an outage, for an operator reading the log", () => {
    expect(postgresCondition("53100")).toBe("disk_full");
    expect(postgresCondition("53200")).toBe("out_of_memory");
    expect(postgresCondition("25006")).toBe("read_only_sql_transaction");
    expect(postgresCondition("57P03")).toBe("cannot_connect_now");
    expect(postgresCondition("53400")).toBeUndefined();
    expect(postgresCondition("23505")).toBeUndefined();
    expect(postgresCondition("ECONNREFUSED")).toBeUndefined();
  });
});

describe("postgresErrorCode", () => {
  it("gives the first code on the error or its causes, for logs", () => {
    expect(postgresErrorCode(cannotReach(socketError("ECONNREFUSED")))).toBe("ECONNREFUSED");
    expect(postgresErrorCode(serverError("53300", "sorry, too many clients already"))).toBe("53300");
    expect(postgresErrorCode(neonPostgresError("password authentication failed for user 'app'", ""))).toBeUndefined();
    expect(postgresErrorCode(new Error("Connection terminated unexpectedly"))).toBeUndefined();
  });
});
