/**
 * The stream process (`dist/stream.mjs`) started while its Postgres refuses connections, as a stream task started
 * during a Postgres outage would be: it serves quotes and private events, which need only Redis, at once, and loads
 * candle buckets once Postgres answers. A DATABASE_URL that Postgres refuses still stops it at its start (exit 2).
 * Postgres sits behind a proxy the test cuts and mends (platform/testing/redis-proxy.ts).
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { migrate } from "../platform/migrate.ts";
import { spawnComponent, startSilentServer, type Child } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { startRedisProxy, type RedisProxy } from "../platform/testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { writeCandles } from "../worker/candles.ts";
import { quoteAtMs, quoteOutput } from "./testing/quote-output.ts";
import {
  balancesEvent,
  fanOut,
  fanOutEvents,
  issueTicket,
  storeEvents,
  TestClient,
  type TestStream,
} from "./testing/stream-fixture.ts";

const prefix = `test:${randomUUID()}:`;
let redis: Redis;
let pg: TestDatabase;
let proxy: RedisProxy;
let databaseUrl: string;
const children: Child[] = [];

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL);
  pg = await createTestDatabase();
  await migrate(pg.db, pg.log);
  proxy = await startRedisProxy(pg.url);
  const url = new URL(pg.url);
  url.port = String(proxy.port);
  databaseUrl = url.toString();
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.stop("SIGKILL")));
  await proxy.close();
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
  await pg.drop();
});

function startStream(name: string, url: string): Child {
  const env = { REDIS_URL: TEST_REDIS_URL, DATABASE_URL: url, KEY_PREFIX: `${prefix}${name}:`, STREAM_PORT: "0" };
  const child = spawnComponent("stream", env, { name });
  children.push(child);
  return child;
}

describe("the stream process started while Postgres refuses connections", () => {
  it("serves quotes and private events at once, and candles once Postgres answers", { timeout: 90_000 }, async () => {
    // Today's ETH candle so far, stored: what a 1d subscriber gets once the stream can read it.
    await writeCandles(pg.db, [quoteAtMs(Date.now(), "ETH", "4000")], pg.log);
    await proxy.cut();
    const stream = startStream("pg-start", databaseUrl);
    const listening = await stream.waitFor("listening", 20_000);
    expect(stream.events("postgres_unavailable")).toEqual([
      expect.objectContaining({ level: "warn", code: "ECONNREFUSED" }),
    ]);
    // What the fixture's helpers use of a TestStream: its Redis and keyspace.
    const keys = keyspace(`${prefix}pg-start:`);
    const t = { redis, keys } as unknown as TestStream;
    const userId = `u-${randomUUID().slice(0, 8)}`;
    const url = `ws://127.0.0.1:${String(listening.port)}/api/v1/stream`;
    const client = await TestClient.connect(`${url}?ticket=${await issueTicket(t, { userId })}`);
    try {
      client.send({ op: "subscribe", channel: "quotes" });
      client.send({ op: "subscribe", channel: "private" });
      client.send({ op: "subscribe", channel: "candles", asset: "ETH", interval: "1d" });
      await client.until((f) => f.filter((x) => x.type === "subscribed").length === 3);
      await client.until((f) => f.some((x) => x.type === "snapshot"));
      await fanOut(t, "quote", quoteOutput("BTC", "60000"));
      await client.until((f) => f.some((x) => x.type === "quote" && x.asset === "BTC" && x.bid === "60000"));
      const event = balancesEvent(userId, 1, "1001");
      await storeEvents(t, [event]);
      await fanOutEvents(t, [event]);
      await client.until((f) => f.some((x) => x.type === "event" && x.seq === 1));
      // The bucket's load fails softly meanwhile, and is tried again.
      await stream.waitFor("candle_load_failed", 10_000);
      expect(client.of("candle")).toEqual([]);
      expect(stream.alive()).toBe(true);

      await proxy.mend();
      await stream.waitFor("postgres_recovered", 20_000);
      const candle = await client.until((f) => f.find((x) => x.type === "candle" && x.interval === "1d"), 40_000);
      expect(candle).toMatchObject({ asset: "ETH", open: "4000", close: "4000" });
    } finally {
      client.close();
    }
    expect(stream.events("crash")).toEqual([]);
    expect(await stream.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it(
    "serves within a few seconds when Postgres accepts connections and never answers",
    { timeout: 30_000 },
    async () => {
      const silent = await startSilentServer();
      try {
        const startedAt = performance.now();
        const stream = startStream("pg-silent", `${silent.url("postgres")}/x`);
        await stream.waitFor("listening", 15_000);
        // The first try is waited for 5 s, not its 30 s connect timeout.
        expect(performance.now() - startedAt).toBeLessThan(12_000);
        expect(await stream.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      } finally {
        await silent.close();
      }
    },
  );

  it("stops at its start with exit 2 when Postgres refuses DATABASE_URL", { timeout: 30_000 }, async () => {
    const missing = new URL(pg.url);
    missing.pathname = `/${pg.name}_missing`;
    const stream = startStream("pg-refused", missing.toString());
    expect(await stream.exited).toEqual({ code: 2, signal: null });
    expect(stream.events("listening")).toEqual([]);
    expect(stream.other.join("\n")).toContain("does not exist");
  });
});
