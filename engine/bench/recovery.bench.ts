/**
 * Runtime benchmark: `npm run bench:recovery` (needs Redis and Postgres, ~5 GB of memory, a few
 * minutes). Prints a table, then one JSON line with the figures. Everything runs through the real processes
 * (`engine/main.ts`, `worker/main.ts`) on a fresh test database and a unique KEY_PREFIX, all removed at the end.
 *
 * 1. Build: XADD a log that creates BENCH_USERS users (default 100k) with BENCH_TRADES_PER_USER open trades each
 *    (default 10: 1M open trades, levels as in engine.bench.ts so nothing fires), a price every 1000 entries;
 *    the engine applies it live and its follower thread snapshots every SNAPSHOT_EVERY_MS.
 * 2. Snapshot pause: with a trickle of 200 prices/s, the leader's event-loop delay (max, p99 per 1 s
 *    engine_stats window) in the windows that overlap a snapshot_saved of the full state.
 * 3. Recovery: SIGKILL the engine, XADD a 100k-entry tail, start a new engine; process start → replay_done.
 *    The dead engine's lease key is deleted first (what its TTL would do): the wait for expiry is not counted.
 * 4. Tick → row: with a worker running, open 500 trades with take-profits just above the price, then XADD rising
 *    ticks that fire ~5 of them each; the time from a tick's XADD to its rows being seen in closed_orders
 *    (Postgres polled every few ms), while the trickle and the 1M-open state keep the engine loaded.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { keyspace } from "../../contract/names.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { spawnComponent, type Child } from "../../platform/testing/processes.ts";
import { seededRandom } from "../../platform/testing/seeded-random.ts";
import { num, percentile, statsWindows, timeOf, xaddAll } from "./recovery-support.ts";
import { BASE_TICKS, instruction, openTradesLog, price, tick } from "./workload.ts";
import type { EngineInput } from "../../contract/messages.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";

const REDIS_URL = TEST_REDIS_URL;
const USERS = Number(process.env.BENCH_USERS ?? 100_000);
const TRADES_PER_USER = Number(process.env.BENCH_TRADES_PER_USER ?? 10);
const TAIL = 100_000;
const SNAPSHOT_EVERY_MS = 5000;
const STATS_EVERY_MS = 1000;
const MEASURE_MS = 30_000;
const TRICKLE_PER_SEC = 200;
const TP_TRADES = 500;
const FIRE_PER_TICK = 5;
/** The engine default: it restores before taking the lease, so no TTL has to cover a restore. */
const LEASE_TTL_MS = 5_000;
/**
 * Added to the engine's own flags (platform/components.ts, its heap limit included: the bench measures what is
 * deployed): BENCH_ENGINE_FLAGS (space-separated, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the
 * engines).
 */
const ENGINE_EXTRA_FLAGS = (process.env.BENCH_ENGINE_FLAGS ?? "").split(" ").filter(Boolean);
/** Node writes a CPU profile when the process exits, not when it is killed: profiled engines are stopped politely. */
const FINAL_STOP = ENGINE_EXTRA_FLAGS.some((f) => f.startsWith("--cpu-prof")) ? "SIGTERM" : "SIGKILL";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const isAtOrAfter = (a: string, b: string) => {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am > bm || (am === bm && as >= bs);
};

const rows: [string, string][] = [];
const row = (k: string, v: number | string, unit = "") =>
  rows.push([
    k,
    typeof v === "number"
      ? `${Number.isInteger(v) || Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(1)} ${unit}`.trim()
      : v,
  ]);

