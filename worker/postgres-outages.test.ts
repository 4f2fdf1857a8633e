// What the worker counts as Postgres being down, on the errors node-postgres gives, and its wait for Postgres on a
// clock of its own. (worker.int.test.ts waits out a real Postgres refusing connections.)
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../platform/log.ts";
import { serverError, socketError } from "../platform/testing/driver-errors.ts";
import { isPostgresOutage, PostgresWaitStopped, waitForPostgres } from "./postgres-outages.ts";

const refused = () => socketError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:5433");

describe("isPostgresOutage", () => {
  it.each([
    ["a refused connection", refused()],
    ["a reset connection", socketError("ECONNRESET", "read ECONNRESET")],
    ["a connection closed under a statement", new Error("Connection terminated unexpectedly")],
    ["a fast shutdown", serverError("57P01", "terminating connection due to administrator command")],
    [
      "another process's crash",
      serverError("57P02", "terminating connection because of crash of another server process"),
    ],
    ["a start", serverError("57P03", "the database system is starting up")],
    ["a shutdown", serverError("57P03", "the database system is shutting down")],
    ["a recovery", serverError("57P03", "the database system is in recovery mode")],
    ["a connection failure", serverError("08006", "connection failure")],
    ["no connection slot left", serverError("53300", "sorry, too many clients already")],
    [
      "a write on a node read-only after a failover",
      serverError("25006", "cannot execute INSERT in a read-only transaction"),
    ],
    ["a connection timed out by TCP", socketError("ETIMEDOUT", "connect ETIMEDOUT 10.0.0.5:5432")],
    ["a host name not found (a database container gone)", socketError("ENOTFOUND", "getaddrinfo ENOTFOUND db")],
    ["a connection ended under a statement", new Error("Connection terminated")],
    [
      "a start's wrapped error",
      new Error("cannot reach Postgres at 127.0.0.1:5433/pb: connect ECONNREFUSED 127.0.0.1:5433", {
        cause: refused(),
      }),
    ],
    ["one of a host's addresses", new AggregateError([refused(), refused()], "")],
  ])("counts %s", (_, err) => {
    expect(isPostgresOutage(err)).toBe(true);
  });

  it.each([
    ["a unique violation", serverError("23505", "duplicate key value violates unique constraint")],
    ["a missing table", serverError("42P01", 'relation "closed_orders" does not exist')],
    ["a missing database", serverError("3D000", 'database "pb" does not exist')],
    ["a failed password", serverError("28P01", 'password authentication failed for user "pb"')],
    ["a deadlock", serverError("40P01", "deadlock detected")],
    ["a serialization failure", serverError("40001", "could not serialize access due to concurrent update")],
    ["a protocol violation", serverError("08P01", "invalid message format")],
    ["a statement's timeout", new Error("Query read timeout")],
    ["a connection that never answered", new Error("timeout exceeded when trying to connect")],
    [
      "a connect that timed out, whatever its connection said",
      new Error("Connection terminated due to connection timeout", {
        cause: new Error("Connection terminated unexpectedly"),
      }),
    ],
    ["a failed migration", new Error("migration 001_x.sql failed: boom", { cause: serverError("42601", "syntax") })],
    ["a bug", new TypeError("Cannot read properties of undefined (reading 'trade')")],
    ["a thrown string", "ECONNREFUSED"],
  ])("does not count %s", (_, err) => {
    expect(isPostgresOutage(err)).toBe(false);
  });
});

