// Whether the log reaches back to a state just restored (checkRestored), against a real Redis log and real Postgres
// snapshots: a trim past the restored snapshot is a mismatch only when no newer snapshot was saved meanwhile.
import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineInput } from "../../contract/messages.ts";
import { keyspace } from "../../contract/names.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { createLogger } from "../../platform/log.ts";
import { migrate } from "../../platform/migrate.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { encodeSnapshot, SNAPSHOT_VERSION } from "../snapshot/codec.ts";
import { hashSnapshot } from "../snapshot/hash.ts";
import { PostgresSnapshotStore } from "../snapshot/postgres-store.ts";
import { applyRaw, type RawEntry } from "./log-stream.ts";
import { checkRestored, restoreNewest } from "./restore.ts";

const redis = new Redis(TEST_REDIS_URL);
const prefix = `test:restore:${randomUUID()}:`;
const log = createLogger("engine-test", { sink: () => undefined });
let pg: TestDatabase;

beforeAll(async () => {
  pg = await createTestDatabase();
  await migrate(pg.db, pg.log);
});
afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

/** A log of `count` accounts opened under a key prefix of its own, an empty snapshot store, and the restore. */
async function setUp(name: string, count: number) {
  await pg.db.query("TRUNCATE engine_snapshots, engine_snapshot_chunks");
  const keys = keyspace(`${prefix}${name}:`);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const input: EngineInput = {
      type: "user_instruction",
      userId: `u${i}`,
      requestId: "r1",
      instruction: { kind: "create_account" },
    };
    ids.push((await redis.xadd(keys.input, "*", ...encodeFields(input))) as string);
  }
  const entries = await redis.xrange(keys.input, "-", "+");
  const store = new PostgresSnapshotStore(pg.db);
  /** As the engine restores (main.ts): the newest snapshot, or the previous when the newest is unusable. */
  const restore = (meanwhile?: () => Promise<void>) =>
    restoreNewest(
      async () => {
        const loaded = await store.load();
        await meanwhile?.();
        return loaded;
      },
      makeParams(),
      log,
      () => store.load("previous"),
    );
  const check = (restored: Awaited<ReturnType<typeof restore>>) =>
    checkRestored(redis, keys.input, restored.state.lastInputId, restored.newest, () => store.latestHead());
  return { keys, entries, store, restore, check };
}

/** Saves the state that applying `entries` gives as the newest snapshot; returns its cursor. */
async function saveStateOf(store: PostgresSnapshotStore, entries: readonly RawEntry[]): Promise<string> {
  const state = createState(makeParams());
  for (const entry of entries) applyRaw(state, entry);
  const bytes = encodeSnapshot(state);
  const save = await store.save(bytes, {
    version: SNAPSHOT_VERSION,
    shard: state.params.shard,
    lastInputId: state.lastInputId,
    stateHash: hashSnapshot(bytes),
    takenAt: new Date().toISOString(),
  });
  expect(save.skipped).toBe(false);
  return state.lastInputId;
}

describe("checkRestored", () => {
  it("restores again, not a mismatch, when a follower saved twice and trimmed while the snapshot was restored", async () => {
    const { keys, entries, store, restore, check } = await setUp("raced", 6);
    const b = await saveStateOf(store, entries.slice(0, 2));
    // The restore has read the newest snapshot, b; before it checks the log, the leader's follower saves c and then d,
    // and trims below c (the snapshot before the one it just saved), past b.
    const first = await restore(async () => {
      const c = await saveStateOf(store, entries.slice(0, 4));
      await saveStateOf(store, entries.slice(0, 5));
      expect(await redis.xtrim(keys.input, "MINID", c)).toBe(3);
    });
    expect(first.state.lastInputId).toBe(b);
    expect(await check(first)).toBe("newer_snapshot");
    // The restore again starts from d, which the log reaches back to.
    const again = await restore();
    expect(again.state.lastInputId).toBe(entries[4]![0]);
    expect(await check(again)).toBe("reaches");
  });

  it("is a mismatch when the log was trimmed past the newest snapshot and none newer was saved", async () => {
    const { keys, entries, store, restore, check } = await setUp("mismatch", 4);
    // No snapshot yet: a log trimmed past its start cannot be replayed from a fresh state.
    await redis.xtrim(keys.input, "MINID", entries[1]![0]);
    const fresh = await restore();
    expect(fresh.newest).toBeNull();
    expect(await check(fresh)).toBe("mismatch");
    // A snapshot saved after that restore read the database: the trim may be its follower's, so it restores again.
    await saveStateOf(store, entries.slice(0, 2));
    expect(await check(fresh)).toBe("newer_snapshot");
    // It reaches the log; trimmed past it with nothing newer saved, it is a mismatch again.
    const restored = await restore();
    expect(await check(restored)).toBe("reaches");
    await redis.xtrim(keys.input, "MINID", entries[3]![0]);
    expect(await check(restored)).toBe("mismatch");
  });

  it("is a mismatch when a newer snapshot was saved that this log does not reach either (another deployment's)", async () => {
    const { keys, entries, store, restore, check } = await setUp("elsewhere", 4);
    await saveStateOf(store, entries.slice(0, 2));
    const restored = await restore();
    // This engine's log is lost (a Redis that lost its data, another KEY_PREFIX), while another deployment's engine
    // goes on saving to the same database, from a log of its own.
    await redis.del(keys.input);
    await store.save(new Uint8Array(8), {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: "9999999999999-0",
      stateHash: hashSnapshot(new Uint8Array(8)),
      takenAt: new Date().toISOString(),
    });
    expect((await store.latestHead())?.generation).not.toBe(restored.newest);
    expect(await check(restored)).toBe("mismatch");
  });

  it("past an unusable newest snapshot: a mismatch while that one is the newest, a restore again once one is saved", async () => {
    const { keys, entries, store, restore, check } = await setUp("unusable", 6);
    const b = await saveStateOf(store, entries.slice(0, 2));
    // The newest, saved whole, does not decode: the restore falls back on b.
    const garbage = new Uint8Array(randomBytes(64));
    await store.save(garbage, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: entries[3]![0],
      stateHash: hashSnapshot(garbage),
      takenAt: new Date().toISOString(),
    });
    await redis.xtrim(keys.input, "MINID", entries[3]![0]);
    const restored = await restore();
    expect(restored.state.lastInputId).toBe(b);
    expect(restored.newest).toBe((await store.latestHead())?.generation);
    expect(await check(restored)).toBe("mismatch");
    await saveStateOf(store, entries.slice(0, 5));
    expect(await check(restored)).toBe("newer_snapshot");
  });
});
