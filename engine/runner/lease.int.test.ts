import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import { scratchKeyspaces } from "../../platform/testing/redis-keys.ts";
import { startRedisProxy } from "../../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { EngineLease } from "./lease.ts";

const log = createLogger("lease-test", { level: "error" });
const scratch = scratchKeyspaces(TEST_REDIS_URL);
const { redis, freshKeys } = scratch;
afterAll(() => scratch.close());

describe("engine lease on real Redis", () => {
  it("is not taken while another engine holds it", async () => {
    const keys = freshKeys();
    await redis.set(keys.engineLease, "other:1", "PX", 60_000);
    const lease = new EngineLease(redis, keys, "a", 60_000, log);

    expect(await lease.tryAcquire()).toBe(false);

    expect(lease.value).toBeUndefined();
    expect(await redis.get(keys.engineLease)).toBe("other:1");
  });

  it("says when the lease it releases was no longer its own, and leaves it to its holder", async () => {
    const keys = freshKeys();
    const lease = new EngineLease(redis, keys, "a", 60_000, log);
    expect(await lease.tryAcquire()).toBe(true);
    await redis.set(keys.engineLease, "other:9", "PX", 60_000); // it lapsed, and another engine took it

    expect(await lease.release()).toBe("not_held");

    expect(await redis.get(keys.engineLease)).toBe("other:9");
    expect(await lease.release()).toBe("not_held"); // nothing held any more
  });

  it("is held when the reply to its SET is lost with the connection and ioredis resends it", async () => {
    const keys = freshKeys();
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const viaProxy = connectRedis(`redis://127.0.0.1:${proxy.port}`, log, "lease-test");
    try {
      const lease = new EngineLease(viaProxy, keys, "a", 60_000, log);
      const dropped = proxy.dropReplyTo(keys.engineLease);

      expect(await lease.tryAcquire()).toBe(true);

      await dropped;
      expect(lease.value).toMatch(/^a:\d+$/);
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
      // Being its own, it is released on a stop.
      expect(await lease.release()).toBe("released");
      expect(await redis.get(keys.engineLease)).toBeNull();
    } finally {
      viaProxy.disconnect();
      await proxy.close();
    }
  });
});