describe("waitForPostgres", () => {
  let lines: Record<string, unknown>[];
  const log = () =>
    createLogger("worker-test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    lines = [];
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** An attempt that fails with each of `errors` in turn, then answers "done"; the times it was tried at. */
  function attempt(...errors: Error[]) {
    const triedAtMs: number[] = [];
    const run = () => {
      triedAtMs.push(performance.now());
      const err = errors.shift();
      return err === undefined ? Promise.resolve("done") : Promise.reject(err);
    };
    return { run, triedAtMs };
  }

  it("tries again 1 s after an outage, doubling to 10 s, and logs the outage once, then its end", async () => {
    const untilPostgres = waitForPostgres(log(), new AbortController().signal);
    const start = performance.now();
    const errors: Error[] = [refused(), serverError("57P03", "the database system is starting up")];
    for (let n = 0; n < 6; n++) errors.push(refused());
    const { run, triedAtMs } = attempt(...errors);
    const result = untilPostgres(run);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(await result).toBe("done");
    expect(triedAtMs.map((ms) => ms - start)).toEqual([0, 1_000, 3_000, 7_000, 15_000, 25_000, 35_000, 45_000, 55_000]);
    expect(lines).toEqual([
      expect.objectContaining({ level: "warn", event: "postgres_unavailable", code: "ECONNREFUSED" }),
      expect.objectContaining({ level: "info", event: "postgres_recovered", downMs: 55_000 }),
    ]);
    expect(lines[0]?.error).toBe("connect ECONNREFUSED 127.0.0.1:5433");
  });

  it("waits out a Postgres with no connection slot left, then read-only while it fails over", async () => {
    const untilPostgres = waitForPostgres(log(), new AbortController().signal);
    const tooMany = serverError("53300", "sorry, too many clients already");
    const readOnly = serverError("25006", "cannot execute INSERT in a read-only transaction");
    const { run, triedAtMs } = attempt(tooMany, readOnly);
    const result = untilPostgres(run);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(await result).toBe("done");
    expect(triedAtMs).toHaveLength(3);
    expect(lines).toEqual([
      expect.objectContaining({ level: "warn", event: "postgres_unavailable", code: "53300" }),
      expect.objectContaining({ level: "info", event: "postgres_recovered", downMs: 3_000 }),
    ]);
  });

  it("logs an outage that spans several attempts' callers once", async () => {
    const untilPostgres = waitForPostgres(log(), new AbortController().signal);
    const first = untilPostgres(attempt(refused()).run);
    await vi.advanceTimersByTimeAsync(1_000);
    await first;
    expect(lines.map((l) => l.event)).toEqual(["postgres_unavailable", "postgres_recovered"]);
    const second = untilPostgres(attempt(refused(), refused()).run);
    await vi.advanceTimersByTimeAsync(3_000);
    await second;
    expect(lines.map((l) => l.event)).toEqual([
      "postgres_unavailable",
      "postgres_recovered",
      "postgres_unavailable",
      "postgres_recovered",
    ]);
  });

  it("does not wait for a Postgres that answers with an error that is no outage", async () => {
    const untilPostgres = waitForPostgres(log(), new AbortController().signal);
    const violation = serverError("23505", "duplicate key value violates unique constraint");
    await expect(untilPostgres(attempt(violation).run)).rejects.toBe(violation);
    // Nor after an outage: the error ends the wait as it comes.
    const { run, triedAtMs } = attempt(refused(), violation);
    const result = untilPostgres(run);
    result.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(1_000);
    await expect(result).rejects.toBe(violation);
    expect(triedAtMs).toHaveLength(2);
  });

  it("ends its wait at once on a stop, and waits for nothing once stopped", async () => {
    const stop = new AbortController();
    const untilPostgres = waitForPostgres(log(), stop.signal);
    const { run, triedAtMs } = attempt(refused(), refused(), refused());
    const result = untilPostgres(run);
    result.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(1_500);
    stop.abort();
    await vi.advanceTimersByTimeAsync(0);
    await expect(result).rejects.toBeInstanceOf(PostgresWaitStopped);
    expect(triedAtMs).toHaveLength(2);
    await expect(untilPostgres(attempt(refused()).run)).rejects.toBeInstanceOf(PostgresWaitStopped);
    // What succeeds after the stop is returned: a stop ends only a wait.
    expect(await untilPostgres(attempt().run)).toBe("done");
  });
});
