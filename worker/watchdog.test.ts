// The watchdog's bound on a clock of its own: a step waiting with Redis up, through a Redis outage, after one, and
// on a stop during one.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../platform/log.ts";
import { watchdog, WorkerStuckError, type RedisOutages } from "./watchdog.ts";

const STUCK_AFTER_MS = 1_000;

let lines: Record<string, unknown>[];
let upSince: number | undefined;
const outages: RedisOutages = { upSince: () => upSince };
const log = () =>
  createLogger("worker-test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
const redisDown = () => void (upSince = undefined);
const redisBack = () => void (upSince = performance.now());

/** A step that never ends by itself, and how it ended so far. */
function hangingStep(bounded: ReturnType<typeof watchdog>, step = "read") {
  const outcome: { error?: unknown } = {};
  bounded(step, new Promise<never>(() => undefined)).catch((err: unknown) => (outcome.error = err));
  return outcome;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  lines = [];
  upSince = -Infinity;
});

afterEach(() => {
  vi.useRealTimers();
});

describe("watchdog", () => {
  it("ends a step that has waited the bound with Redis up", async () => {
    const step = hangingStep(watchdog(STUCK_AFTER_MS, log(), outages));
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS - 1);
    expect(step.error).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(step.error).toBeInstanceOf(WorkerStuckError);
    expect(lines).toEqual([
      expect.objectContaining({ level: "error", event: "worker_stuck", step: "read", stuckAfterMs: STUCK_AFTER_MS }),
    ]);
  });

  it("does not count a Redis outage: a step waiting through one ends as it does after it", async () => {
    const bounded = watchdog(STUCK_AFTER_MS, log(), outages);
    let resolve!: (value: string) => void;
    const answer = bounded("batch_rest", new Promise<string>((r) => (resolve = r)));
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS / 2);
    redisDown();
    await vi.advanceTimersByTimeAsync(10 * STUCK_AFTER_MS);
    redisBack();
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS - 1);
    resolve("done");
    expect(await answer).toBe("done");
    expect(lines).toEqual([]);
  });

  it("counts from Redis's return: a connection silent after it is caught a bound later", async () => {
    const step = hangingStep(watchdog(STUCK_AFTER_MS, log(), outages));
    redisDown();
    await vi.advanceTimersByTimeAsync(2.5 * STUCK_AFTER_MS);
    redisBack();
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS - 1);
    expect(step.error).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(step.error).toBeInstanceOf(WorkerStuckError);
    expect((step.error as Error).message).toContain("a connection stopped answering");
    expect(lines).toEqual([expect.objectContaining({ event: "worker_stuck", waitedMs: 3.5 * STUCK_AFTER_MS })]);
  });

  it("does not wait out an outage on a stop: a step that has waited the bound ends the worker", async () => {
    const stop = new AbortController();
    const step = hangingStep(watchdog(STUCK_AFTER_MS, log(), outages, stop.signal), "reader_ping");
    redisDown();
    await vi.advanceTimersByTimeAsync(5 * STUCK_AFTER_MS);
    expect(step.error).toBeUndefined();
    stop.abort();
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS);
    expect(step.error).toBeInstanceOf(WorkerStuckError);
    expect((step.error as Error).message).toContain("a stop while Redis is down");
    expect(lines).toEqual([expect.objectContaining({ event: "worker_stuck", step: "reader_ping", redisDown: true })]);
  });
});
