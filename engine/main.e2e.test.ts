/**
 * The engine process refuses to build a state that never existed: when its input log was trimmed past the newest
 * snapshot in its database (a Redis and a Postgres that do not belong together), it stops with exit code 2 and
 * says why, instead of replaying what is left.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { spawnComponent } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";

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
});
