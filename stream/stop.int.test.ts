// A stop (SIGTERM): no socket opens after it began, and a client that does not answer the close frame does not hold
// it up. Real Redis, real sockets.
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { STOP_GRACE_MS, STOPPING_RETRY_AFTER_S } from "./server.ts";
import {
  issueTicket,
  newUserId,
  RefusedUpgrade,
  startTestStream,
  TestClient,
  type TestStream,
} from "./testing/stream-fixture.ts";

const streams: TestStream[] = [];

afterEach(async () => {
  for (const t of streams.splice(0)) await t.close();
});

async function stream(): Promise<TestStream> {
  const t = await startTestStream();
  streams.push(t);
  return t;
}

/** `promise`'s value, or "pending" if it has not settled within `ms`. */
const within = <T>(promise: Promise<T>, ms: number): Promise<T | "pending"> =>
  Promise.race([promise, new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), ms).unref())]);

/** Holds every GETDEL on `redis` until `release` is called; `started` resolves when the first one comes. */
function holdGetdel(redis: Redis): { started: Promise<void>; release: () => void } {
  const getdel = (key: string) => redis.call("getdel", key) as Promise<string | null>;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let start!: () => void;
  const started = new Promise<void>((resolve) => (start = resolve));
  const holding = async (key: string) => {
    start();
    await released;
    return getdel(key);
  };
  redis.getdel = holding;
  return { started, release };
}

describe("a stop", () => {
  it("answers 503 to an upgrade whose ticket check is under way, and never opens it", async () => {
    const t = await stream();
    const held = holdGetdel(t.redis);
    const attempt = TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: newUserId() })}`).then(
      (client) => client,
      (error: unknown) => error,
    );
    await held.started;
    const stopping = t.stream.close();
    held.release();
    const answer = await within(attempt, 3_000);
    if (answer instanceof TestClient) answer.close();
    expect(answer).toBeInstanceOf(RefusedUpgrade);
    expect((answer as RefusedUpgrade).status).toBe(503);
    expect(JSON.parse((answer as RefusedUpgrade).body)).toMatchObject({ error: { code: "UNAVAILABLE" } });
    // Another replica takes the next attempt: no wait beyond the header's least.
    expect((answer as RefusedUpgrade).headers["retry-after"]).toBe(String(STOPPING_RETRY_AFTER_S));
    expect(await within(stopping, 3_000)).toBeUndefined();
    expect(t.stream.hub.connectionCount).toBe(0);
  });

  it("cuts a socket whose client does not answer the close frame after about a second, not ws's 30 s", async () => {
    const t = await stream();
    const client = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: newUserId() })}`);
    await client.until((f) => f.some((x) => x.type === "welcome"));
    client.ws.pause(); // it never reads the close frame, so never answers it
    const started = Date.now();
    expect(await within(t.stream.close(), 5_000)).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(STOP_GRACE_MS + 1_000);
    client.ws.resume();
    expect((await client.closed).code).toBe(1001); // the close frame was sent before the cut
  });
});
