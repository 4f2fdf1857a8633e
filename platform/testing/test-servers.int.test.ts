import { Redis } from "ioredis";
import { describe, expect, inject, it } from "vitest";
import { connectPostgres } from "../postgres.ts";
import { createLogger } from "../log.ts";
import { TEST_DATABASE_ADMIN_URL, TEST_REDIS_URL } from "./test-servers.ts";

describe("the test run's servers (global-setup.ts)", () => {
  it("reach the test files through the environment, and answer", async () => {
    const provided = inject("testServers");
    expect(process.env.REDIS_URL).toBe(provided.redisUrl);
    expect(process.env.TEST_DATABASE_ADMIN_URL).toBe(provided.databaseAdminUrl);
    expect([TEST_REDIS_URL, TEST_DATABASE_ADMIN_URL]).toEqual([provided.redisUrl, provided.databaseAdminUrl]);

    const redis = new Redis(TEST_REDIS_URL);
    expect(await redis.ping()).toBe("PONG");
    redis.disconnect();
    const db = await connectPostgres(TEST_DATABASE_ADMIN_URL, createLogger("test", { level: "warn" }), {
      maxConnections: 1,
    });
    expect((await db.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await db.close();
  });
});
