// The sim feed speaks Backpack's protocol: its frames pass the real parser, prices stay realistic and within each
// market's decimals, scripted quotes (by method or by control message) arrive at once, markPrice heartbeats flow
// while the walk is paused, a halted market sends nothing until it resumes, and a lost book subscription (a
// control message) stops only that book until the client subscribes it again. Each market starts from the start
// quote it is given (its first frame), or from its level when it has none or the one given is not valid. A quiet
// book shows itself again with new sizes every few seconds. A frame that is not a JSON object, or a request whose
// fields are not of the expected types, is answered with an error: no client frame can throw, and the connection
// goes on serving.
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { ASSETS } from "../contract/markets.ts";
import { frameText, marketTable, parseFrame, type FeedQuote } from "./frames.ts";
import { startSimFeed, type SimFeed } from "./sim-feed.ts";
import { FAR_FROM_LEVELS, waitFor } from "./test-support.ts";

const ours = marketTable(ASSETS);
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function sim(options: Parameters<typeof startSimFeed>[0] = {}): Promise<SimFeed> {
  const feed = await startSimFeed(options);
  cleanups.push(() => feed.stop());
  return feed;
}

/** A raw client that keeps every frame, parsed with the poller's own parser. */
async function connect(url: string) {
  const socket = new WebSocket(url);
  cleanups.push(() => socket.terminate());
  const frames: string[] = [];
  socket.on("message", (data) => frames.push(frameText(data)));
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  const request = (message: unknown) => socket.send(JSON.stringify(message));
  const quotes = () => frames.map((f) => parseFrame(f, ours)).flatMap((r) => (r.kind === "quote" ? [r.quote] : []));
  const heartbeats = (market: string) =>
    frames
      .map((f) => parseFrame(f, ours))
      .flatMap((r) => (r.kind === "heartbeat" && r.heartbeat.market === market ? [r.heartbeat] : []));
  return { socket, frames, request, quotes, heartbeats };
}

const levels: Record<string, number> = {
  ETH_USDC_PERP: 4300,
  BTC_USDC_PERP: 97_000,
  SOL_USDC_PERP: 200,
  ADA_USDC_PERP: 0.9,
};

