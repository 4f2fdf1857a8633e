/**
 * Engine core benchmark: `npm run bench:engine`. Prints a table, then one JSON line with the figures.
 *
 * Every rate is the median of several timed batches in this process. The 1M-open state is 100k users × 10 trades with
 * leverage 2–20, stop-losses 1.5–40% from the price (inside each trade's liquidation level) and take-profits 10–50%
 * away, built through `apply` with log time advancing ~0.86 s per open (≈ 10 days for 1M opens, so the 24 h idempotency
 * window holds what it would in steady state). Ticks move within ±1% of the price and fire nothing. The naive-JSON row
 * is the baseline, and a gauge of the machine's speed that day: JSON.stringify of every account and trade view,
 * measured here in the same process.
 *
 * The full book then adds to that state 10 pending entry orders per user (1M, 5–30% from the price) and a trailing
 * stop on every 10th trade (100k, 3–10% behind, a fifth waiting for an activation price), through apply; its ticks
 * fire nothing either, so their rate against the 1k-open one shows what the indexes cost a tick.
 */
import type { Instruction } from "../../contract/messages.ts";
import { apply, type LogEntry } from "../core/apply.ts";
import { makeParams } from "../core/params.ts";
import { amountsOf, createState, tradeId, type EngineState } from "../core/state.ts";
import { balancesView, tradeView } from "../core/views.ts";
import { ByteWriter } from "../snapshot/bytes.ts";
import { decodeSnapshot, encodeSnapshot, prescanIdempotency } from "../snapshot/codec.ts";
import { seededRandom } from "../../platform/testing/seeded-random.ts";
import { BASE_TICKS, instruction as userInstruction, openOrder, pendingOrder, tick, trailingStop } from "./workload.ts";

