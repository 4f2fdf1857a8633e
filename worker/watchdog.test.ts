// The watchdog's bound on a clock of its own: a step waiting with Redis up, through a Redis outage, after one, and
// on a stop during one; what a trip fails; and that a step's result is not kept once the step ended.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
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

/** A full garbage collection, for a test that a result is no longer reachable. */
async function collectGarbage() {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void; // a context made after the flag has gc
  // A WeakRef keeps its target until the job that made it ends; setImmediate is not faked here.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}

/**
 * `steps` steps through `bounded`, each ending with a result of its own, and weak references to these results. Its
 * own function, so that no frame still waiting in the test holds the last one.
 */
async function stepsThrough(bounded: ReturnType<typeof watchdog>, steps: number): Promise<WeakRef<object>[]> {
  const results: WeakRef<object>[] = [];
  for (let i = 0; i < steps; i++) {
    const result = { entries: [i] }; // a group read's reply, say
    results.push(new WeakRef(result));
    expect(await bounded("read", Promise.resolve(result))).toBe(result);
  }
  return results;
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

  it("fails every waiting step on a trip, and a step started after it at once", async () => {
    const bounded = watchdog(STUCK_AFTER_MS, log(), outages);
    const first = hangingStep(bounded, "read");
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS / 2);
    const second = hangingStep(bounded, "batch_rest");
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_MS / 2);
    expect(first.error).toBeInstanceOf(WorkerStuckError);
    expect(second.error).toBe(first.error);
    const later = hangingStep(bounded, "trim");
    await new Promise((resolve) => setImmediate(resolve)); // the fake clock does not move
    expect(later.error).toBe(first.error);
    expect(lines).toEqual([expect.objectContaining({ event: "worker_stuck", step: "read" })]);
  });

  it("keeps no step's result once the step ended", async () => {
    // The watchdog itself stays in use, as the worker's does for as long as it runs.
    const bounded = watchdog(STUCK_AFTER_MS, log(), outages);
    const results = await stepsThrough(bounded, 1_000);
    await collectGarbage();
    expect(results.filter((result) => result.deref() !== undefined)).toHaveLength(0);
    expect(await bounded("read", Promise.resolve("still in use"))).toBe("still in use");
  });
});
