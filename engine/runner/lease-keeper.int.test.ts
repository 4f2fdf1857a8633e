import { randomUUID } from "node:crypto";
import { Worker } from "node:worker_threads";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it, vi } from "vitest";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { until } from "../../platform/testing/processes.ts";
import { startRedisProxy } from "../../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { EngineLease } from "./lease.ts";
import { startLeaseKeeper, type LeaseKeeper } from "./lease-keeper.ts";

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
    const keeper = await keeperRenewing(lease, 2_000);
    try {
      block(3 * TTL_MS);
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
      // Stuck past stallMs: the keeper stops renewing, the lease lapses, a standby may lead.
      block(2_000 + 2 * TTL_MS);
      expect(await redis.get(keys.engineLease)).toBeNull();
    } finally {
      await keeper.stop();
    }
  }, 30_000);

  it("lets the lease lapse when the main thread is alive but reports no progress for stallMs (a stuck read)", async () => {
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    const keeper = await keeperRenewing(lease, 1_500, false);
    try {
      // Its event loop is free (it sleeps, it is not blocked); only its progress stopped, once reported at the start.
      await until(
        async () => ((await redis.get(keys.engineLease)) === null ? true : undefined),
        1_500 + 10 * TTL_MS,
        "the lease to lapse",
      );
    } finally {
      await keeper.stop();
    }
  }, 30_000);

  it("stops renewing once the leader reports no progress for stuckMs, not stallMs after that", async () => {
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    // A long stall limit, a short stuck one: its event loop runs, only its progress stopped.
    const keeper = await keeperRenewing(lease, 10_000, false, TEST_REDIS_URL, 1_000);
    try {
      // The leader gives the lease up as lost a TTL past its stuck limit (leader.ts): by then it must have lapsed.
      const started = performance.now();
      await until(
        async () => ((await redis.get(keys.engineLease)) === null ? true : undefined),
        1_000 + 2 * TTL_MS,
        "the lease to lapse",
      );
      expect(performance.now() - started).toBeLessThan(1_000 + 2 * TTL_MS);
    } finally {
      await keeper.stop();
    }
  }, 30_000);

  it("lets the lease lapse for a stuck main thread although its last heartbeat reads as future on the wall clock", async () => {
    // The main thread's wall clock a minute ahead of the keeper thread's: as the keeper sees it once the wall clock
    // stepped back a minute after the last heartbeat. Silence is judged on the clock both threads share, not this one.
    const realNow = Date.now.bind(Date);
    const ahead = vi.spyOn(Date, "now").mockImplementation(() => realNow() + 60_000);
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    try {
      const keeper = await keeperRenewing(lease, 1_500, false);
      try {
        await until(
          async () => ((await redis.get(keys.engineLease)) === null ? true : undefined),
          1_500 + 10 * TTL_MS,
          "the lease to lapse",
        );
      } finally {
        await keeper.stop();
      }
    } finally {
      ahead.mockRestore();
    }
  }, 30_000);

  it("sends no renewal while the main thread's publishes extend the lease, and reports the lease once it is lost", async () => {
    // A longer lease here: the test's own timer must beat the thread's renewal period, even on a loaded machine.
    const ttlMs = 1_500;
    const lease = new EngineLease(redis, keys, "leader", ttlMs, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    const sent = Date.now();
    const keeper = await keeperRenewing(lease, 10_000);
    let lost = false;
    void keeper.lost.then(() => (lost = true));
    try {
      // Its renewal is recorded, with when it was sent.
      expect(keeper.extendedAt()).toBeGreaterThanOrEqual(sent);
      expect(keeper.extendedAt()).toBeLessThanOrEqual(Date.now());
      // Renewed by the thread alone (the main thread idle, not blocked) past several TTLs.
      await sleep(2 * ttlMs);
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
      // Told of extensions that, here, never reach Redis: the thread counts on them and sends nothing, so the lease
      // lapses. (A real publish extends it in the same script that writes the outputs.)
      const told = Date.now();
      const extending = setInterval(() => keeper.extended(Date.now()), 10);
      try {
        const until = Date.now() + 3 * ttlMs;
        while ((await redis.get(keys.engineLease)) !== null && Date.now() < until) await sleep(20);
        expect(await redis.get(keys.engineLease)).toBeNull();
        expect(lost).toBe(false);
        expect(keeper.extendedAt()).toBeGreaterThanOrEqual(told);
      } finally {
        clearInterval(extending);
      }
      // Its next renewal finds the lease gone: it reports it and stops renewing.
      await Promise.race([keeper.lost, sleep(2 * ttlMs)]);
      expect(lost).toBe(true);
      await redis.set(keys.engineLease, lease.value!, "PX", ttlMs);
      await sleep(2 * ttlMs);
      expect(await redis.get(keys.engineLease)).toBeNull();
    } finally {
      await keeper.stop();
    }
  }, 30_000);

  it("sends one renewal at a time: one its connection holds unanswered is not joined by more", async () => {
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const keeper = await keeperRenewing(lease, 10_000, true, `redis://127.0.0.1:${proxy.port}`);
    try {
      proxy.freeze(); // a Redis that holds what it gets: the next renewal goes unanswered
      await sleep(8 * (TTL_MS / 5));
      expect(proxy.held()).toBe(1);
    } finally {
      await keeper.stop();
      await proxy.close();
    }
  }, 30_000);

  it("renews although the last publish it was told of is in the future (the wall clock stepped back)", async () => {
    const lease = new EngineLease(redis, keys, "leader", TTL_MS, log);
    await redis.del(keys.engineLease);
    expect(await lease.tryAcquire()).toBe(true);
    const keeper = await keeperRenewing(lease, 10_000);
    try {
      keeper.extended(Date.now() + 60_000);
      await sleep(3 * TTL_MS);
      expect(await redis.get(keys.engineLease)).toBe(lease.value);
    } finally {
      await keeper.stop();
    }
  }, 30_000);

  it("logs lease_keeper_failed, at error, when its thread dies: the leader is unguarded against pauses from then on", async () => {
    const logged: string[] = [];
    const watched = createLogger("engine-test", { level: "info", sink: (line) => logged.push(line) });
    const data = { redisUrl: TEST_REDIS_URL, prefix, value: "leader:1", ttlMs: TTL_MS, stallMs: 2_000 };
    // A thread that throws as it starts, as one whose bundle fails to load or that hits a bug does.
    const failing = () => new Worker("throw new Error('keeper thread broke')", { eval: true });
    const keeper = startLeaseKeeper(data, watched, data.stallMs, failing);
    try {
      const line = await until(
        () => Promise.resolve(logged.find((l) => l.includes('"lease_keeper_failed"'))),
        5_000,
        "the failure logged",
      );
      expect(JSON.parse(line)).toMatchObject({ level: "error", event: "lease_keeper_failed" });
      expect(line).toContain("keeper thread broke");
    } finally {
      await keeper.stop();
    }
  });
});

/**
 * A keeper for `lease`, once it has renewed it; until then (from source, through tsx, the thread takes longer than a
 * TTL to start) renewed here, as the leader's own timer does. The main thread reports progress as a leader reading
 * the log does (`progress`: false for one that is alive but stuck from then on).
 */
async function keeperRenewing(
  lease: EngineLease,
  stallMs: number,
  progress = true,
  redisUrl = TEST_REDIS_URL,
  stuckMs = stallMs,
): Promise<LeaseKeeper> {
  const keeper = startLeaseKeeper(
    {
      redisUrl,
      prefix,
      value: lease.value!,
      ttlMs: lease.ttlMs,
      stallMs,
    },
    log,
    stuckMs,
  );
  keeper.progressed(performance.now());
  // Until its first renewal, progress as a leader reading the log: the thread may take longer to start than stuckMs.
  const reading = setInterval(() => keeper.progressed(performance.now()), lease.ttlMs / 10);
  const meanwhile = setInterval(() => void lease.renew(), lease.ttlMs / 5);
  await keeper.renewing.finally(() => {
    clearInterval(meanwhile);
    if (!progress) clearInterval(reading);
  });
  return {
    ...keeper,
    stop: () => {
      clearInterval(reading);
      return keeper.stop();
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
