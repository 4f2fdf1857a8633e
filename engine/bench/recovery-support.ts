/**
 * Support for `npm run bench:recovery`: pipelined XADDs and the arithmetic over the engine's log lines (which
 * stats windows overlap a snapshot, percentiles). The messages themselves come from workload.ts.
 */
import type { Redis } from "ioredis";
import type { EngineInput } from "../../contract/messages.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import type { LogLine } from "../../platform/testing/processes.ts";

export async function xaddAll(
  redis: Redis,
  stream: string,
  messages: Iterable<EngineInput>,
  chunk = 5000,
): Promise<string> {
  let last = "";
  let pipe = redis.pipeline();
  let n = 0;
  const flush = async () => {
    const results = (await pipe.exec()) ?? [];
    for (const [err, id] of results) {
      if (err) throw err;
      last = id as string;
    }
    pipe = redis.pipeline();
    n = 0;
  };
  for (const m of messages) {
    pipe.xadd(stream, "*", ...encodeFields(m));
    if (++n === chunk) await flush();
  }
  if (n > 0) await flush();
  return last;
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const timeOf = (line: LogLine) => Date.parse(String(line.time));
export const num = (line: LogLine, field: string) => Number(line[field]);

export interface StatsWindow {
  readonly startMs: number;
  readonly endMs: number;
  readonly maxMs: number;
  readonly p99Ms: number;
  readonly overlapsSnapshot: boolean;
}

/**
 * Each engine_stats line covers the time since the previous one. A snapshot ran from (saved time − encode −
 * hash − write) to its saved time; a window overlaps it when the two intervals intersect.
 */
export function statsWindows(lines: readonly LogLine[], fromMs: number, toMs: number): StatsWindow[] {
  const snapshots = lines
    .filter((l) => l.event === "snapshot_saved")
    .map((l) => {
      const end = timeOf(l);
      return { start: end - num(l, "encodeMs") - num(l, "hashMs") - num(l, "writeMs"), end };
    });
  const windows: StatsWindow[] = [];
  let prev: number | undefined;
  for (const l of lines) {
    if (l.event !== "engine_stats") continue;
    const end = timeOf(l);
    if (prev !== undefined && prev >= fromMs && end <= toMs) {
      const start = prev;
      windows.push({
        startMs: start,
        endMs: end,
        maxMs: num(l, "loopDelayMaxMs"),
        p99Ms: num(l, "loopDelayP99Ms"),
        overlapsSnapshot: snapshots.some((s) => s.start < end && s.end > start),
      });
    }
    prev = end;
  }
  return windows;
}
