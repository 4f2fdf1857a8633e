// A client that stops reading and account summaries that follow prices: the send buffer's cap closes a stalled
// socket with 4008 whatever fills it (a private one then resumes without a gap), quotes are thinned rather than
// reach it, and an open trade's summary moves with its asset's quotes, at most once a second.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CANDLE_INTERVALS } from "../contract/candles.ts";
import type { PrivateOutput, TradeView } from "../contract/messages.ts";
import { quoteOutput } from "./testing/quote-output.ts";
import {
  balancesEvent,
  fanOut,
  fanOutEvents,
  startTestStream,
  storeEvents,
  type TestStream,
  connectAs,
  newUserId,
  type TestClient,
} from "./testing/stream-fixture.ts";

let t: TestStream;

beforeAll(async () => {
  t = await startTestStream({ privateBufferCapBytes: 16_384 });
});

afterAll(async () => {
  await t.close();
});

const user = newUserId;

const connect = (userId: string) => connectAs(t, userId);

describe("a client that stops reading", () => {
  it("is closed with 4008 once its private backlog passes the cap, and resumes where it was", async () => {
    const u = user();
    // Events of ~6 KB each: far more than the socket buffers hold while the client reads nothing.
    const wide: Record<string, string> = {};
    for (let i = 0; i < 300; i++) wide[`X${i}`] = "12345.678";
    const events: PrivateOutput[] = [];
    for (let seq = 1; seq <= 1_000; seq++) {
      const e = balancesEvent(u, seq, `${seq}`);
      events.push({ ...e, balances: { ...wide, USD: `${seq}` } } as PrivateOutput);
    }
    await storeEvents(t, events);
    const stalled = await connect(u);
    await stalled.until((f) => f.some((x) => x.type === "welcome"));
    stalled.ws.pause();
    stalled.send({ op: "subscribe", channel: "private", since: 0 });
    await new Promise((r) => setTimeout(r, 500));
    stalled.ws.resume();
    expect((await stalled.closed).code).toBe(4008);
    const seen = stalled.of("event").map((f) => f.seq as number);
    expect(seen.length).toBeLessThan(1_000);
    expect(seen).toEqual(seen.map((_, i) => i + 1));
    const again = await connect(u);
    again.send({ op: "subscribe", channel: "private", since: seen.at(-1) ?? 0 });
    await again.until((f) => f.some((x) => x.type === "event" && x.seq === 1_000), 10_000);
    const rest = again.of("event").map((f) => f.seq as number);
    expect([...seen, ...rest]).toEqual(events.map((e) => e.seq));
    again.close();
  });
});

/** Resolves with how the client's socket closed, or "open" if it has not within `ms`. */
const closedWithin = (client: TestClient, ms: number) =>
  Promise.race([
    client.closed.then((c) => c.code),
    new Promise<"open">((resolve) => setTimeout(() => resolve("open"), ms)),
  ]);

