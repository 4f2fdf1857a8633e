// What clients send and how the server holds up: fuzzed frames get error frames (never a crash), an oversized
// frame closes with 1009, a flood with 4029 (WebSocket pings too); quotes coalesced per client and asset, latest
// wins; candles merged onto coarser buckets; heartbeats; a clean stop closes with 1001.
import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import fc from "fast-check";
import { Redis } from "ioredis";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { CLOSE_CODES } from "../client/protocol.ts";
import { ASSETS } from "../contract/markets.ts";
import { CANDLE_INTERVALS } from "../contract/candles.ts";
import type { Keyspace } from "../contract/names.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { NO_METRICS, streamMetrics } from "./metrics.ts";
import { quoteOutput } from "./testing/quote-output.ts";
import { fanOut, issueTicket, startTestStream, TestClient, type TestStream } from "./testing/stream-fixture.ts";

let t: TestStream;

beforeAll(async () => {
  t = await startTestStream({ heartbeatMs: 400 });
});

afterAll(async () => {
  await t.close();
});

async function connect(): Promise<TestClient> {
  const client = await TestClient.connect(
    `${t.url}?ticket=${await issueTicket(t, { userId: `u-${randomUUID().slice(0, 8)}` })}`,
  );
  await client.until((f) => f.some((x) => x.type === "welcome"));
  return client;
}

/** How the client was closed, or `open` if it still is after `ms`. */
const closedWithin = (client: TestClient, ms: number) =>
  Promise.race([client.closed, new Promise<{ code: "open" }>((r) => setTimeout(() => r({ code: "open" }), ms))]);

const quote = (asset: string, bid: string) => quoteOutput(asset, bid, new Date().toISOString());

