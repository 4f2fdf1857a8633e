// Which errors are an outage (503 UNAVAILABLE) and which a bug (500 INTERNAL): the drivers' own error classes,
// built as the drivers build them (node_modules/@neondatabase/serverless, node_modules/@upstash/redis, ioredis).
import { NeonDbError } from "@neondatabase/serverless";
import { errors as upstash } from "@upstash/redis";
import { ReplyError } from "ioredis";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { EmailUnavailable } from "./auth/mailer.ts";
import { isBackendFailure, retryAfterSeconds } from "./backend-failure.ts";
import { UNAVAILABLE_RETRY_AFTER_S } from "./errors.ts";
import { neonFetchFailed, neonPostgresError, neonServerError } from "../platform/testing/driver-errors.ts";

/** An error reply as ioredis throws it (its ReplyError is typed `any`). */
const replyError = (message: string): Error => new (ReplyError as new (message: string) => Error)(message);
const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });

describe("isBackendFailure", () => {
  it("Neon over HTTP: fetch failed (the cause on sourceError, not cause) is an outage", () => {
    const fetchFailed = new TypeError("fetch failed", { cause: refused() });
    expect(isBackendFailure(neonFetchFailed(fetchFailed))).toBe(true);
    // The query's own time limit (functions/postgres.ts)
    expect(isBackendFailure(neonFetchFailed(new DOMException("The operation was aborted", "TimeoutError")))).toBe(true);
  });

  it("Neon over HTTP: fetch refusing the request it was given is a bug", () => {
    expect(isBackendFailure(neonFetchFailed(new TypeError("Failed to parse URL from /sql")))).toBe(false);
    expect(isBackendFailure(new NeonDbError("Error connecting to database: TypeError: Failed to parse URL"))).toBe(
      false,
    );
  });

  it("Neon over HTTP: a 5xx from Neon's proxy is an outage, its 507 and 413 (the query's size) are not", () => {
    const computeDown =
      '{"message":"Couldn\'t connect to compute node","code":"","detail":null,"hint":null,"severity":""}';
    expect(isBackendFailure(neonServerError(500, computeDown))).toBe(true);
    for (const status of [502, 503, 504]) expect(isBackendFailure(neonServerError(status, "<html>"))).toBe(true);
    expect(isBackendFailure(neonServerError(507, '{"message":"response is too large (max is 10485760 bytes)"}'))).toBe(
      false,
    );
    expect(isBackendFailure(neonServerError(413, '{"message":"request is too large (max is 10485760 bytes)"}'))).toBe(
      false,
    );
    // The same words on an error that is not the driver's are not its status
    expect(isBackendFailure(new Error(`Server error (HTTP status 500): ${computeDown}`))).toBe(false);
  });

  it("Postgres refusing sessions or writes (SQLSTATE 08…, 57P01–57P03, 53…) is an outage, a query's error not", () => {
    expect(isBackendFailure(neonPostgresError("the database system is starting up", "57P03"))).toBe(true);
    expect(isBackendFailure(neonPostgresError("connection failure", "08006"))).toBe(true);
    expect(isBackendFailure(neonPostgresError("sorry, too many clients already", "53300"))).toBe(true);
    const sizeLimit = "could not extend file because project size limit (512 MB) has been exceeded";
    expect(isBackendFailure(neonPostgresError(sizeLimit, "53100"))).toBe(true);
    const shutdown = new pg.DatabaseError("terminating connection due to administrator command", 0, "error");
    shutdown.code = "57P01";
    expect(isBackendFailure(shutdown)).toBe(true);
    expect(isBackendFailure(neonPostgresError('duplicate key value violates unique constraint "x"', "23505"))).toBe(
      false,
    );
    expect(isBackendFailure(neonPostgresError('relation "nope" does not exist', "42P01"))).toBe(false);
    // 08P01 is in the connection class, but Postgres also gives it to a query with the wrong number of parameters.
    const wrongParams = new pg.DatabaseError(
      'bind message supplies 1 parameters, but prepared statement "" requires 2',
      0,
      "error",
    );
    wrongParams.code = "08P01";
    expect(isBackendFailure(wrongParams)).toBe(false);
    expect(isBackendFailure(neonPostgresError(wrongParams.message, "08P01"))).toBe(false);
  });

  it("Postgres without the database named (3D000), read-only after a failover (25006), or lost in a COMMIT: 503", () => {
    // As a credential it does not take: no request can succeed until the configuration or the failover is through.
    expect(isBackendFailure(neonPostgresError('database "app" does not exist', "3D000"))).toBe(true);
    const readOnly = new pg.DatabaseError("cannot execute INSERT in a read-only transaction", 0, "error");
    readOnly.code = "25006";
    expect(isBackendFailure(readOnly)).toBe(true);
    expect(isBackendFailure(neonPostgresError(readOnly.message, "25006"))).toBe(true);
    // Every connection exception but 08P01, as the worker has always waited them out: a connection lost in a COMMIT.
    expect(isBackendFailure(neonPostgresError("connection lost during COMMIT", "08007"))).toBe(true);
  });

  it("a deadlock or a serialization failure stays a bug: the functions' statements should not meet one", () => {
    expect(isBackendFailure(neonPostgresError("deadlock detected", "40P01"))).toBe(false);
    expect(isBackendFailure(neonPostgresError("could not serialize access", "40001"))).toBe(false);
  });

  it("node-postgres giving up on a connection or a statement (no answer in time) is an outage", () => {
    expect(isBackendFailure(new Error("timeout exceeded when trying to connect"))).toBe(true);
    const timedOut = new Error("Connection terminated due to connection timeout", {
      cause: new Error("Connection terminated unexpectedly"),
    });
    expect(isBackendFailure(timedOut)).toBe(true);
  });

  it("Upstash: a body not JSON (a gateway's page), a non-2xx one without Upstash's error field: outages", () => {
    const gateway = new upstash.UpstashJSONParseError("<html><body><h1>502 Bad Gateway</h1></body></html>", {
      cause: new SyntaxError("Unexpected token '<'"),
    });
    expect(isBackendFailure(gateway)).toBe(true);
    expect(isBackendFailure(new upstash.UpstashJSONParseError(""))).toBe(true);
    expect(isBackendFailure(new upstash.UpstashError('undefined, command was: ["evalsha","ab12",1,"k"]'))).toBe(true);
  });

  it("Postgres refusing the credentials (SQLSTATE 28P01, 28000; Neon's proxy over HTTP: no SQLSTATE) is an outage", () => {
    // What a secret rotation looks like until the deploy ends (docs/operations.md, Rotating secrets).
    expect(isBackendFailure(neonPostgresError('password authentication failed for user "app"', "28P01"))).toBe(true);
    expect(isBackendFailure(neonPostgresError('role "app" does not exist', "28000"))).toBe(true);
    const wrongPassword = new pg.DatabaseError('password authentication failed for user "app"', 0, "error");
    wrongPassword.code = "28P01";
    expect(isBackendFailure(wrongPassword)).toBe(true);
    // Neon's proxy checks the password before any Postgres does: 400, code "", its own message
    expect(isBackendFailure(neonPostgresError("password authentication failed for user 'app'", ""))).toBe(true);
    // The same words elsewhere are not the proxy's refusal
    expect(isBackendFailure(new Error("password authentication failed for user 'app'"))).toBe(false);
    expect(isBackendFailure(neonPostgresError("permission denied for table users", "42501"))).toBe(false);
  });

  it("Upstash refusing every request for now (plan limits, a token it does not take) is an outage", () => {
    const command = ', command was: ["evalsha","ab12","1","k"]';
    for (const error of [
      "ERR max requests limit exceeded.",
      "ERR max daily request limit exceeded. Limit: 10000, Usage: 10000. See https://upstash.com/docs/redis/troubleshooting/max_daily_request_limit for details",
      "ERR DB capacity quota exceeded",
      "WRONGPASS invalid or missing auth token",
      // What Upstash answered a refused token with before, and what the local peer answers (upstash/redis-js#711):
      // the REST API's 401.
      "Unauthorized",
    ])
      expect(isBackendFailure(new upstash.UpstashError(`${error}${command}`)), error).toBe(true);
    // Only as @upstash/redis reports Upstash's answer
    expect(isBackendFailure(new Error(`ERR max requests limit exceeded${command}`))).toBe(false);
    expect(isBackendFailure(new upstash.UpstashError("Unauthorized"))).toBe(false);
  });

  it("Upstash: a command Redis refused is a bug", () => {
    expect(isBackendFailure(new upstash.UpstashError("ERR unknown command 'NOPE', command was: [\"NOPE\"]"))).toBe(
      false,
    );
    expect(isBackendFailure(new upstash.UpstashError("NOSCRIPT No matching script"))).toBe(false);
    expect(
      isBackendFailure(
        new upstash.UpstashError(
          'WRONGTYPE Operation against a key holding the wrong kind of value, command was: ["HGETALL","k"]',
        ),
      ),
    ).toBe(false);
    expect(
      isBackendFailure(
        new upstash.UpstashError(
          "ERR user_script:1: Script attempted to access nonexistent global variable 'Unauthorized', command was: [\"eval\"]",
        ),
      ),
    ).toBe(false);
    // A request over the size cap is the request's own doing: sent again, it is refused again
    expect(isBackendFailure(new upstash.UpstashError('ERR max request size exceeded, command was: ["SET"]'))).toBe(
      false,
    );
  });

  it("ioredis and plain network errors, as before: codes, the driver's messages, nested causes", () => {
    expect(isBackendFailure(refused())).toBe(true);
    expect(isBackendFailure(new Error("Connection is closed."))).toBe(true);
    expect(isBackendFailure(Object.assign(new Error("too many retries"), { name: "MaxRetriesPerRequestError" }))).toBe(
      true,
    );
    expect(isBackendFailure(new Error("request failed", { cause: new TypeError("fetch failed") }))).toBe(true);
  });

  it("Redis refusing for its state (OOM, BUSY, LOADING, READONLY, …): an outage over ioredis and Upstash alike", () => {
    const command = ', command was: ["evalsha","ab12","1","k"]';
    for (const reply of [
      "OOM command not allowed when used memory > 'maxmemory'. script: ab12, on @user_script:12.",
      "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
      "LOADING Redis is loading the dataset in memory",
      "READONLY You can't write against a read only replica.",
      "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
      "CLUSTERDOWN The cluster is down",
      "TRYAGAIN Multiple keys request during rehashing of slot",
      "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
      "NOREPLICAS Not enough good replicas to write.",
    ]) {
      expect(isBackendFailure(replyError(reply)), reply).toBe(true);
      expect(isBackendFailure(new upstash.UpstashError(`${reply}${command}`)), reply).toBe(true);
      // Only as a client reports Redis's reply
      expect(isBackendFailure(new Error(reply)), reply).toBe(false);
    }
  });

  it("Redis refusing the command itself stays a bug, also a code that only begins like a state's", () => {
    for (const reply of [
      "BUSYKEY Target key name already exists.",
      "BUSYGROUP Consumer Group name already exists",
      "WRONGTYPE Operation against a key holding the wrong kind of value",
      "ERR Error running script: OOM in the script's own words",
      "NOSCRIPT No matching script. Please use EVAL.",
    ])
      expect(isBackendFailure(replyError(reply)), reply).toBe(false);
  });

  it("the email provider: the mailer's EmailUnavailable is an outage, its other errors bugs", () => {
    expect(isBackendFailure(new EmailUnavailable("Resend did not send the email: application_error (503)"))).toBe(true);
    expect(isBackendFailure(new Error("Resend did not send the email: missing_required_field (422)"))).toBe(false);
  });

  it("a bug stays a bug, whatever words its message uses; a cycle of causes ends", () => {
    expect(
      isBackendFailure(new TypeError("relation closed_orders is on fire: cannot read 'connection' (timeout)")),
    ).toBe(false);
    expect(isBackendFailure("fetch failed")).toBe(false);
    const looped = new Error("outer");
    looped.cause = looped;
    expect(isBackendFailure(looped)).toBe(false);
  });
});

