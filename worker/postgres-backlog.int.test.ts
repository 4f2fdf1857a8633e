/**
 * The Postgres backlog's scripts on real Redis: what each leaves behind when Redis refuses part of it, and what the
 * backlog's count reads.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { catchUp, oweAndAcknowledge, owedEntries, settleOwed } from "./postgres-backlog.ts";
import { ensureGroup } from "./worker.ts";

let redis: Redis;
let prefix: string;

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
  prefix = `test:${randomUUID()}:`;
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
});

/** A keyspace whose engine:output holds `ids`, all delivered to one worker and pending. */
async function pendingEntries(name: string, ids: readonly string[]) {
  const local = keyspace(`${prefix}${name}:`);
  for (const id of ids) await redis.xadd(local.output, id, "type", "quote_updated", "body", "{}");
  await ensureGroup(redis, local);
  await redis.xreadgroup("GROUP", local.workerGroup, "a", "STREAMS", local.output, ">");
  return local;
}

const pendingCount = async (local: ReturnType<typeof keyspace>) =>
  ((await redis.xpending(local.output, local.workerGroup)) as [number])[0];

describe("owing a batch", () => {
  it("leaves its entries pending when the backlog refuses the range", async () => {
    const local = await pendingEntries("owe-refused", ["5-1", "5-2"]);
    // Stands in for any refusal of the backlog's write.
    await redis.set(local.postgresBacklog, "not a sorted set");
    await expect(oweAndAcknowledge(redis, local, ["5-1", "5-2"])).rejects.toThrow("WRONGTYPE");
    expect(await pendingCount(local)).toBe(2);
  });

  it("takes back a range it added when nothing was pending, and keeps one already owed", async () => {
    const local = await pendingEntries("owe-none", ["5-1", "5-2"]);
    await redis.xack(local.output, local.workerGroup, "5-1", "5-2");
    expect(await oweAndAcknowledge(redis, local, ["5-1", "5-2"])).toBe(0);
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
    // The same range owed already (another worker owed the batch first): still owed.
    await redis.zadd(local.postgresBacklog, 5, "5-1 5-2 2");
    expect(await oweAndAcknowledge(redis, local, ["5-1", "5-2"])).toBe(0);
    expect(await redis.zrange(local.postgresBacklog, "0", "-1")).toEqual(["5-1 5-2 2"]);
  });
});

describe("the backlog's count", () => {
  it("is kept by the scripts that owe and settle ranges, not read from the ranges", async () => {
    const local = await pendingEntries("count", ["6-1", "6-2", "6-3", "6-4", "6-5"]);
    expect(await owedEntries(redis, local)).toBe(0);
    await oweAndAcknowledge(redis, local, ["6-1", "6-2"]);
    await oweAndAcknowledge(redis, local, ["6-3", "6-4", "6-5"]);
    expect(await redis.get(local.postgresBacklogEntries)).toBe("5");
    expect(await owedEntries(redis, local)).toBe(5);
    // Two lanes that wrote the same range settle it both: counted off once.
    await settleOwed(redis, local, ["6-1 6-2 2"]);
    await settleOwed(redis, local, ["6-1 6-2 2"]);
    expect(await owedEntries(redis, local)).toBe(3);
    await catchUp({
      redis,
      keys: local,
      pageSize: 10,
      bound: (work) => work,
      write: () => Promise.resolve(),
      stop: new AbortController().signal,
    });
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
    expect(await owedEntries(redis, local)).toBe(0);
    // Nothing owed, nothing kept.
    expect(await redis.exists(local.postgresBacklogEntries)).toBe(0);
  });

  it("is counted from the ranges once when ranges are owed without it", async () => {
    const local = keyspace(`${prefix}count-missing:`);
    await redis.zadd(local.postgresBacklog, 7, "7-1 7-4 4", 7, "7-5 7-6 2");
    expect(await owedEntries(redis, local)).toBe(6);
    expect(await redis.get(local.postgresBacklogEntries)).toBe("6");
    await settleOwed(redis, local, ["7-5 7-6 2"]);
    expect(await owedEntries(redis, local)).toBe(4);
  });
});