describe("client frames", () => {
  it("answers each bad frame with an error naming the field, expected and received, and stays open", async () => {
    const client = await connect();
    client.send("{not json");
    client.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "2m" });
    client.send({ op: "subscribe", channel: "nope" });
    client.send({ op: "subscribe", channel: "quotes", assets: ["BTC"], extra: 1 });
    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await client.until((f) => f.filter((x) => x.type === "error").length === 5);
    const [json, interval, channel, extra, binary] = client.of("error");
    expect(json).toMatchObject({ code: "MALFORMED_JSON", field: "frame" });
    expect(binary).toEqual({
      type: "error",
      code: "INVALID_FRAME",
      field: "frame",
      message: "frame: expected a text frame, received binary.",
    });
    expect(interval).toMatchObject({ code: "INVALID_FRAME", field: "interval" });
    expect(interval!.message).toMatch(/^interval: expected one of "1m".*received a string "2m"\.$/);
    expect(channel).toMatchObject({ field: "channel" });
    expect(channel!.message).toContain('received a string "nope"');
    expect(extra).toMatchObject({ field: "extra" });
    // Unreadable exactly, so refused rather than answered with a rounded id the client would not recognise.
    client.send('{"op":"ping","id":9007199254740993}');
    client.send({ op: "ping", id: 7 });
    expect(await client.until((f) => f.find((x) => x.type === "pong"))).toEqual({ type: "pong", id: 7 });
    expect(client.of("pong")).toHaveLength(1);
    expect(client.of("error")[5]).toEqual({
      type: "error",
      code: "INVALID_FRAME",
      field: "id",
      message: expect.stringContaining("received a number beyond ±9007199254740991") as unknown,
    });
    client.close();
  });

  it("survives fuzzed frames: every one answered or closed with a documented code, the server still serving", async () => {
    const frames = fc.sample(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.json({ maxDepth: 3 }),
        fc
          .record({
            op: fc.constantFrom("subscribe", "unsubscribe", "ping", "x"),
            channel: fc.constantFrom("quotes", "candles", "private", 5),
            asset: fc.anything(),
            interval: fc.anything(),
            since: fc.anything(),
            assets: fc.anything(),
            id: fc.anything(),
          })
          .map((r) => JSON.stringify(r)),
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      ),
      { numRuns: 300, seed: 18 },
    );
    let answered = 0;
    for (let i = 0; i < frames.length; i += 15) {
      const client = await connect();
      const batch = frames.slice(i, i + 15);
      for (const frame of batch) client.ws.send(frame);
      client.send({ op: "ping", id: "end" });
      const end = await Promise.race([
        client.until((f) => f.some((x) => x.type === "pong" && x.id === "end")).then(() => "pong"),
        client.closed.then((c) => c.code),
      ]);
      if (end !== "pong") expect([1009, 4029]).toContain(end);
      answered += client.frames.filter(
        (x) => x.type === "error" || x.type === "subscribed" || x.type === "unsubscribed" || x.type === "pong",
      ).length;
      client.close();
    }
    expect(answered).toBeGreaterThan(200);
    const after = await connect();
    after.send({ op: "ping" });
    await after.until((f) => f.some((x) => x.type === "pong"));
    after.close();
  });

  it("closes a frame that breaks RFC 6455 with 1002 and a text frame that is not UTF-8 with 1007", async () => {
    const reserved = await connect();
    // FIN, RSV1 (no extension was agreed that would give it a meaning) and the text opcode; masked, with a zero mask.
    const frame = Buffer.from([0xc1, 0x80 | 2, 0, 0, 0, 0, ...Buffer.from("{}")]);
    (reserved.ws as unknown as { _socket: Socket })._socket.write(frame);
    expect((await reserved.closed).code).toBe(CLOSE_CODES.protocolError);
    const notUtf8 = await connect();
    notUtf8.ws.send(Buffer.from([0x7b, 0xff, 0x7d]), { binary: false });
    expect((await notUtf8.closed).code).toBe(CLOSE_CODES.invalidText);
  });

  it("counts a close for a frame over the limit as 1009 in its metrics, as the client saw it", async () => {
    const codes: number[] = [];
    const own = await startTestStream({}, { metrics: { ...NO_METRICS, closed: (code) => codes.push(code) } });
    const big = await TestClient.connect(`${own.url}?ticket=${await issueTicket(own, { userId: "u-big" })}`);
    big.send({ op: "ping", id: "x".repeat(5_000) });
    expect((await big.closed).code).toBe(1009);
    for (let i = 0; i < 200 && codes.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(codes).toEqual([1009]);
    await own.close();
  });

  it("counts a close by who closed first: a client's own 4008 as by=client, the server's 4029 as by=server", async () => {
    const registry = new Registry();
    const own = await startTestStream({}, { metrics: streamMetrics(registry) });
    const ownClient = async (userId: string) => {
      const client = await TestClient.connect(`${own.url}?ticket=${await issueTicket(own, { userId })}`);
      await client.until((f) => f.some((x) => x.type === "welcome"));
      return client;
    };
    for (let i = 0; i < 3; i++) {
      const client = await ownClient(`u-own-${i}`);
      client.ws.close(CLOSE_CODES.tooSlow, "a page script's own code");
      await client.closed;
    }
    const flood = await ownClient("u-flood");
    for (let i = 0; i < 200; i++) flood.send({ op: "ping", id: i });
    expect((await flood.closed).code).toBe(CLOSE_CODES.tooManyMessages);
    await expect
      .poll(async () =>
        (await registry.getSingleMetric("stream_closes_total")!.get()).values.map((v) => ({
          ...v.labels,
          value: v.value,
        })),
      )
      .toEqual([
        { code: "4008", by: "client", value: 3 },
        { code: "4029", by: "server", value: 1 },
      ]);
    await own.close();
  });

  it("closes with 1009 on a frame over 4 KiB and with 4029 on a flood", async () => {
    const big = await connect();
    big.send({ op: "ping", id: "x".repeat(5_000) });
    expect(await big.closed).toEqual({ code: 1009, reason: "frame over maxFrameBytes (4096 bytes)" });
    const flood = await connect();
    for (let i = 0; i < 200; i++) flood.send({ op: "ping", id: i });
    expect((await flood.closed).code).toBe(4029);
    // At the allowed rate nothing happens.
    const calm = await connect();
    for (let i = 0; i < 30; i++) {
      calm.send({ op: "ping", id: i });
      await new Promise((r) => setTimeout(r, 55));
    }
    await calm.until((f) => f.some((x) => x.type === "pong" && x.id === 29));
    calm.close();
  });

  it("counts WebSocket pings as client messages: each answered with its payload, a burst closed with 4029", async () => {
    const calm = await connect();
    const pongs: string[] = [];
    calm.ws.on("pong", (payload) => pongs.push(payload.toString()));
    for (let i = 0; i < 5; i++) calm.ws.ping(Buffer.from(`p${i}`));
    await expect.poll(() => pongs).toEqual(["p0", "p1", "p2", "p3", "p4"]);
    // Pings and messages draw on one allowance (3 s at 20 a second): the pings above and 55 messages use it up, all
    // but what refilled meanwhile, and the WebSocket pings after them go over it. 200 of them, as the flood above: 20
    // would fit in what refills over a stall of a second on a loaded machine, and the socket would stay open.
    for (let i = 0; i < 55; i++) calm.send({ op: "ping", id: i });
    for (let i = 0; i < 200; i++) calm.ws.ping(Buffer.from("over"));
    expect((await closedWithin(calm, 2_000)).code).toBe(4029);
    expect(calm.of("pong").at(-1)).toEqual({ type: "pong", id: 54 }); // every message answered: a ping went over
    // A burst in one write, more than ws would hold answers for (60): the rate closes it, with a code that says why.
    const burst = await connect();
    for (let i = 0; i < 100; i++) burst.ws.ping(Buffer.from("x"));
    expect(await closedWithin(burst, 2_000)).toEqual({ code: 4029, reason: "too many messages" });
  });

  it("refuses subscriptions over the limit, naming the limit; all quotes count one", async () => {
    const client = await connect();
    // Every candle series and every asset's quotes: within the default limit (which nothing reaches with
    // the listed assets), and within the burst of messages.
    for (const asset of ASSETS) {
      for (const interval of CANDLE_INTERVALS)
        client.send({ op: "subscribe", channel: "candles", asset: asset.symbol, interval });
    }
    client.send({ op: "subscribe", channel: "quotes", assets: ASSETS.map((a) => a.symbol) });
    await client.until(
      (f) => f.filter((x) => x.type === "subscribed").length === ASSETS.length * CANDLE_INTERVALS.length + 1,
    );
    expect(client.of("error")).toEqual([]);
    const small = await startTestStream({ maxSubscriptions: 2 });
    const limited = await TestClient.connect(`${small.url}?ticket=${await issueTicket(small, { userId: "u-lim" })}`);
    limited.send({ op: "subscribe", channel: "quotes", assets: ["BTC", "ETH"] });
    limited.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" });
    const error = await limited.until((f) => f.find((x) => x.type === "error"));
    expect(error).toMatchObject({ code: "TOO_MANY_SUBSCRIPTIONS", field: "channel" });
    expect(error.message).toContain("at most 2 subscriptions per socket, received a subscribe that would make 3.");
    limited.close();
    const all = await TestClient.connect(`${small.url}?ticket=${await issueTicket(small, { userId: "u-lim" })}`);
    all.send({ op: "subscribe", channel: "quotes" }); // 1, whatever the number of assets
    all.send({ op: "subscribe", channel: "quotes", assets: ["BTC", "ETH"] }); // within all: still 1
    all.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" }); // 2
    all.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" }); // the same series: still 2
    all.send({ op: "subscribe", channel: "private" }); // 3
    await all.until((f) => f.filter((x) => x.type === "subscribed" || x.type === "error").length === 5);
    expect(all.of("subscribed")).toHaveLength(4);
    expect(all.of("error")).toEqual([expect.objectContaining({ code: "TOO_MANY_SUBSCRIPTIONS" })]);
    expect(all.of("error")[0]!.message).toContain(
      "at most 2 subscriptions per socket, received a subscribe that would make 3.",
    );
    all.close();
    const twice = await TestClient.connect(`${small.url}?ticket=${await issueTicket(small, { userId: "u-lim" })}`);
    twice.send({ op: "subscribe", channel: "quotes", assets: ["BTC", "BTC", "BTC"] }); // one asset, thrice: 1
    twice.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" }); // 2
    await twice.until((f) => f.filter((x) => x.type === "subscribed" || x.type === "error").length === 2);
    expect(twice.of("error")).toEqual([]);
    twice.close();
    // Unsubscribing some assets of all quotes (never refused) can leave a socket over the limit: what it holds it can
    // still subscribe to, as that adds nothing; only what adds is refused.
    const over = await TestClient.connect(`${small.url}?ticket=${await issueTicket(small, { userId: "u-lim" })}`);
    over.send({ op: "subscribe", channel: "quotes" });
    over.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" });
    over.send({ op: "unsubscribe", channel: "quotes", assets: ["ETH"] });
    over.send({ op: "subscribe", id: "series", channel: "candles", asset: "BTC", interval: "1m" });
    over.send({ op: "subscribe", id: "quote", channel: "quotes", assets: ["BTC"] });
    over.send({ op: "subscribe", id: "new", channel: "candles", asset: "ETH", interval: "1m" });
    await over.until((f) => f.filter((x) => x.type === "subscribed" || x.type === "error").length === 5);
    expect(over.of("subscribed").map((f) => f.id)).toEqual([undefined, undefined, "series", "quote"]);
    const held = ASSETS.length - 1 + 1;
    expect(over.of("error")).toEqual([
      expect.objectContaining({
        id: "new",
        code: "TOO_MANY_SUBSCRIPTIONS",
        message: `channel: expected at most 2 subscriptions per socket, received a subscribe that would make ${held + 1}.`,
      }),
    ]);
    over.close();
    await small.close();
    client.close();
  });
});