async function main(): Promise<void> {
  const t0 = Date.now();
  const prefix = `bench:${randomUUID()}:`;
  const keys = keyspace(prefix);
  const redis = new Redis(REDIS_URL);
  const trickleRedis = new Redis(REDIS_URL);
  const processes: Child[] = [];
  let database: TestDatabase | undefined;
  let trickle: NodeJS.Timeout | undefined;
  const progress = (what: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0)} s] ${what}\n`);
  try {
    const db = (database = await createTestDatabase());
    const env = {
      REDIS_URL,
      DATABASE_URL: db.url,
      KEY_PREFIX: prefix,
      SNAPSHOT_EVERY_MS: String(SNAPSHOT_EVERY_MS),
      ENGINE_LEASE_TTL_MS: String(LEASE_TTL_MS),
      ENGINE_STATS_EVERY_MS: String(STATS_EVERY_MS),
    };
    const startEngine = (name: string) => {
      const p = spawnComponent("engine", env, { name, nodeFlags: ENGINE_EXTRA_FLAGS });
      processes.push(p);
      return p;
    };

    // ---- 1. build ----------------------------------------------------------------------------------------
    let engine = startEngine("engine-1");
    await engine.waitFor("replay_done", 60_000);
    const buildStart = Date.now();
    const lastBuildId = await xaddAll(redis, keys.input, openTradesLog(USERS, TRADES_PER_USER, seededRandom(7)));
    const xaddMs = Date.now() - buildStart;
    progress(`build log written (${xaddMs} ms), waiting for the engine and a snapshot covering it`);

    // Keep prices flowing from here on (log time moves, quotes stay fresh): 200/s around the base price.
    let trickleBid = BASE_TICKS;
    let trickleSent = 0;
    trickle = setInterval(() => {
      const pipe = trickleRedis.pipeline();
      for (let i = 0; i < TRICKLE_PER_SEC / 20; i++) {
        trickleBid = BASE_TICKS - 20 + Math.floor(Math.random() * 41);
        pipe.xadd(keys.input, "*", ...encodeFields(tick(trickleBid, Date.now())));
      }
      trickleSent += TRICKLE_PER_SEC / 20;
      pipe.exec().catch((err: unknown) => progress(`trickle failed: ${String(err)}`));
    }, 50);

    const fullSnapshot = await engine.waitFor(
      (l) => l.event === "snapshot_saved" && isAtOrAfter(String(l.lastInputId), lastBuildId),
      600_000,
      "a snapshot of the full state",
    );
    const buildMs = Date.now() - buildStart;
    progress(`full state snapshotted after ${buildMs} ms; measuring pauses for ${MEASURE_MS} ms`);

    // ---- 2. snapshot pause -------------------------------------------------------------------------------
    const measureFrom = timeOf(fullSnapshot);
    await sleep(MEASURE_MS);
    const measureTo = Date.now();
    const windows = statsWindows(engine.lines, measureFrom, measureTo);
    const during = windows.filter((w) => w.overlapsSnapshot);
    const outside = windows.filter((w) => !w.overlapsSnapshot);
    const snaps = engine.lines.filter(
      (l) => l.event === "snapshot_saved" && timeOf(l) > measureFrom && timeOf(l) <= measureTo,
    );
    if (during.length === 0) throw new Error("no engine_stats window overlapped a snapshot of the full state");

    // ---- 3. recovery -------------------------------------------------------------------------------------
    await engine.stop("SIGKILL");
    await redis.del(keys.engineLease);
    function* tailLog(): Generator<EngineInput> {
      for (let i = 0; i < TAIL; i++) {
        yield i % 2 === 0
          ? tick(BASE_TICKS - 20 + (i % 41), Date.now())
          : instruction(`t${i}`, `user${i % USERS}`, { kind: "create_account" });
      }
    }
    await xaddAll(redis, keys.input, tailLog());
    progress("engine killed, tail written; recovering");
    const restartAt = Date.now();
    engine = startEngine("engine-2");
    const replayDone = await engine.waitFor("replay_done", 120_000);
    const restore = engine.lines.find((l) => l.event === "restore_snapshot" && l.role === undefined)!;
    const recoveryMs = timeOf(replayDone) - restartAt;

    // ---- 4. tick → row ---------------------------------------------------------------------------------
    // The worker starts at the head of engine:output: the build's million answers are not its work here.
    await redis.xgroup("CREATE", keys.output, keys.workerGroup, "$", "MKSTREAM");
    const worker = spawnComponent("worker", { REDIS_URL, DATABASE_URL: db.url, KEY_PREFIX: prefix });
    processes.push(worker);
    await worker.waitFor("start", 30_000);
    const tpTicks = (i: number) => BASE_TICKS + 50 + i * 5; // 4000.50, 4000.55, …: above every trickle price
    await xaddAll(
      redis,
      keys.input,
      (function* () {
        for (let i = 0; i < TP_TRADES; i++) yield instruction(`tpa${i}`, `tp${i}`, { kind: "create_account" });
        for (let i = 0; i < TP_TRADES; i++) {
          yield instruction(`tpo${i}`, `tp${i}`, {
            kind: "open_trade",
            asset: "ETH",
            side: "long",
            margin: "10",
            leverage: 2,
            takeProfit: price(tpTicks(i)),
          });
        }
      })(),
    );
    await sleep(1500);
    const seen = new Map<string, number>();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const res = await db.db.query<{ user_id: string }>(
          "SELECT user_id FROM closed_orders WHERE close_reason = 'take_profit' AND user_id LIKE 'tp%'",
        );
        const now = Date.now();
        for (const r of res.rows) if (!seen.has(r.user_id)) seen.set(r.user_id, now);
        await sleep(2);
      }
    })();
    // Tick k lifts the bid to fire trades FIRE_PER_TICK·k … FIRE_PER_TICK·(k+1)−1.
    const tickSentAt: number[] = [];
    for (let k = 0; k * FIRE_PER_TICK < TP_TRADES; k++) {
      const bid = tpTicks(k * FIRE_PER_TICK + FIRE_PER_TICK - 1);
      tickSentAt.push(Date.now());
      await redis.xadd(keys.input, "*", ...encodeFields(tick(bid, Date.now())));
      await sleep(40);
    }
    const waitUntil = Date.now() + 15_000;
    while (seen.size < TP_TRADES && Date.now() < waitUntil) await sleep(50);
    polling = false;
    await poller;
    const latencies: number[] = [];
    for (const [user, at] of seen) latencies.push(at - tickSentAt[Math.floor(Number(user.slice(2)) / FIRE_PER_TICK)]!);
    // The recovered leader's own pauses while the ticks ran (its follower restoring and snapshotting meanwhile).
    const tickWindows = statsWindows(engine.lines, tickSentAt[0]! - STATS_EVERY_MS, Date.now() + STATS_EVERY_MS);
    progress("done measuring; cleaning up");

    // ---- report --------------------------------------------------------------------------------------------
    const openTrades = num(restore, "openTrades");
    const scaled = openTrades < 1_000_000;
    const pauseMax = Math.max(...during.map((w) => w.maxMs));
    const pauseP99 = Math.max(...during.map((w) => w.p99Ms));
    const windowMaxes = during.map((w) => w.maxMs);
    const snapField = (f: string) => snaps.map((l) => num(l, f));
    const tickToRowP50Ms = percentile(latencies, 50);
    const tickToRowP99Ms = percentile(latencies, 99);
    row(
      `state built (${USERS.toLocaleString("en-US")} users × ${TRADES_PER_USER})${scaled ? " — SCALED DOWN" : ""}`,
      openTrades,
      "open trades",
    );
    row("build: XADD of the log", xaddMs, "ms");
    row("build: XADD → snapshot of the full state saved", buildMs, "ms");
    row(`snapshots of the full state during the ${MEASURE_MS / 1000} s window`, snaps.length);
    row("snapshot encode (median)", percentile(snapField("encodeMs"), 50), "ms");
    row("snapshot hash (median)", percentile(snapField("hashMs"), 50), "ms");
    row("snapshot write to Postgres (median)", percentile(snapField("writeMs"), 50), "ms");
    row("snapshot size", percentile(snapField("bytes"), 50) / 2 ** 20, "MB");
    row(`leader pause while snapshotting: max (${during.length} windows of ${STATS_EVERY_MS} ms)`, pauseMax, "ms");
    row("leader pause while snapshotting: worst window p99", pauseP99, "ms");
    row("leader pause while snapshotting: median window max", percentile(windowMaxes, 50), "ms");
    row(
      `leader pause with no snapshot running: max (${outside.length} windows)`,
      outside.length === 0 ? "n/a" : Math.max(...outside.map((w) => w.maxMs)),
      "ms",
    );
    row(
      `recovery: tail replayed (${TAIL.toLocaleString("en-US")} written + trickle)`,
      num(replayDone, "entries"),
      "entries",
    );
    row(
      "recovery: process start → lease held (start, connect, migrate, load + decode)",
      timeOf(engine.events("lease_acquired")[0]!) - restartAt,
      "ms",
    );
    row("recovery: snapshot load from Postgres", num(restore, "loadMs"), "ms");
    row("recovery: snapshot decode + index rebuild", num(restore, "decodeMs"), "ms");
    row("recovery: … of which waiting for the load's bytes", num(restore, "waitMs"), "ms");
    row("recovery: … of which waiting for the loader's idempotency scan", num(restore, "scanWaitMs"), "ms");
    const prefetched = engine.lines.find((l) => l.event === "replay_prefetched");
    row(
      "recovery: entries read and decoded by the log prefetch thread",
      prefetched === undefined ? "none" : num(prefetched, "entries"),
      "entries",
    );
    row(
      "recovery: restore → replay start (prefetched batches handed over, lease)",
      timeOf(engine.events("replay_start")[0]!) - timeOf(restore),
      "ms",
    );
    row("recovery: replay of the tail", num(replayDone, "ms"), "ms");
    row("recovery: replay rate", num(replayDone, "perSec"), "entries/s");
    row("recovery: process start → replay_done (live)", recoveryMs, "ms");
    row(`tick → closed_orders row: trades fired and seen`, `${latencies.length} / ${TP_TRADES}`);
    row("tick → closed_orders row: p50", tickToRowP50Ms, "ms");
    row("tick → closed_orders row: p99", tickToRowP99Ms, "ms");
    row("tick → closed_orders row: max", Math.max(...latencies), "ms");
    row(
      `tick → closed_orders row: the leader's longest pause meanwhile (${tickWindows.length} windows)`,
      tickWindows.length === 0 ? "n/a" : Math.max(...tickWindows.map((w) => w.maxMs)),
      "ms",
    );
    row("price trickle during the run", `${TRICKLE_PER_SEC}/s (${trickleSent.toLocaleString("en-US")} sent)`);
    row("engine lease TTL used (the default)", LEASE_TTL_MS, "ms");
    row("benchmark wall time", Date.now() - t0, "ms");

    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(`engine runtime benchmark: snapshots, recovery, tick → row (node ${process.version}, real processes)`);
    for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v.padStart(18)}`);
    console.log(
      JSON.stringify({
        snapshotPauseMaxMsAt1MOpen: pauseMax,
        snapshotPauseP99MsAt1MOpen: pauseP99,
        recoveryMsAt1MOpen: recoveryMs,
        replayEntriesPerSec: num(replayDone, "perSec"),
        tickToRowP99Ms,
        tickToRowP50Ms,
        openTradesMeasured: openTrades,
        scaledDown: scaled,
        users: USERS,
        tradesPerUser: TRADES_PER_USER,
        tailEntries: num(replayDone, "entries"),
        restoreLoadMs: num(restore, "loadMs"),
        restoreDecodeMs: num(restore, "decodeMs"),
        restoreScanWaitMs: num(restore, "scanWaitMs"),
        replayMs: num(replayDone, "ms"),
        replayPrefetchedEntries: prefetched === undefined ? 0 : num(prefetched, "entries"),
        snapshotEncodeMs: percentile(snapField("encodeMs"), 50),
        snapshotWriteMs: percentile(snapField("writeMs"), 50),
        snapshotBytes: percentile(snapField("bytes"), 50),
        snapshotsMeasured: snaps.length,
        pauseWindowsDuringSnapshot: during.length,
        pauseMaxMsNoSnapshot: outside.length === 0 ? null : Math.max(...outside.map((w) => w.maxMs)),
        tickToRowSamples: latencies.length,
        tickToRowLeaderPauseMaxMs: tickWindows.length === 0 ? null : Math.max(...tickWindows.map((w) => w.maxMs)),
        leaseTtlMs: LEASE_TTL_MS,
      }),
    );
  } catch (err) {
    for (const p of processes) process.stderr.write(`--- last lines of ${p.name}:\n${p.raw.slice(-12).join("\n")}\n`);
    throw err;
  } finally {
    if (trickle !== undefined) clearInterval(trickle);
    await Promise.all(processes.map((p) => p.stop(FINAL_STOP)));
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    trickleRedis.disconnect();
    await database?.drop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
