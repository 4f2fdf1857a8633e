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

  it("sends no renewal while the main thread's publishes extend the lease, and reports the lease once it is lost", async () => {
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    const keeper = startLeaseKeeper({
      redisUrl: TEST_REDIS_URL,
      prefix,
      value: lease.value!,
      ttlMs: TTL_MS,
      stallMs: 2_000,
    });
    let lost = false;
    void keeper.lost.then(() => (lost = true));
    try {
      const meanwhile = setInterval(() => void lease.renew(), TTL_MS / 5);
      await keeper.renewing.finally(() => clearInterval(meanwhile));
      expect(keeper.active).toBe(true);
      // Renewed by the thread alone (the main thread idle, not blocked) past several TTLs.
      await new Promise((resolve) => setTimeout(resolve, 3 * TTL_MS));
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
      // Told of extensions that, here, never reach Redis: the thread counts on them and sends nothing, so the lease
      // lapses. (A real publish extends it in the same script that writes the outputs.)
      const extending = setInterval(() => keeper.extended(Date.now()), TTL_MS / 10);
      try {
        const until = Date.now() + 5 * TTL_MS;
        while ((await redis.get(keys.engineLease)) !== null && Date.now() < until) await sleep(20);
        expect(await redis.get(keys.engineLease)).toBeNull();
        expect(lost).toBe(false);
      } finally {
        clearInterval(extending);
      }
      // Its next renewal finds the lease gone: it reports it and stops renewing.
      await Promise.race([keeper.lost, new Promise((resolve) => setTimeout(resolve, 3 * TTL_MS))]);
      expect(lost).toBe(true);
      expect(keeper.active).toBe(false);
      await redis.set(keys.engineLease, lease.value!, "PX", TTL_MS);
      await new Promise((resolve) => setTimeout(resolve, 3 * TTL_MS));
      expect(await redis.get(keys.engineLease)).toBeNull();
    } finally {
      await keeper.stop();
    }
  }, 30_000);
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
