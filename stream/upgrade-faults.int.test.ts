// The upgrade while Redis fails, on the connection options main.ts uses (platform/redis.ts: commands wait for Redis
// rather than fail), with a proxy between the stream and Redis: a Redis that does not answer, or cannot be reached,
// gets the client 503 UNAVAILABLE in bounded time, never a hang; so does a ticket GETDEL may have spent before the
// connection dropped.
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { connectRedis } from "../platform/redis.ts";
import { startRedisProxy, type RedisProxy } from "../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { TICKET_CHECK_TIMEOUT_MS } from "./server.ts";
import {
  issueTicket,
  newUserId,
  RefusedUpgrade,
  startTestStream,
  TestClient,
  type TestStream,
} from "./testing/stream-fixture.ts";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A stream whose commands go through a proxy to Redis, on production's connection options. */
async function streamBehindProxy(): Promise<{ t: TestStream; proxy: RedisProxy }> {
  const proxy = await startRedisProxy(TEST_REDIS_URL);
  cleanups.push(() => proxy.close());
  const log = createLogger("stream-test", { level: "error", sink: () => undefined });
  const commands: Redis = connectRedis(`redis://127.0.0.1:${proxy.port}`, log, "stream-test");
  cleanups.push(() => commands.disconnect());
  const t = await startTestStream({}, { commands });
  cleanups.push(() => t.close());
  return { t, proxy };
}

/** How the upgrade with `ticket` ended: its refusal, "opened", or "no answer" after `ms`. */
async function upgrade(t: TestStream, ticket: string, ms: number): Promise<RefusedUpgrade | "opened" | "no answer"> {
  const attempt = TestClient.connect(`${t.url}?ticket=${ticket}`).then(
    (client) => {
      client.close();
      return "opened" as const;
    },
    (error: unknown) => {
      if (error instanceof RefusedUpgrade) return error;
      throw error;
    },
  );
  const late = new Promise<"no answer">((resolve) => setTimeout(() => resolve("no answer"), ms).unref());
  return Promise.race([attempt, late]);
}

describe("the upgrade when Redis fails", () => {
  it("is answered 503 UNAVAILABLE once the ticket check has waited its bound on a Redis that does not answer", async () => {
    const { t, proxy } = await streamBehindProxy();
    const ticket = await issueTicket(t, { userId: newUserId() });
    proxy.freeze();
    const started = Date.now();
    const answer = await upgrade(t, ticket, TICKET_CHECK_TIMEOUT_MS + 3_000);
    expect(answer).toBeInstanceOf(RefusedUpgrade);
    expect((answer as RefusedUpgrade).status).toBe(503);
    expect(JSON.parse((answer as RefusedUpgrade).body)).toMatchObject({ error: { code: "UNAVAILABLE" } });
    expect((answer as RefusedUpgrade).headers["retry-after"]).toBe("5"); // the API's UNAVAILABLE wait
    expect(Date.now() - started).toBeGreaterThanOrEqual(TICKET_CHECK_TIMEOUT_MS - 100);
    expect(t.logs.some((l) => l.event === "upgrade_failed")).toBe(true);
  });

  it("is answered 503 UNAVAILABLE, not 401, when the connection drops after GETDEL ran: ioredis sends it again", async () => {
    const { t, proxy } = await streamBehindProxy();
    const ticket = await issueTicket(t, { userId: newUserId() });
    const dropped = proxy.dropReplyTo("getdel");
    const answer = await upgrade(t, ticket, TICKET_CHECK_TIMEOUT_MS + 3_000);
    await dropped;
    expect(answer).toBeInstanceOf(RefusedUpgrade);
    expect((answer as RefusedUpgrade).status).toBe(503);
    expect(JSON.parse((answer as RefusedUpgrade).body)).toMatchObject({ error: { code: "UNAVAILABLE" } });
    // The connection is back: a new ticket opens a socket.
    expect(await upgrade(t, await issueTicket(t, { userId: newUserId() }), 3_000)).toBe("opened");
  });

  it("is answered 503 UNAVAILABLE when Redis cannot be reached at all", async () => {
    const { t, proxy } = await streamBehindProxy();
    const ticket = await issueTicket(t, { userId: newUserId() });
    await proxy.close();
    const answer = await upgrade(t, ticket, TICKET_CHECK_TIMEOUT_MS + 3_000);
    expect(answer).toBeInstanceOf(RefusedUpgrade);
    expect((answer as RefusedUpgrade).status).toBe(503);
    expect((answer as RefusedUpgrade).headers["retry-after"]).toBe("5");
  });
});
