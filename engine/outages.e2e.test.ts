/**
 * A Postgres outage with the real engine processes: trading needs only Redis, so it must not stop trading. Two
 * engines reach Postgres through a TCP proxy that the test cuts while prices stream in. The leader keeps leading while
 * its snapshots fail (logged once, counted in its metrics, the log kept whole); the standby that takes over when the
 * leader dies leads too, though its snapshotter cannot restore; an engine started meanwhile waits for Postgres rather
 * than exit. Once Postgres is back, the snapshotter restores and saves, and the waiting engine becomes the standby.
 * A Postgres that stops answering in the middle of a save (the connection open, no reply) fails that save after
 * SNAPSHOT_SAVE_TIMEOUT_MS, as an outage does, and a later save succeeds once it answers again.
 * An engine pointed at a database that does not exist does not wait: it stops at once. And a leader, a standby or an
 * engine about to choose between them, asked to stop while Redis is out of reach, does not wait for Redis either.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { scrape, sample } from "../platform/testing/metrics.ts";
import { spawnComponent, until, type Child } from "../platform/testing/processes.ts";
import { startRedisProxy, type RedisProxy } from "../platform/testing/redis-proxy.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { isAfterId } from "./core/step.ts";
import { PostgresSnapshotStore } from "./snapshot/postgres-store.ts";

const prefix = `test:engine-outages:${randomUUID()}:`;
const keys = keyspace(prefix);
const redis = new Redis(TEST_REDIS_URL);
let pg: TestDatabase;
let proxy: RedisProxy;
const engines: Child[] = [];

beforeAll(async () => {
  pg = await createTestDatabase();
  proxy = await startRedisProxy(pg.url);
});
afterAll(async () => {
  await Promise.all(engines.map((e) => e.stop("SIGKILL")));
  await proxy.close();
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

function start(name: string, databaseUrl?: string, env: Record<string, string> = {}): Child {
  const through = new URL(pg.url);
  through.port = String(proxy.port);
  const engine = spawnComponent(
    "engine",
    {
      REDIS_URL: TEST_REDIS_URL,
      DATABASE_URL: databaseUrl ?? through.toString(),
      KEY_PREFIX: prefix,
      SNAPSHOT_EVERY_MS: "500",
      ENGINE_LEASE_TTL_MS: "1000",
      ...env,
    },
    { name },
  );
  engines.push(engine);
  return engine;
}

/** A price every 100 ms until stopped; `last()` is the id of the newest. */
function streamPrices() {
  let last = "";
  let n = 0;
  const timer = setInterval(() => {
    const bid = String(2000 + (n++ % 50));
    void redis
      .xadd(
        keys.input,
        "*",
        ...encodeFields({
          type: "price_update",
          market: "ETH_USDC_PERP",
          bid,
          ask: `${bid}.5`,
          exchangeTimeUs: "1",
          source: "sim",
        }),
      )
      .then((id) => (last = id as string));
  }, 100);
  return { last: () => last, stop: () => clearInterval(timer) };
}

/** Waits until the leader has published the newest price there is now: it still trades. */
async function published(prices: { last: () => string }): Promise<void> {
  const target = prices.last();
  await until(
    async () => {
      const cursor = await redis.get(keys.enginePublished);
      return cursor !== null && !isAfterId(target, cursor) ? true : undefined;
    },
    5_000,
    `the price ${target} published`,
  );
}

const holds = async (engine: Child) =>
  (await redis.get(keys.engineLease))?.startsWith(`${hostname()}:${engine.proc.pid}:`) === true;

const snapshotter = (event: string, step?: string) => (line: Record<string, unknown>) =>
  line.event === event && line.role === "snapshotter" && (step === undefined || line.step === step);