describe("quotes", () => {
  it("sends each asset at most every 100 ms per client, latest wins, and the same bytes to every client", async () => {
    const a = await connect();
    const b = await connect();
    a.send({ op: "subscribe", channel: "quotes" });
    b.send({ op: "subscribe", channel: "quotes", assets: ["BTC"] });
    await a.until((f) => f.some((x) => x.type === "subscribed"));
    await b.until((f) => f.some((x) => x.type === "subscribed"));
    const started = Date.now();
    for (let i = 1; i <= 50; i++) await fanOut(t, "quote", quote("BTC", `${60000 + i}`));
    await fanOut(t, "quote", quote("ETH", "3000"));
    for (const c of [a, b]) await c.until((f) => f.some((x) => x.type === "quote" && x.bid === "60050"));
    const elapsed = Date.now() - started;
    const btc = a.of("quote").filter((q) => q.asset === "BTC");
    expect(btc.length).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 2);
    expect(btc.length).toBeLessThan(50);
    expect(btc.at(-1)).toMatchObject({ bid: "60050", market: "BTC_USDC_PERP", source: "sim" });
    expect(b.of("quote").every((q) => q.asset === "BTC")).toBe(true);
    expect(a.of("quote").some((q) => q.asset === "ETH")).toBe(true);
    a.close();
    b.close();
  });

  it("sends the quotes read model's latest quote on subscribe after a start, before the asset's next quote", async () => {
    const older = quote("ETH", "3100");
    const stored = quote("ETH", "3200");
    const own = await startTestStream(
      {},
      { beforeStart: async (redis, keys) => void (await redis.hset(keys.quotesKey, "ETH", JSON.stringify(stored))) },
    );
    try {
      const client = await TestClient.connect(`${own.url}?ticket=${await issueTicket(own, { userId: "u-seed" })}`);
      client.send({ op: "subscribe", channel: "quotes", assets: ["ETH"] });
      const { asset, market, bid, ask, updatedAt, source } = stored;
      expect(await client.until((f) => f.find((x) => x.type === "quote"), 2_000)).toEqual({
        type: "quote",
        ...{ asset, market, bid, ask, updatedAt, source },
      });
      // The fan-out may still bring that quote, or one older: neither goes out; a newer one does.
      await fanOut(own, "quote", stored);
      await fanOut(own, "quote", older);
      await fanOut(own, "quote", quote("ETH", "3300"));
      await client.until((f) => f.some((x) => x.type === "quote" && x.bid === "3300"));
      expect(client.of("quote").map((q) => q.bid)).toEqual(["3200", "3300"]);
      client.close();
    } finally {
      await own.close();
    }
  });

  it("sends a quote the worker writes while the stream starts, between its two reads (model, fan-out)", async () => {
    const stored = quote("SOL", "150");
    const newer = quote("SOL", "151");
    let keys: Keyspace | undefined;
    // The stream's command connection: once it has read the quotes read model, the worker writes a newer quote to it
    // and fans it out, before the stream goes on. A halted market sends none after it: the stream has this one only.
    const commands = new Redis(TEST_REDIS_URL);
    const hgetall = commands.hgetall.bind(commands);
    commands.hgetall = async (key: string) => {
      const read = await hgetall(key);
      if (key === keys?.quotesKey) {
        await commands.hset(keys.quotesKey, "SOL", JSON.stringify(newer));
        await commands.xadd(keys.streamFanout, "*", "kind", "quote", "body", JSON.stringify(newer));
      }
      return read;
    };
    const own = await startTestStream(
      {},
      {
        commands,
        beforeStart: async (redis, k) => {
          keys = k;
          // The fan-out's last entry when the stream starts: its reader reads what comes after it.
          await redis.hset(k.quotesKey, "SOL", JSON.stringify(stored));
          await redis.xadd(k.streamFanout, "*", "kind", "quote", "body", JSON.stringify(stored));
        },
      },
    );
    try {
      const client = await TestClient.connect(`${own.url}?ticket=${await issueTicket(own, { userId: "u-seed" })}`);
      client.send({ op: "subscribe", channel: "quotes", assets: ["SOL"] });
      await client.until((f) => f.some((x) => x.type === "quote" && x.bid === "151"), 2_000);
      expect(client.of("quote").at(-1)).toMatchObject({ bid: "151" }); // the stored one first, or not at all
      client.close();
    } finally {
      await own.close();
      commands.disconnect();
    }
  });
});