describe("sim feed", () => {
  it("walks realistic prices that the real parser accepts, for subscribed markets only", async () => {
    const feed = await sim({ intervalMs: 5 });
    const client = await connect(feed.url);
    client.request({
      method: "SUBSCRIBE",
      params: [
        "bookTicker.ETH_USDC_PERP",
        "bookTicker.BTC_USDC_PERP",
        "bookTicker.SOL_USDC_PERP",
        "bookTicker.ADA_USDC_PERP",
      ],
    });
    await waitFor(
      "frames for every market",
      () => new Set(client.quotes().map((q) => q.market)).size === 4 && client.frames.length >= 60,
    );
    const results = client.frames.map((f) => parseFrame(f, ours));
    expect(results.filter((r) => r.kind !== "quote")).toEqual([]);
    for (const q of client.quotes()) {
      const level = levels[q.market]!;
      expect(Number(q.bid)).toBeGreaterThan(level * 0.95);
      expect(Number(q.ask)).toBeLessThan(level * 1.05);
      expect(Number(q.ask) - Number(q.bid)).toBeLessThan(level * 0.001);
    }
    const ids = client.quotes().map((q) => BigInt(q.updateId));
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1]!)).toBe(true);

    const solOnly = await connect(feed.url);
    solOnly.request({ method: "SUBSCRIBE", params: ["bookTicker.SOL_USDC_PERP"] });
    await waitFor("a few SOL frames", () => solOnly.frames.length >= 5);
    expect(new Set(solOnly.quotes().map((q) => q.market))).toEqual(new Set(["SOL_USDC_PERP"]));
  });

  it("sends a scripted quote at once, set by method or by control message, with the walk paused", async () => {
    const feed = await sim({ walking: false });
    const client = await connect(feed.url);
    client.request({ method: "SUBSCRIBE", params: ["bookTicker.ETH_USDC_PERP"] });
    await waitFor("the initial ETH quote", () => client.quotes().length === 1);
    expect(client.quotes()[0]).toMatchObject({ market: "ETH_USDC_PERP" });

    feed.setQuote("ETH_USDC_PERP", "4100.10", "4100.25");
    await waitFor("the scripted quote", () => client.quotes().length === 2);
    expect(client.quotes()[1]).toMatchObject<Partial<FeedQuote>>({ bid: "4100.1", ask: "4100.25" });

    const controller = await connect(feed.url);
    controller.request({
      id: 7,
      method: "SET_QUOTE",
      params: { market: "ETH_USDC_PERP", bid: "3999.99", ask: "4000.01" },
    });
    await waitFor("the quote set by control message", () => client.quotes().length === 3);
    expect(client.quotes()[2]).toMatchObject<Partial<FeedQuote>>({ bid: "3999.99", ask: "4000.01" });
    await waitFor("the answer", () => controller.frames[0]);
    expect(JSON.parse(controller.frames[0]!)).toEqual({ id: 7, result: "ok" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(client.frames).toHaveLength(3); // paused: nothing but scripted quotes
  });

  it("refuses bad scripted quotes and unknown streams with an answer", async () => {
    const feed = await sim({ walking: false });
    expect(() => feed.setQuote("ETH_USDC_PERP", "4000.001", "4001")).toThrow(/bad price/);
    expect(() => feed.setQuote("ETH_USDC_PERP", "4002", "4001")).toThrow(/crossed/);
    expect(() => feed.setQuote("DOGE_USDC_PERP", "1", "2")).toThrow(/unknown market/);
    const client = await connect(feed.url);
    client.request({ id: 1, method: "SET_QUOTE", params: { market: "BTC_USDC_PERP", bid: "97000.05", ask: "97001" } });
    client.request({ method: "SUBSCRIBE", params: ["bookTicker.DOGE_USDC_PERP"] });
    client.request({ id: 3, method: "FLY" });
    await waitFor("three answers", () => client.frames.length === 3);
    const answers = client.frames.map(
      (f) => JSON.parse(f) as { id: unknown; error: { code: number; message: string } },
    );
    expect(answers.map((a) => [a.id, a.error.code])).toEqual([
      [1, 400],
      [null, 4006],
      [3, 400],
    ]);
    expect(answers[0]!.error.message).toMatch(/\(1 decimal\)/);
  });

  it("answers a frame that is JSON but not an object with an error, and keeps serving", async () => {
    const feed = await sim({ walking: false });
    const client = await connect(feed.url);
    for (const text of ["null", "5", "[]", '"x"']) client.socket.send(text);
    client.request({ id: 9, method: "SUBSCRIBE", params: ["bookTicker.ETH_USDC_PERP"] });
    await waitFor("four answers and the ETH quote", () => client.frames.length === 5);
    const notAnObject = { id: null, error: { code: 400, message: "request is not a JSON object" } };
    expect(client.frames.slice(0, 4).map((f) => JSON.parse(f) as unknown)).toEqual([
      notAnObject,
      notAnObject,
      notAnObject,
      notAnObject,
    ]);
    expect(client.quotes()).toMatchObject([{ market: "ETH_USDC_PERP" }]);
  });

  it("answers requests whose fields are not of the expected types with an error naming the field", async () => {
    const feed = await sim({ walking: false });
    const client = await connect(feed.url);
    const requests = [
      '{"method":"HALT_MARKET","params":{"market":{"toString":1}}}',
      '{"id":2,"method":"SUBSCRIBE","params":[{"toString":1},7]}',
      '{"method":{"toString":1}}',
      '{"id":4,"method":"SET_QUOTE","params":{"market":"ETH_USDC_PERP","bid":4000,"ask":"4001"}}',
      '{"id":5,"method":"RESUME_MARKET","params":null}',
      '{"id":6,"method":"UNSUBSCRIBE","params":"bookTicker.ETH_USDC_PERP"}',
      '{"id":{"toString":1},"method":"FLY"}',
    ];
    for (const text of requests) client.socket.send(text);
    client.request({ id: 9, method: "SUBSCRIBE", params: ["bookTicker.ETH_USDC_PERP"] });
    await waitFor("the answers and the ETH quote", () => client.quotes().length === 1);
    const answers = client.frames
      .filter((f) => parseFrame(f, ours).kind === "control")
      .map((f) => JSON.parse(f) as unknown);
    expect(answers).toEqual([
      { id: null, error: { code: 400, message: 'params.market must be a string, got {"toString":1}' } },
      { id: 2, error: { code: 4006, message: 'Invalid stream: {"toString":1}' } },
      { id: 2, error: { code: 4006, message: "Invalid stream: 7" } },
      { id: null, error: { code: 400, message: 'method must be a string, got {"toString":1}' } },
      { id: 4, error: { code: 400, message: "params.bid must be a string, got 4000" } },
      { id: 5, error: { code: 400, message: "params must be an object, got null" } },
      {
        id: 6,
        error: { code: 400, message: 'params must be an array of stream names, got "bookTicker.ETH_USDC_PERP"' },
      },
      { id: { toString: 1 }, error: { code: 400, message: "unknown method FLY" } },
    ]);
  });

  it("survives any request a client sends, and answers each bad one with an error", async () => {
    const feed = await sim({ walking: false });
    const client = await connect(feed.url);
    // Known methods with arbitrary params (objects whose keys shadow Object's methods included), and arbitrary ones.
    const json = fc.jsonValue({ maxDepth: 3 });
    const hostile = fc.dictionary(fc.constantFrom("toString", "valueOf", "market", "bid", "ask", "__proto__"), json);
    const method = fc.oneof(
      fc.constantFrom(
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "SET_QUOTE",
        "HALT_MARKET",
        "RESUME_MARKET",
        "PAUSE_WALK",
        "RESUME_WALK",
      ),
      json,
      hostile,
    );
    const request = fc.record(
      {
        id: fc.oneof(fc.integer(), json, hostile),
        method,
        params: fc.oneof(json, hostile, fc.array(fc.oneof(json, hostile))),
      },
      { requiredKeys: [] },
    );
    const texts = fc.sample(
      fc.oneof(
        request.map((r) => JSON.stringify(r)),
        fc.string(),
        fc.jsonValue().map((v) => JSON.stringify(v)),
      ),
      {
        seed: 20_250_106,
        numRuns: 500,
      },
    );
    for (const text of texts) client.socket.send(text);
    client.request({ id: "last", method: "PAUSE_WALK" });
    await waitFor("the last answer", () => client.frames.some((f) => f.includes('"id":"last"')));
    const errors = client.frames
      .map((f) => JSON.parse(f) as { error?: { code: number; message: unknown } })
      .flatMap((m) => (m.error === undefined ? [] : [m.error]));
    expect(errors.length).toBeGreaterThan(100);
    expect(errors.filter((e) => e.code !== 400 && e.code !== 4006)).toEqual([]);
    expect(errors.every((e) => typeof e.message === "string" && e.message !== "")).toBe(true);
    // The feed serves on, to this connection and to new ones.
    const other = await connect(feed.url);
    other.request({ method: "SUBSCRIBE", params: ["bookTicker.SOL_USDC_PERP"] });
    await waitFor("a SOL quote", () => other.quotes().length === 1);
  });

  it("sends a quiet market's book again, same prices with new sizes, once its last book frame is bookRefreshMs old", async () => {
    const feed = await sim({ walking: false, heartbeatMs: 20, bookRefreshMs: 100 });
    const client = await connect(feed.url);
    client.request({ method: "SUBSCRIBE", params: ["bookTicker.ETH_USDC_PERP", "bookTicker.SOL_USDC_PERP"] });
    client.request({ id: 1, method: "HALT_MARKET", params: { market: "SOL_USDC_PERP" } });
    await waitFor(
      "three ETH book frames",
      () => client.quotes().filter((q) => q.market === "ETH_USDC_PERP").length >= 3,
      5_000,
    );
    const eth = client.quotes().filter((q) => q.market === "ETH_USDC_PERP");
    expect(new Set(eth.map((q) => `${q.bid}/${q.ask}`)).size).toBe(1);
    const ids = eth.map((q) => BigInt(q.updateId));
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1]!)).toBe(true);
    const gapsMs = eth.slice(1).map((q, i) => (Number(q.exchangeTimeUs) - Number(eth[i]!.exchangeTimeUs)) / 1000);
    expect(gapsMs.every((ms) => ms >= 100)).toBe(true);
    // A halted market shows nothing, its book included.
    expect(client.quotes().filter((q) => q.market === "SOL_USDC_PERP").length).toBeLessThanOrEqual(1);
  });

  it("sends markPrice heartbeats with the walk paused; a halted market sends nothing until it resumes", async () => {
    const feed = await sim({ walking: false, heartbeatMs: 20 });
    const client = await connect(feed.url);
    client.request({
      method: "SUBSCRIBE",
      params: [
        "bookTicker.ETH_USDC_PERP",
        "markPrice.ETH_USDC_PERP",
        "bookTicker.SOL_USDC_PERP",
        "markPrice.SOL_USDC_PERP",
      ],
    });
    await waitFor(
      "heartbeats for both",
      () => client.heartbeats("ETH_USDC_PERP").length >= 3 && client.heartbeats("SOL_USDC_PERP").length >= 3,
    );
    expect(
      client.frames.map((f) => parseFrame(f, ours).kind).filter((k) => k !== "quote" && k !== "heartbeat"),
    ).toEqual([]);
    expect(client.quotes().map((q) => q.market)).toEqual(["ETH_USDC_PERP", "SOL_USDC_PERP"]); // paused: one each
    const times = client.heartbeats("ETH_USDC_PERP").map((h) => BigInt(h.exchangeTimeUs));
    expect(times.every((t, i) => i === 0 || t > times[i - 1]!)).toBe(true);

    client.request({ id: 5, method: "HALT_MARKET", params: { market: "SOL_USDC_PERP" } });
    await waitFor("the halt answer", () => client.frames.some((f) => f.includes('"id":5')));
    const solFrames = () => client.frames.filter((f) => f.includes("SOL_USDC_PERP")).length;
    const solBefore = solFrames();
    const ethBefore = client.heartbeats("ETH_USDC_PERP").length;
    feed.setQuote("SOL_USDC_PERP", "201.5", "201.52"); // set, but a halted market sends nothing
    await new Promise((resolve) => setTimeout(resolve, 120)); // six heartbeat periods
    expect(solFrames()).toBe(solBefore);
    expect(client.heartbeats("ETH_USDC_PERP").length).toBeGreaterThanOrEqual(ethBefore + 3);

    const solBeats = client.heartbeats("SOL_USDC_PERP").length;
    feed.resumeMarket("SOL_USDC_PERP");
    await waitFor("SOL's current quote", () => client.quotes().at(-1)?.bid === "201.5");
    expect(client.quotes().at(-1)).toMatchObject<Partial<FeedQuote>>({ market: "SOL_USDC_PERP", ask: "201.52" });
    await waitFor("SOL's heartbeats again", () => client.heartbeats("SOL_USDC_PERP").length > solBeats);

    client.request({ id: 6, method: "HALT_MARKET", params: { market: "DOGE_USDC_PERP" } });
    await waitFor("the refusal", () => client.frames.some((f) => f.includes('"id":6')));
    expect(JSON.parse(client.frames.find((f) => f.includes('"id":6'))!)).toEqual({
      id: 6,
      error: { code: 400, message: "unknown market DOGE_USDC_PERP" },
    });
  });

  it("loses a market's book subscription by control message; UNSUBSCRIBE then SUBSCRIBE brings it back", async () => {
    const feed = await sim({ walking: false, heartbeatMs: 20 });
    const client = await connect(feed.url);
    client.request({
      method: "SUBSCRIBE",
      params: ["bookTicker.ETH_USDC_PERP", "markPrice.ETH_USDC_PERP", "bookTicker.SOL_USDC_PERP"],
    });
    await waitFor("both books", () => client.quotes().length === 2);
    client.request({ id: 7, method: "LOSE_BOOK_SUBSCRIPTION", params: { market: "ETH_USDC_PERP" } });
    await waitFor("the answer", () => client.frames.some((f) => f.includes('"id":7')));
    feed.setQuote("ETH_USDC_PERP", "4301.5", "4301.6"); // not sent: the subscription is lost
    feed.setQuote("SOL_USDC_PERP", "201.5", "201.52"); // sent: SOL's stream was not touched
    const beats = client.heartbeats("ETH_USDC_PERP").length;
    await waitFor("ETH's mark price, flowing on", () => client.heartbeats("ETH_USDC_PERP").length >= beats + 3);
    expect(
      client
        .quotes()
        .map((q) => [q.market, q.bid])
        .slice(2),
    ).toEqual([["SOL_USDC_PERP", "201.5"]]);
    const params = ["bookTicker.ETH_USDC_PERP"];
    client.request({ method: "UNSUBSCRIBE", params });
    client.request({ method: "SUBSCRIBE", params });
    await waitFor("ETH's current quote", () => client.quotes().at(-1)?.bid === "4301.5");
  });

  it("starts each market from its start quote, sends it as the first frame, and walks on from there", async () => {
    const startQuotes = new Map(Object.entries(FAR_FROM_LEVELS));
    const feed = await sim({ intervalMs: 5, startQuotes });
    expect(feed.startedFrom).toEqual({
      ETH_USDC_PERP: "quote",
      BTC_USDC_PERP: "quote",
      SOL_USDC_PERP: "quote",
      ADA_USDC_PERP: "quote",
    });
    // Twenty walk steps before anyone subscribes: a market must not move before its quote has been sent.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const client = await connect(feed.url);
    client.request({ method: "SUBSCRIBE", params: [...startQuotes.keys()].map((market) => `bookTicker.${market}`) });
    await waitFor("walked quotes of every market", () =>
      [...startQuotes.keys()].every((market) => client.quotes().filter((q) => q.market === market).length >= 3),
    );
    for (const [market, start] of startQuotes) {
      const mine = client.quotes().filter((q) => q.market === market);
      expect(mine[0]).toMatchObject<Partial<FeedQuote>>({ bid: start.bid, ask: start.ask });
      for (const q of mine) {
        expect(Number(q.bid)).toBeGreaterThan(Number(start.bid) * 0.95);
        expect(Number(q.ask)).toBeLessThan(Number(start.ask) * 1.05);
      }
    }
  });

  it("starts a market at its level when its start quote is not a valid quote; ignores unknown markets", async () => {
    const feed = await sim({
      walking: false,
      startQuotes: new Map([
        ["ETH_USDC_PERP", { bid: "5123.451", ask: "5123.5" }], // beyond ETH's 2 decimals
        ["BTC_USDC_PERP", { bid: "61000.3", ask: "61000.1" }], // crossed
        ["SOL_USDC_PERP", { bid: "204.4", ask: "204.41" }],
        ["ADA_USDC_PERP", { bid: "0", ask: "0.6" }],
        ["DOGE_USDC_PERP", { bid: "0.3", ask: "0.31" }],
      ]),
    });
    expect(feed.startedFrom).toEqual({
      ETH_USDC_PERP: "level",
      BTC_USDC_PERP: "level",
      SOL_USDC_PERP: "quote",
      ADA_USDC_PERP: "level",
    });
    const client = await connect(feed.url);
    client.request({ method: "SUBSCRIBE", params: Object.keys(levels).map((market) => `bookTicker.${market}`) });
    await waitFor("a quote of every market", () => client.quotes().length === 4);
    for (const q of client.quotes()) {
      if (q.market === "SOL_USDC_PERP") {
        expect(q).toMatchObject<Partial<FeedQuote>>({ bid: "204.4", ask: "204.41" });
        continue;
      }
      const level = levels[q.market]!;
      expect(Number(q.bid)).toBeGreaterThan(level * 0.999);
      expect(Number(q.ask)).toBeLessThan(level * 1.001);
    }
  });

  it("resumes and pauses the walk by control message", async () => {
    const feed = await sim({ walking: false, intervalMs: 5 });
    const client = await connect(feed.url);
    client.request({ method: "SUBSCRIBE", params: ["bookTicker.ADA_USDC_PERP"] });
    client.request({ id: 1, method: "RESUME_WALK" });
    await waitFor("walking ADA quotes", () => client.quotes().length >= 5);
    client.request({ id: 2, method: "PAUSE_WALK" });
    await waitFor("the pause answer", () => client.frames.some((f) => f.includes('"id":2')));
    const count = client.frames.length;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(client.frames).toHaveLength(count);
  });
});
