/**
 * Failover benchmark: `npm run bench:failover` (needs Redis and Postgres; about 3 minutes with the 1M-open phase,
 * ~1 minute with FAILOVER_OPEN=0; ~4 GB of memory at 1M). Prints a table, then one JSON line. Everything runs
 * through the real processes (engines, worker, API) on a fresh test database and a unique KEY_PREFIX, all removed
 * at the end; the bench XADDs an ETH quote every second and is the supervisor: an engine process that dies is
 * replaced at once (the new one becomes the standby). The leader is the engine whose pid the lease's value names.
 *
 * One client (an account made through the log, a session signed as the API signs them) opens a small ETH trade
 * and closes it, back to back, over HTTP. A 503 or a timeout is retried at once (same Idempotency-Key) and counted.
 * The outage of a kill is the time from the signal to the answer of the first order sent after it.
 *
 * A. Small state: FAILOVER_KILLS (default 10) times, once every engine is ready (the standby hot) and the client
 *    has traded for 2 s since the last outage, SIGKILL the leader. Each outage, median, max, and the median of
 *    the last three against the first three (no growth from the first kill to the tenth).
 * B. Handover: FAILOVER_HANDOVERS (default 3) times, SIGTERM the leader. A stopping leader may still answer for a
 *    while, so trading is back with the first order sent once the bench sees another engine hold the lease. The
 *    pause a client sees is the longest gap between two consecutive answers from 1 s before the signal to 1 s
 *    after that order's answer; also reported, signal → that answer.
 * C. FAILOVER_OPEN open trades (default 1,000,000; 0 skips the phase) of other users, the log bench:recovery
 *    builds (10 per user), written a chunk at a time as the leader publishes. Once a snapshot covers them, the
 *    standby is replaced (so it restored that state), then FAILOVER_KILLS_1M (default 3) SIGKILLs of the leader.
 *
 * FAILOVER_ENGINES=1 runs a single engine, restarted at once after each kill: the configuration without a
 * standby. ENGINE_LEASE_TTL_MS passes to the engines when set (else their default).
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import type { EngineInput } from "../../contract/messages.ts";
import { keyspace } from "../../contract/names.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { Sessions } from "../../functions/auth/sessions.ts";
import { createIoredisApiRedis } from "../../functions/redis/ioredis-api-redis.ts";
import { componentNamed } from "../../platform/components.ts";
import { freePort, spawnComponent, until, type Child } from "../../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { seededRandom } from "../../platform/testing/seeded-random.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { isAfterId } from "../core/step.ts";
import { EnginePool, TradingClient, type EngineRun } from "./failover-support.ts";
import { num, percentile, timeOf, xaddAll } from "./recovery-support.ts";
import { BASE_TICKS, instruction, openTradesLog, tick } from "./workload.ts";

const REDIS_URL = TEST_REDIS_URL;
const ENGINES = Number(process.env.FAILOVER_ENGINES ?? 2);
const KILLS = Number(process.env.FAILOVER_KILLS ?? 10);
const HANDOVERS = Number(process.env.FAILOVER_HANDOVERS ?? 3);
const OPEN = Number(process.env.FAILOVER_OPEN ?? 1_000_000);
const KILLS_1M = Number(process.env.FAILOVER_KILLS_1M ?? 3);
const LEASE_TTL_MS = process.env.ENGINE_LEASE_TTL_MS;
const TRADES_PER_USER = 10;
const TRADE_BEFORE_KILL_MS = 2_000;
const BUILD_CHUNK = 5_000;
const QUOTE_EVERY_MS = 1_000;
const ENGINE_TIMEOUT_MS = 10_000;
const HOST = "127.0.0.1";
const JWT_SECRET = "bench-failover-secret-0123456789-0123456789";
const CLIENT = "failover-client";
const READY_EVENT = componentNamed("engine").readyEvent;

if (ENGINES > 1 && READY_EVENT !== "engine_ready")
  throw new Error(`FAILOVER_ENGINES=${ENGINES} needs engines with a hot standby (engine_ready); run with 1`);

interface Kill {
  readonly phase: string;
  readonly signal: NodeJS.Signals;
  readonly at: number;
  readonly outageMs: number;
  /** "takeover" (a standby took the lease, when) or "restart" (a new process led); the retries meanwhile. */
  readonly how: string;
  /** From the signal: the longest gap between consecutive answers around it (handovers only). */
  readonly pauseMs?: number;
}

const median = (xs: readonly number[]) => percentile(xs, 50);
const rounded = (x: number) => Math.round(x);