describe("retryAfterSeconds: the 503's Retry-After", () => {
  it("is UNAVAILABLE's for an outage that says nothing of when it ends", () => {
    expect(retryAfterSeconds(refused())).toBe(UNAVAILABLE_RETRY_AFTER_S);
    expect(retryAfterSeconds(new EmailUnavailable("Resend did not send the email: no answer within 5000 ms"))).toBe(
      UNAVAILABLE_RETRY_AFTER_S,
    );
  });

  it("is the error's own when it carries one, at the top of the chain or below", () => {
    expect(retryAfterSeconds(new EmailUnavailable("Resend refused RESEND_API_KEY", 300))).toBe(300);
    expect(retryAfterSeconds(new Error("sign-in failed", { cause: new EmailUnavailable("rate limit", 7) }))).toBe(7);
  });

  it("ignores a carried value that is no whole number of seconds, and a cycle of causes ends", () => {
    for (const odd of [0, -1, 1.5, Number.NaN]) {
      expect(retryAfterSeconds(new EmailUnavailable("odd", odd)), String(odd)).toBe(UNAVAILABLE_RETRY_AFTER_S);
    }
    const looped = new Error("outer");
    looped.cause = looped;
    expect(retryAfterSeconds(looped)).toBe(UNAVAILABLE_RETRY_AFTER_S);
  });
});
