// The typed client of client/ against the real stream server with a low message rate: the subscriptions it replays
// after the welcome keep within the welcome's maxMessagesPerSec, so the server never closes it 4029 for them (it
// would on every reconnect, as the replay is the same each time).
import { afterAll, beforeAll, expect, it } from "vitest";
import { WebSocket } from "ws";
import { StreamClient, type CloseInfo, type Subscription } from "../client/stream-client.ts";
import type { FetchLike } from "../client/transport.ts";
import { issueTicket, newUserId, startTestStream, type TestStream } from "./testing/stream-fixture.ts";

let t: TestStream;
beforeAll(async () => {
  t = await startTestStream({ maxMessagesPerSec: 3 }); // a burst of 9 messages allowed, then 3 a second
});
afterAll(async () => {
  await t.close();
});

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

it("12 subscriptions at 3 messages a second: one connection, every subscribe answered, never closed 4029", async () => {
  const userId = newUserId();
  const fetch: FetchLike = async () => {
    const body = { ticket: await issueTicket(t, { userId }), url: t.url };
    return { status: 201, headers: { get: () => null }, json: () => Promise.resolve(body) };
  };
  const subscriptions: Subscription[] = [
    { channel: "private" },
    { channel: "quotes" },
    ...(["1m", "5m", "15m", "1h", "4h", "1d"] as const).map((interval) => ({
      channel: "candles" as const,
      asset: "BTC" as const,
      interval,
    })),
    ...(["1m", "5m", "15m", "1h"] as const).map((interval) => ({
      channel: "candles" as const,
      asset: "ETH" as const,
      interval,
    })),
  ];
  const client = new StreamClient({
    apiUrl: "http://api.invalid",
    WebSocket,
    fetch,
    subscriptions,
    backoff: { initialMs: 20, maxMs: 50 },
  });
  const closes: CloseInfo[] = [];
  let opens = 0;
  client.on("open", () => opens++);
  client.on("close", (info) => closes.push(info));
  client.connect();
  try {
    await until(
      "every subscribe answered, or a close",
      () => closes.length > 0 || (opens === 1 && client.unansweredRequests === 0),
    );
  } finally {
    client.close();
  }
  expect(closes.slice(0, -1)).toEqual([]); // but the close() above
  expect(opens).toBe(1);
  expect(client.subscriptions).toHaveLength(subscriptions.length);
});