describe("candles", () => {
  it("forwards 1m candles and merges them onto the 5m bucket", async () => {
    const client = await connect();
    client.send({ op: "subscribe", channel: "candles", asset: "SOL", interval: "1m" });
    client.send({ op: "subscribe", channel: "candles", asset: "SOL", interval: "5m" });
    await client.until((f) => f.filter((x) => x.type === "subscribed").length === 2);
    const row = (minute: string, open: string, high: string, low: string, close: string) => ({
      asset: "SOL",
      interval: "1m",
      openTime: `2027-01-15T10:0${minute}:00.000Z`,
      open,
      high,
      low,
      close,
    });
    await fanOut(t, "candle", row("5", "150.10", "151", "149.5", "150.50"));
    await fanOut(t, "candle", row("6", "150.50", "152.25", "150", "151.75"));
    await fanOut(t, "candle", row("6", "150.50", "153", "149", "152"));
    const fiveMinute = await client.until((f) => {
      const c = f.filter((x) => x.type === "candle" && x.interval === "5m");
      return c.length === 3 ? c : undefined;
    });
    expect(fiveMinute.at(-1)).toEqual({
      type: "candle",
      asset: "SOL",
      interval: "5m",
      openTime: "2027-01-15T10:05:00.000Z",
      open: "150.10",
      high: "153",
      low: "149",
      close: "152",
    });
    expect(client.of("candle").filter((c) => c.interval === "1m")).toHaveLength(3);
    client.close();
  });
});