async function main(): Promise<void> {
  const t0 = Date.now();
  const progress = (what: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0)} s] ${what}\n`);
  const prefix = `bench:failover:${randomUUID()}:`;
  const keys = keyspace(prefix);
  const redis = new Redis(REDIS_URL);
  const apiRedis = createIoredisApiRedis(REDIS_URL);
  const others: Child[] = [];
  let pool: EnginePool | undefined;
  let database: TestDatabase | undefined;
  let client: TradingClient | undefined;
  let quoting: NodeJS.Timeout | undefined;
  try {
    const db = (database = await createTestDatabase());
    const base = { REDIS_URL, DATABASE_URL: db.url, KEY_PREFIX: prefix };
    const engineEnv = { ...base, ...(LEASE_TTL_MS === undefined ? {} : { ENGINE_LEASE_TTL_MS: LEASE_TTL_MS }) };
    const engines = (pool = new EnginePool(
      // With the engine's own flags, its heap limit included: what is deployed.
      (name) => spawnComponent("engine", engineEnv, { name }),
      ENGINES,
    ));
    engines.start();
    const leaderWhenReady = (timeoutMs: number) =>
      until(() => engines.allReady(redis, keys.engineLease), timeoutMs, `${ENGINES} engine(s) ready`, 10);
    await leaderWhenReady(60_000);

    const port = await freePort();
    let worker: Child | undefined;
    const start = (name: "worker" | "api", env: Record<string, string>) => {
      const p = spawnComponent(name, { ...base, ...env });
      others.push(p);
      if (name === "worker") worker = p;
      return p.waitFor(componentNamed(name).readyEvent, 60_000);
    };
    await Promise.all([
      start("worker", {}),
      start("api", {
        PORT: String(port),
        HOST,
        APP_URL: `http://${HOST}:${port}`,
        JWT_SECRET,
        TRADE_RATE_LIMIT_PER_SEC: "1000000",
        ENGINE_TIMEOUT_MS: String(ENGINE_TIMEOUT_MS),
        RESEND_API_KEY: "",
        UPSTASH_REDIS_REST_URL: "",
        UPSTASH_REDIS_REST_TOKEN: "",
        APP_REDIRECT_URL: "",
        CORS_ORIGINS: "",
      }),
    ]);
    const quote = () => redis.xadd(keys.input, "*", ...encodeFields(tick(BASE_TICKS, Date.now())));
    await quote();
    quoting = setInterval(
      () => void quote().catch((err: unknown) => progress(`quote: ${String(err)}`)),
      QUOTE_EVERY_MS,
    );
    await redis.xadd(
      keys.input,
      "*",
      ...encodeFields(instruction("create-client", CLIENT, { kind: "create_account" })),
    );
    await until(
      async () => ((await redis.exists(keys.balancesKey(CLIENT))) === 1 ? true : undefined),
      30_000,
      "the client's account",
    );
    const { token } = await new Sessions(new TextEncoder().encode(JWT_SECRET), apiRedis, keys).issue({
      id: CLIENT,
      email: `${CLIENT}@bench.test`,
    });
    const trader = (client = new TradingClient(`http://${HOST}:${port}`, token, ENGINE_TIMEOUT_MS + 5_000));
    trader.start();
    await trader.firstSentAfter(0, 30_000);
    let tradingSince = Date.now();
    progress(`${ENGINES} engine(s), worker and API up; trading`);

    const kills: Kill[] = [];
    /** Waits for every engine ready and 2 s of trading, signals the leader, and measures until trading resumes. */
    const signalLeader = async (phase: string, signal: NodeJS.Signals): Promise<Kill> => {
      const leader = await leaderWhenReady(600_000);
      await until(
        () => Promise.resolve(Date.now() - tradingSince >= TRADE_BEFORE_KILL_MS ? true : undefined),
        60_000,
        "2 s of trading",
      );
      const retriedBefore = { unavailable: trader.unavailable, timeouts: trader.timeouts };
      const at = Date.now();
      engines.signal(leader, signal);
      const successor = await until(() => engines.leader(redis, keys.engineLease), 120_000, "a new leader", 2);
      // A leader stopping on SIGTERM may answer for a while yet: it is over once the bench sees another one lead.
      const next = await trader.firstSentAfter(signal === "SIGKILL" ? at : Date.now(), 120_000);
      tradingSince = next.doneAt;
      const takeover = successor.child.lines.find((l) => l.event === "takeover" && timeOf(l) >= at);
      const retried = `${trader.unavailable - retriedBefore.unavailable} × 503, ${trader.timeouts - retriedBefore.timeouts} × timeout`;
      const how = `${takeover === undefined ? "restart" : `takeover at +${timeOf(takeover) - at} ms`}; ${retried}`;
      let pauseMs: number | undefined;
      if (signal === "SIGTERM") {
        await new Promise((r) => setTimeout(r, 1_000));
        const done = trader.accepted.map((a) => a.doneAt).filter((t) => t >= at - 1_000 && t <= next.doneAt + 1_000);
        pauseMs = Math.max(...done.slice(1).map((t, i) => t - done[i]!));
      }
      const kill = {
        phase,
        signal,
        at,
        outageMs: next.doneAt - at,
        how,
        ...(pauseMs === undefined ? {} : { pauseMs }),
      };
      kills.push(kill);
      progress(`${phase} ${signal}: trading again after ${kill.outageMs} ms (${how})`);
      return kill;
    };

    // ---- A. SIGKILLs, small state ---------------------------------------------------------------------------
    for (let i = 0; i < KILLS; i++) await signalLeader("A", "SIGKILL");
    // ---- B. SIGTERM handovers ----------------------------------------------------------------------------
    for (let i = 0; i < HANDOVERS; i++) await signalLeader("B", "SIGTERM");

    // ---- C. SIGKILLs at FAILOVER_OPEN open trades ----------------------------------------------------------
    let openMeasured: number | undefined;
    if (OPEN > 0 && KILLS_1M > 0) {
      await trader.stop();
      // The build's millions of outputs (the other users' read models) are not what this phase measures, and a
      // worker working through them would hold up the client's answers for minutes: it stops here, and the one
      // started after the build begins at the end of engine:output.
      await worker?.stop("SIGTERM");
      const users = Math.ceil(OPEN / TRADES_PER_USER);
      progress(`building ${users * TRADES_PER_USER} open trades of ${users} users`);
      // Paced: a chunk at a time, the next once the leader published the last, as a busy day's orders would come.
      let lastBuildId = "0-0";
      const published = () => {
        engines.assertNoCrashLoop();
        return redis
          .get(keys.enginePublished)
          .then((id) => (id !== null && !isAfterId(lastBuildId, id) ? true : undefined));
      };
      let chunk: EngineInput[] = [];
      const flush = async () => {
        lastBuildId = await xaddAll(redis, keys.input, chunk);
        chunk = [];
        await until(published, 120_000, "the leader to publish a chunk of the build", 5);
        engines.assertNoCrashLoop();
      };
      for (const entry of openTradesLog(users, TRADES_PER_USER, seededRandom(7))) {
        chunk.push(entry);
        if (chunk.length === BUILD_CHUNK) await flush();
      }
      await flush();
      progress("build applied; waiting for a snapshot covering it");
      await until(
        () =>
          Promise.resolve(
            engines.assertNoCrashLoop() === undefined &&
              engines.runs.some((r) =>
                r.child.lines.some(
                  (l) => l.event === "snapshot_saved" && !isAfterId(lastBuildId, String(l.lastInputId)),
                ),
              )
              ? true
              : undefined,
          ),
        900_000,
        "a snapshot covering the built state",
        200,
      );
      const leader = await leaderWhenReady(600_000);
      const builtFrom = Date.now();
      // The standbys followed the build live; replaced, they restore it from the snapshot as every later one will.
      for (const r of engines.serving()) {
        if (r === leader) continue;
        engines.signal(r, "SIGTERM");
        await r.child.exited;
      }
      await leaderWhenReady(600_000);
      const restoredOpen = () =>
        engines.runs
          .filter((r) => r.spawnedAt >= builtFrom)
          .flatMap((r) => r.child.events("restore_snapshot").map((l) => num(l, "openTrades")));
      await redis.xgroup("SETID", keys.output, keys.workerGroup, "$");
      await start("worker", {});
      progress(`state built and snapshotted (${String(restoredOpen()[0] ?? "not yet")} open trades restored); trading`);
      trader.start();
      await trader.firstSentAfter(Date.now(), 120_000);
      tradingSince = Date.now();
      for (let i = 0; i < KILLS_1M; i++) await signalLeader("C", "SIGKILL");
      const open = restoredOpen();
      if (open.length > 0) openMeasured = Math.min(...open);
    }
    await trader.stop();
    const unexpectedExits = engines.exitedUnasked();

    // ---- report --------------------------------------------------------------------------------------------
    const outagesOf = (phase: string) => kills.filter((k) => k.phase === phase).map((k) => k.outageMs);
    const small = outagesOf("A");
    const big = outagesOf("C");
    const handovers = kills.filter((k) => k.phase === "B");
    const first3 = median(small.slice(0, 3));
    const last3 = median(small.slice(-3));
    const readyMs = (r: EngineRun) => {
      const ready = EnginePool.ready(r);
      return ready === undefined ? undefined : timeOf(ready) - r.spawnedAt;
    };
    const replacements = (phase: string) =>
      kills
        .filter((k) => k.phase === phase)
        .map((k) => engines.runs.find((r) => r.spawnedAt >= k.at))
        .map((r) => (r === undefined ? undefined : readyMs(r)))
        .filter((ms): ms is number => ms !== undefined);

    const rows: [string, string][] = [];
    const row = (k: string, v: number | string | undefined, unit = "ms") =>
      rows.push([
        k,
        v === undefined ? "n/a" : typeof v === "string" ? v : `${rounded(v).toLocaleString("en-US")} ${unit}`.trim(),
      ]);
    for (const [i, k] of kills.entries()) row(`${k.phase}${i + 1}. ${k.signal} → next answer (${k.how})`, k.outageMs);
    row(`A: outage median of ${small.length}`, median(small));
    row("A: outage max", Math.max(...small));
    row("A: outage median, first 3 kills / last 3", `${first3} / ${last3} ms`);
    row("B: handover pause (longest gap between answers), max", Math.max(...handovers.map((k) => k.pauseMs!)));
    row("B: SIGTERM → first answer, max", Math.max(...handovers.map((k) => k.outageMs)));
    row("C: open trades in the state a new engine restored", openMeasured, "");
    row(`C: outage max of ${big.length}`, big.length === 0 ? undefined : Math.max(...big));
    row("replacement engine: start → ready, median (A)", median(replacements("A")));
    row(
      "replacement engine: start → ready, median (C)",
      replacements("C").length === 0 ? undefined : median(replacements("C")),
    );
    row("503 answers retried", trader.unavailable, "");
    row("timeouts retried (504 or no answer)", trader.timeouts, "");
    row(
      "other errors",
      [...trader.errors.values()].reduce((a, b) => a + b, 0),
      "",
    );
    row("orders accepted", trader.accepted.length, "");
    row("engine exits the bench did not cause", unexpectedExits.length, "");
    row("engines: a hot standby?", ENGINES > 1 ? `yes (${ENGINES} engines)` : "no (1 engine, restarted at once)");
    row("engine lease TTL", LEASE_TTL_MS ?? "the engine's default");
    row("benchmark wall time", Date.now() - t0);

    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(`failover benchmark: leader killed under one trading client (node ${process.version}, real processes)`);
    for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v.padStart(16)}`);
    for (const [what, n] of trader.errors) console.log(`  ${n} × ${what}`);
    for (const r of unexpectedExits)
      console.log(`  ${r.child.name} exited by itself:\n${r.child.raw.slice(-5).join("\n")}`);
    console.log(
      JSON.stringify({
        outageMedianMs: median(small),
        outageMaxMs: Math.max(...small),
        outageMaxMsAt1MOpen: big.length === 0 ? null : Math.max(...big),
        handoverPauseMs: Math.max(...handovers.map((k) => k.pauseMs!)),
        handoverSigtermToAnswerMs: Math.max(...handovers.map((k) => k.outageMs)),
        outagesMs: small,
        outagesMsAt1MOpen: big,
        handoverPausesMs: handovers.map((k) => k.pauseMs),
        outageFirst3MedianMs: first3,
        outageLast3MedianMs: last3,
        kills: small.length,
        killsAt1MOpen: big.length,
        open: openMeasured ?? 0,
        engines: ENGINES,
        leaseTtlMs: LEASE_TTL_MS === undefined ? null : Number(LEASE_TTL_MS),
        unavailable503: trader.unavailable,
        timeouts: trader.timeouts,
        errors: [...trader.errors.values()].reduce((a, b) => a + b, 0),
        unexpectedEngineExits: unexpectedExits.length,
      }),
    );
  } catch (err) {
    for (const p of [...(pool?.runs.map((r) => r.child) ?? []), ...others])
      process.stderr.write(`--- last lines of ${p.name}:\n${p.raw.slice(-12).join("\n")}\n`);
    throw err;
  } finally {
    if (quoting !== undefined) clearInterval(quoting);
    await client?.stop();
    for (const p of others.reverse()) await p.stop("SIGTERM");
    await pool?.stop("SIGKILL");
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    await apiRedis.close();
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
