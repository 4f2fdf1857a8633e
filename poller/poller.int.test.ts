// The poller end to end on real Redis: sim feed → feed client → publisher → `engine:input` entries that decode as
// contract `price_update`s, including scripted exact quotes; a quiet market is re-published on the exchange's
// heartbeats and a halted one is not; a book whose subscription the feed lost is subscribed again; publishing
// resumes after the feed restarts; `auto` falls back to the sim
// when Backpack is unreachable (its metrics showing the sim connecting while it starts), and that sim continues
// from the last quotes in the log; a live start refuses a first frame older than the log's last live top, and takes
// one that repeats it as unchanged, so a halted book stays halted across a restart; a simulated quote sets neither.
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { ASSETS } from "../contract/markets.ts";
import type { PriceUpdate } from "../contract/messages.ts";
import { decodeInputFields, encodeFields } from "../contract/stream-fields.ts";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import { FEED_STATES, FeedClient } from "./feed-client.ts";
import { pollerMetrics } from "./metrics.ts";
import { PriceFeed, type PriceFeedOptions } from "./price-feed.ts";
import { PricePublisher, toPriceUpdate } from "./publisher.ts";
import { startSimFeed } from "./sim-feed.ts";
import { readLastQuotes } from "./start-quotes.ts";
import { appendQuotes, captureLog, closedPort, FAR_FROM_LEVELS, redisStreams, waitFor } from "./test-support.ts";

