// The no-engine warning on real Redis: with no engine lease under the prefix it warns once after its grace, not
// again while the absence lasts; an engine that takes the lease silences it, and one that leaves starts the wait over.
// It looks only while the connection is ready: one that never is says nothing, and once Redis is back the grace
// counts from then (the engine needs it to take the lease again), not from before the outage.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { startRedisProxy } from "../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { watchEngine } from "./engine-watch.ts";
import { captureLog, closedPort, waitFor } from "./test-support.ts";

const redis = new Redis(TEST_REDIS_URL);
const keys = keyspace(`test:${randomUUID()}:`);
afterAll(async () => {
  await redis.del(keys.engineLease);
  redis.disconnect();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A connection like the poller's read connection (commands wait for Redis, never fail), reconnecting quickly. */
const pollerLike = (url: string) => new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 20 });

describe("watchEngine", () => {
  it("warns once when no engine holds the lease for its grace, and again after an engine came and went", async () => {
    const { log, events } = captureLog();
    const watch = watchEngine({
      redis,
      leaseKey: keys.engineLease,
      stream: keys.input,
      log,
      everyMs: 20,
      graceMs: 300,
    });
    try {
      const startedAt = Date.now();
      await waitFor("the warning", () => events("poller_no_engine").length === 1);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(300);
      expect(events("poller_no_engine")[0]).toMatchObject({
        level: "warn",
        leaseKey: keys.engineLease,
        stream: keys.input,
        message: expect.stringContaining("Start an engine with this KEY_PREFIX") as unknown,
      });
      await sleep(400); // about 20 more checks that find no lease
      expect(events("poller_no_engine")).toHaveLength(1); // not repeated while the absence lasts
      await redis.set(keys.engineLease, "engine-1:1", "PX", 60_000);
      await sleep(500);
      expect(events("poller_no_engine")).toHaveLength(1); // nor while an engine leads
      const leftAt = Date.now();
      await redis.del(keys.engineLease);
      await waitFor("the second warning", () => events("poller_no_engine").length === 2);
      // The grace is 300 ms; a watch that kept counting from the first absence would warn within a check.
      expect(Date.now() - leftAt).toBeGreaterThanOrEqual(150);
    } finally {
      watch.stop();
    }
  });

  it("says nothing while its connection is never ready", async () => {
    const { log, events } = captureLog();
    const unreachable = pollerLike(`redis://127.0.0.1:${await closedPort()}`);
    unreachable.on("error", () => undefined);
    const watch = watchEngine({
      redis: unreachable,
      leaseKey: keys.engineLease,
      stream: keys.input,
      log,
      everyMs: 20,
      graceMs: 100,
    });
    try {
      await sleep(600);
      expect(unreachable.status).not.toBe("ready");
      expect(events("poller_no_engine")).toEqual([]);
    } finally {
      watch.stop();
      unreachable.disconnect();
    }
  });

  it("counts the grace from when Redis is back, not from before the outage", async () => {
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    await proxy.cut(); // Redis out of reach from the start: connections are refused
    const { log, events } = captureLog();
    const connection = pollerLike(`redis://127.0.0.1:${proxy.port}`);
    connection.on("error", () => undefined);
    const watch = watchEngine({
      redis: connection,
      leaseKey: keys.engineLease,
      stream: keys.input,
      log,
      everyMs: 20,
      graceMs: 300,
    });
    try {
      await sleep(700); // more than twice the grace without Redis
      expect(events("poller_no_engine")).toEqual([]);
      // Taken as ready is emitted, not at a later poll: a pause of the test in between would eat into the bound.
      let readyAt = 0;
      connection.once("ready", () => (readyAt = Date.now()));
      await proxy.mend();
      await waitFor("the connection ready", () => connection.status === "ready");
      // No engine has had its chance to take the lease yet: the first answer (no lease) warns of nothing. The watch
      // counts from its last check before ready, up to a check earlier, so the bound leaves the grace some slack; a
      // watch that counted from before the outage would warn within a check of ready.
      await waitFor("the warning", () => events("poller_no_engine").length === 1);
      expect(Date.now() - readyAt).toBeGreaterThanOrEqual(150);
      expect(events("poller_no_engine")[0]?.missingMs).toBeLessThan(700);
    } finally {
      watch.stop();
      connection.disconnect();
      await proxy.close();
    }
  });
});
