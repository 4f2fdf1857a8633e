// The publisher on real Redis: entries land in publish order across batches, and when too many wait, the oldest
// are shed and counted; a refused entry is counted too, and is no write. Through a proxy that drops the connection
// after Redis ran a pipeline and before its reply: the pipeline is not written again, and publishing goes on. Through
// one that stops answering a pipeline while the connection stays open: the publisher gives up on it after its bound
// and goes on on a fresh connection, and so it does with a fresh connection that stops answering before it is ready,
// at its first command or a later one.
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PriceUpdate } from "../contract/messages.ts";
import { decodeInputFields } from "../contract/stream-fields.ts";
import { startRedisProxy } from "../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { connectPublisherRedis, PricePublisher } from "./publisher.ts";
import { captureLog, redisStreams, waitFor } from "./test-support.ts";

let fixture: ReturnType<typeof redisStreams>;
let redis: Redis;
const freshStream = () => fixture.fresh();
beforeAll(() => {
  fixture = redisStreams();
  redis = fixture.redis;
});
afterAll(() => fixture.close());

const update = (n: number): PriceUpdate => ({
  type: "price_update",
  market: "ETH_USDC_PERP",
  bid: `${4000 + n}`,
  ask: `${4001 + n}`,
  exchangeTimeUs: `${n}`,
  source: "backpack",
});

async function writtenSequence(stream: string): Promise<string[]> {
  return (await redis.xrange(stream, "-", "+")).map(([, fields]) => {
    const decoded = decodeInputFields(fields);
    if (!decoded.ok || decoded.message.type !== "price_update") throw new Error("bad entry");
    return decoded.message.exchangeTimeUs;
  });
}

