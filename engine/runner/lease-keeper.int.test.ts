import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { EngineLease } from "./lease.ts";
import { startLeaseKeeper } from "./lease-keeper.ts";

const redis = new Redis(TEST_REDIS_URL);
const prefix = `test:${randomUUID()}:`;
const keys = keyspace(prefix);
const log = createLogger("engine-test", { level: "error" });
const TTL_MS = 400;

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
});

/** Keeps this thread busy, as a long GC pause or a starved CPU would. */
function block(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

describe("the lease keeper thread", () => {
  it("keeps the lease through a main-thread pause of several TTLs, and lets it lapse once the pause passes stallMs", async () => {
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    // Control: with nothing but the main thread to renew it, such a pause loses the lease.
    expect(await lease.tryAcquire()).toBe(true);
    block(3 * TTL_MS);
    expect(await redis.get(keys.engineLease)).toBeNull();

    expect(await lease.tryAcquire()).toBe(true);
    const keeper = startLeaseKeeper({
      redisUrl: TEST_REDIS_URL,
      prefix,
      value: lease.value!,
      ttlMs: TTL_MS,
      stallMs: 2_000,
    });
    try {
      // Until the thread is up (from source, through tsx, it takes longer than a TTL), renewed here, as the leader's
      // own timer does.
      const meanwhile = setInterval(() => void lease.renew(), TTL_MS / 5);
      await keeper.renewing.finally(() => clearInterval(meanwhile));
      block(3 * TTL_MS);
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
      // Stuck past stallMs: the keeper stops renewing, the lease lapses, a standby may lead.
      block(2_000 + 2 * TTL_MS);
      expect(await redis.get(keys.engineLease)).toBeNull();
    } finally {
      await keeper.stop();
    }
  }, 30_000);
});