describe("liveness", () => {
  it("sends a heartbeat after heartbeatMs of silence and pings the socket", async () => {
    const client = await connect();
    let pings = 0;
    client.ws.on("ping", () => pings++);
    const heartbeat = await client.until((f) => f.find((x) => x.type === "heartbeat"), 3_000);
    expect(typeof heartbeat.time).toBe("string");
    expect(pings).toBeGreaterThan(0);
    client.close();
  });

  it("drops a socket that stops answering pings after twice heartbeatMs", async () => {
    const ticket = await issueTicket(t, { userId: "u-mute" });
    const mute = new WebSocket(`${t.url}?ticket=${ticket}`, { autoPong: false });
    const started = Date.now();
    const code = await new Promise<number>((resolve) => mute.on("close", (c) => resolve(c)));
    expect(code).toBe(1006); // terminated, no close frame
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("keeps a socket that answers the pings open", async () => {
    const client = await connect();
    await new Promise((resolve) => setTimeout(resolve, 5 * 400));
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
    client.close();
  });

  it("drops a socket that stopped reading though it sends pongs: only the answer to the ping counts", async () => {
    const client = await connect();
    client.ws.pause(); // it never sees the pings, nor anything else
    const pongs = setInterval(() => client.ws.pong(), 100);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    clearInterval(pongs);
    client.ws.resume(); // to read what came before the server cut the socket
    const code = await Promise.race([
      client.closed.then((c) => c.code),
      new Promise<"open">((resolve) => setTimeout(() => resolve("open"), 1_000)),
    ]);
    expect(code).toBe(1006);
  });

  it("a clean stop closes every socket with 1001", async () => {
    const own = await startTestStream();
    const client = await TestClient.connect(`${own.url}?ticket=${await issueTicket(own, { userId: "u-stop" })}`);
    await client.until((f) => f.length > 0);
    await own.close();
    expect((await client.closed).code).toBe(1001);
  });
});
