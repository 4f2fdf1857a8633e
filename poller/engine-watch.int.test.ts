// The no-engine warning on real Redis: with no engine lease under the prefix it warns once after its grace, not
// again while the absence lasts; an engine that takes the lease silences it, and one that leaves starts the wait over.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { watchEngine } from "./engine-watch.ts";
import { captureLog, waitFor } from "./test-support.ts";

const redis = new Redis(TEST_REDIS_URL);
const keys = keyspace(`test:${randomUUID()}:`);
afterAll(async () => {
  await redis.del(keys.engineLease);
  redis.disconnect();
});

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
      await redis.set(keys.engineLease, "engine-1:1", "PX", 60_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(events("poller_no_engine")).toHaveLength(1); // not repeated while it lasted, nor while an engine leads
      const leftAt = Date.now();
      await redis.del(keys.engineLease);
      await waitFor("the second warning", () => events("poller_no_engine").length === 2);
      expect(Date.now() - leftAt).toBeGreaterThanOrEqual(250);
    } finally {
      watch.stop();
    }
  });
});
