// What the worker counts as Postgres being down, on the errors node-postgres gives, and when it tries Postgres again,
// on a clock of its own. (worker.int.test.ts goes through a real Postgres refusing connections.)
import { beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { serverError, socketError } from "../platform/testing/driver-errors.ts";
import { isPostgresOutage, watchPostgresOutages } from "./postgres-outages.ts";

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
    ["a full disk", serverError("53100", 'could not extend file "base/16384/16402": No space left on device')],
    ["a server out of memory", serverError("53200", "out of memory")],
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

describe("watchPostgresOutages", () => {
  let lines: Record<string, unknown>[];
  let nowMs: number;
  const watch = () =>
    watchPostgresOutages(
      createLogger("worker-test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) }),
      { firstMs: 1_000, maxMs: 10_000 },
      () => nowMs,
    );

  beforeEach(() => {
    lines = [];
    nowMs = 0;
  });

  /** The times (ms) at which a try comes due, from `fromMs` to `toMs` in steps of 100 ms, each try failing. */
  function failingTries(outages: ReturnType<typeof watch>, fromMs: number, toMs: number): number[] {
    const due: number[] = [];
    for (nowMs = fromMs; nowMs <= toMs; nowMs += 100) {
      if (!outages.tryDue()) continue;
      due.push(nowMs);
      expect(outages.failed(refused())).toBe(true);
    }
    return due;
  }

  it("is up until an outage; tries again 1 s after it, doubling to 10 s; logs the outage once, then its end", () => {
    const outages = watch();
    expect([outages.isDown(), outages.tryDue()]).toEqual([false, false]);
    nowMs = 500;
    expect(outages.failed(refused())).toBe(true);
    expect(outages.isDown()).toBe(true);
    expect(failingTries(outages, 600, 45_000)).toEqual([1_500, 3_500, 7_500, 15_500, 25_500, 35_500]);
    nowMs = 45_000;
    outages.succeeded({ backlogEntries: 12 });
    expect([outages.isDown(), outages.tryDue()]).toEqual([false, false]);
    outages.succeeded(); // no outage under way: nothing logged
    expect(lines.map((l) => [l.level, l.event, l.code ?? l.downMs, l.backlogEntries])).toEqual([
      ["warn", "postgres_unavailable", "ECONNREFUSED", undefined],
      ["info", "postgres_recovered", 44_500, 12],
    ]);
    expect(lines[0]!.error).toBe("connect ECONNREFUSED 127.0.0.1:5433");
  });

  it("says which condition a SQLSTATE is, so a full disk reads as one", () => {
    watch().failed(serverError("53100", "could not extend file because project size limit (512 MB) has been exceeded"));
    expect(lines).toEqual([
      expect.objectContaining({ event: "postgres_unavailable", code: "53100", condition: "disk_full" }),
    ]);
  });

  it("counts a Postgres with no connection slot left, then read-only while it fails over, as one outage", () => {
    const outages = watch();
    expect(outages.failed(serverError("53300", "sorry, too many clients already"))).toBe(true);
    nowMs = 1_000;
    expect(outages.tryDue()).toBe(true);
    expect(outages.failed(serverError("25006", "cannot execute INSERT in a read-only transaction"))).toBe(true);
    expect([outages.isDown(), outages.tryDue()]).toEqual([true, false]);
    nowMs = 3_000;
    expect(outages.tryDue()).toBe(true);
    outages.succeeded();
    expect(lines).toEqual([
      expect.objectContaining({ level: "warn", event: "postgres_unavailable", code: "53300" }),
      expect.objectContaining({ level: "info", event: "postgres_recovered", downMs: 3_000 }),
    ]);
  });

  it("puts an outage on trial when a try reached Postgres and wrote nothing: the batches' first write ends it", () => {
    const outages = watch();
    outages.failed(refused());
    nowMs = 1_000;
    expect(outages.tryDue()).toBe(true);
    outages.answered({ backlogEntries: 0 });
    // Batches write Postgres again; the lane has no try due.
    expect([outages.isDown(), outages.tryDue()]).toEqual([false, false]);
    nowMs = 1_200;
    outages.succeeded();
    expect(outages.isDown()).toBe(false);
    expect(lines.map((l) => [l.event, l.downMs, l.backlogEntries])).toEqual([
      ["postgres_unavailable", undefined, undefined],
      ["postgres_recovered", 1_200, 0],
    ]);
  });

  it("keeps a Postgres that answers and refuses every write as one outage, its pause growing to 10 s", () => {
    const outages = watch();
    const readOnly = () => serverError("25006", "cannot execute INSERT in a read-only transaction");
    outages.failed(readOnly());
    const due: number[] = [];
    for (nowMs = 100; nowMs <= 45_000; nowMs += 100) {
      if (!outages.tryDue()) continue;
      due.push(nowMs);
      // Odd tries: the lane's SELECT answered, nothing to write, so a batch's write is the try.
      if (due.length % 2 === 1) {
        outages.answered({ backlogEntries: 0 });
        expect(outages.isDown()).toBe(false);
      }
      expect(outages.failed(readOnly())).toBe(true);
    }
    expect(due).toEqual([1_000, 3_000, 7_000, 15_000, 25_000, 35_000, 45_000]);
    expect(lines.map((l) => [l.event, l.code])).toEqual([["postgres_unavailable", "25006"]]);
  });

  it("starts again at 1 s for the next outage", () => {
    const outages = watch();
    expect(failingTries(outages, 0, 0)).toEqual([]);
    outages.failed(refused());
    failingTries(outages, 100, 20_000);
    outages.succeeded();
    nowMs = 30_000;
    outages.failed(serverError("57P03", "the database system is starting up"));
    expect(failingTries(outages, 30_100, 34_000)).toEqual([31_000, 33_000]);
    expect(lines.filter((l) => l.event === "postgres_unavailable").map((l) => l.code)).toEqual([
      "ECONNREFUSED",
      "57P03",
    ]);
  });

  it("leaves any other error to its caller, up or down", () => {
    const outages = watch();
    expect(outages.failed(serverError("42P01", 'relation "closed_orders" does not exist'))).toBe(false);
    expect(outages.isDown()).toBe(false);
    outages.failed(refused());
    nowMs = 1_000;
    expect(outages.failed(new Error("Query read timeout"))).toBe(false);
    expect([outages.isDown(), outages.tryDue()]).toEqual([true, true]);
    expect(lines.map((l) => l.event)).toEqual(["postgres_unavailable"]);
  });
});