let fixture: ReturnType<typeof redisStreams>;
let redis: Redis;
const freshStream = () => fixture.fresh();
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(() => {
  fixture = redisStreams();
  redis = fixture.redis;
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => fixture.close());

/** Every entry of the stream, decoded; fails the test on one that does not decode. */
async function entries(stream: string): Promise<PriceUpdate[]> {
  const raw = await redis.xrange(stream, "-", "+");
  return raw.map(([id, fields]) => {
    const decoded = decodeInputFields(fields);
    if (!decoded.ok) throw new Error(`entry ${id}: ${decoded.reason}`);
    if (decoded.message.type !== "price_update") throw new Error(`entry ${id} is a ${decoded.message.type}`);
    return decoded.message;
  });
}

/** Sim feed → client → publisher, as main.ts wires them. */
function pipeline(url: string, stream: string, bookSilenceMs?: number) {
  const { log, events } = captureLog();
  let reconnects = 0;
  const publisher = new PricePublisher({ redis, stream, log });
  const client = new FeedClient({
    url,
    markets: ASSETS,
    log,
    silenceMs: 2_000,
    bookSilenceMs,
    backoffBaseMs: 10,
    backoffCapMs: 100,
    onReconnect: () => reconnects++,
    onQuote: (quote) => publisher.publish(toPriceUpdate(quote, "sim")),
    onHeartbeat: (update) => publisher.publish(toPriceUpdate(update, "sim")),
  });
  cleanups.push(async () => {
    await client.stop();
    await publisher.flush();
  });
  client.start();
  return { client, publisher, events, reconnects: () => reconnects };
}

/** FEED=auto with a Backpack host that never resolves (.invalid, RFC 6761): it falls back to the sim at once. */
function unresolvableAuto(options: Pick<PriceFeedOptions, "log"> & Partial<PriceFeedOptions>): PriceFeed {
  const feed = new PriceFeed({
    mode: "auto",
    backpackWsUrl: "wss://backpack.invalid",
    simWsUrl: undefined,
    markets: ASSETS,
    onUpdate: () => undefined,
    ...options,
  });
  cleanups.push(() => feed.stop());
  return feed;
}

/** A live start (FEED=backpack) at `url` after the log in `stream`, as main.ts wires it; stopped after the test. */
function liveStart(
  url: string,
  stream: string,
  onUpdate: PriceFeedOptions["onUpdate"],
  options: Partial<PriceFeedOptions> = {},
): PriceFeed {
  const feed = new PriceFeed({
    mode: "backpack",
    backpackWsUrl: url,
    simWsUrl: undefined,
    markets: ASSETS,
    log: captureLog().log,
    client: { backoffBaseMs: 10, backoffCapMs: 20 },
    lastQuotes: () => readLastQuotes(redis, { input: stream, quotesKey: `${stream}:quotes` }, ASSETS),
    onUpdate,
    ...options,
  });
  cleanups.push(() => feed.stop());
  return feed;
}

/** A local server speaking Backpack's protocol as `onConnection` scripts it; its sockets are closed after the test. */
async function localExchange(onConnection: (socket: WebSocket) => void): Promise<string> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  cleanups.push(() => {
    for (const socket of server.clients) socket.terminate();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  server.on("connection", onConnection);
  const address = server.address();
  return `ws://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
}

/** A bookTicker frame of ETH (ask 4100) with update id `u`, stamped `tUs`. */
const ethBook = (u: number, bid: string, tUs: string) =>
  JSON.stringify({
    stream: "bookTicker.ETH_USDC_PERP",
    data: {
      e: "bookTicker",
      E: Number(tUs) + 9,
      T: Number(tUs),
      s: "ETH_USDC_PERP",
      a: "4100",
      A: "1",
      b: bid,
      B: "1",
      u,
    },
  });
const ethMark = (tUs: string) =>
  JSON.stringify({
    stream: "markPrice.ETH_USDC_PERP",
    data: {
      e: "markPrice",
      E: Number(tUs),
      s: "ETH_USDC_PERP",
      p: "4050",
      f: "0.0001",
      i: "4050",
      n: 0,
      T: Number(tUs),
    },
  });
/** A live ETH price_update (ask 4100) as the log holds it. */
const liveEth = (bid: string, exchangeTimeUs: string): PriceUpdate => {
  const source = "backpack";
  return { type: "price_update", market: "ETH_USDC_PERP", bid, ask: "4100", exchangeTimeUs, source };
};

const hasQuote = (list: PriceUpdate[], market: string, bid: string, ask: string) =>
  list.some((u) => u.market === market && u.bid === bid && u.ask === ask);

describe("poller on Redis", () => {
  it("writes the sim feed's quotes, walking and scripted, as price_update entries in order", async () => {
    const sim = await startSimFeed({ intervalMs: 10 });
    cleanups.push(() => sim.stop());
    const stream = freshStream();
    const { client, publisher } = pipeline(sim.url, stream);
    await waitFor(
      "walking quotes for every market",
      async () => new Set((await entries(stream)).map((u) => u.market)).size === 4,
    );

    sim.setQuote("ETH_USDC_PERP", "4321.09", "4321.10");
    sim.setQuote("ADA_USDC_PERP", "0.91234", "0.91240");
    await waitFor("the scripted quotes", async () => {
      const list = await entries(stream);
      return (
        hasQuote(list, "ETH_USDC_PERP", "4321.09", "4321.1") && hasQuote(list, "ADA_USDC_PERP", "0.91234", "0.9124")
      );
    });
    await client.stop();
    await publisher.flush();

    const list = await entries(stream);
    expect(list.length).toBe(client.counters.published + client.counters.heartbeats);
    expect(publisher.counters).toEqual({ written: list.length, failed: 0, shed: 0, lost: 0 });
    for (const update of list) {
      expect(update).toMatchObject({ type: "price_update", source: "sim" });
      expect(update.exchangeTimeUs).toMatch(/^\d{16}$/);
      expect(Number(update.bid)).toBeLessThanOrEqual(Number(update.ask));
    }
    // In order: per market, exchange times never go back, and a quote repeats its predecessor only as a heartbeat,
    // at least 0.9 s of exchange time later.
    for (const { market } of ASSETS) {
      const mine = list.filter((u) => u.market === market);
      for (let i = 1; i < mine.length; i++) {
        const gapUs = BigInt(mine[i]!.exchangeTimeUs) - BigInt(mine[i - 1]!.exchangeTimeUs);
        expect(gapUs >= 0n).toBe(true);
        if (mine[i]!.bid === mine[i - 1]!.bid && mine[i]!.ask === mine[i - 1]!.ask)
          expect(gapUs >= 900_000n).toBe(true);
      }
    }
  });

  it("re-publishes quiet markets on the exchange's heartbeats, and stops re-publishing a halted one while others flow", async () => {
    const sim = await startSimFeed({ walking: false, heartbeatMs: 100 });
    cleanups.push(() => sim.stop());
    const stream = freshStream();
    pipeline(sim.url, stream);
    sim.setQuote("ETH_USDC_PERP", "4300.5", "4300.6");
    sim.setQuote("BTC_USDC_PERP", "97000", "97000.5");
    await waitFor("both quotes", async () => {
      const list = await entries(stream);
      return hasQuote(list, "ETH_USDC_PERP", "4300.5", "4300.6") && hasQuote(list, "BTC_USDC_PERP", "97000", "97000.5");
    });
    const haltedAtUs = BigInt(Date.now()) * 1000n;
    const beforeHalt = (await entries(stream)).length;
    sim.haltMarket("BTC_USDC_PERP"); // no frame of BTC from here on; the walk is paused, so nothing moves at all
    const after = (list: PriceUpdate[], market: string) =>
      list.filter((u) => u.market === market && BigInt(u.exchangeTimeUs) > haltedAtUs);
    const list = await waitFor(
      "two heartbeats of ETH after the halt",
      async () => {
        const all = await entries(stream);
        return after(all, "ETH_USDC_PERP").length >= 2 ? all : undefined;
      },
      6_000,
    );
    // ETH: the same top of book, stamped with the exchange's advancing time, at least 0.9 s apart.
    const eth = after(list, "ETH_USDC_PERP");
    for (const u of eth) expect([u.bid, u.ask]).toEqual(["4300.5", "4300.6"]);
    expect(BigInt(eth[1]!.exchangeTimeUs) - BigInt(eth[0]!.exchangeTimeUs) >= 900_000n).toBe(true);
    // The other quiet markets keep their heartbeats too; the halted one gets nothing after its halt.
    expect(after(list, "SOL_USDC_PERP").length).toBeGreaterThanOrEqual(1);
    expect(after(list, "ADA_USDC_PERP").length).toBeGreaterThanOrEqual(1);
    expect(after(list, "BTC_USDC_PERP")).toEqual([]);
    expect(list.slice(beforeHalt).filter((u) => u.market === "BTC_USDC_PERP")).toEqual([]); // not even an old quote
    expect(list.filter((u) => u.market === "BTC_USDC_PERP").at(-1)).toMatchObject({ bid: "97000", ask: "97000.5" });
  });

  it("subscribes a market's book again when the feed lost its subscription while its mark price flows", async () => {
    // Sizes refreshed every 100 ms: a live book shows itself, so only a lost subscription makes one silent here.
    const sim = await startSimFeed({ walking: false, heartbeatMs: 100, bookRefreshMs: 100 });
    cleanups.push(() => sim.stop());
    const stream = freshStream();
    const { client, events } = pipeline(sim.url, stream, 2_000);
    sim.setQuote("BTC_USDC_PERP", "97000", "97000.5");
    await waitFor("BTC's quote", async () => hasQuote(await entries(stream), "BTC_USDC_PERP", "97000", "97000.5"));
    sim.loseBookSubscription("BTC_USDC_PERP"); // its book frames stop; its mark price and the other markets go on
    sim.setQuote("BTC_USDC_PERP", "96999", "96999.5"); // the book moves, and the poller is not told
    await waitFor(
      "BTC's new quote, after the poller subscribed its book again",
      async () => hasQuote(await entries(stream), "BTC_USDC_PERP", "96999", "96999.5"),
      10_000,
    );
    expect(events("feed_book_silent").map((l) => l.market)).toEqual(["BTC_USDC_PERP"]);
    expect(events("feed_book_resubscribed").map((l) => l.market)).toEqual(["BTC_USDC_PERP"]);
    expect(events("feed_book_resumed").map((l) => l.market)).toEqual(["BTC_USDC_PERP"]);
    expect(client.counters.connects).toBe(1); // the socket, and every other market's streams, stayed
  });

  it("reconnects, resubscribes and resumes publishing when the feed restarts on the same port", async () => {
    const first = await startSimFeed({ walking: false });
    const stream = freshStream();
    const { client, events, reconnects } = pipeline(first.url, stream);
    first.setQuote("BTC_USDC_PERP", "96000.5", "96001");
    await waitFor("the first feed's quote", async () =>
      hasQuote(await entries(stream), "BTC_USDC_PERP", "96000.5", "96001"),
    );

    expect(client.state).toBe("connected");
    await first.stop();
    await waitFor("the disconnect", () => events("feed_disconnected").length === 1);
    expect(client.state).not.toBe("connected");
    const second = await startSimFeed({ port: first.port, walking: false });
    cleanups.push(() => second.stop());
    // Set before the client is back: it arrives only through the new subscription's first frame.
    second.setQuote("BTC_USDC_PERP", "95000", "95000.5");
    await waitFor("the second feed's quote", async () =>
      hasQuote(await entries(stream), "BTC_USDC_PERP", "95000", "95000.5"),
    );
    second.setQuote("BTC_USDC_PERP", "95010", "95010.5");
    await waitFor("a live quote after the restart", async () =>
      hasQuote(await entries(stream), "BTC_USDC_PERP", "95010", "95010.5"),
    );
    expect(client.counters.connects).toBe(2);
    expect(events("feed_subscribed")).toHaveLength(2);
    expect(reconnects()).toBe(events("feed_reconnect_scheduled").length);
    expect(reconnects()).toBeGreaterThanOrEqual(1);
    expect(client.state).toBe("connected");
    await client.stop();
    expect(client.state).toBe("stopped");
  });

  it("falls back to the sim feed, loudly, when Backpack sends nothing in time (FEED=auto)", async () => {
    const stream = freshStream();
    const { log, events } = captureLog();
    const publisher = new PricePublisher({ redis, stream, log });
    const feed = new PriceFeed({
      mode: "auto",
      backpackWsUrl: `ws://127.0.0.1:${await closedPort()}`,
      simWsUrl: undefined,
      markets: ASSETS,
      log,
      fallbackAfterMs: 200,
      client: { backoffBaseMs: 10, backoffCapMs: 50 },
      onUpdate: (update) => publisher.publish(update),
    });
    cleanups.push(() => feed.stop());
    await feed.start();
    expect(feed.source).toBe("sim");
    expect(events("feed_fallback_to_sim")[0]).toMatchObject({
      level: "warn",
      reason: "timeout",
      message: expect.stringContaining("PRICES ARE SIMULATED") as unknown,
    });
    feed.simulator!.setQuote("SOL_USDC_PERP", "201.01", "201.03");
    await waitFor("the simulated quote", async () =>
      hasQuote(await entries(stream), "SOL_USDC_PERP", "201.01", "201.03"),
    );
    expect(new Set((await entries(stream)).map((u) => u.source))).toEqual(new Set(["sim"]));
  });

  it("falls back to the sim feed at once when Backpack's host name does not resolve (FEED=auto)", async () => {
    const { log, events } = captureLog();
    const feed = unresolvableAuto({ log }); // the 5 s default wait must not apply
    const started = performance.now();
    await feed.start();
    const decidedMs = performance.now() - started;
    expect(feed.source).toBe("sim");
    expect(decidedMs).toBeLessThan(1_000);
    expect(events("feed_fallback_to_sim")[0]).toMatchObject({
      level: "warn",
      reason: "unresolvable",
      message: expect.stringContaining(
        "its host name does not resolve (getaddrinfo ENOTFOUND backpack.invalid)",
      ) as unknown,
    });
  });

  it("says the clock is behind when it falls back because Backpack's every frame was stamped in the future (FEED=auto)", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((resolve) => server.once("listening", resolve));
    let u = 1;
    const stream = setInterval(() => {
      const tUs = (Date.now() + 30_000) * 1000; // the exchange's clock 30 s ahead: this machine's is behind
      const data = { e: "bookTicker", E: tUs, T: tUs, s: "ETH_USDC_PERP", a: String(4000 + (u % 7)), A: "1" };
      const text = JSON.stringify({ stream: "bookTicker.ETH_USDC_PERP", data: { ...data, b: "3999", B: "1", u: u++ } });
      for (const socket of server.clients) socket.send(text);
    }, 20);
    cleanups.push(() => {
      clearInterval(stream);
      for (const socket of server.clients) socket.terminate();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : 0;
    const { log, events } = captureLog();
    const feed = new PriceFeed({
      mode: "auto",
      backpackWsUrl: `ws://127.0.0.1:${port}`,
      simWsUrl: undefined,
      markets: ASSETS,
      log,
      fallbackAfterMs: 500,
      onUpdate: () => undefined,
    });
    cleanups.push(() => feed.stop());
    await feed.start();
    expect(feed.source).toBe("sim");
    const warning = events("feed_fallback_to_sim")[0];
    expect(warning).toMatchObject({ level: "warn", reason: "clock_behind" });
    expect(warning?.message).toMatch(/clock is about 30 s behind Backpack's/);
  });

  it("shows the feed connecting to the sim, not a stopped Backpack, while the fallback sim starts (FEED=auto)", async () => {
    const { log, events } = captureLog();
    let releaseQuotes: () => void = () => undefined;
    const feed = unresolvableAuto({
      log,
      // The sim's read, after the fallback, is held open, as a slow Redis would: the sim cannot start before the
      // last quotes are read. The live start's read, before it, answers.
      lastQuotes: () =>
        events("feed_fallback_to_sim").length === 0
          ? Promise.resolve(new Map())
          : new Promise((resolve) => (releaseQuotes = () => resolve(new Map()))),
    });
    const registry = new Registry();
    pollerMetrics(
      registry,
      ASSETS,
      () => feed,
      () => ({ counters: { written: 0, failed: 0, shed: 0, lost: 0 }, queued: 0, lastWrittenAtMs: undefined }),
    );
    const gauges = async () => {
      const samples = parseSamples(await registry.metrics());
      const on = (name: string, label: string, values: readonly string[]) =>
        values.filter((value) => sample(samples, name, { [label]: value }) === 1);
      return {
        state: on("poller_feed_state", "state", FEED_STATES),
        source: on("poller_feed_source", "source", ["backpack", "sim"]),
      };
    };
    const started = feed.start();
    await waitFor("the fallback", () => events("feed_fallback_to_sim").length === 1);
    expect(await gauges()).toEqual({ state: ["connecting"], source: ["sim"] });
    releaseQuotes();
    await started;
    await waitFor("the sim connected", () => feed.state === "connected");
    expect(await gauges()).toEqual({ state: ["connected"], source: ["sim"] });
  });

  it("starts the fallback sim from the last quotes in the log, each sent first, unchanged (FEED=auto)", async () => {
    const stream = freshStream();
    await appendQuotes(redis, stream, FAR_FROM_LEVELS, "backpack");
    const { log, events } = captureLog();
    const publisher = new PricePublisher({ redis, stream, log });
    const feed = unresolvableAuto({
      log,
      // Nothing is written at the read model's key: every quote comes from the log.
      lastQuotes: () => readLastQuotes(redis, { input: stream, quotesKey: `${stream}:quotes` }, ASSETS),
      onUpdate: (update) => publisher.publish(update),
    });
    await feed.start();
    expect(feed.source).toBe("sim");
    const simulated = await waitFor("a simulated quote of every market", async () => {
      const list = (await entries(stream)).filter((u) => u.source === "sim");
      return new Set(list.map((u) => u.market)).size === 4 ? list : undefined;
    });
    for (const [market, quote] of Object.entries(FAR_FROM_LEVELS))
      expect(simulated.find((u) => u.market === market)).toMatchObject(quote);
    expect(events("sim_feed_started")[0]).toMatchObject({
      continued: { SOL_USDC_PERP: { bid: "204.4", ask: "204.41", from: "log" } },
      atLevels: [],
    });
  });

  it("warns, per market, when a live start follows a log whose last prices were simulated; live prices win", async () => {
    const stream = freshStream();
    // The last run was on the sim (an offline laptop): its quotes drifted far from the market.
    await appendQuotes(redis, stream, FAR_FROM_LEVELS, "sim");
    // BTC's last quote is live already: no jump to warn of.
    await appendQuotes(redis, stream, { BTC_USDC_PERP: { bid: "96990", ask: "97010" } }, "backpack");
    const exchange = await startSimFeed({ walking: false }); // stands in for Backpack, at the market's levels
    cleanups.push(() => exchange.stop());
    const run = async (mode: "backpack" | "auto") => {
      const { log, events } = captureLog();
      const publisher = new PricePublisher({ redis, stream, log });
      const feed = new PriceFeed({
        mode,
        backpackWsUrl: exchange.url,
        simWsUrl: undefined,
        markets: ASSETS,
        log,
        fallbackAfterMs: 2_000,
        lastQuotes: () => readLastQuotes(redis, { input: stream, quotesKey: `${stream}:quotes` }, ASSETS),
        onUpdate: (update) => publisher.publish(update),
      });
      await feed.start();
      expect(feed.source).toBe("backpack");
      // After a live run, a paused market's first frames repeat its logged top: taken, not published (unchanged).
      const taken = () => (feed.counters?.published ?? 0) + (feed.counters?.dropped.unchanged ?? 0);
      await waitFor("a live quote of every market", () => taken() >= ASSETS.length);
      await feed.stop();
      await publisher.flush();
      return events("feed_live_after_sim");
    };

    const warned = await run("backpack");
    expect(warned.map((l) => [l.level, l.market]).sort()).toEqual([
      ["warn", "ADA_USDC_PERP"],
      ["warn", "ETH_USDC_PERP"],
      ["warn", "SOL_USDC_PERP"],
    ]);
    const eth = warned.find((l) => l.market === "ETH_USDC_PERP");
    expect(eth).toMatchObject({ sim: { bid: "5123.45", ask: "5123.5", from: "log" } });
    expect(eth?.message).toMatch(/^PRICE JUMP: ETH_USDC_PERP's last price was simulated \(bid 5123.45, ask 5123.5/);
    // Live prices win: the first live ETH entry follows the simulated one, and is the price the warning names.
    const ethLive = (await entries(stream)).filter((u) => u.market === "ETH_USDC_PERP" && u.source === "backpack");
    expect(ethLive[0]).toMatchObject(eth?.live as object);
    expect(Number(ethLive[0]?.bid)).toBeLessThan(5000);

    // A second live start (FEED=auto) finds live quotes last: nothing to warn of.
    expect(await run("auto")).toEqual([]);
  });

  it.each([{ log: "whole" }, { log: "trimmed" }])(
    "drops a live start's first frame stamped before the log's last top began: no step back on a restart ($log log)",
    async ({ log: kind }) => {
      const stream = freshStream();
      const S = (Date.now() - 60_000) * 1000; // µs, in the past
      const second = (n: number) => String(S + n * 1_000_000);
      // The last run took ETH to 4000 at second 10, then re-published it on the mark price's heartbeats.
      for (const update of [liveEth("3990", second(8)), liveEth("4000", second(10)), liveEth("4000", second(12))])
        await redis.xadd(stream, "*", ...encodeFields(update));
      // Below its snapshot (XTRIM MINID): ETH's top in the log stood at least from second 10, whatever came before.
      const [, topStart] = await redis.xrange(stream, "-", "+");
      if (kind !== "whole") await redis.xtrim(stream, "MINID", topStart?.[0] ?? "");
      const url = await localExchange((socket) =>
        socket.once("message", () => {
          socket.send(ethBook(90, "3990", second(8))); // a lagging gateway node: the top as it was at second 8
          socket.send(ethBook(95, "4000", second(11))); // a snapshot of the book: the logged top, nothing new
          socket.send(ethBook(96, "4010", second(13)));
        }),
      );
      const updates: [string, PriceUpdate][] = [];
      const feed = liveStart(url, stream, (update, kind) => updates.push([kind, update]));
      await feed.start();
      await waitFor("the frames", () => feed.counters?.received === 3);
      // The dropped frame is no word from the book, so the snapshot after it says nothing either: only the move counts.
      expect(updates.map(([kind, u]) => [kind, u.bid, u.exchangeTimeUs])).toEqual([["quote", "4010", second(13)]]);
      expect(feed.counters?.dropped).toMatchObject({ stale: 1, unchanged: 1 });
    },
  );

  it.each([{ first: "the snapshot" }, { first: "a lagging frame" }])(
    "publishes nothing on a restart for a halted book whose frozen top answers the SUBSCRIBE ($first first)",
    async ({ first }) => {
      const stream = freshStream();
      const S = (Date.now() - 60_000) * 1000; // the book halted a minute ago
      const second = (n: number) => String(S + n * 1_000_000);
      // The last run: ETH's last book frame at S, heartbeats on its mark price for 2 s, then its book was silent.
      for (const update of [liveEth("4000", second(0)), liveEth("4000", second(1)), liveEth("4000", second(2))])
        await redis.xadd(stream, "*", ...encodeFields(update));
      const sockets: WebSocket[] = [];
      let u = 1_000;
      const url = await localExchange((socket) => {
        sockets.push(socket);
        // As the sim does: the current top, stamped now, with a new id; then the mark price flows on. A lagging gateway
        // node's frame, dropped as out of date, may come first: the snapshot after it is no word from the book either.
        socket.once("message", () => {
          if (first !== "the snapshot") socket.send(ethBook(++u, "3990", second(-3)));
          socket.send(ethBook(++u, "4000", String(Date.now() * 1000)));
        });
      });
      const markTimer = setInterval(() => {
        for (const socket of sockets)
          if (socket.readyState === socket.OPEN) socket.send(ethMark(String(Date.now() * 1000)));
      }, 200);
      cleanups.push(() => clearInterval(markTimer));
      const updates: PriceUpdate[] = [];
      const { log, events } = captureLog();
      const feed = liveStart(url, stream, (update) => updates.push(update), { log, bookSilenceMs: 2_000 });
      await feed.start();
      await waitFor("mark price frames after the snapshot", () => (feed.counters?.heartbeatFrames ?? 0) >= 5);
      sockets[0]?.terminate(); // and the same after a reconnect
      await waitFor("the second connection", () => sockets[1]);
      await waitFor("its mark price frames", () => (feed.counters?.heartbeatFrames ?? 0) >= 10);
      expect(updates).toEqual([]);
      expect(feed.counters?.dropped).toMatchObject({ unchanged: 2, stale: first === "the snapshot" ? 0 : 2 });
      expect(events("feed_book_resumed")).toEqual([]);
    },
  );

  it("takes no floor and no top from a last quote that was simulated: the first live frame is published", async () => {
    const stream = freshStream();
    const S = (Date.now() - 60_000) * 1000;
    const second = (n: number) => String(S + n * 1_000_000);
    // The sim's clock is not the exchange's, and its top is not the live book's.
    await redis.xadd(stream, "*", ...encodeFields({ ...liveEth("4000", second(10)), source: "sim" }));
    const url = await localExchange((socket) =>
      socket.once("message", () => socket.send(ethBook(90, "4000", second(8)))),
    );
    const updates: PriceUpdate[] = [];
    const feed = liveStart(url, stream, (update) => updates.push(update));
    await feed.start();
    await waitFor("the frame", () => feed.counters?.received === 1);
    expect(updates.map((u) => [u.bid, u.exchangeTimeUs, u.source])).toEqual([["4000", second(8), "backpack"]]);
  });

  it("stays on the live feed when it delivers a quote in time (FEED=auto)", async () => {
    const exchange = await startSimFeed({ walking: false });
    cleanups.push(() => exchange.stop());
    const updates: PriceUpdate[] = [];
    const { log } = captureLog();
    const feed = new PriceFeed({
      mode: "auto",
      backpackWsUrl: exchange.url,
      simWsUrl: undefined,
      markets: ASSETS,
      log,
      fallbackAfterMs: 2_000,
      onUpdate: (update) => updates.push(update),
    });
    cleanups.push(() => feed.stop());
    await feed.start();
    expect(feed.source).toBe("backpack");
    expect(feed.simulator).toBeUndefined();
    expect(updates[0]?.source).toBe("backpack");
  });
});
