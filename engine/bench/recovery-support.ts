/**
 * Support for `npm run bench:recovery`: the messages it writes to engine:input, pipelined XADDs, and the
 * arithmetic over the engine's log lines (which stats windows overlap a snapshot, percentiles).
 */
import type { Redis } from "ioredis";
import type { EngineInput, Instruction } from "../../contract/messages.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import type { LogLine } from "../testing/engine-process.ts";

export const MARKET = "ETH_USDC_PERP";
export const BASE_TICKS = 400_000; // 4000.00

export const price = (ticks: number) => `${Math.floor(ticks / 100)}.${String(ticks % 100).padStart(2, "0")}`;

export const tick = (bidTicks: number): EngineInput => ({
  type: "price_update", market: MARKET, bid: price(bidTicks), ask: price(bidTicks + 10), exchangeTimeUs: "0", source: "sim",
});

/** Deterministic pseudo-random numbers (the benchmark's, not the engine's). */
export function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** As engine.bench.ts: leverage 2–20, stop-loss inside the liquidation level, take-profit 10–50% away: nothing fires. */
export function openOrder(rand: () => number): Instruction {
  const long = rand() < 0.5;
  const leverage = 2 + Math.floor(rand() * 19);
  const sl = 1 + ((0.3 + 0.5 * rand()) / leverage) * (long ? -1 : 1);
  const tp = 1 + (0.1 + 0.4 * rand()) * (long ? 1 : -1);
  return {
    kind: "open_trade", asset: "ETH", side: long ? "long" : "short", margin: String(10 + Math.floor(rand() * 90)),
    leverage, stopLoss: price(Math.round(BASE_TICKS * sl)), takeProfit: price(Math.round(BASE_TICKS * tp)),
  };
}

export const instruction = (requestId: string, userId: string, instr: Instruction): EngineInput => ({
  type: "user_instruction", requestId, userId, instruction: instr,
});

/** XADDs with `*` ids in pipelines of `chunk`; returns the last id. */
export async function xaddAll(redis: Redis, stream: string, messages: Iterable<EngineInput>, chunk = 5000): Promise<string> {
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
  const snapshots = lines.filter((l) => l.event === "snapshot_saved").map((l) => {
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
        startMs: start, endMs: end, maxMs: num(l, "loopDelayMaxMs"), p99Ms: num(l, "loopDelayP99Ms"),
        overlapsSnapshot: snapshots.some((s) => s.start < end && s.end > start),
      });
    }
    prev = end;
  }
  return windows;
}
