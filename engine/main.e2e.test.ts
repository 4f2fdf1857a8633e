/**
 * The engine process refuses to build a state that never existed: when its input log was trimmed past the newest
 * snapshot in its database (a Redis and a Postgres that do not belong together), or is missing while that snapshot
 * was taken from one, or when neither stored snapshot can be restored, it stops with exit code 2 and says why,
 * instead of replaying what is left. It does not mistake a deleted entry (XDEL) for such a gap, and its snapshotter,
 * finding the log trimmed past the snapshot it restored, restores again rather than stop the engine. A snapshotter
 * that crashes while the engine stops still lets it stop cleanly: the lease released, exit code 1; a stop while a
 * leader restores again ends it cleanly too, and a leader stopped after it lost its lease unnoticed logs no handover.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineInput } from "../contract/messages.ts";
import { keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { migrate } from "../platform/migrate.ts";
import { connectPostgres, type Postgres } from "../platform/postgres.ts";
import { spawnComponent, type Child } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { makeParams } from "./core/params.ts";
import { createState } from "./core/state.ts";
import { applyRaw, type RawEntry } from "./runner/log-stream.ts";
import { encodeSnapshot, SNAPSHOT_VERSION } from "./snapshot/codec.ts";
import { hashSnapshot } from "./snapshot/hash.ts";
import { PostgresSnapshotStore } from "./snapshot/postgres-store.ts";

// Short enough that each test's own prefix below stays within KEY_PREFIX's 64 characters.
const prefix = `test:engine:${randomUUID()}:`;
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

/** An engine process on `db` and the keyspace `own`, alone (no standby, no other engine of this file). */
const engineOn = (db: TestDatabase, own: string) =>
  spawnComponent("engine", {
    REDIS_URL: TEST_REDIS_URL,
    DATABASE_URL: db.url,
    KEY_PREFIX: own,
    ENGINE_LEASE_TTL_MS: "2000",
  });