const gc = (globalThis as { gc?: () => void }).gc;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function heapMB(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/**
 * Seconds spent applying `count` entries, built (untimed) and applied in chunks of 1,000, as the runner applies
 * what one XREAD returns: a whole batch built up front would sit in the young generation and inflate GC.
 */
function timeInChunks(count: number, make: (i: number) => LogEntry, applyOne: (e: LogEntry) => unknown): number {
  let seconds = 0;
  const chunk: LogEntry[] = [];
  for (let start = 0; start < count; start += 1000) {
    chunk.length = 0;
    for (let i = start; i < Math.min(count, start + 1000); i++) chunk.push(make(i));
    const t0 = performance.now();
    for (const e of chunk) applyOne(e);
    seconds += (performance.now() - t0) / 1000;
  }
  return seconds;
}

/** A log writer with its own clock; ids are pre-built outside timed sections where it matters. */
class Log {
  ms = 1_700_000_000_000;
  private seq = 0;
  id(): string {
    return `${this.ms}-${this.seq++}`;
  }
  advance(ms: number): void {
    if (ms > 0) {
      this.ms += ms;
      this.seq = 0;
    }
  }
}

function createUsers(state: EngineState, log: Log, users: number): void {
  for (let u = 0; u < users; u++) {
    apply(state, {
      id: log.id(),
      message: {
        type: "user_instruction",
        requestId: "grant",
        userId: `user${u}`,
        instruction: { kind: "create_account" },
      },
    });
  }
}

/** Builds 100k users × 10 trades (or any shape) through apply. */
function buildState(users: number, tradesPerUser: number, msPerOpen: number): EngineState {
  const state = createState(makeParams());
  const log = new Log();
  const rand = seededRandom(7);
  createUsers(state, log, users);
  apply(state, { id: log.id(), message: tick(BASE_TICKS, log.ms) });
  let n = 0;
  let tickedAtMs = log.ms;
  for (let r = 0; r < tradesPerUser; r++) {
    for (let u = 0; u < users; u++) {
      log.advance(msPerOpen);
      n++;
      // A quote (or the exchange's heartbeat) at least once a second of log time, as the poller sends them.
      if (log.ms - tickedAtMs >= 1_000) {
        apply(state, { id: log.id(), message: tick(BASE_TICKS, log.ms) });
        tickedAtMs = log.ms;
      }
      const out = apply(state, {
        id: log.id(),
        message: { type: "user_instruction", requestId: `o${n}`, userId: `user${u}`, instruction: openOrder(rand) },
      });
      const last = out[out.length - 1];
      if (last?.type !== "order_response" || !last.answer.ok)
        throw new Error(`bench open refused: ${JSON.stringify(last)}`);
    }
  }
  return state;
}

/**
 * Adds to a built state `pendingPerUser` pending entry orders per user and a trailing stop on every `trailEvery`-th
 * open trade (through modify_trade), all through apply, the log advancing `msPerOrder` per instruction.
 */
function addOrdersAndTrails(state: EngineState, pendingPerUser: number, trailEvery: number, msPerOrder: number): void {
  const log = new Log();
  log.ms = state.lastInputMs;
  const rand = seededRandom(13);
  let n = 0;
  let tickedAtMs = 0;
  const act = (userId: string, instruction: Instruction) => {
    log.advance(msPerOrder);
    n++;
    // A quote at least once a second of log time, as the poller sends them.
    if (log.ms - tickedAtMs >= 1_000) {
      apply(state, { id: log.id(), message: tick(BASE_TICKS, log.ms) });
      tickedAtMs = log.ms;
    }
    const out = apply(state, { id: log.id(), message: userInstruction(`p${n}`, userId, instruction) });
    const last = out[out.length - 1];
    if (last?.type !== "order_response" || !last.answer.ok)
      throw new Error(`bench ${instruction.kind} refused: ${JSON.stringify(last)}`);
  };
  for (let r = 0; r < pendingPerUser; r++) {
    for (const userId of state.accounts.keys()) act(userId, pendingOrder(rand));
  }
  let t = 0;
  for (const account of [...state.accounts.values()]) {
    for (const trade of [...account.openTrades.values()]) {
      if (t++ % trailEvery !== 0) continue;
      const tradeIdText = tradeId(state.params.shard, trade.seq);
      act(account.userId, {
        kind: "modify_trade",
        tradeId: tradeIdText,
        trailingStop: trailingStop(rand, trade.isLong),
      });
    }
  }
}

function pendingOrdersCount(state: EngineState): number {
  let n = 0;
  for (const a of state.accounts.values()) n += a.pendingOrders.size;
  return n;
}

function openTradesCount(state: EngineState): number {
  let n = 0;
  for (const a of state.accounts.values()) n += a.openTrades.size;
  return n;
}

/** Median ticks/s over batches of ticks that stay within ±1% of the base price. */
function measureTicks(state: EngineState, batches: number, perBatch: number): number {
  const rates: number[] = [];
  let ms = state.lastInputMs + 1;
  const msgs = Array.from({ length: 1000 }, (_, i) => tick(BASE_TICKS - 4000 + ((i * 37) % 8000), ms));
  for (let b = 0; b < batches; b++) {
    const seconds = timeInChunks(
      perBatch,
      (i) => ({ id: `${ms}-${i}`, message: msgs[i % msgs.length]! }),
      (e) => {
        const out = apply(state, e);
        if (out.length !== 1) throw new Error(`a bench tick fired a trigger: ${JSON.stringify(out.slice(1, 3))}`);
      },
    );
    ms++;
    rates.push(perBatch / seconds);
  }
  return median(rates);
}

function measureOpensAndCloses(batches: number, perBatch: number): { opensPerSec: number; closesPerSec: number } {
  const state = createState(makeParams({ maxOpenTradesPerUser: 10_000 }));
  const log = new Log();
  const users = 10_000;
  createUsers(state, log, users);
  const rand = seededRandom(11);
  const opens: number[] = [];
  const closes: number[] = [];
  let req = 0;
  for (let b = 0; b < batches; b++) {
    log.advance(1000);
    apply(state, { id: log.id(), message: tick(BASE_TICKS, log.ms) });
    const openSeconds = timeInChunks(
      perBatch,
      (i) => ({
        id: log.id(),
        message: {
          type: "user_instruction",
          requestId: `q${++req}`,
          userId: `user${i % users}`,
          instruction: openOrder(rand),
        },
      }),
      (e) => apply(state, e),
    );
    opens.push(perBatch / openSeconds);
    if (openTradesCount(state) !== perBatch) throw new Error("bench opens were refused");

    const toClose: [string, string][] = [];
    for (const a of state.accounts.values())
      for (const seq of a.openTrades.keys()) toClose.push([a.userId, tradeId(state.params.shard, seq)]);
    const closeSeconds = timeInChunks(
      toClose.length,
      (i) => ({
        id: log.id(),
        message: {
          type: "user_instruction",
          requestId: `q${++req}`,
          userId: toClose[i]![0],
          instruction: { kind: "close_trade", tradeId: toClose[i]![1] },
        },
      }),
      (e) => apply(state, e),
    );
    closes.push(toClose.length / closeSeconds);
    if (openTradesCount(state) !== 0) throw new Error("bench closes were refused");
  }
  return { opensPerSec: median(opens), closesPerSec: median(closes) };
}

function naiveJson(state: EngineState): { ms: number; bytes: number; parseMs: number } {
  const t0 = performance.now();
  const accounts = [...state.accounts.values()].map((a) => ({
    userId: a.userId,
    balances: balancesView(state, amountsOf(a)),
    trades: [...a.openTrades.values()].map((t) => tradeView(state, t)),
  }));
  const json = JSON.stringify({ lastInputId: state.lastInputId, accounts, idempotency: [...state.idempotency] });
  const ms = performance.now() - t0;
  // Only the parse of the naive restore; rebuilding maps and trigger indexes from it would come on top.
  const t1 = performance.now();
  JSON.parse(json);
  return { ms, bytes: Buffer.byteLength(json), parseMs: performance.now() - t1 };
}

function main(): void {
  const rows: [string, string][] = [];
  const row = (k: string, v: number, unit: string) =>
    rows.push([k, `${Math.round(v).toLocaleString("en-US")} ${unit}`]);
  const baseHeap = heapMB();

  const { opensPerSec, closesPerSec } = measureOpensAndCloses(7, 50_000);
  row("opens (10k users, median of 7 × 50k)", opensPerSec, "/s");
  row("closes (manual, median of 7 × 50k)", closesPerSec, "/s");

  const small = buildState(1_000, 1, 0);
  const ticksPerSecAt1kOpen = measureTicks(small, 7, 200_000);
  row("ticks at 1k open trades", ticksPerSecAt1kOpen, "/s");

  const buildStart = performance.now();
  const big = buildState(100_000, 10, 864);
  const buildMs = performance.now() - buildStart;
  const open = openTradesCount(big);
  row(`build 100k users × 10 trades via apply (${open.toLocaleString("en-US")} open)`, buildMs, "ms");
  const heapMBAt1MOpen = heapMB() - baseHeap;
  row("heap held by the 1M-open state", heapMBAt1MOpen, "MB");
  row("idempotency entries held (24 h window)", big.idempotency.size, "");
  const ticksPerSecAt1MOpen = measureTicks(big, 7, 200_000);
  row("ticks at 1M open trades", ticksPerSecAt1MOpen, "/s");

  // A snapshotter keeps one writer, so only the first encode allocates the buffer (see codec.ts).
  const writer = new ByteWriter();
  let t0 = performance.now();
  let bytes = encodeSnapshot(big, writer);
  const firstEncodeMs = performance.now() - t0;
  const encodes: number[] = [];
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    bytes = encodeSnapshot(big, writer);
    encodes.push(performance.now() - t0);
  }
  const snapshotEncodeMsAt1MOpen = median(encodes);
  row("snapshot encode at 1M open, first (allocates the buffer)", firstEncodeMs, "ms");
  row("snapshot encode at 1M open, reused buffer (median of 5)", snapshotEncodeMsAt1MOpen, "ms");
  row("snapshot size at 1M open", bytes.length / 2 ** 20, "MB");
  const restores: number[] = [];
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    const restored = decodeSnapshot(bytes);
    restores.push(performance.now() - t0);
    if (openTradesCount(restored) !== open) throw new Error("restore lost trades");
  }
  const restoreMsAt1MOpen = median(restores);
  row("snapshot restore at 1M open (median of 5)", restoreMsAt1MOpen, "ms");
  // Recovery's loader thread scans the idempotency section while the engine decodes the accounts: its share of the
  // restore is what the engine no longer does (the scan itself is timed too, as that thread would run it).
  const scans: number[] = [];
  const prescannedRestores: number[] = [];
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    const scan = prescanIdempotency(bytes);
    scans.push(performance.now() - t0);
    t0 = performance.now();
    const restored = decodeSnapshot(bytes, undefined, () => scan);
    prescannedRestores.push(performance.now() - t0);
    if (restored.idempotency.size !== big.idempotency.size) throw new Error("restore lost remembered requests");
  }
  const prescannedRestoreMsAt1MOpen = median(prescannedRestores);
  row(
    `snapshot restore at 1M open, ${big.idempotency.size.toLocaleString("en-US")} remembered requests prescanned (median of 5)`,
    prescannedRestoreMsAt1MOpen,
    "ms",
  );
  row("idempotency prescan on its own (the loader thread's share, median of 5)", median(scans), "ms");
  const naive = naiveJson(big);
  row("baseline: naive JSON.stringify of the same state", naive.ms, "ms");
  row("baseline: naive JSON size", naive.bytes / 2 ** 20, "MB");
  row("baseline: naive JSON.parse alone (no rebuild)", naive.parseMs, "ms");

  // The full book: the same 1M open trades, plus 1M pending entry orders and 100k trailing stops.
  addOrdersAndTrails(big, 10, 10, 432);
  const pending = pendingOrdersCount(big);
  row(`pending entry orders added (10 per user)`, pending, "");
  const ticksPerSecAt1MOpen1MPending = measureTicks(big, 7, 200_000);
  row("ticks at 1M open + 1M pending + 100k trailing", ticksPerSecAt1MOpen1MPending, "/s");
  const fullEncodes: number[] = [];
  let fullBytes = encodeSnapshot(big, writer);
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    fullBytes = encodeSnapshot(big, writer);
    fullEncodes.push(performance.now() - t0);
  }
  const snapshotEncodeMsFullBook = median(fullEncodes);
  row("snapshot encode, full book (median of 5)", snapshotEncodeMsFullBook, "ms");
  row("snapshot size, full book", fullBytes.length / 2 ** 20, "MB");
  const fullRestores: number[] = [];
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    const restored = decodeSnapshot(fullBytes);
    fullRestores.push(performance.now() - t0);
    if (pendingOrdersCount(restored) !== pending) throw new Error("restore lost pending orders");
  }
  const restoreMsFullBook = median(fullRestores);
  row("snapshot restore, full book (median of 5)", restoreMsFullBook, "ms");

  const width = Math.max(...rows.map(([k]) => k.length));
  console.log("engine core benchmark (node " + process.version + ")");
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v.padStart(14)}`);
  console.log(
    JSON.stringify({
      opensPerSec: Math.round(opensPerSec),
      closesPerSec: Math.round(closesPerSec),
      ticksPerSecAt1kOpen: Math.round(ticksPerSecAt1kOpen),
      ticksPerSecAt1MOpen: Math.round(ticksPerSecAt1MOpen),
      snapshotEncodeMsAt1MOpen: Math.round(snapshotEncodeMsAt1MOpen),
      snapshotBytesAt1MOpen: bytes.length,
      restoreMsAt1MOpen: Math.round(restoreMsAt1MOpen),
      prescannedRestoreMsAt1MOpen: Math.round(prescannedRestoreMsAt1MOpen),
      heapMBAt1MOpen: Math.round(heapMBAt1MOpen),
      openTradesAt1M: open,
      naiveJsonMsAt1MOpen: Math.round(naive.ms),
      naiveJsonBytesAt1MOpen: naive.bytes,
      naiveJsonParseMsAt1MOpen: Math.round(naive.parseMs),
      snapshotFirstEncodeMsAt1MOpen: Math.round(firstEncodeMs),
      ticksPerSecAt1MOpen1MPending: Math.round(ticksPerSecAt1MOpen1MPending),
      pendingOrdersAt1M: pending,
      snapshotEncodeMsFullBook: Math.round(snapshotEncodeMsFullBook),
      snapshotBytesFullBook: fullBytes.length,
      restoreMsFullBook: Math.round(restoreMsFullBook),
    }),
  );
}

main();
