// The feed client against local WebSocket servers (no Redis): it subscribes on every connection, counts every
// dropped frame by reason, turns the exchange's heartbeats into re-published quotes (and a halted market's silence,
// or its book's alone, or a book that refused a later frame, into none), subscribes a silent book's stream again,
// gets past a broken id or ids that started over, detects a silent socket, backs off with jitter up to a cap, and
// stops cleanly.
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { ASSETS } from "../contract/markets.ts";
import { FeedClient, type FeedClientOptions } from "./feed-client.ts";
import { frameText, type FeedQuote, type TopOfBook } from "./frames.ts";
import { captureLog, closedPort, waitFor } from "./test-support.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A server that records what each connection sent and lets the test script what it receives. */
async function scriptedServer() {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  const sockets: WebSocket[] = [];
  const received: string[][] = [];
  server.on("connection", (socket) => {
    const mine: string[] = [];
    sockets.push(socket);
    received.push(mine);
    socket.on("message", (data) => mine.push(frameText(data)));
  });
  cleanups.push(() => {
    for (const socket of sockets) socket.terminate();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return { url: `ws://127.0.0.1:${port}`, sockets, received };
}

function client(options: Partial<FeedClientOptions> & Pick<FeedClientOptions, "url" | "log">) {
  const quotes: FeedQuote[] = [];
  const beats: TopOfBook[] = [];
  const feed = new FeedClient({
    markets: ASSETS,
    onQuote: (q) => quotes.push(q),
    onHeartbeat: (b) => beats.push(b),
    backoffBaseMs: 10,
    backoffCapMs: 50,
    ...options,
  });
  cleanups.push(() => feed.stop());
  feed.start();
  return { feed, quotes, beats };
}

const frame = (u: string, bid: string, market = "ETH_USDC_PERP") =>
  JSON.stringify({
    stream: `bookTicker.${market}`,
    data: { e: "bookTicker", E: 1, T: 2, s: market, a: "5000", A: "1", b: bid, B: "1", u },
  });
/**
 * A book frame at engine time `tUs` (an undefined `bid` leaves `b` out: JSON.stringify drops it), and a markPrice
 * frame at event time `eUs` (shapes as in frames.ts).
 */
const book = (u: number | string, bid: string | undefined, tUs: number, market = "ETH_USDC_PERP") =>
  JSON.stringify({
    stream: `bookTicker.${market}`,
    data: { e: "bookTicker", E: tUs + 9, T: tUs, s: market, a: "95000", A: "1", b: bid, B: "1", u },
  });
const mark = (eUs: number, market = "ETH_USDC_PERP") =>
  JSON.stringify({
    stream: `markPrice.${market}`,
    data: { e: "markPrice", E: eUs, s: market, p: "4000", f: "0.0000125", i: "4000", n: 1, T: eUs - 400 },
  });

describe("FeedClient", () => {
  it("subscribes every market on open, publishes in order, and counts every drop by reason", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, quotes } = client({ url: server.url, log });
    await waitFor("a connection", () => server.sockets[0]);
    const socket = server.sockets[0]!;
    await waitFor("the subscription", () => server.received[0]?.[0]);
    expect(JSON.parse(server.received[0]![0]!)).toEqual({
      method: "SUBSCRIBE",
      params: [
        "bookTicker.ETH_USDC_PERP",
        "markPrice.ETH_USDC_PERP",
        "bookTicker.BTC_USDC_PERP",
        "markPrice.BTC_USDC_PERP",
        "bookTicker.SOL_USDC_PERP",
        "markPrice.SOL_USDC_PERP",
        "bookTicker.ADA_USDC_PERP",
        "markPrice.ADA_USDC_PERP",
      ],
    });
    const script = [
      frame("5", "4000"),
      frame("4", "4001"), // out of order
      frame("5", "4002"), // duplicate id
      "{not json",
      frame("6", "4000", "DOGE_USDC_PERP"),
      frame("7", "4000"), // same bid and ask as last published
      frame("8", "4000.5"),
      frame("9", "4000.555"), // too many decimals
      '{"id":null,"error":{"code":4006,"message":"Invalid stream"}}',
    ];
    for (const text of script) socket.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(quotes.map((q) => [q.updateId, q.bid])).toEqual([
      ["5", "4000"],
      ["8", "4000.5"],
    ]);
    expect(feed.counters.published).toBe(2);
    expect(feed.counters.control).toBe(1);
    const dropped = Object.fromEntries(Object.entries(feed.counters.dropped).filter(([, n]) => n > 0));
    expect(dropped).toEqual({ stale: 2, malformed_json: 1, unknown_market: 1, unchanged: 1, invalid_price: 1 });
    expect(events("feed_frames_dropped").length).toBeGreaterThan(0);
    expect(events("feed_error_message")[0]).toMatchObject({ error: '{"code":"4006","message":"Invalid stream"}' });
  });

  it("re-publishes an unchanged top of book on the exchange's heartbeats, at most every 0.9 s of its time; nothing for a halted market", async () => {
    const server = await scriptedServer();
    const { log } = captureLog();
    const { feed, quotes, beats } = client({ url: server.url, log });
    await waitFor("a connection", () => server.sockets[0]);
    const S = 1_736_172_778_000_000; // µs
    const script = [
      mark(S), // ETH: no quote yet, nothing to vouch for
      book(5, "4000", S + 100_000), // ETH quote
      book(6, "90000", S + 150_000, "BTC_USDC_PERP"), // BTC quote; BTC then halts: no frame of it follows
      mark(S + 600_000), // 0.5 s after ETH's quote: not due
      mark(S + 1_000_000), // 0.9 s after: heartbeat
      mark(S + 1_700_000), // 0.7 s after that: not due
      book(7, "4000", S + 1_900_000), // sizes only: not a quote, but evidence, and due (0.9 s)
      mark(S + 2_900_000), // due
    ];
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    const eth = (us: number) => ({ market: "ETH_USDC_PERP", bid: "4000", ask: "95000", exchangeTimeUs: String(us) });
    expect(quotes.map((q) => [q.market, q.exchangeTimeUs])).toEqual([
      ["ETH_USDC_PERP", String(S + 100_000)],
      ["BTC_USDC_PERP", String(S + 150_000)],
    ]);
    expect(beats).toEqual([eth(S + 1_000_000), eth(S + 1_900_000), eth(S + 2_900_000)]);
    expect(feed.counters).toMatchObject({ published: 2, heartbeatFrames: 5, heartbeats: 3 });
    expect(feed.counters.dropped.unchanged).toBe(1);

    // A new connection: a heartbeat vouches for the book only once this connection has shown it, and the first frame
    // with the top unchanged may be the snapshot answering the SUBSCRIBE, not the book's word.
    server.sockets[0]!.terminate();
    await waitFor("a second connection", () => server.sockets[1]);
    await waitFor("its subscription", () => server.received[1]?.[0]);
    const again = [
      mark(S + 5_000_000),
      book(1, "4000", S + 5_100_000), // the snapshot
      mark(S + 6_000_000), // nothing yet
      book(2, "4000", S + 6_500_000), // sizes only: the book's word, and a heartbeat
      mark(S + 7_500_000),
    ];
    for (const text of again) server.sockets[1]!.send(text);
    await waitFor("the frames", () => feed.counters.received === script.length + again.length);
    expect(beats.slice(3)).toEqual([eth(S + 6_500_000), eth(S + 7_500_000)]);
    expect(quotes).toHaveLength(2);
  });

  it("drops a frame stamped further ahead than the engine accepts, so the correct one and the heartbeats go on", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, quotes, beats } = client({ url: server.url, log });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const now = Date.now() * 1000; // µs
    const hour = 3_600_000_000;
    const script = [
      book(5, "4000", now + hour), // the exchange's clock an hour ahead: the engine would ignore it
      book(6, "4000", now), // the same top of book at the right time
      mark(now + 1_000_000),
      mark(now + hour), // evidence from the future would hold back the heartbeats that follow
      mark(now + 2_000_000),
      mark(now + 3_000_000),
    ];
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(quotes.map((q) => [q.updateId, q.exchangeTimeUs])).toEqual([["6", String(now)]]);
    expect(beats.map((b) => b.exchangeTimeUs)).toEqual([1, 2, 3].map((s) => String(now + s * 1_000_000)));
    expect(feed.counters.dropped).toMatchObject({ future: 2, unchanged: 0 });
    expect(events("feed_frames_dropped")[0]).toMatchObject({ reason: "future" });
  });

  it("gets past an id that jumps implausibly, and past ids that start over, instead of freezing the market", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, quotes, beats } = client({ url: server.url, log });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    let t = (Date.now() - 60_000) * 1000; // µs, in the past: nothing here is from the future
    const script = [book(100, "4000", t), book("9999999999999999999999999", "4000.5", (t += 1000))];
    // Five real moves, each followed 0.8 s later by a markPrice frame (no heartbeat due: the book just moved).
    for (let i = 0; i < 5; i++) script.push(book(101 + i, String(3000 - i), (t += 200_000)), mark((t += 800_000)));
    // The exchange's ids start over: the first such frame waits for a second that follows it.
    script.push(book(1, "2990", (t += 200_000)), book(2, "2989", (t += 200_000)), book(3, "2988", (t += 200_000)));
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(quotes.map((q) => q.bid)).toEqual(["4000", "3000", "2999", "2998", "2997", "2996", "2989", "2988"]);
    expect(beats).toEqual([]);
    expect(feed.counters.dropped).toMatchObject({ implausible: 1, stale: 1 });
    expect(feed.counters.sequenceResets).toBe(1);
    expect(events("feed_sequence_reset")).toEqual([
      expect.objectContaining({ level: "warn", market: "ETH_USDC_PERP", fromId: "105", toId: "2" }),
    ]);
  });

  it("stops vouching for a book that has shown nothing for bookSilenceMs while its mark price flows, and says so", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, quotes, beats } = client({ url: server.url, log });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000; // µs, in the past
    const second = (n: number) => S + n * 1_000_000;
    const script = [book(5, "4000", S)];
    for (let n = 1; n <= 17; n++) script.push(mark(second(n)));
    // A frame refused as out of sequence is no word from the book, nor the answer to the resubscribe at second 16.
    script.push(book(4, "3999", second(17.5)), mark(second(18)));
    // The answer: the top unchanged, which a halted book's snapshot would be too. Still silent.
    script.push(book(6, "4000", second(19)), mark(second(20)));
    // The book's next frame shows it again (its top unchanged): heartbeats go on.
    script.push(book(7, "4000", second(21)), mark(second(22)));
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(quotes.map((q) => q.updateId)).toEqual(["5"]);
    expect(beats.map((b) => b.exchangeTimeUs)).toEqual(
      [...Array.from({ length: 15 }, (_, i) => second(i + 1)), second(21), second(22)].map(String),
    );
    expect(feed.counters).toMatchObject({ heartbeats: 17, withheld: 4 });
    expect(events("feed_book_silent")).toEqual([
      expect.objectContaining({ level: "warn", market: "ETH_USDC_PERP", exchangeTimeUs: String(second(16)) }),
    ]);
    expect(events("feed_book_resumed")).toEqual([expect.objectContaining({ level: "info", market: "ETH_USDC_PERP" })]);
  });

  it("stops the heartbeats of a market whose book refused a later frame, until a book frame is accepted", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, quotes, beats } = client({ url: server.url, log });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000; // µs, in the past
    const second = (n: number) => S + n * 1_000_000;
    const script = [
      book(1_000_000_000, "4000", S),
      mark(second(1)), // heartbeat
      book(1, "3000", second(1.5)), // stale: the ids started over, the top moved; one frame is not enough to take it
      mark(second(2)), // withheld: the exchange's top is no longer the one held
      mark(second(3)), // withheld
      book(2, "2990", second(3.5)), // the second frame of the new sequence: accepted
      mark(second(4.5)), // heartbeat
      book(3, "96000", second(5)), // crossed (bid above the ask, 95000)
      mark(second(6)), // withheld
      book(4, "2990", second(6.5)), // unchanged, accepted in sequence: heartbeat
      book(3, "2980", second(6.4)), // stale and older than the last accepted frame: older news, says nothing
      mark(second(7.5)), // heartbeat
      book(5, "2990.555", second(8)), // a price the market cannot have
      mark(second(9)), // withheld
      book(6, "2990", second(9.5)), // unchanged, accepted in sequence: heartbeat
      book(7, undefined, second(10)), // the bid side gone (no `b` at all)
      mark(second(11)), // withheld
    ];
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(quotes.map((q) => q.bid)).toEqual(["4000", "2990"]);
    const eth = (bid: string, n: number) => ({
      market: "ETH_USDC_PERP",
      bid,
      ask: "95000",
      exchangeTimeUs: String(second(n)),
    });
    expect(beats).toEqual([eth("4000", 1), eth("2990", 4.5), eth("2990", 6.5), eth("2990", 7.5), eth("2990", 9.5)]);
    expect(feed.counters).toMatchObject({ heartbeats: 5, withheld: 5, sequenceResets: 1 });
    expect(feed.counters.dropped).toMatchObject({
      stale: 2,
      crossed_quote: 1,
      invalid_price: 1,
      missing_field: 1,
      unchanged: 2,
    });
    expect(events("feed_book_refused").map((l) => [l.level, l.market, l.reason, l.exchangeTimeUs])).toEqual([
      ["warn", "ETH_USDC_PERP", "stale", String(second(1.5))],
      ["warn", "ETH_USDC_PERP", "crossed_quote", String(second(5))],
      ["warn", "ETH_USDC_PERP", "invalid_price", String(second(8))],
      ["warn", "ETH_USDC_PERP", "missing_field", String(second(10))],
    ]);
    expect(events("feed_book_resumed")).toHaveLength(3);
  });

  it("stops the heartbeats of a market whose later book frame has good prices but an unreadable id", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, beats } = client({ url: server.url, log });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000;
    const second = (n: number) => S + n * 1_000_000;
    const script = [
      book(5, "4000", S),
      mark(second(1)), // heartbeat
      book("6x", "3000", second(1.5)), // the top moved to 3000, but the id cannot be read: the frame is dropped
      mark(second(2)), // withheld: 4000 is no longer the exchange's top
      mark(second(3)), // withheld
      book(7, "3000", second(3.5)), // accepted: heartbeats count again
      mark(second(4.5)), // heartbeat
    ];
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(beats.map((b) => [b.bid, b.exchangeTimeUs])).toEqual([
      ["4000", String(second(1))],
      ["3000", String(second(4.5))],
    ]);
    expect(feed.counters).toMatchObject({ heartbeats: 2, withheld: 2 });
    expect(feed.counters.dropped).toMatchObject({ invalid_field: 1 });
    expect(events("feed_book_refused").map((l) => [l.reason, l.exchangeTimeUs])).toEqual([
      ["invalid_field", String(second(1.5))],
    ]);
    expect(events("feed_book_resumed")).toHaveLength(1);
  });

  it("lets a refused book frame stamped further ahead than the engine accepts stop nothing, as a future frame", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, beats } = client({ url: server.url, log });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000; // µs, in the past
    const ahead = (Date.now() + 60_000) * 1000; // a minute ahead of this machine's clock: garbage to the engine
    const second = (n: number) => S + n * 1_000_000;
    const script = [
      book(5, "4000", S),
      book(6, "96000", ahead), // crossed (bid above the ask, 95000)
      book(7, "0", ahead), // a price the market cannot have
      book(8, undefined, ahead), // the bid side gone
      mark(second(1)), // heartbeat: none of the three said anything of the top
      book(9, "96000", second(1.5)), // crossed, at a time the engine takes: the top moved
      mark(second(2.5)), // withheld
    ];
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(beats.map((b) => b.exchangeTimeUs)).toEqual([String(second(1))]);
    expect(feed.counters).toMatchObject({ heartbeats: 1, withheld: 1 });
    expect(feed.counters.dropped).toMatchObject({ crossed_quote: 2, invalid_price: 1, missing_field: 1, future: 0 });
    expect(events("feed_book_refused").map((l) => [l.reason, l.exchangeTimeUs])).toEqual([
      ["crossed_quote", String(second(1.5))],
    ]);
  });

  it("takes the book's silence limit from bookSilenceMs; a book never shown on the connection is silent too", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, beats } = client({ url: server.url, log, bookSilenceMs: 2_000 });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000;
    // BTC's book never shows itself on this connection (its subscription lost), only its mark price does.
    const script = [book(5, "4000", S), mark(S + 1_000_000), mark(S + 2_000_000), mark(S + 3_000_000)];
    script.push(mark(S, "BTC_USDC_PERP"), mark(S + 1_000_000, "BTC_USDC_PERP"), mark(S + 3_000_000, "BTC_USDC_PERP"));
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    expect(beats.map((b) => b.exchangeTimeUs)).toEqual([S + 1_000_000, S + 2_000_000].map(String));
    expect(feed.counters.withheld).toBe(2);
    expect(events("feed_book_silent").map((l) => [l.market, l.exchangeTimeUs])).toEqual([
      ["ETH_USDC_PERP", String(S + 3_000_000)],
      ["BTC_USDC_PERP", String(S + 3_000_000)],
    ]);
  });

  it("subscribes a silent book's stream again, alone, and every bookSilenceMs while the silence lasts", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, beats } = client({ url: server.url, log, bookSilenceMs: 2_000 });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000;
    const second = (n: number) => S + n * 1_000_000;
    // ETH's book shows itself once, then only its mark price flows: silent past 2 s, from second 3 on.
    const script = [book(5, "4000", S)];
    for (let n = 1; n <= 8; n++) script.push(mark(second(n)));
    for (const text of script) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length);
    const params = ["bookTicker.ETH_USDC_PERP"];
    const again = [JSON.stringify({ method: "UNSUBSCRIBE", params }), JSON.stringify({ method: "SUBSCRIBE", params })];
    await waitFor("three resubscriptions", () => server.received[0]!.length === 7);
    expect(server.received[0]!.slice(1)).toEqual([...again, ...again, ...again]);
    expect(events("feed_book_resubscribed").map((l) => l.exchangeTimeUs)).toEqual(
      [second(3), second(5), second(7)].map(String),
    );
    // The book shows itself again, after the snapshot answering the SUBSCRIBE (its top unchanged, so no word yet), in
    // a frame that changed only the sizes: its heartbeats go on, and nothing more is sent.
    const more = [book(6, "4000", second(8.2)), book(7, "4000", second(8.5)), mark(second(9.5)), mark(second(10.5))];
    for (const text of more) server.sockets[0]!.send(text);
    await waitFor("every frame", () => feed.counters.received === script.length + more.length);
    expect(beats.map((b) => b.exchangeTimeUs).slice(-3)).toEqual([second(8.5), second(9.5), second(10.5)].map(String));
    expect(feed.counters).toMatchObject({ resubscribes: 3, connects: 1 });
    expect(server.received[0]).toHaveLength(7);
    expect(events("feed_book_resumed")).toHaveLength(1);
  });

  it("takes no word from a resubscribe's snapshot of an unchanged top: a halted book's heartbeats stay stopped", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, beats } = client({ url: server.url, log, bookSilenceMs: 2_000 });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000;
    const second = (n: number) => S + n * 1_000_000;
    let sent = 0;
    const send = async (text: string) => {
      server.sockets[0]!.send(text);
      sent++;
      await waitFor("the frame taken in", () => feed.counters.received === sent);
    };
    // ETH is halted at the exchange: its top never changes, its mark price flows. Each SUBSCRIBE of its book is
    // answered with a snapshot of that frozen top, stamped now and with a new id (as the sim answers for a market).
    let u = 5;
    let answered = 0;
    await send(book(u, "4000", S));
    for (let n = 1; n <= 12; n++) {
      await send(mark(second(n)));
      if (feed.counters.resubscribes === answered) continue;
      answered = feed.counters.resubscribes;
      await waitFor("the resubscription", () => server.received[0]!.length === 1 + 2 * answered);
      await send(book(++u, "4000", second(n + 0.1)));
    }
    // Live until 2 s after its book's last frame, then never again: the snapshots resumed nothing.
    expect(beats.map((b) => b.exchangeTimeUs)).toEqual([second(1), second(2)].map(String));
    expect(feed.counters).toMatchObject({ resubscribes: 5, heartbeats: 2, withheld: 10 });
    expect(feed.counters.dropped.unchanged).toBe(5);
    expect(events("feed_book_resumed")).toEqual([]);
    // A frame after the snapshot, with the same top in sequence (its sizes changed), is the book's word again.
    await send(book(++u, "4000", second(12.5)));
    expect(beats.map((b) => b.exchangeTimeUs).at(-1)).toBe(String(second(12.5)));
    expect(events("feed_book_resumed")).toHaveLength(1);
  });

  it("takes no word from a reconnect's snapshot of an unchanged top: reconnects keep a halted book stopped", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed, beats } = client({ url: server.url, log, bookSilenceMs: 2_000 });
    await waitFor("the subscription", () => server.received[0]?.[0]);
    const S = (Date.now() - 60_000) * 1000;
    const second = (n: number) => S + n * 1_000_000;
    let sent = 0;
    const send = async (connection: number, text: string) => {
      server.sockets[connection]!.send(text);
      sent++;
      await waitFor("the frame taken in", () => feed.counters.received === sent);
    };
    // ETH halts at the exchange after one book frame, a second before its first reconnect; its mark price flows.
    let u = 5;
    await send(0, book(u, "4000", S));
    await send(0, mark(second(1)));
    // The connection drops every 1.5 s, less than bookSilenceMs (a flaky proxy). Each new SUBSCRIBE is answered with
    // a snapshot of the frozen top, stamped now and with a new id, as a resubscribe's is.
    let t = 1;
    for (let connection = 1; connection <= 6; connection++) {
      server.sockets[connection - 1]!.terminate();
      await waitFor("the next subscription", () => server.received[connection]?.[0]);
      await send(connection, book(++u, "4000", second(t + 0.1)));
      for (const dt of [0.5, 1, 1.5]) await send(connection, mark(second(t + dt)));
      t += 1.5;
    }
    // One heartbeat before the first reconnect; none after it, 10 s on: the snapshots vouched for nothing.
    expect(beats.map((b) => b.exchangeTimeUs)).toEqual([String(second(1))]);
    expect(feed.counters.dropped.unchanged).toBe(6);
    expect(events("feed_book_resumed")).toEqual([]);
    // A frame after the snapshot, with the same top in sequence (its sizes changed), is the book's word again.
    await send(6, book(++u, "4000", second(t + 0.2)));
    expect(beats.map((b) => b.exchangeTimeUs).at(-1)).toBe(String(second(t + 0.2)));
  });

  it("treats a socket that never sends as dead, reconnects and resubscribes", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed } = client({ url: server.url, log, silenceMs: 150 });
    await waitFor("a third connection", () => server.sockets.length >= 3);
    expect(events("feed_silent").length).toBeGreaterThanOrEqual(2);
    await waitFor("the third subscription", () => server.received[2]?.length === 1);
    for (const messages of server.received.slice(0, 3))
      expect(JSON.parse(messages[0]!)).toMatchObject({ method: "SUBSCRIBE" });
    expect(feed.counters.connects).toBeGreaterThanOrEqual(3);
  });

  it("keeps a calm market's connection on its markPrice frames; pings alone are no life", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed } = client({ url: server.url, log, silenceMs: 150 });
    await waitFor("a connection", () => server.sockets.length === 1 && feed.live);
    const start = Date.now() * 1000;
    let beat = 0;
    const exchange = setInterval(() => {
      const socket = server.sockets.at(-1);
      socket?.ping();
      if (server.sockets.length === 1) socket?.send(mark(start + ++beat * 50_000)); // the book never moves
    }, 50);
    cleanups.push(() => clearInterval(exchange));
    await new Promise((r) => setTimeout(r, 600)); // four silence periods without a book frame
    expect(events("feed_silent")).toEqual([]);
    expect(server.sockets).toHaveLength(1);
    expect(feed.live).toBe(true);
    // The markPrice frames stop (the subscription is gone), the server goes on pinging: that socket is dead.
    server.sockets[0]!.terminate();
    await waitFor("a second connection", () => server.sockets.length === 2 && feed.live);
    await waitFor("the silence", () => events("feed_silent").length > 0);
  });

  it("backs off exponentially up to the cap, with full jitter", async () => {
    const url = `ws://127.0.0.1:${await closedPort()}`;
    const { log, events } = captureLog();
    const jitter = [1, 1, 1, 1, 1, 0.5];
    let i = 0;
    client({ url, log, backoffBaseMs: 5, backoffCapMs: 20, random: () => jitter[i++ % jitter.length]! });
    await waitFor("six attempts", () => events("feed_reconnect_scheduled").length >= 6);
    expect(
      events("feed_reconnect_scheduled")
        .slice(0, 6)
        .map((l) => l.delayMs),
    ).toEqual([5, 10, 20, 20, 20, 10]);
    expect(events("feed_connect_failed").length).toBeGreaterThanOrEqual(5);
  });

  it("backs off from a server that answers with an error or a quote and closes; a long connection starts it over", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const error = '{"id":null,"error":{"code":4006,"message":"Invalid stream"}}';
    const now = Date.now() * 1000;
    // Per connection: what it is sent before the server closes it, and after how long.
    const script: [string, number][] = [
      [error, 0],
      [error, 0],
      [book(5, "4000", now), 0], // a quote, then closed at once: proves nothing, the backoff grows on
      [error, 0],
      [error, 0],
      [error, 400], // open for stableAfterMs: this one worked too
      [error, 0],
    ];
    let connections = 0;
    const serve = setInterval(() => {
      for (; connections < Math.min(server.received.length, script.length); connections++) {
        const socket = server.sockets[connections]!;
        const [text, holdMs] = script[connections]!;
        socket.send(text);
        setTimeout(() => socket.close(), holdMs);
      }
    }, 5);
    cleanups.push(() => clearInterval(serve));
    client({ url: server.url, log, backoffBaseMs: 10, backoffCapMs: 1_000, stableAfterMs: 300, random: () => 1 });
    await waitFor("every connection closed", () => events("feed_reconnect_scheduled").length >= script.length);
    const delays = events("feed_reconnect_scheduled").map((l) => l.delayMs);
    expect(delays.slice(0, script.length)).toEqual([10, 20, 40, 80, 160, 10, 20]);
  });

  it("does not hammer a server that sends a quote on each connection and closes it (production timings)", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    let served = 0;
    const serve = setInterval(() => {
      for (; served < server.sockets.length; served++) {
        const socket = server.sockets[served]!;
        socket.send(mark(Date.now() * 1000));
        setTimeout(() => socket.close(1013, "try again later"), 20);
      }
    }, 5);
    cleanups.push(() => clearInterval(serve));
    // The defaults (250 ms base, 10 s cap, 10 s stable), which the test client shortens.
    client({ url: server.url, log, backoffBaseMs: 250, backoffCapMs: 10_000, random: () => 1 });
    await waitFor("three closed connections", () => events("feed_reconnect_scheduled").length >= 3);
    // Each quote reset the count: 250 ms after every close, about 7 connections a second for ever.
    expect(events("feed_reconnect_scheduled").map((l) => [l.attempt, l.delayMs])).toEqual([
      [1, 250],
      [2, 500],
      [3, 1000],
    ]);
  });

  it("stops with a clean close and does not reconnect", async () => {
    const server = await scriptedServer();
    const { log, events } = captureLog();
    const { feed } = client({ url: server.url, log });
    await waitFor("a connection", () => server.sockets[0]);
    const closed = new Promise<number>((resolve) => server.sockets[0]!.once("close", resolve));
    await feed.stop();
    expect(await closed).toBe(1000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.sockets).toHaveLength(1);
    expect(events("feed_reconnect_scheduled")).toEqual([]);
    expect(await feed.firstQuote(10)).toBe("stopped");
  });
});
