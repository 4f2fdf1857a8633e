/**
 * The worker's start while Postgres is slow to prepare, on real Redis and Postgres: another session holds the
 * migration lock (platform/migrate.ts), as an engine migrating during a deploy does. Trading needs only Redis, so the
 * worker answers meanwhile, its batches' history owed, and writes it once it has migrated; a stop meanwhile ends it.
 * A Postgres that answers at once is waited for, so such a start owes nothing.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pgDriver from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { ConfigError } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { migrate } from "../platform/migrate.ts";
import { until } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { engineFeed, instruct } from "./testing/engine-feed.ts";
import { mergeHoursAtStart } from "./candles.ts";
import { owedEntries } from "./postgres-backlog.ts";
import { ensureGroup, runWorker } from "./worker.ts";

/** platform/migrate.ts's MIGRATION_LOCK_KEY. */
const MIGRATION_LOCK_KEY = "7243019188271345001";

let redis: Redis;
let pg: TestDatabase;
const prefix = `test:${randomUUID()}:`;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase(); // not migrated: the worker's start does it
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

/** Another session holding the migration lock until `release`. */
async function holdMigrationLock() {
  const other = new pgDriver.Client({ connectionString: pg.url });
  await other.connect();
  await other.query("BEGIN");
  await other.query("SELECT pg_advisory_xact_lock($1::bigint)", [MIGRATION_LOCK_KEY]);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await other.query("COMMIT");
    await other.end();
  };
}