describe("PricePublisher", () => {
  it("writes every update in publish order, in batches, across bursts that arrive mid-flight", async () => {
    const stream = freshStream();
    const publisher = new PricePublisher({ redis, stream, log: captureLog().log, maxBatch: 7 });
    let n = 0;
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 1 + (burst % 13); i++) publisher.publish(update(n++));
      if (burst % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await publisher.flush();
    expect(await writtenSequence(stream)).toEqual(Array.from({ length: n }, (_, i) => `${i}`));
    expect(publisher.counters).toEqual({ written: n, failed: 0, shed: 0, lost: 0 });
    expect(publisher.queued).toBe(0);
  });

  it("sheds the oldest updates beyond maxQueued, keeping the newest", async () => {
    const stream = freshStream();
    const { log, events } = captureLog();
    const publisher = new PricePublisher({ redis, stream, log, maxQueued: 5 });
    for (let i = 0; i < 20; i++) publisher.publish(update(i));
    await publisher.flush();
    expect(await writtenSequence(stream)).toEqual(["15", "16", "17", "18", "19"]);
    expect(publisher.counters).toEqual({ written: 5, failed: 0, shed: 15, lost: 0 });
    expect(events("publisher_shedding")).toHaveLength(1);
  });

  it("counts entries Redis refuses and goes on with later ones", async () => {
    const stream = freshStream();
    await redis.set(stream, "not a stream"); // XADD to a string key fails with WRONGTYPE
    const { log, events } = captureLog();
    const publisher = new PricePublisher({ redis, stream, log });
    publisher.publish(update(1));
    publisher.publish(update(2));
    await publisher.flush();
    expect(publisher.counters).toEqual({ written: 0, failed: 2, shed: 0, lost: 0 });
    expect(publisher.lastWrittenAtMs).toBeUndefined(); // a refused entry is no write
    expect(events("publisher_write_failed")[0]).toMatchObject({
      level: "error",
      error: expect.stringContaining("WRONGTYPE") as unknown,
    });
    await redis.del(stream);
    const before = Date.now();
    publisher.publish(update(3));
    await publisher.flush();
    expect(await writtenSequence(stream)).toEqual(["3"]);
    expect(publisher.lastWrittenAtMs).toBeGreaterThanOrEqual(before);
    expect(publisher.lastWrittenAtMs).toBeLessThanOrEqual(Date.now());
  });

  it("never writes a pipeline twice when the connection drops before its reply, and goes on publishing", async () => {
    const stream = freshStream();
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const { log, events } = captureLog();
    const connection = connectPublisherRedis(`redis://127.0.0.1:${proxy.port}`, log);
    try {
      const publisher = new PricePublisher({ redis: connection, stream, log });
      publisher.publish(update(1));
      await publisher.flush();
      // The next pipeline (2 and 3) runs in Redis; its reply is lost with the connection.
      const dropped = proxy.dropReplyTo(stream);
      publisher.publish(update(2));
      publisher.publish(update(3));
      await dropped;
      // Its reply never comes (it is not sent again): the drain loop must not wait for it.
      await publisher.flush();
      publisher.publish(update(4));
      await publisher.flush();
      expect(await writtenSequence(stream)).toEqual(["1", "2", "3", "4"]);
      expect(publisher.counters).toEqual({ written: 2, failed: 0, shed: 0, lost: 2 });
      expect(events("publisher_reply_lost")).toEqual([
        expect.objectContaining({ level: "warn", reason: "closed", entries: 2 }),
      ]);
    } finally {
      connection.disconnect();
      await proxy.close();
    }
  });

  it("gives up on a pipeline unanswered within its bound and publishes on a fresh connection", async () => {
    const stream = freshStream();
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const { log, events } = captureLog();
    const connection = connectPublisherRedis(`redis://127.0.0.1:${proxy.port}`, log);
    try {
      const publisher = new PricePublisher({ redis: connection, stream, log, replyTimeoutMs: 1_000 });
      publisher.publish(update(1));
      await publisher.flush();
      // The next pipeline is dropped on the way and its connection stays open, answering nothing (a dead peer).
      const frozen = proxy.freezeOn(stream);
      publisher.publish(update(2));
      await frozen;
      expect({ sending: publisher.sending, queued: publisher.queued }).toEqual({ sending: 1, queued: 0 });
      proxy.thaw(); // new connections work again; the frozen one still waits for a reply that will never come
      publisher.publish(update(3));
      await waitFor("the update published after the freeze", async () => (await redis.xlen(stream)) === 2, 10_000);
      await publisher.flush();
      expect(await writtenSequence(stream)).toEqual(["1", "3"]);
      expect(publisher.counters).toEqual({ written: 2, failed: 0, shed: 0, lost: 1 });
      expect(publisher.sending).toBe(0);
      expect(events("publisher_reply_lost")).toEqual([
        expect.objectContaining({ level: "warn", reason: "timeout", entries: 1, replyTimeoutMs: 1_000 }),
      ]);
    } finally {
      connection.disconnect();
      await proxy.close();
    }
  });

  it("drops a fresh connection whose handshake is unanswered within the bound, and publishes on the next", async () => {
    const stream = freshStream();
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const { log, events } = captureLog();
    const connection = connectPublisherRedis(`redis://127.0.0.1:${proxy.port}`, log);
    try {
      const publisher = new PricePublisher({ redis: connection, stream, log, replyTimeoutMs: 1_000 });
      publisher.publish(update(1));
      await publisher.flush();
      const frozen = proxy.freezeOn(stream);
      publisher.publish(update(2));
      await frozen;
      publisher.publish(update(3));
      // The pipeline is given up and a fresh connection opened, whose handshake arrives while all is still frozen.
      await waitFor("the fresh connection's handshake, dropped", () => proxy.held() >= 2, 10_000);
      proxy.thaw(); // new connections work again; the fresh one still waits for its handshake's answer
      await waitFor("the update published after the freeze", async () => (await redis.xlen(stream)) === 2, 10_000);
      await publisher.flush();
      expect(await writtenSequence(stream)).toEqual(["1", "3"]);
      expect(publisher.counters).toEqual({ written: 2, failed: 0, shed: 0, lost: 1 });
      expect(events("publisher_handshake_timeout")).toEqual([
        expect.objectContaining({ level: "warn", replyTimeoutMs: 1_000 }),
      ]);
    } finally {
      connection.disconnect();
      await proxy.close();
    }
  });

  it("drops a fresh connection that answers the first commands of its handshake and then nothing", async () => {
    const stream = freshStream();
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const { log, events } = captureLog();
    // The connection's name and client info are answered; its ready check (INFO), sent after those answers, is not.
    const frozen = proxy.freezeOn("$4\r\ninfo\r\n");
    const connection = connectPublisherRedis(`redis://127.0.0.1:${proxy.port}`, log);
    try {
      const publisher = new PricePublisher({ redis: connection, stream, log, replyTimeoutMs: 1_000 });
      publisher.publish(update(1));
      await frozen;
      proxy.thaw(); // new connections work again; the frozen one waits for its ready check's answer
      await waitFor("the update, on a fresh connection", async () => (await redis.xlen(stream)) === 1, 10_000);
      await publisher.flush();
      expect(await writtenSequence(stream)).toEqual(["1"]);
      expect(publisher.counters).toEqual({ written: 1, failed: 0, shed: 0, lost: 0 });
      expect(events("publisher_handshake_timeout")).toEqual([
        expect.objectContaining({ level: "warn", replyTimeoutMs: 1_000 }),
      ]);
    } finally {
      connection.disconnect();
      await proxy.close();
    }
  });
});
