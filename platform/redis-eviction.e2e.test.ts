/**
 * The engine and worker processes (`dist/*.mjs`) refuse a Redis that may evict keys: started against a redis-server
 * with `maxmemory-policy allkeys-lru` each exits 2 with one line naming the policy and the fix, before it reads or
 * writes anything (`npm start` stops the start when that comes before the process was ever ready, as for the engines
 * on a first start, and restarts it with the backoff after). Against the same Redis set to noeviction, both start.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configErrorMessage } from "./config.ts";
import { freePort, spawnComponent, startRedisServer, until, type Child } from "./testing/processes.ts";
import { createTestDatabase, type TestDatabase } from "./testing/test-database.ts";

let pg: TestDatabase;
let redis: Redis;
let redisUrl: string;
let dir: string;
const children: Child[] = [];

beforeAll(async () => {
  pg = await createTestDatabase();
  dir = mkdtempSync(join(tmpdir(), "redis-eviction-"));
  const port = await freePort();
  children.push(
    await startRedisServer(port, dir, ["--save", "", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]),
  );
  redisUrl = `redis://127.0.0.1:${port}`;
  redis = new Redis(redisUrl);
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.stop("SIGKILL")));
  redis.disconnect();
  await pg.drop();
  rmSync(dir, { recursive: true, force: true });
});

function start(component: "engine" | "worker"): Child {
  const child = spawnComponent(component, { REDIS_URL: redisUrl, DATABASE_URL: pg.url, KEY_PREFIX: "eviction:" });
  children.push(child);
  return child;
}

describe("an engine or worker on a Redis that may evict keys", () => {
  it("exits 2 and says which policy it found and how to fix it", { timeout: 60_000 }, async () => {
    const [engine, worker] = [start("engine"), start("worker")];
    for (const child of [engine, worker]) {
      expect(await child.exited).toEqual({ code: 2, signal: null });
      // Its stderr may still be on the way when the exit is reported.
      const message = await until(
        () => Promise.resolve(child.other.map(configErrorMessage).find((m) => m !== undefined)),
        5_000,
        `${child.name}'s configuration error`,
      );
      expect(message).toContain('maxmemory-policy must be noeviction, got "allkeys-lru"');
      expect(message).toContain("CONFIG SET maxmemory-policy noeviction");
    }
    expect(engine.events("engine_ready")).toEqual([]);
    // Nothing was taken: no lease, no consumer group, no log.
    expect(await redis.keys("eviction:*")).toEqual([]);
  });

  it("starts once the policy is noeviction", { timeout: 60_000 }, async () => {
    await redis.config("SET", "maxmemory-policy", "noeviction");
    const [engine, worker] = [start("engine"), start("worker")];
    await engine.waitFor("engine_ready", 30_000);
    await worker.waitFor("migrations_done", 30_000);
    for (const child of [engine, worker]) expect(await child.stop("SIGTERM")).toMatchObject({ code: 0 });
  });
});