describe("engine processes through a Postgres outage", () => {
  it("keep trading: the leader leads on, a standby takes over, a new engine waits; all resume once it is back", async () => {
    const a = start("engine-a");
    await a.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
    const b = start("engine-b");
    await b.waitFor((l) => l.event === "engine_ready" && l.role === "standby", 30_000);
    const prices = streamPrices();
    try {
      await a.waitFor(snapshotter("snapshot_saved"), 10_000);
      await proxy.cut();
      await a.waitFor(snapshotter("snapshot_failed", "save"), 10_000);
      // Several snapshot periods later: still the leader, still publishing, the failure logged once.
      await new Promise((r) => setTimeout(r, 2_500));
      await published(prices);
      expect(a.alive()).toBe(true);
      expect(await holds(a)).toBe(true);
      expect(a.events("snapshotter_crashed")).toEqual([]);
      expect(a.lines.filter(snapshotter("snapshot_failed"))).toHaveLength(1);
      const metricsPort = Number((await a.waitFor("metrics_listening")).port);
      const samples = await scrape(metricsPort);
      expect(sample(samples, "engine_snapshot_age_seconds")).toBeGreaterThanOrEqual(2);
      expect(sample(samples, "engine_snapshot_failures_total")).toBeGreaterThanOrEqual(2);
      // Nothing was trimmed past the newest snapshot saved: a restart replays from it.
      const newest = await new PostgresSnapshotStore(pg.db).load();
      const [first] = (await redis.xrange(keys.input, "-", "+", "COUNT", 1)) as [string, string[]][];
      expect(isAfterId(first![0], newest!.head.lastInputId)).toBe(false);

      // The leader dies: the standby takes over without Postgres, and its snapshotter waits for it.
      await a.stop("SIGKILL");
      await b.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 10_000);
      await b.waitFor(snapshotter("snapshot_failed", "restore"), 10_000);
      await new Promise((r) => setTimeout(r, 1_500));
      await published(prices);
      expect(b.alive()).toBe(true);
      expect(await holds(b)).toBe(true);

      // An engine started now has nothing to restore from: it waits for Postgres.
      const c = start("engine-c");
      await c.waitFor("postgres_waiting", 10_000);
      await new Promise((r) => setTimeout(r, 1_500));
      expect(c.alive()).toBe(true);
      expect(c.events("postgres_waiting")).toHaveLength(1);

      await proxy.mend();
      await b.waitFor(snapshotter("snapshot_recovered", "restore"), 40_000);
      const saved = await b.waitFor(snapshotter("snapshot_saved"), 10_000);
      await c.waitFor((l) => l.event === "engine_ready" && l.role === "standby", 40_000);
      await published(prices);
      expect(isAfterId(String(saved.lastInputId), newest!.head.lastInputId)).toBe(true);
      expect(b.events("snapshotter_crashed")).toEqual([]);
      prices.stop();
      expect(await c.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      expect(await b.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    } finally {
      prices.stop();
      await proxy.mend();
    }
  }, 120_000);

  it("gives up a save that Postgres stops answering mid-way, trades on, and saves and trims once it answers", async () => {
    const a = start("engine-frozen-save", undefined, { SNAPSHOT_SAVE_TIMEOUT_MS: "2000", SNAPSHOT_EVERY_MS: "3000" });
    await a.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
    const prices = streamPrices();
    try {
      const before = await a.waitFor(snapshotter("snapshot_saved"), 15_000, "a first snapshot");
      // The next save gets no answer from its first chunk on: its lock taken, its transaction open, the connection
      // alive.
      await proxy.freezeOn("INSERT INTO engine_snapshot_chunks");
      await published(prices); // the leader trades on meanwhile
      const failed = await a.waitFor(snapshotter("snapshot_failed", "save"), 10_000, "the frozen save given up");
      expect(failed.error).toMatchObject({ message: expect.stringContaining("no commit within 2000 ms") as unknown });
      await published(prices);
      expect(a.alive()).toBe(true);
      expect(await holds(a)).toBe(true);
      // The path comes back, but not the frozen connection (its bytes are lost): a save works only on a new one.
      proxy.thaw();
      const recovered = await a.waitFor(snapshotter("snapshot_recovered", "save"), 60_000, "a save after the thaw");
      expect(recovered.failures).toBeGreaterThanOrEqual(1);
      const saved = await a.waitFor(
        (l) => snapshotter("snapshot_saved")(l) && isAfterId(String(l.lastInputId), String(before.lastInputId)),
        10_000,
      );
      // Trimmed again, below the snapshot before: the log no longer grows without bound.
      expect(Number(saved.trimmed)).toBeGreaterThan(0);
      const [first] = (await redis.xrange(keys.input, "-", "+", "COUNT", 1)) as [string, string[]][];
      expect(isAfterId(String(before.lastInputId), first![0])).toBe(false);
      expect(a.lines.filter(snapshotter("snapshot_failed"))).toHaveLength(1);
      expect(a.events("snapshotter_crashed")).toEqual([]);
      prices.stop();
      expect(await a.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    } finally {
      prices.stop();
      proxy.thaw();
    }
  }, 120_000);

  it("stops at once, rather than wait, when its database does not exist", async () => {
    const missing = new URL(pg.url);
    missing.pathname = `/${pg.name}_missing`;
    const engine = start("engine-missing-db", missing.toString());
    // A configuration error: npm start stops, before ready.
    expect(await engine.exited).toEqual({ code: 2, signal: null });
    expect(engine.events("postgres_waiting")).toEqual([]);
    expect(engine.raw.join("\n")).toContain("does not exist");
  });
});

describe("an engine process through a Redis outage", () => {
  it("stops on SIGTERM while Redis is out of reach, rather than wait for it; the next leader misses nothing", async () => {
    const redisProxy = await startRedisProxy(TEST_REDIS_URL);
    const prices = streamPrices();
    try {
      const through = new URL(TEST_REDIS_URL);
      through.host = `127.0.0.1:${redisProxy.port}`;
      const env = { REDIS_URL: through.toString(), ENGINE_LEASE_TTL_MS: "2000", SNAPSHOT_EVERY_MS: "300" };
      const a = start("engine-redis-gone", undefined, env);
      await a.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
      await a.waitFor(snapshotter("snapshot_saved"), 10_000);
      await published(prices);
      // Out of reach in the middle of the traffic: reads, publishes and trims go unanswered.
      await redisProxy.cut();
      const stoppedAt = Date.now();
      // The lease release waits one TTL (2 s here) and the final catch-up FINAL_CATCH_UP_WAIT_MS (5 s) at most,
      // side by side; without those bounds it waits for Redis for ever.
      const exit = await Promise.race([
        a.stop("SIGTERM"),
        new Promise((r) => setTimeout(() => r("still running"), 20_000)),
      ]);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(Date.now() - stoppedAt).toBeLessThan(20_000);
      expect(a.events("lease_release_unanswered")).toHaveLength(1);
      expect(a.lines.filter(snapshotter("final_catch_up_unanswered"))).toHaveLength(1);
      // Redis back: the next engine leads from the snapshots and the log, and publishes every price since.
      await redisProxy.mend();
      const b = start("engine-after-redis", undefined, { ENGINE_LEASE_TTL_MS: "2000" });
      await b.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
      await published(prices);
      prices.stop();
      expect(await b.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    } finally {
      prices.stop();
      await redisProxy.close();
    }
  }, 120_000);

  it("stops a standby on SIGTERM while Redis is out of reach: its polls do not wait for Redis", async () => {
    const redisProxy = await startRedisProxy(TEST_REDIS_URL);
    const leader = start("engine-leads-on", undefined, { ENGINE_LEASE_TTL_MS: "2000" });
    try {
      await leader.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
      const through = new URL(TEST_REDIS_URL);
      through.host = `127.0.0.1:${redisProxy.port}`;
      const standby = start("engine-standby-redis-gone", undefined, { REDIS_URL: through.toString() });
      await standby.waitFor((l) => l.event === "engine_ready" && l.role === "standby", 30_000);
      await redisProxy.cut();
      await new Promise((r) => setTimeout(r, 500)); // polls wait for Redis now
      const stoppedAt = Date.now();
      const exit = await Promise.race([
        standby.stop("SIGTERM"),
        new Promise((r) => setTimeout(() => r("still running"), 15_000)),
      ]);
      expect(exit).toEqual({ code: 0, signal: null });
      // Ending its threads takes a moment; nothing waits for Redis.
      expect(Date.now() - stoppedAt).toBeLessThan(5_000);
      expect(standby.events("stopped")).toEqual([expect.objectContaining({ exitCode: 0 })]);
      expect(await holds(leader)).toBe(true);
    } finally {
      await redisProxy.close();
      expect(await leader.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    }
  }, 120_000);

  it("stops on SIGTERM while its first read of the lease, after the restore, gets no answer", async () => {
    const redisProxy = await startRedisProxy(TEST_REDIS_URL);
    try {
      const through = new URL(TEST_REDIS_URL);
      through.host = `127.0.0.1:${redisProxy.port}`;
      const frozen = redisProxy.freezeOn(keys.engineLease); // main's GET of the lease: nothing before it names it
      const engine = start("engine-lease-read-frozen", undefined, { REDIS_URL: through.toString() });
      await frozen;
      const exit = await Promise.race([
        engine.stop("SIGTERM"),
        new Promise((r) => setTimeout(() => r("still running"), 15_000)),
      ]);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(engine.events("stopped")).toEqual([expect.objectContaining({ exitCode: 0 })]);
      expect(engine.events("lease_acquired")).toEqual([]);
    } finally {
      await redisProxy.close();
    }
  }, 120_000);
});
