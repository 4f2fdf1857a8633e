// What a bug or bad data inside the stream must not do: end the process from a timer, starve the other sockets, or
// wedge a private channel retrying the same event for ever. Real Redis, real sockets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrivateOutput, TradeView } from "../contract/messages.ts";
import {
  balancesEvent,
  fanOut,
  fanOutEvents,
  issueTicket,
  startTestStream,
  storeEvents,
  TestClient,
  type TestStream,
  eventSeqs,
  newUserId,
} from "./testing/stream-fixture.ts";

let t: TestStream;

beforeAll(async () => {
  t = await startTestStream({ summaryIntervalMs: 50 });
});

afterAll(async () => {
  await t.close();
});

const user = newUserId;

async function subscribed(userId: string): Promise<TestClient> {
  const client = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId })}`);
  client.send({ op: "subscribe", channel: "private" });
  await client.until((f) => f.some((x) => x.type === "snapshot"));
  return client;
}

/** An open ETH trade in the user's read model, as the worker keeps it. */
async function openEthTrade(userId: string, type: "long" | "short"): Promise<void> {
  const trade = {
    id: "T0-1",
    asset: "ETH",
    type,
    openPrice: "4000",
    quantity: "1",
    margin: "400",
    leverage: 10,
    openedAt: "2027-01-15T08:00:00.000Z",
  } as unknown as TradeView;
  await t.redis.hset(t.keys.openTradesKey(userId), trade.id, JSON.stringify(trade));
}

const seqs = eventSeqs;

describe("faults inside the stream", () => {
  it("a summary that throws on the scheduler tick is logged and skipped; the other channels get theirs", async () => {
    const bad = user();
    const good = user();
    // Quotes without a bid (a malformed fan-out entry): a long's summary, priced at the bid, throws; a short's, at
    // the ask, does not.
    await openEthTrade(bad, "long");
    await openEthTrade(good, "short");
    const b = await subscribed(bad); // first: the tick reaches it before the good one
    const g = await subscribed(good);
    expect(g.of("snapshot")[0]).toMatchObject({ summary: { pricesMissing: ["ETH"] } });
    const quote = (ask: string) => ({
      asset: "ETH",
      market: "ETH_USDC_PERP",
      ask,
      updatedAt: new Date().toISOString(),
      source: "sim",
    });
    await fanOut(t, "quote", quote("4100"));
    await g.until((f) => f.find((x) => x.type === "summary" && x.unrealizedPnl === "-100"));
    await fanOut(t, "quote", quote("4200"));
    await g.until((f) => f.find((x) => x.type === "summary" && x.unrealizedPnl === "-200"));
    expect(t.logs.find((l) => l.event === "summary_failed")).toMatchObject({ userId: bad });
    // The bad account's socket stays open (only its summaries are missing).
    b.send({ op: "ping", id: "alive" });
    await b.until((f) => f.some((x) => x.type === "pong"));
    b.close();
    g.close();
  });

  it("an event of a type this stream does not know goes out in its place and the channel goes on", async () => {
    const u = user();
    const client = await subscribed(u);
    const first = balancesEvent(u, 1, "1");
    const unknown = { ...first, type: "margin_called", balances: undefined } as unknown as PrivateOutput;
    const next = balancesEvent(u, 2, "2");
    await storeEvents(t, [unknown, next]);
    await fanOutEvents(t, [unknown, next]);
    await client.until((f) => f.some((frame) => frame.type === "summary" && frame.seq === 2));
    expect(seqs(client.frames)).toEqual([1, 2]);
    expect(client.of("event")[0]).toMatchObject({ seq: 1, event: "margin_called" });
    expect(client.of("summary").at(-1)).toMatchObject({ seq: 2, balance: "2" });
    expect(t.logs.find((l) => l.event === "private_event_unknown")).toMatchObject({
      userId: u,
      seq: 1,
      type: "margin_called",
    });
    client.close();
  });
});
