/**
 * The engine process refuses to build a state that never existed: when its input log was trimmed past the newest
 * snapshot in its database (a Redis and a Postgres that do not belong together), it stops with exit code 2 and
 * says why, instead of replaying what is left. A snapshotter that crashes while the engine stops still lets it stop
 * cleanly: the lease released, exit code 1.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineInput } from "../contract/messages.ts";
import { keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { migrate } from "../platform/migrate.ts";
import { spawnComponent } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { SNAPSHOT_VERSION } from "./snapshot/codec.ts";
import { hashSnapshot } from "./snapshot/hash.ts";
import { PostgresSnapshotStore } from "./snapshot/postgres-store.ts";

const prefix = `test:engine-main:${randomUUID()}:`;
let pg: TestDatabase;
const redis = new Redis(TEST_REDIS_URL);

beforeAll(async () => {
  pg = await createTestDatabase();
});
afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

describe("engine process", () => {
  it("stops with exit 2 when its log was trimmed past every snapshot it can load", async () => {
    const keys = keyspace(prefix);
    for (const bid of ["100", "101", "102"]) {
      await redis.xadd(
        keys.input,
        "*",
        ...encodeFields({
          type: "price_update",
          market: "SOL_USDC_PERP",
          bid,
          ask: "103",
          exchangeTimeUs: "1",
          source: "sim",
        }),
      );
    }
    await redis.xtrim(keys.input, "MAXLEN", 1); // the first two entries are gone, and this database has no snapshot
    const engine = spawnComponent("engine", {
      REDIS_URL: TEST_REDIS_URL,
      DATABASE_URL: pg.url,
      KEY_PREFIX: prefix,
      SNAPSHOT_EVERY_MS: "1000",
      ENGINE_LEASE_TTL_MS: "2000",
    });
    expect(await engine.exited).toEqual({ code: 2, signal: null });
    expect(engine.raw.join("\n")).toContain("do not belong together");
    expect(engine.events("replay_start")).toEqual([]);
  });

  it("says the newest snapshot is unusable when that is why the log no longer reaches back to its state", async () => {
    const own = `${prefix}unusable:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    try {
      await migrate(db.db, db.log);
      // The only snapshot, saved whole, does not decode; nothing was saved before it.
      const garbage = new Uint8Array(randomBytes(64));
      await new PostgresSnapshotStore(db.db).save(garbage, {
        version: SNAPSHOT_VERSION,
        shard: 0,
        lastInputId: "1-0",
        stateHash: hashSnapshot(garbage),
        takenAt: new Date(0).toISOString(),
      });
      for (const userId of ["u1", "u2"]) {
        const input: EngineInput = {
          type: "user_instruction",
          userId,
          requestId: "r1",
          instruction: { kind: "create_account" },
        };
        await redis.xadd(keys.input, "*", ...encodeFields(input));
      }
      await redis.xtrim(keys.input, "MAXLEN", 1);
      const engine = spawnComponent("engine", {
        REDIS_URL: TEST_REDIS_URL,
        DATABASE_URL: db.url,
        KEY_PREFIX: own,
        ENGINE_LEASE_TTL_MS: "2000",
      });
      expect(await engine.exited).toEqual({ code: 2, signal: null });
      const said = engine.raw.join("\n");
      expect(said).toContain("the newest is unusable (restore_fallback says why)");
      expect(said).not.toContain("do not belong together");
      expect(engine.events("restore_fallback")[0]?.reason).toMatch(/does not decode/);
    } finally {
      await db.drop();
    }
  });

  it("stops as a standby through the same end as a leader: logged, exit 0, the leader's lease left alone", async () => {
    const own = `${prefix}standby:`;
    const keys = keyspace(own);
    const env = { REDIS_URL: TEST_REDIS_URL, DATABASE_URL: pg.url, KEY_PREFIX: own, ENGINE_LEASE_TTL_MS: "2000" };
    const leader = spawnComponent("engine", env);
    await leader.waitFor((line) => line.event === "engine_ready" && line.role === "leader", 30_000);
    const standby = spawnComponent("engine", env);
    try {
      await standby.waitFor((line) => line.event === "engine_ready" && line.role === "standby", 30_000);
      const held = await redis.get(keys.engineLease);
      expect(await standby.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      expect(standby.events("stopped")).toEqual([expect.objectContaining({ exitCode: 0 })]);
      expect(standby.events("lease_released")).toEqual([]);
      expect(await redis.get(keys.engineLease)).toBe(held);
    } finally {
      await Promise.all([leader.stop("SIGTERM"), standby.stop("SIGTERM")]);
    }
  });

  it("stops cleanly, exit 1 and its lease released, when its snapshotter crashes during a stop", async () => {
    const own = `${prefix}crash:`;
    const keys = keyspace(own);
    const engine = spawnComponent("engine", {
      REDIS_URL: TEST_REDIS_URL,
      DATABASE_URL: pg.url,
      KEY_PREFIX: own,
      SNAPSHOT_EVERY_MS: "3600000",
      ENGINE_LEASE_TTL_MS: "2000",
    });
    await engine.waitFor("engine_ready", 30_000);
    const id = await redis.xadd(
      keys.input,
      "*",
      ...encodeFields({
        type: "user_instruction",
        userId: "alice",
        requestId: "r1",
        instruction: { kind: "create_account" },
      }),
    );
    await until(async () => (await redis.get(keys.enginePublished)) === id);
    // The snapshotter thread restored its own copy (the second restore_fresh, after the main thread's): it is
    // running, so what fails below is its final snapshot.
    await engine.waitFor((line) => line.event === "restore_fresh" && line.role === "snapshotter", 30_000);
    // The final snapshot's write fails: the follower thread dies with it, after the stop began.
    await pg.db.query("ALTER TABLE engine_snapshots RENAME TO engine_snapshots_gone");
    try {
      expect(await engine.stop("SIGTERM")).toEqual({ code: 1, signal: null });
    } finally {
      await pg.db.query("ALTER TABLE engine_snapshots_gone RENAME TO engine_snapshots");
    }
    const events = engine.lines.map((line) => line.event);
    expect(events.indexOf("stopping")).toBeGreaterThan(-1);
    expect(events.indexOf("snapshotter_crashed")).toBeGreaterThan(events.indexOf("stopping"));
    expect(engine.events("lease_released")).toHaveLength(1);
    expect(engine.events("stopped")).toEqual([expect.objectContaining({ exitCode: 1 })]);
    expect(await redis.get(keys.engineLease)).toBeNull();
  });
});

async function until(probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