/** Saves a snapshot at `lastInputId` whole (its hash matches) that does not decode, as a newer release's would not. */
async function saveUndecodable(db: TestDatabase, lastInputId: string): Promise<void> {
  const garbage = new Uint8Array(randomBytes(64));
  await new PostgresSnapshotStore(db.db).save(garbage, {
    version: SNAPSHOT_VERSION,
    shard: 0,
    lastInputId,
    stateHash: hashSnapshot(garbage),
    takenAt: new Date(0).toISOString(),
  });
}

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

  it("stops with exit 2, naming both stores, on a Redis without the log its database's snapshot was taken from", async () => {
    const own = `${prefix}no-log:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    try {
      await migrate(db.db, db.log);
      // A snapshot taken from a log, which is then lost (a Redis that lost its data, or another one).
      const entries = await openAccounts(keys, 2);
      const savedAt = await saveStateOf(db.db, entries);
      await redis.del(keys.input);
      const engine = engineOn(db, own);
      try {
        // It must not lead (and answer orders) from a snapshot whose log it cannot reach.
        const ready = engine.waitFor("engine_ready", 30_000).then(() => "ready" as const);
        ready.catch(() => undefined);
        expect(await Promise.race([engine.exited, ready])).toEqual({ code: 2, signal: null });
        const said = engine.raw.join("\n");
        expect(said).toContain(`${keys.input} is not in this Redis (REDIS_URL ${new URL(TEST_REDIS_URL).host})`);
        expect(said).toContain(`this Postgres (DATABASE_URL ${db.name} at `);
        expect(said).toContain(`a snapshot taken from it, at ${savedAt}`);
        expect(said).toContain("do not belong together");
        expect(engine.events("replay_start")).toEqual([]);
        expect(await redis.exists(keys.input)).toBe(0);
      } finally {
        await engine.stop("SIGKILL");
      }
    } finally {
      await db.drop();
    }
  });

  it("says the newest snapshot is unusable when that is why the log no longer reaches back to its state", async () => {
    const own = `${prefix}unusable:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    try {
      await migrate(db.db, db.log);
      // The only snapshot, saved whole, does not decode; nothing was saved before it.
      await saveUndecodable(db, "1-0");
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
      const engine = engineOn(db, own);
      expect(await engine.exited).toEqual({ code: 2, signal: null });
      const said = engine.raw.join("\n");
      expect(said).toContain("the newest is unusable (restore_fallback says why)");
      expect(said).not.toContain("do not belong together");
      expect(engine.events("restore_fallback")[0]?.reason).toMatch(/does not decode/);
    } finally {
      await db.drop();
    }
  });

  it("stops with exit 2, naming both generations, when neither stored snapshot can be restored", async () => {
    const own = `${prefix}both-unusable:`;
    const db = await createTestDatabase();
    try {
      await migrate(db.db, db.log);
      // Two snapshots, each saved whole, neither of which decodes (as a newer release's would not).
      for (const lastInputId of ["1-0", "2-0"]) await saveUndecodable(db, lastInputId);
      const engine = engineOn(db, own);
      expect(await engine.exited).toEqual({ code: 2, signal: null });
      const said = engine.raw.join("\n");
      expect(said).toContain("configuration error: no snapshot in this Postgres");
      expect(said).toMatch(/the latest \(generation 2\): snapshot generation 2 matches its head but does not decode/);
      expect(said).toMatch(/the one before it \(generation 1\): snapshot generation 1 matches its head but does not/);
      expect(said).toContain('"When both stored snapshots are unusable"');
      expect(engine.events("restore_fallback")).toHaveLength(1);
      expect(engine.events("replay_start")).toEqual([]);
    } finally {
      await db.drop();
    }
  });

  it("carries on, leader and standby, when the entry its latest snapshot stands on is deleted (XDEL)", async () => {
    const own = `${prefix}xdel:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    const engines: Child[] = [];
    try {
      const env = { REDIS_URL: TEST_REDIS_URL, DATABASE_URL: db.url, KEY_PREFIX: own, SNAPSHOT_EVERY_MS: "300" };
      engines.push(spawnComponent("engine", env, { name: "engine-a" }));
      const [a] = engines as [Child];
      await a.waitFor((line) => line.event === "engine_ready" && line.role === "leader", 30_000);
      engines.push(spawnComponent("engine", env, { name: "engine-b" }));
      const b = engines[1]!;
      await b.waitFor((line) => line.event === "engine_ready" && line.role === "standby", 30_000);
      const entries = await openAccounts(keys, 5);
      const newest = entries.at(-1)![0];
      // Idle: the snapshot stands on the newest entry, and the standby's cursor too.
      await a.waitFor((line) => line.event === "snapshot_saved" && line.lastInputId === newest, 10_000);
      await redis.xdel(keys.input, newest);
      const [next] = await openAccounts(keys, 1, 5);
      await a.waitFor((line) => line.event === "snapshot_saved" && line.lastInputId === next![0], 10_000);
      await new Promise((r) => setTimeout(r, 500));
      for (const engine of engines) {
        expect(engine.alive()).toBe(true);
        expect(engine.events("snapshotter_crashed")).toEqual([]);
      }
      expect(a.events("restore_again")).toEqual([]);
      // The standby restores once at most: when the snapshot at the new entry trimmed the log below its cursor
      // before it read that entry, the first entry left is past its cursor, which a trim past it looks like too.
      expect(b.events("restore_again").length).toBeLessThanOrEqual(1);
      // A standby restarted now restores the newest snapshot and follows.
      await b.stop("SIGTERM");
      engines.push(spawnComponent("engine", env, { name: "engine-c" }));
      await engines[2]!.waitFor((line) => line.event === "engine_ready" && line.role === "standby", 30_000);
      expect(await a.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    } finally {
      await Promise.all(engines.map((e) => e.stop("SIGKILL")));
      await db.drop();
    }
  });

  it("keeps leading when its snapshotter finds the log trimmed past the snapshot it restored: that one restores again", async () => {
    const own = `${prefix}gap:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    const engines: Child[] = [];
    try {
      await migrate(db.db, db.log);
      const entries = await openAccounts(keys, 6);
      const restoredAt = await saveStateOf(db.db, entries.slice(0, 2));
      // No snapshot of their own in this test's time: only the ones it saves.
      const env = { REDIS_URL: TEST_REDIS_URL, DATABASE_URL: db.url, KEY_PREFIX: own, SNAPSHOT_EVERY_MS: "3600000" };
      engines.push(spawnComponent("engine", env, { name: "engine-a" }));
      await engines[0]!.waitFor((line) => line.event === "engine_ready" && line.role === "leader", 30_000);
      engines.push(spawnComponent("engine", env, { name: "engine-b" }));
      const b = engines[1]!;
      await b.waitFor((line) => line.event === "engine_ready" && line.role === "standby", 30_000);
      // The leader dies; before the standby takes over, the log loses what is before entry 5 (the standby, at 6,
      // needs none of it), though the newest snapshot is still at 2.
      await engines[0]!.stop("SIGKILL");
      expect(await redis.xtrim(keys.input, "MINID", entries[4]![0])).toBe(4);
      await b.waitFor((line) => line.event === "engine_ready" && line.role === "leader", 10_000);
      const again = await b.waitFor((line) => line.event === "restore_again" && line.role === "snapshotter", 10_000);
      expect(again.lastInputId).toBe(restoredAt);
      // A snapshot the log reaches back to, as a follower's save would leave it: the next restore finds it.
      const savedAt = await saveStateOf(db.db, entries.slice(0, 5));
      await b.waitFor(
        (line) => line.event === "restore_snapshot" && line.role === "snapshotter" && line.lastInputId === savedAt,
      );
      const [later] = await openAccounts(keys, 1, 6);
      await until(async () => (await redis.get(keys.enginePublished)) === later![0]);
      expect(await b.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      expect(b.events("snapshotter_crashed")).toEqual([]);
      // Its final snapshot, from the state it restored again, is the log's end.
      expect((await new PostgresSnapshotStore(db.db).load())?.head.lastInputId).toBe(later![0]);
    } finally {
      await Promise.all(engines.map((e) => e.stop("SIGKILL")));
      await db.drop();
    }
  });

  it("restores again, as a standby, when a newer snapshot was saved and the log trimmed while it restored", async () => {
    const own = `${prefix}restore-race:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    const locker = await connectPostgres(db.url, db.log, { maxConnections: 1 });
    let unlock = () => {};
    let locked: Promise<void> | undefined;
    try {
      await migrate(db.db, db.log);
      const entries = await openAccounts(keys, 6);
      const first = await saveStateOf(db.db, entries.slice(0, 2));
      // Another engine leads (played here): it holds the lease and has published through the snapshot's cursor.
      await redis.set(keys.engineLease, "other-leader:1", "PX", 120_000);
      await redis.set(keys.enginePublished, first);
      const engine = spawnComponent("engine", {
        REDIS_URL: TEST_REDIS_URL,
        DATABASE_URL: db.url,
        KEY_PREFIX: own,
        SNAPSHOT_EVERY_MS: "3600000",
      });
      try {
        await engine.waitFor((line) => line.event === "engine_ready" && line.role === "standby", 30_000);
        // The leader's follower saves at entry 4; the chunks are locked, so the standby's restore after the gap below
        // reads that head and then waits. Meanwhile the follower saves at entry 6 and trims below it, past entry 4.
        await saveStateOf(db.db, entries.slice(0, 4));
        let isLocked = () => {};
        const lockTaken = new Promise<void>((resolve) => (isLocked = resolve));
        const released = new Promise<void>((resolve) => (unlock = resolve));
        locked = locker.transaction(async (tx) => {
          await tx.query("LOCK TABLE engine_snapshot_chunks IN ACCESS EXCLUSIVE MODE");
          isLocked();
          await released;
          const inLock = { transaction: (work: (q: typeof tx) => Promise<unknown>) => work(tx) } as unknown as Postgres;
          await redis.xtrim(keys.input, "MINID", await saveStateOf(inLock, entries));
        });
        await lockTaken;
        // Trimmed past the standby's cursor (the follower's save at entry 4), and published to the end: a gap.
        await redis.xtrim(keys.input, "MINID", entries[3]![0]);
        await redis.set(keys.enginePublished, entries[5]![0]);
        await engine.waitFor("restore_again", 10_000);
        // Its load waits on the lock once one of its statements does.
        await until(async () => {
          const waiting = await db.db.query<{ n: string }>(
            "SELECT count(*)::text AS n FROM pg_stat_activity " +
              "WHERE wait_event_type = 'Lock' AND query LIKE '%octet_length%'",
          );
          return waiting.rows[0]!.n !== "0";
        });
        unlock();
        await locked;
        // It restored the snapshot at entry 4, found the log trimmed past it and the newest moved on: it restores that
        // one and follows, rather than call this Redis and this Postgres a mismatch.
        await engine.waitFor(
          (line) => line.event === "engine_ready" && line.role === "standby" && line.lastInputId === entries[5]![0],
          20_000,
        );
        expect(engine.events("restore_again")).toHaveLength(2);
        expect(engine.raw.join("\n")).not.toContain("do not belong together");
      } finally {
        await engine.stop("SIGKILL");
      }
    } finally {
      unlock();
      await locked?.catch(() => undefined);
      await locker.close();
      await db.drop();
    }
  });

  it("stops cleanly, exit 0, when asked while it restores again after the log was trimmed past its snapshot", async () => {
    const own = `${prefix}restore-again:`;
    const keys = keyspace(own);
    const db = await createTestDatabase();
    const locker = await connectPostgres(db.url, db.log, { maxConnections: 1 });
    let unlock = () => {};
    let locked: Promise<void> | undefined;
    try {
      await migrate(db.db, db.log);
      const entries = await openAccounts(keys, 4);
      await saveStateOf(db.db, entries.slice(0, 2));
      const engine = spawnComponent("engine", {
        REDIS_URL: TEST_REDIS_URL,
        DATABASE_URL: db.url,
        KEY_PREFIX: own,
        SNAPSHOT_EVERY_MS: "3600000",
        // It waits two polls before it takes a free lease: the window in which the log is trimmed below.
        ENGINE_STANDBY_POLL_MS: "1000",
      });
      try {
        await engine.waitFor((line) => line.event === "restore_snapshot" && line.role === undefined, 30_000);
        // While it waits: a newer snapshot, the log trimmed past the one it restored, and the snapshot table locked,
        // so that the restore it is about to start again waits.
        await saveStateOf(db.db, entries);
        await redis.xtrim(keys.input, "MINID", entries[3]![0]);
        let isLocked = () => {};
        const lockTaken = new Promise<void>((resolve) => (isLocked = resolve));
        locked = locker.transaction(async (tx) => {
          await tx.query("LOCK TABLE engine_snapshots IN ACCESS EXCLUSIVE MODE");
          isLocked();
          await new Promise<void>((resolve) => (unlock = resolve));
        });
        await lockTaken;
        await engine.waitFor("restore_again", 10_000);
        engine.proc.kill("SIGTERM");
        await engine.waitFor("stopping");
        unlock();
        expect(await engine.exited).toEqual({ code: 0, signal: null });
        expect(engine.raw.join("\n")).not.toContain("lost the engine lease");
        expect(engine.events("stopped")).toEqual([expect.objectContaining({ exitCode: 0 })]);
      } finally {
        await engine.stop("SIGKILL");
      }
    } finally {
      unlock();
      await locked;
      await locker.close();
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

  it("logs no handover when, stopping, it finds its lease already another engine's: it had nothing to hand over", async () => {
    const own = `${prefix}deposed:`;
    const keys = keyspace(own);
    // A long TTL: its keeper renews every 12 s, so it does not notice below that the lease moved on before it stops.
    const env = { REDIS_URL: TEST_REDIS_URL, DATABASE_URL: pg.url, KEY_PREFIX: own, ENGINE_LEASE_TTL_MS: "60000" };
    const engine = spawnComponent("engine", env);
    try {
      await engine.waitFor((line) => line.event === "engine_ready" && line.role === "leader", 30_000);
      await redis.set(keys.engineLease, "other:99", "PX", 60_000); // deposed, as a fenced trim would show it
      expect(await engine.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      expect(engine.events("handover")).toEqual([]);
      expect(engine.events("lease_released")).toEqual([]);
      expect(await redis.get(keys.engineLease)).toBe("other:99");
    } finally {
      await engine.stop("SIGKILL");
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

/** Saves the state that applying `entries` gives as the newest snapshot (past the saved one); returns its cursor. */
async function saveStateOf(db: Postgres, entries: readonly RawEntry[]): Promise<string> {
  const state = createState(makeParams());
  for (const entry of entries) applyRaw(state, entry);
  const bytes = encodeSnapshot(state);
  await new PostgresSnapshotStore(db).save(bytes, {
    version: SNAPSHOT_VERSION,
    shard: state.params.shard,
    lastInputId: state.lastInputId,
    stateHash: hashSnapshot(bytes),
    takenAt: new Date().toISOString(),
  });
  return state.lastInputId;
}

/** `count` accounts opened in the log of `keys`; the entries, as read back. */
async function openAccounts(keys: ReturnType<typeof keyspace>, count: number, from = 0): Promise<RawEntry[]> {
  const ids: string[] = [];
  for (let i = from; i < from + count; i++) {
    const input: EngineInput = {
      type: "user_instruction",
      userId: `u${i}`,
      requestId: "r1",
      instruction: { kind: "create_account" },
    };
    ids.push((await redis.xadd(keys.input, "*", ...encodeFields(input))) as string);
  }
  return redis.xrange(keys.input, ids[0]!, ids.at(-1)!);
}

async function until(probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
