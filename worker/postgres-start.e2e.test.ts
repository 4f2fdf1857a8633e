/**
 * The worker process (`dist/worker.mjs`) started while its Postgres refuses connections, as after a machine's boot or
 * under a Postgres restarting: it neither exits into a crash loop nor waits, but answers meanwhile, then migrates and
 * writes what it owes once Postgres is back; a stop meanwhile ends it at once. The same while another process holds
 * the migration lock (an engine migrating during a deploy). Postgres sits behind a proxy the test cuts and mends
 * (platform/testing/redis-proxy.ts).
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import pgDriver from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apply } from "../engine/core/apply.ts";
import { makeParams } from "../engine/core/params.ts";
import { createState } from "../engine/core/state.ts";
import { keyspace } from "../contract/names.ts";
import type { EngineInput } from "../contract/messages.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { spawnComponent, until, type Child } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { startRedisProxy, type RedisProxy } from "../platform/testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";

const prefix = `test:${randomUUID()}:`;
let redis: Redis;
let pg: TestDatabase;
let proxy: RedisProxy;
let databaseUrl: string;
const children: Child[] = [];

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase();
  proxy = await startRedisProxy(pg.url);
  const url = new URL(pg.url);
  url.port = String(proxy.port);
  databaseUrl = url.toString();
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.stop("SIGKILL")));
  await proxy.close();
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

function startWorker(name: string): Child {
  const env = { REDIS_URL: TEST_REDIS_URL, DATABASE_URL: databaseUrl, KEY_PREFIX: `${prefix}${name}:` };
  const child = spawnComponent("worker", { ...env, WORKER_NAME: name }, { name });
  children.push(child);
  return child;
}

describe("the worker process started while Postgres refuses connections", () => {
  it("works without Postgres, logged once, then migrates and writes what it owes", { timeout: 60_000 }, async () => {
    await proxy.cut();
    const worker = startWorker("pg-start");
    const unavailable = await worker.waitFor("postgres_unavailable", 30_000);
    expect(unavailable).toMatchObject({ level: "warn", code: "ECONNREFUSED" });
    expect(String(unavailable.error)).toContain("cannot reach Postgres");
    // It works meanwhile: an account's creation is answered, a price goes out.
    const keys = keyspace(`${prefix}pg-start:`);
    const state = createState(makeParams());
    const inputs: [string, EngineInput][] = [
      [
        "90000-0",
        {
          type: "price_update",
          market: "ETH_USDC_PERP",
          bid: "2000",
          ask: "2000",
          exchangeTimeUs: "90000000",
          source: "sim",
        },
      ],
      [
        "90001-0",
        { type: "user_instruction", userId: "ted", requestId: "t1", instruction: { kind: "create_account" } },
      ],
    ];
    for (const [id, message] of inputs)
      for (const o of apply(state, { id, message })) await redis.xadd(keys.output, "*", ...encodeFields(o));
    expect(await until(() => redis.lpop(keys.responseKey("ted", "90001-0")), 15_000, "ted's answer")).toContain(
      '"granted":true',
    );
    // Tried again at 1 and 3 s meanwhile, not exited
    await sleep(3_500);
    expect(worker.alive()).toBe(true);
    expect(worker.events("postgres_unavailable")).toHaveLength(1);
    expect(worker.events("crash")).toEqual([]);
    await proxy.mend();
    const recovered = await worker.waitFor("postgres_recovered", 15_000);
    expect(recovered.downMs).toBeGreaterThanOrEqual(3_500);
    await worker.waitFor("migrations_done");
    // Then, before the backlog, every minute merged into its hour, as owed after migration 012 (none here: an empty
    // database).
    expect(await worker.waitFor("candle_hours_merged")).toMatchObject({ hours: 0, full: true });
    // What it handled without Postgres is written once it is back: the price's candle.
    const caughtUp = await worker.waitFor("postgres_caught_up", 15_000);
    expect(caughtUp.entries).toBe(await redis.xlen(keys.output));
    const candles = await pg.db.query("SELECT 1 FROM candles_1m WHERE asset = 'ETH' AND open_time = $1", [
      new Date(60_000).toISOString(),
    ]);
    expect(candles.rowCount).toBe(1);
    const hours = await pg.db.query("SELECT 1 FROM candles_1h WHERE asset = 'ETH' AND open_time = $1", [
      new Date(0).toISOString(),
    ]);
    expect(hours.rowCount).toBe(1);
    expect(await worker.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("ends at once, and cleanly, on a stop while Postgres is down", { timeout: 60_000 }, async () => {
    await proxy.cut();
    const worker = startWorker("pg-start-stop");
    await worker.waitFor("postgres_unavailable", 30_000);
    const stoppedAt = performance.now();
    expect(await worker.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(performance.now() - stoppedAt).toBeLessThan(3_000);
    expect(worker.events("stopped")).toHaveLength(1);
    await proxy.mend();
  });
});

describe("the worker process started while another process holds the migration lock", () => {
  it("answers meanwhile, and ends at once, and cleanly, on a stop", { timeout: 60_000 }, async () => {
    await proxy.mend();
    const other = new pgDriver.Client({ connectionString: pg.url });
    await other.connect();
    await other.query("BEGIN");
    // platform/migrate.ts's lock, as an engine migrating holds it.
    await other.query("SELECT pg_advisory_xact_lock(7243019188271345001)");
    try {
      const worker = startWorker("pg-start-locked");
      const keys = keyspace(`${prefix}pg-start-locked:`);
      const state = createState(makeParams());
      const id = "91000-0";
      const create: EngineInput = {
        type: "user_instruction",
        userId: "lin",
        requestId: "l1",
        instruction: { kind: "create_account" },
      };
      for (const o of apply(state, { id, message: create })) await redis.xadd(keys.output, "*", ...encodeFields(o));
      expect(await until(() => redis.lpop(keys.responseKey("lin", id)), 15_000, "lin's answer")).toContain(
        '"granted":true',
      );
      // Its preparation waits for the lock meanwhile.
      const waiting = () =>
        pg.db.query(
          `SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND NOT granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        );
      await until(async () => (await waiting()).rowCount === 1 || null, 15_000, "the worker waiting for the lock");
      expect(worker.events("migrations_done")).toEqual([]);
      const stoppedAt = performance.now();
      expect(await worker.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      expect(performance.now() - stoppedAt).toBeLessThan(3_000);
      expect(worker.events("stopped")).toHaveLength(1);
    } finally {
      await other.query("COMMIT");
      await other.end();
    }
  });
});