describe("a client that stops reading public frames", () => {
  it("is closed with 4008 once candles it does not read pass the cap: candles are never thinned", async () => {
    const stalled = await connect(user());
    for (const interval of CANDLE_INTERVALS)
      stalled.send({ op: "subscribe", channel: "candles", asset: "BTC", interval });
    await stalled.until((f) => f.filter((x) => x.type === "subscribed").length === CANDLE_INTERVALS.length);
    // Another asset's candle after the flood tells when the stream has been through it: one frame, never backed up.
    const marker = await connect(user());
    marker.send({ op: "subscribe", channel: "candles", asset: "ETH", interval: "1m" });
    await marker.until((f) => f.some((x) => x.type === "subscribed"));
    stalled.ws.pause();
    // Each row a new high of the minute: a frame for every interval, far more bytes than the kernel's buffers hold.
    const openTime = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
    const row = (asset: string, price: string) => ({
      asset,
      interval: "1m",
      openTime,
      open: price,
      high: price,
      low: price,
      close: price,
    });
    const pipe = t.redis.pipeline();
    for (let i = 1; i <= 20_000; i++)
      pipe.xadd(t.keys.streamFanout, "*", "kind", "candle", "body", JSON.stringify(row("BTC", `${60000 + i}`)));
    pipe.xadd(t.keys.streamFanout, "*", "kind", "candle", "body", JSON.stringify(row("ETH", "3000")));
    await pipe.exec();
    await marker.until((f) => f.some((x) => x.type === "candle"), 20_000);
    stalled.ws.resume();
    expect(await closedWithin(stalled, 5_000)).toBe(4008);
    marker.close();
  }, 30_000);

  it("gets quotes it does not read thinned, and stays open", async () => {
    const stalled = await connect(user());
    const reading = await connect(user());
    for (const c of [stalled, reading]) {
      c.send({ op: "subscribe", channel: "quotes" });
      await c.until((f) => f.some((x) => x.type === "subscribed"));
    }
    stalled.ws.pause();
    const quotes = 20_000;
    const pipe = t.redis.pipeline();
    for (let i = 1; i <= quotes; i++) {
      const body = JSON.stringify(quoteOutput("BTC", `${60000 + i}`, new Date().toISOString()));
      pipe.xadd(t.keys.streamFanout, "*", "kind", "quote", "body", body);
    }
    await pipe.exec();
    const last = `${60000 + quotes}`;
    await reading.until((f) => f.some((x) => x.type === "quote" && x.bid === last), 20_000);
    stalled.ws.resume();
    await stalled.until((f) => f.some((x) => x.type === "quote" && x.bid === last), 5_000);
    stalled.send({ op: "ping", id: "still-open" });
    await stalled.until((f) => f.some((x) => x.type === "pong"));
    expect(await closedWithin(stalled, 0)).toBe("open");
    stalled.close();
    reading.close();
  }, 30_000);
});

describe("the account summary", () => {
  it("follows the quotes of an open trade's asset, at most once a second", async () => {
    const u = user();
    const trade: TradeView = {
      id: "T0-1",
      asset: "BTC",
      type: "long",
      margin: "100",
      leverage: 10,
      quantity: "0.01",
      openPrice: "60000",
      stopLoss: null,
      takeProfit: null,
      trailingStop: null,
      liquidationPrice: null,
      openedAt: new Date().toISOString(),
    };
    const opened = { ...balancesEvent(u, 1, "900"), type: "trade_opened", trade } as unknown as PrivateOutput;
    delete (opened as { balances?: unknown }).balances;
    await storeEvents(t, [opened]);
    await t.redis.hset(t.keys.openTradesKey(u), trade.id, JSON.stringify(trade));
    await t.redis.hset(t.keys.balancesKey(u), { USD: "900" });
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    const snapshot = await client.until((f) => f.find((x) => x.type === "snapshot"));
    expect(snapshot).toMatchObject({ seq: 1, trades: [{ id: "T0-1" }] });
    // Each from its own input, as the engine's are (the hub drops a quote no newer than the one it holds).
    const quote = (bid: string) => quoteOutput("BTC", bid, new Date().toISOString());
    const started = Date.now();
    await fanOut(t, "quote", quote("61000"));
    const first = await client.until((f) => f.find((x) => x.type === "summary" && x.unrealizedPnl === "10"));
    expect(first).toMatchObject({ seq: 1, balance: "1000", equity: "1010" });
    for (let i = 1; i <= 20; i++) await fanOut(t, "quote", quote(`${61000 + i * 100}`));
    await client.until((f) => f.find((x) => x.type === "summary" && x.unrealizedPnl === "30"), 4_000);
    const elapsed = Date.now() - started;
    // Summaries sent for price moves (not the snapshot's): no more than one a second.
    expect(client.of("summary").length).toBeLessThanOrEqual(Math.ceil(elapsed / 1_000) + 1);
    // Events still come, each followed by its summary.
    const closed = balancesEvent(u, 2, "1030");
    await storeEvents(t, [closed]);
    await fanOutEvents(t, [closed]);
    await client.until((f) => f.find((x) => x.type === "summary" && x.seq === 2));
    client.close();
  });
});
