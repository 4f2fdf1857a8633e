// A client that stops reading and account summaries that follow prices: the send buffer's cap closes a stalled
// socket with 4008 whatever fills it (a private one then resumes without a gap), though not for one frame larger
// than the cap, quotes and candles are thinned rather than reach it, and an open trade's summary moves with its
// asset's quotes, at most once a second.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CANDLE_INTERVALS } from "../contract/candles.ts";
import type { PrivateOutput, TradeView } from "../contract/messages.ts";
import { NO_METRICS } from "./metrics.ts";
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
  type Frame,
  type TestClient,
} from "./testing/stream-fixture.ts";

let t: TestStream;
/** Frames the stream has written, by type, whether their client read them or not. */
const written = new Map<string, number>();

beforeAll(async () => {
  t = await startTestStream(
    { privateBufferCapBytes: 16_384 },
    { metrics: { ...NO_METRICS, frameSent: (type) => void written.set(type, (written.get(type) ?? 0) + 1) } },
  );
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

describe("a frame larger than the cap", () => {
  /** An account with 40,000 open trades at seq 1: a snapshot of ~12 MB, more than the kernel's buffers take at once. */
  async function bigAccount(): Promise<string> {
    const u = user();
    await storeEvents(t, [balancesEvent(u, 1, "1000")]);
    const trades: Record<string, string> = {};
    for (let i = 0; i < 40_000; i++) {
      const trade: TradeView = {
        id: `T0-${i}`,
        asset: "BTC",
        type: "long",
        margin: "1",
        leverage: 10,
        quantity: "0.0001",
        openPrice: "60000",
        stopLoss: null,
        takeProfit: null,
        trailingStop: null,
        liquidationPrice: null,
        openedAt: new Date(1_800_000_000_000 + i).toISOString(),
      };
      trades[trade.id] = JSON.stringify(trade);
    }
    await t.redis.hset(t.keys.openTradesKey(u), trades);
    return u;
  }

  /** `until`, failing with how the socket closed and the frame types rather than every frame (megabytes here). */
  async function arrives<T>(client: TestClient, test: (frames: Frame[]) => T | undefined | false): Promise<T> {
    try {
      return await client.until(test, 10_000);
    } catch {
      const closed = await closedWithin(client, 0);
      throw new Error(`closed: ${closed}; frames: ${client.frames.map((f) => f.type).join(", ")}`);
    }
  }

  /** The socket is still open and serving: it answers a ping. */
  async function stillOpen(client: TestClient): Promise<void> {
    client.send({ op: "ping", id: "still-open" });
    await arrives(client, (f) => f.some((x) => x.type === "pong"));
  }

  /** Does `action`, then waits until the stream has written a frame of `type` more, read or not. */
  async function writes(type: string, action: () => unknown): Promise<void> {
    const before = written.get(type) ?? 0;
    await action();
    for (const deadline = Date.now() + 10_000; (written.get(type) ?? 0) === before;) {
      if (Date.now() > deadline) throw new Error(`no ${type} written`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** A client of `userId` that reads nothing from its private subscribe on (until resumed), its snapshot written. */
  async function stalledAfterSnapshot(userId: string): Promise<TestClient> {
    const client = await connect(userId);
    await arrives(client, (f) => f.some((x) => x.type === "welcome"));
    client.ws.pause();
    await writes("snapshot", () => client.send({ op: "subscribe", channel: "private" }));
    return client;
  }

  it("goes out whole to a client that reads, and the socket stays open", async () => {
    const client = await connect(await bigAccount());
    client.send({ op: "subscribe", channel: "private" });
    const snapshot = await arrives(client, (f) => f.find((x) => x.type === "snapshot"));
    expect((snapshot.trades as unknown[]).length).toBe(40_000);
    await stillOpen(client);
    client.close();
  }, 20_000);

  it("does not count against the cap while it is read: a frame after it finds only that one waiting", async () => {
    const u = await bigAccount();
    const client = await stalledAfterSnapshot(u);
    await writes("event", () => fanOutEvents(t, [balancesEvent(u, 2, "999")]));
    client.ws.resume();
    await arrives(client, (f) => f.some((x) => x.type === "event" && x.seq === 2));
    expect(client.frames.map((f) => f.type)).toEqual(["welcome", "subscribed", "snapshot", "event", "summary"]);
    await stillOpen(client);
    client.close();
  }, 20_000);

  it("closes a client that stopped reading once the cap's worth of frames piles up behind it", async () => {
    const u = await bigAccount();
    const client = await stalledAfterSnapshot(u);
    // Events of ~6 KB each behind the snapshot: far more than the cap, and than what the kernel took of the snapshot.
    const wide: Record<string, string> = {};
    for (let i = 0; i < 300; i++) wide[`X${i}`] = "12345.678";
    const events: PrivateOutput[] = [];
    for (let seq = 2; seq <= 1_001; seq++)
      events.push({ ...balancesEvent(u, seq, `${seq}`), balances: { ...wide, USD: `${seq}` } } as PrivateOutput);
    await fanOutEvents(t, events);
    client.ws.resume();
    expect(await closedWithin(client, 10_000)).toBe(4008);
    const seen = client.of("event").map((f) => f.seq as number);
    expect(seen.length).toBeLessThan(1_000);
    expect(seen).toEqual(seen.map((_, i) => i + 2));
  }, 20_000);
});

describe("a client that stops reading public frames", () => {
  it("gets candles it does not read thinned, the latest of each series once it reads again, and stays open", async () => {
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
    const last = `${60000 + 20_000}`;
    const latest = (f: Frame[], interval: string) =>
      f.some((x) => x.type === "candle" && x.interval === interval && x.close === last);
    await stalled.until((f) => CANDLE_INTERVALS.every((interval) => latest(f, interval)), 5_000);
    expect(stalled.of("candle").length).toBeLessThan(20_000); // not every change: thinned
    stalled.send({ op: "ping", id: "still-open" });
    await stalled.until((f) => f.some((x) => x.type === "pong"));
    expect(await closedWithin(stalled, 0)).toBe("open");
    stalled.close();
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
