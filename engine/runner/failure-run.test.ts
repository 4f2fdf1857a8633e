// How the engine logs a run of Postgres failures it retries (snapshot saves, the snapshotter's restore, the connect at
// start): once per run and per kind of error, then its end.
import { beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { serverError, socketError } from "../../platform/testing/driver-errors.ts";
import { FailureRun } from "./failure-run.ts";

const refused = () => socketError("ECONNREFUSED");
const missingTable = () => serverError("42P01", 'relation "engine_snapshots" does not exist');

let lines: Record<string, unknown>[];
const log = () =>
  createLogger("engine-test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
const saves = () =>
  new FailureRun(log(), { failed: "snapshot_failed", recovered: "snapshot_recovered" }, { step: "save" });
/** What a test reads of a line: its event and the fields a run adds. */
const fields = ({ event, step, postgres, failures }: Record<string, unknown>) => ({ event, step, postgres, failures });

beforeEach(() => {
  lines = [];
});

describe("FailureRun", () => {
  it("logs a run's first failure with its kind, only counts the next ones, and logs the run's end", () => {
    const run = saves();
    run.failed(refused());
    run.failed(serverError("57P03", "the database system is starting up"));
    run.failed(refused());
    run.succeeded();
    expect(lines.map(fields)).toEqual([
      { event: "snapshot_failed", step: "save", postgres: "outage", failures: undefined },
      { event: "snapshot_recovered", step: "save", postgres: undefined, failures: 3 },
    ]);
    expect(lines[0]).toMatchObject({ level: "error" });
  });

  it("logs a failure of another kind than the run's so far again: an outage that no wait mends any more says so", () => {
    const run = saves();
    run.failed(refused());
    run.failed(refused());
    run.failed(missingTable()); // Postgres is back, and the save fails for another reason
    run.failed(missingTable());
    run.failed(refused());
    run.succeeded();
    expect(lines.map(fields)).toEqual([
      { event: "snapshot_failed", step: "save", postgres: "outage", failures: undefined },
      { event: "snapshot_failed", step: "save", postgres: "other", failures: 2 },
      { event: "snapshot_failed", step: "save", postgres: "outage", failures: 4 },
      { event: "snapshot_recovered", step: "save", postgres: undefined, failures: 5 },
    ]);
    expect(JSON.stringify(lines[1]?.error)).toContain("engine_snapshots");
  });

  it("starts each run afresh: its first failure is logged whatever the last run's kind", () => {
    const run = saves();
    run.failed(missingTable());
    run.succeeded();
    run.failed(missingTable());
    expect(lines.map((l) => [l.event, l.postgres])).toEqual([
      ["snapshot_failed", "other"],
      ["snapshot_recovered", undefined],
      ["snapshot_failed", "other"],
    ]);
  });
});
