import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startUpstashBridge, type UpstashBridge } from "../testing/upstash-bridge.ts";
import { describeApiRedisContract } from "./api-redis.contract.ts";
import { createIoredisApiRedis } from "./ioredis-api-redis.ts";
import { createUpstashApiRedis } from "./upstash-api-redis.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";

const REDIS_URL = TEST_REDIS_URL;
let bridge: UpstashBridge;

beforeAll(async () => {
  bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: randomUUID() });
});

afterAll(async () => {
  await bridge.close();
});

describeApiRedisContract("ioredis", () => Promise.resolve(createIoredisApiRedis(REDIS_URL)));
describeApiRedisContract("upstash (through the local bridge)", () => Promise.resolve(createUpstashApiRedis(bridge)));

/** A port nothing listens on: taken from the OS, then released. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe("when Redis cannot be reached", () => {
  it("ioredis: ping and blpop reject instead of hanging", { timeout: 10_000 }, async () => {
    const redis = createIoredisApiRedis(`redis://127.0.0.1:${await deadPort()}`);
    await expect(redis.ping()).rejects.toThrow();
    await expect(redis.blpop("any", 30_000)).rejects.toThrow();
    await redis.close();
  });

  it("upstash: ping and blpop reject instead of hanging", { timeout: 10_000 }, async () => {
    const redis = createUpstashApiRedis({ url: `http://127.0.0.1:${await deadPort()}`, token: "t" });
    await expect(redis.ping()).rejects.toThrow();
    await expect(redis.blpop("any", 30_000)).rejects.toThrow();
  });

  it("upstash: a wrong token is refused", async () => {
    const redis = createUpstashApiRedis({ url: bridge.url, token: "not-the-token" });
    await expect(redis.ping()).rejects.toThrow(/Unauthorized/);
    await expect(redis.get("any")).rejects.toThrow(/Unauthorized/);
  });
});