/** A worker whose prepareDb is the process's (worker/main.ts: migrate, then merge the hours), on its own keyspace. */
async function startWorker(name: string, shard = 300) {
  const keys = keyspace(`${prefix}${name}:`);
  await ensureGroup(redis, keys);
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("worker-test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const preparations: Promise<void>[] = [];
  const reader = new Redis(TEST_REDIS_URL);
  const stop = new AbortController();
  const running = runWorker(
    {
      reader,
      writer: redis,
      db: pg.db,
      keys,
      log,
      consumer: "w",
      blockMs: 50,
      claimIdleMs: 200,
      stuckAfterMs: 1_000,
      postgresRetry: { firstMs: 100, maxMs: 400 },
      prepareDb: () => {
        const preparing = (async () => {
          await migrate(pg.db, log);
          await mergeHoursAtStart(pg.db, Date.now(), log);
        })();
        preparations.push(preparing.catch(() => undefined));
        return preparing;
      },
    },
    stop.signal,
  );
  running.catch(() => undefined); // awaited by the test
  // Its own shard and input times per worker: the engine's ids (an order's, an output's: its rows' keys) must not
  // meet another test's in the shared database.
  const engine = engineFeed(redis, keys, shard, 2_000_000_100_000 + (shard - 300) * 1_000_000);
  return {
    keys,
    lines,
    stop,
    running,
    /** Ends once every preparation started has, so the database can be dropped. */
    prepared: async () => void (await Promise.all(preparations)),
    async close() {
      stop.abort();
      await running.catch(() => undefined);
      reader.disconnect();
    },
    publish: engine.publish,
    price: engine.price,
  };
}

describe("the worker's start while another process holds the migration lock", () => {
  it("answers meanwhile, its history owed, and writes it once it has migrated and merged the hours", async () => {
    const release = await holdMigrationLock();
    const w = await startWorker("locked");
    try {
      const user = "lou";
      const create = instruct(user, "l1", { kind: "create_account" });
      const created = await w.publish(w.price("2000"), create);
      const answer = await until(() => redis.lpop(w.keys.responseKey(user, created)), 5_000, "the account's answer");
      expect(answer).toContain('"granted":true');
      const buy = instruct(user, "l2", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "0.1" });
      const bought = await w.publish(buy);
      expect(await until(() => redis.lpop(w.keys.responseKey(user, bought)), 5_000, "the buy's answer")).toContain(
        '"kind":"spot_order"',
      );
      // Everything handled, nothing pending, every entry owed: the lock is still held.
      const everyEntryOwed = async () => (await owedEntries(redis, w.keys)) === (await redis.xlen(w.keys.output));
      await until(async () => (await everyEntryOwed()) || null, 5_000, "every entry owed");
      expect(w.lines.filter((l) => l.event === "migrations_done" || l.event === "worker_stuck")).toEqual([]);
      expect(w.lines.filter((l) => l.event === "postgres_unavailable")).toEqual([]);
      // Said once, as the start stopped waiting for it.
      expect(w.lines.filter((l) => l.event === "postgres_preparing")).toEqual([
        expect.objectContaining({ level: "warn", waitedMs: 2_000 }),
      ]);

      await release();
      const caughtUp = await until(
        () => Promise.resolve(w.lines.find((l) => l.event === "postgres_caught_up")),
        10_000,
        "catch-up",
      );
      expect(caughtUp.entries).toBe(await redis.xlen(w.keys.output));
      expect(await redis.zcard(w.keys.postgresBacklog)).toBe(0);
      // Migrated, then every minute merged into its hour once, before the owed minutes were written.
      const events = w.lines.map((l) => l.event);
      expect(events.filter((e) => e === "candle_hours_merged")).toHaveLength(1);
      expect(events.indexOf("migrations_done")).toBeLessThan(events.indexOf("candle_hours_merged"));
      expect(events.indexOf("candle_hours_merged")).toBeLessThan(events.indexOf("postgres_caught_up"));
      expect(w.lines.find((l) => l.event === "candle_hours_merged")).toMatchObject({ full: true });
      expect(await pg.db.query("SELECT 1 FROM spot_orders WHERE user_id = $1", [user])).toMatchObject({ rowCount: 1 });
      // The price's minute, and its hour, written with the backlog.
      expect(await pg.db.query("SELECT 1 FROM candles_1m WHERE asset = 'ETH'")).toMatchObject({ rowCount: 1 });
      expect(await pg.db.query("SELECT 1 FROM candles_1h WHERE asset = 'ETH'")).toMatchObject({ rowCount: 1 });
      w.stop.abort();
      await w.running;
    } finally {
      await release();
      await w.close();
      await w.prepared();
    }
  });

  it("with Postgres prompt, owes nothing: its first batch's history is written before its answer", async () => {
    const w = await startWorker("prompt", 301);
    try {
      const user = "pia";
      const create = instruct(user, "p1", { kind: "create_account" });
      const buy = instruct(user, "p2", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "0.1" });
      // Published at once: the worker's first read finds them, while its start's preparation may still run.
      const bought = await w.publish(w.price("2000"), create, buy);
      expect(await until(() => redis.lpop(w.keys.responseKey(user, bought)), 5_000, "the buy's answer")).toContain(
        '"kind":"spot_order"',
      );
      // Postgres before Redis, as outside an outage: the row is there as the answer is.
      expect(await pg.db.query("SELECT 1 FROM spot_orders WHERE user_id = $1", [user])).toMatchObject({ rowCount: 1 });
      expect(await redis.exists(w.keys.postgresBacklog)).toBe(0);
      expect(w.lines.filter((l) => l.event === "postgres_caught_up" || l.event === "postgres_unavailable")).toEqual([]);
    } finally {
      await w.close();
      await w.prepared();
    }
  });

  it("a refusal at its first preparation ends it before it answers anything, its own pending included", async () => {
    const keys = keyspace(`${prefix}refused:`);
    await ensureGroup(redis, keys);
    const user = "rae";
    const id = await engineFeed(redis, keys, 302, 2_000_000_300_000).publish(
      instruct(user, "r1", { kind: "create_account" }),
    );
    // Left pending under the worker's name by an earlier run of it.
    await redis.xreadgroup("GROUP", keys.workerGroup, "w", "COUNT", 100, "STREAMS", keys.output, ">");
    const reader = new Redis(TEST_REDIS_URL);
    try {
      const running = runWorker(
        {
          reader,
          writer: redis,
          db: pg.db,
          keys,
          log: createLogger("worker-test", { sink: () => undefined }),
          consumer: "w",
          blockMs: 50,
          prepareDb: () => Promise.reject(new ConfigError("DATABASE_URL refused")),
        },
        new AbortController().signal,
      );
      await expect(running).rejects.toThrow(ConfigError);
      expect(await redis.exists(keys.responseKey(user, id))).toBe(0);
      expect(await owedEntries(redis, keys)).toBe(0);
      expect((await redis.xpending(keys.output, keys.workerGroup))[0]).toBeGreaterThan(0);
    } finally {
      reader.disconnect();
    }
  });

  it("ends at once on a stop while it waits for the lock", async () => {
    const release = await holdMigrationLock();
    const w = await startWorker("locked-stop");
    try {
      // Its preparation is waiting for the lock.
      await until(
        async () =>
          (
            await pg.db.query(
              `SELECT 1 FROM pg_locks
                WHERE locktype = 'advisory' AND NOT granted
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
            )
          ).rowCount === 1 || null,
        5_000,
        "the worker waiting for the lock",
      );
      const stoppedAt = performance.now();
      w.stop.abort();
      const ended = await Promise.race([
        w.running.then(() => "ended"),
        new Promise((resolve) => setTimeout(() => resolve("still running"), 2_000)),
      ]);
      expect(ended).toBe("ended");
      expect(performance.now() - stoppedAt).toBeLessThan(2_000);
    } finally {
      await release();
      await w.close();
      await w.prepared();
    }
  });
});
