/**
 * The worker process (`dist/worker.mjs`) started while its Postgres refuses connections, as after a machine's boot or
 * under a Postgres restarting: it waits for Postgres rather than exit into a crash loop, and a stop meanwhile ends it
 * at once. Postgres sits behind a proxy the test cuts and mends (platform/testing/redis-proxy.ts).
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apply } from "../engine/core/apply.ts";
import { makeParams } from "../engine/core/params.ts";
import { createState } from "../engine/core/state.ts";
import { keyspace } from "../contract/names.ts";
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
  it("waits for Postgres, logged once, then migrates and works", { timeout: 60_000 }, async () => {
    await proxy.cut();
    const worker = startWorker("pg-start");
    const unavailable = await worker.waitFor("postgres_unavailable", 30_000);
    expect(unavailable).toMatchObject({ level: "warn", code: "ECONNREFUSED" });
    expect(String(unavailable.error)).toContain("cannot reach Postgres");
    // Tried at 0, 1 and 3 s meanwhile, not exited
    await sleep(3_500);
    expect(worker.alive()).toBe(true);
    expect(worker.events("postgres_unavailable")).toHaveLength(1);
    expect(worker.events("crash")).toEqual([]);
    await proxy.mend();
    const recovered = await worker.waitFor("postgres_recovered", 15_000);
    expect(recovered.downMs).toBeGreaterThanOrEqual(3_500);
    await worker.waitFor("migrations_done");
    // It works: an account's creation is answered.
    const keys = keyspace(`${prefix}pg-start:`);
    for (const o of apply(createState(makeParams()), {
      id: "90-0",
      message: { type: "user_instruction", userId: "ted", requestId: "t1", instruction: { kind: "create_account" } },
    }))
      await redis.xadd(keys.output, "*", ...encodeFields(o));
    expect(await until(() => redis.lpop(keys.responseKey("ted", "90-0")), 15_000, "ted's answer")).toContain(
      '"granted":true',
    );
    expect(await worker.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("ends at once, and cleanly, on a stop while it waits", { timeout: 60_000 }, async () => {
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
