/**
 * The stream client against a protocol-faithful fake of the ticket route and the stream server
 * (testing/fake-stream-server.ts), over real sockets with the `ws` package as the WebSocket: subscriptions,
 * snapshot + events, resume after a drop with `since` = the last seq applied, resync, gap and silence handling,
 * jittered capped backoff, and no reconnect once the session ended.
 */
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { WebSocket } from "ws";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AssetSymbol, CandleInterval, OrderView, TradeView } from "./protocol.ts";
import { browserBundle } from "./testing/browser-bundle.ts";
import {
  backoffDelayMs,
  cutDelayMs,
  DEFAULT_BACKOFF,
  goingAwayDelayMs,
  RETRY_AFTER_MAX_MS,
  retryAfterMs,
  StreamClient,
  type CloseInfo,
  type EventFrame,
  type StreamClientError,
  type StreamClientOptions,
  type WebSocketConstructor,
} from "./stream-client.ts";
import { startFakeStreamServer, type FakeStreamServer } from "./testing/fake-stream-server.ts";

const TRADE: TradeView = {
  id: "T0-1",
  asset: "ETH",
  type: "long",
  margin: "100",
  leverage: 10,
  quantity: "0.2325",
  openPrice: "4300.5",
  stopLoss: null,
  takeProfit: null,
  trailingStop: null,
  liquidationPrice: "3913.46",
  openedAt: "2026-12-05T10:00:00.000Z",
};

const ORDER: OrderView = {
  id: "P0-1",
  asset: "BTC",
  side: "long",
  type: "limit",
  price: "90000",
  margin: "50",
  leverage: 5,
  stopLoss: null,
  takeProfit: null,
  trailingStop: null,
  expiresAt: null,
  ocoWith: null,
  status: "pending",
  placedAt: "2026-12-05T10:00:00.000Z",
  updatedAt: "2026-12-05T10:00:00.000Z",
  fillPrice: null,
  tradeId: null,
  reason: null,
};

const QUOTE = {
  type: "quote",
  asset: "ETH",
  market: "ETH_USDC",
  bid: "1",
  ask: "2",
  updatedAt: "2026-12-05T10:00:00.000Z",
  source: "sim",
} as const;

const closed = (remainingQuantity: string) => ({
  ...TRADE,
  closeId: remainingQuantity === "0" ? TRADE.id : `${TRADE.id}.1`,
  closePrice: "4350",
  pnl: "11.5",
  lossWaived: null,
  remainingQuantity,
  closeReason: "manual" as const,
  closedAt: "2026-12-05T10:05:00.000Z",
});

let server: FakeStreamServer;
const clients: StreamClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.close();
});

/** A client on the fake with what it reported recorded. */
function connect(options: Partial<StreamClientOptions> = {}) {
  const client = new StreamClient({
    apiUrl: server.apiUrl,
    WebSocket,
    token: server.token,
    subscriptions: [{ channel: "private" }],
    backoff: { initialMs: 10, maxMs: 40, goingAwayMaxMs: 40 },
    ...options,
  });
  clients.push(client);
  const seen = {
    events: [] as EventFrame[],
    closes: [] as CloseInfo[],
    errors: [] as StreamClientError[],
    causes: [] as string[],
    opens: 0,
  };
  client.on("event", (event) => seen.events.push(event));
  client.on("close", (info) => seen.closes.push(info));
  client.on("error", (error) => seen.errors.push(error));
  client.on("state", (_, cause) => seen.causes.push(cause));
  client.on("open", () => seen.opens++);
  client.connect();
  return { client, seen };
}

async function until(what: string, check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const privateSubscribes = () =>
  server.connections.map((c) => c.received.find((f) => f.op === "subscribe" && f.channel === "private"));
/** What a connection received, ids aside (the client numbers its requests; the tests below check them apart). */
const sent = (connection: number) => server.connections[connection]!.received.map(({ id: _id, ...frame }) => frame);

describe("subscriptions", () => {
  it("sends each subscription after the welcome, delivers quotes and candles, and sends later ones at once", async () => {
    server = await startFakeStreamServer();
    const { client } = connect({
      subscriptions: [{ channel: "quotes", assets: ["ETH"] }, { channel: "private" }],
    });
    const quotes: unknown[] = [];
    const candles: unknown[] = [];
    client.on("quote", (q) => quotes.push(q));
    client.on("candle", (c) => candles.push(c));
    await until("the snapshot", () => client.privateState !== undefined);
    expect(client.status).toBe("open");
    expect(server.connections[0]!.received).toEqual([
      { op: "subscribe", id: 1, channel: "private" },
      { op: "subscribe", id: 2, channel: "quotes", assets: ["ETH"] },
    ]);
    client.subscribe({ channel: "candles", asset: "ETH", interval: "1m" });
    await until("the candles subscribe", () => server.connections[0]!.received.length === 3);
    expect(server.connections[0]!.received[2]).toEqual({
      op: "subscribe",
      id: 3,
      channel: "candles",
      asset: "ETH",
      interval: "1m",
    });
    const quote = {
      type: "quote",
      asset: "ETH",
      market: "ETH_USDC_PERP",
      bid: "4300",
      ask: "4300.5",
      updatedAt: "2026-12-05T10:00:00.000Z",
      source: "sim",
    };
    const candle = {
      type: "candle",
      asset: "ETH",
      interval: "1m",
      openTime: "2026-12-05T10:00:00.000Z",
      open: "4300",
      high: "4310",
      low: "4290",
      close: "4300",
    };
    server.broadcast(quote);
    server.broadcast(candle);
    await until("the quote and candle", () => quotes.length === 1 && candles.length === 1);
    expect(quotes).toEqual([quote]);
    expect(candles).toEqual([candle]);
    client.unsubscribe({ channel: "quotes", assets: ["ETH"] });
    await until("the unsubscribe", () => server.connections[0]!.received.length === 4);
    expect(server.connections[0]!.received[3]).toEqual({
      op: "unsubscribe",
      id: 4,
      channel: "quotes",
      assets: ["ETH"],
    });
  });

  it("sends each subscribe and unsubscribe as asked, and after a reconnect what the server would hold", async () => {
    server = await startFakeStreamServer();
    const { client } = connect({ subscriptions: [{ channel: "quotes" }, { channel: "private" }] });
    await until("the snapshot", () => client.privateState !== undefined);
    client.unsubscribe({ channel: "quotes", assets: ["BTC", "SOL", "ADA"] }); // from all quotes: ETH stays
    client.subscribe({ channel: "candles", asset: "BTC", interval: "1m" });
    client.subscribe({ channel: "candles", asset: "BTC", interval: "1m" }); // again: answered, nothing changes
    await until("the answers", () => server.connections[0]!.received.length === 5);
    expect(sent(0).slice(2)).toEqual([
      { op: "unsubscribe", channel: "quotes", assets: ["BTC", "SOL", "ADA"] },
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
    ]);
    await until("answered", () => client.unansweredRequests === 0);
    expect(client.subscriptions).toEqual([
      { channel: "quotes", assets: ["ETH"] },
      { channel: "candles", asset: "BTC", interval: "1m" },
      { channel: "private" },
    ]);

    server.terminateAll();
    await until("the second connection's subscribes", () => server.connections[1]?.received.length === 3);
    expect(sent(1)).toEqual([
      { op: "subscribe", channel: "private", since: 0 },
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
      { op: "subscribe", channel: "quotes", assets: ["ETH"] },
    ]);
    client.unsubscribe({ channel: "quotes" }); // every asset, though ETH came as a list
    await until("the unsubscribe", () => server.connections[1]!.received.length === 4);
    expect(sent(1)[3]).toEqual({ op: "unsubscribe", channel: "quotes" });

    server.terminateAll();
    await until("the third connection's subscribes", () => server.connections[2]?.received.length === 2);
    await sleep(50);
    expect(sent(2)).toEqual([
      { op: "subscribe", channel: "private", since: 0 },
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
    ]);
  });

  it("refuses at once, sending and keeping nothing, a subscription with an asset or interval the protocol does not list", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect({ subscriptions: [{ channel: "private" }] });
    // Before the connection too: nothing of it is kept for later.
    client.subscribe({ channel: "quotes", assets: ["ETH", "DOGE" as AssetSymbol] });
    await until("held", () => client.status === "open" && sent(0).length === 1 && client.unansweredRequests === 0);
    client.subscribe({ channel: "candles", asset: "ETH", interval: "2m" as CandleInterval });
    client.unsubscribe({ channel: "quotes", assets: [] });
    // The server's limit, which also keeps every frame the client sends far below maxFrameBytes (a 1009 close).
    client.subscribe({ channel: "quotes", assets: Array<AssetSymbol>(1_000).fill("ETH") });
    expect(seen.errors).toEqual([
      {
        kind: "request",
        message: 'assets: expected one of ETH, BTC, SOL, ADA, received "DOGE".',
        request: { op: "subscribe", subscription: { channel: "quotes", assets: ["ETH", "DOGE"] } },
      },
      expect.objectContaining({
        kind: "request",
        message: 'interval: expected one of 1m, 5m, 15m, 1h, 4h, 1d, received "2m".',
      }),
      expect.objectContaining({
        kind: "request",
        message: "assets: expected at least one asset (or no assets: all), received [].",
      }),
      expect.objectContaining({ kind: "request", message: "assets: expected at most 64 assets, received 1000." }),
    ]);
    await sleep(50);
    expect(sent(0)).toEqual([{ op: "subscribe", channel: "private" }]);
    expect(client.subscriptions).toEqual([{ channel: "private" }]);
    // Given at construction, before any listener could hear of it: thrown.
    expect(() => connect({ subscriptions: [{ channel: "quotes", assets: ["ETH", "DOGE" as AssetSymbol] }] })).toThrow(
      'subscriptions: assets: expected one of ETH, BTC, SOL, ADA, received "DOGE".',
    );
  });

  it("after a reconnect, subscribes what the server held first, then what it never answered", async () => {
    server = await startFakeStreamServer();
    const { client } = connect({ subscriptions: [{ channel: "private" }, { channel: "quotes", assets: ["ETH"] }] });
    await until("held", () => client.status === "open" && client.unansweredRequests === 0 && sent(0).length === 2);
    server.silence(true); // the next subscribe goes unanswered
    client.subscribe({ channel: "candles", asset: "BTC", interval: "1m" });
    await until("the candles subscribe", () => sent(0).length === 3);
    expect(client.unansweredRequests).toBe(1);
    server.silence(false);
    server.terminateAll();
    await until("the second connection's subscribes", () => server.connections[1]?.received.length === 3);
    expect(sent(1)).toEqual([
      { op: "subscribe", channel: "private", since: 0 },
      { op: "subscribe", channel: "quotes", assets: ["ETH"] },
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
    ]);
    await until("answered", () => client.unansweredRequests === 0);
    expect(client.subscriptions).toHaveLength(3);
  });

  it("numbers its requests, and drops a subscribe the server refused: reported with the request, not sent again", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect({ subscriptions: [{ channel: "quotes", assets: ["ETH"] }] });
    await until("answered", () => client.status === "open" && sent(0).length === 1 && client.unansweredRequests === 0);
    server.refuseSubscribes("TOO_MANY_SUBSCRIPTIONS");
    client.subscribe({ channel: "candles", asset: "BTC", interval: "1m" });
    client.subscribe({ channel: "quotes", assets: ["SOL"] });
    await until("the refusals", () => seen.errors.length === 2);
    expect(server.connections[0]!.received.map((f) => f.op !== "ping" && f.id)).toEqual([1, 2, 3]);
    expect(seen.errors[0]).toEqual({
      kind: "server",
      code: "TOO_MANY_SUBSCRIPTIONS",
      message: "Refused by the test.",
      request: { op: "subscribe", subscription: { channel: "candles", asset: "BTC", interval: "1m" } },
    });
    expect(seen.errors[1]).toMatchObject({
      request: { op: "subscribe", subscription: { channel: "quotes", assets: ["SOL"] } },
    });
    expect(client.subscriptions).toEqual([{ channel: "quotes", assets: ["ETH"] }]);

    server.refuseSubscribes(undefined);
    server.terminateAll();
    await until("the second connection", () => server.connections[1]?.received.length === 1);
    await sleep(50);
    expect(sent(1)).toEqual([{ op: "subscribe", channel: "quotes", assets: ["ETH"] }]);
  });

  it("does not send a private subscribe while the private channel is held or asked for: no ALREADY_SUBSCRIBED", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect({ subscriptions: [{ channel: "private" }] });
    client.subscribe({ channel: "private" }); // before the connection: one subscribe on connecting
    await until("held", () => client.status === "open" && client.unansweredRequests === 0);
    client.subscribe({ channel: "private" });
    client.subscribe({ channel: "candles", asset: "ETH", interval: "1m" });
    const candles = () => sent(0).some((f) => "channel" in f && f.channel === "candles");
    await until("the candles subscribe answered", () => candles() && client.unansweredRequests === 0);
    expect(sent(0)).toHaveLength(2);
    client.unsubscribe({ channel: "private" });
    client.subscribe({ channel: "private" }); // not held once the unsubscribe goes: sent
    client.subscribe({ channel: "private" });
    await until("answered", () => client.unansweredRequests === 0);
    expect(sent(0)).toEqual([
      { op: "subscribe", channel: "private" },
      { op: "subscribe", channel: "candles", asset: "ETH", interval: "1m" },
      { op: "unsubscribe", channel: "private" },
      { op: "subscribe", channel: "private", since: 0 },
    ]);
    expect(seen.errors).toEqual([]);
    expect(client.subscriptions).toEqual([
      { channel: "candles", asset: "ETH", interval: "1m" },
      { channel: "private" },
    ]);
  });

  it("authenticates the ticket request with cookies when given no token", async () => {
    server = await startFakeStreamServer();
    const { client } = connect({ token: undefined, headers: { cookie: `session=${server.token}` } });
    await until("the snapshot", () => client.privateState !== undefined);
  });

  it("reports an error frame and stays connected", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("open", () => client.status === "open");
    server.broadcast({ type: "error", code: "INVALID_FRAME", message: "channel: expected …", field: "channel" });
    await until("the error", () => seen.errors.length === 1);
    expect(seen.errors[0]).toEqual({
      kind: "server",
      code: "INVALID_FRAME",
      message: "channel: expected …",
      field: "channel",
    });
    expect(client.status).toBe("open");
  });
});

describe("the server's message rate", () => {
  const series = (["1m", "5m", "15m", "1h", "4h"] as const).map((interval) => ({
    channel: "candles" as const,
    asset: "BTC" as const,
    interval,
  }));

  it("keeps within the welcome's maxMessagesPerSec: a second's worth at once, the rest queued and sent in order", async () => {
    server = await startFakeStreamServer({ limits: { maxMessagesPerSec: 2 } });
    const { client, seen } = connect({ subscriptions: [{ channel: "private" }, ...series] });
    const queuedAtOpen: number[] = [];
    client.on("open", () => queuedAtOpen.push(client.queuedFrames));
    await until("every subscribe answered", () => client.status === "open" && client.unansweredRequests === 0);
    expect(queuedAtOpen).toEqual([4]); // 6 subscribes, 2 of them sent with the welcome
    expect(client.queuedFrames).toBe(0);
    expect(server.connections[0]!.received.map((f) => f.op !== "ping" && f.id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen.closes).toEqual([]);
  });

  it("a 4029: reported as a rate error naming the rates, and every later connection sends at half the rate", async () => {
    server = await startFakeStreamServer({ limits: { maxMessagesPerSec: 4 } });
    const { client, seen } = connect({ subscriptions: [{ channel: "private" }, ...series] });
    const queuedAtOpen: number[] = [];
    client.on("open", () => queuedAtOpen.push(client.queuedFrames));
    await until("every subscribe answered", () => client.status === "open" && client.unansweredRequests === 0);
    server.closeAll(4029, "too many messages");
    await until("the second connection answered", () => seen.opens === 2 && client.unansweredRequests === 0);
    expect(queuedAtOpen).toEqual([2, 4]); // 4 a second, then 2: a burst of 4, then of 2
    expect(seen.errors).toEqual([
      {
        kind: "rate",
        message:
          "closed 4029: more than 4 messages a second arrived from this client; it sends at most 2 a second from now on",
        maxMessagesPerSec: 4,
        perSec: 2,
      },
    ]);
    expect(seen.closes.map((c) => c.code)).toEqual([4029]);
    expect(client.subscriptions).toHaveLength(6);
  });
});

describe("the private state", () => {
  it("starts from the snapshot and follows each event in seq order", async () => {
    server = await startFakeStreamServer();
    server.snapshot = { ...server.snapshot, seq: 7, orders: [ORDER] };
    const { client, seen } = connect();
    await until("the snapshot", () => client.privateState?.seq === 7);
    expect([...client.privateState!.orders.keys()]).toEqual(["P0-1"]);

    server.publish({ event: "trade_opened", trade: TRADE });
    server.publish({ event: "balances_changed", balances: { USD: "9900" } });
    server.publish({ event: "trade_updated", change: "exits", trade: { ...TRADE, stopLoss: "4000" } });
    server.publish({ event: "order_updated", order: { ...ORDER, status: "cancelled" } });
    server.publish({ event: "order_updated", order: { ...ORDER, id: "P0-2" } });
    await until("five events", () => client.privateState?.seq === 12);
    let state = client.privateState!;
    expect(seen.events.map((e) => e.seq)).toEqual([8, 9, 10, 11, 12]);
    expect(state.balances).toEqual({ USD: "9900" });
    expect([...state.trades.values()]).toEqual([{ ...TRADE, stopLoss: "4000" }]);
    expect([...state.orders.values()]).toEqual([{ ...ORDER, id: "P0-2" }]);

    // A partial close leaves the trade (its trade_updated carries what stays); the close of the rest removes it.
    server.publish({ event: "closed_order", trade: closed("0.1") });
    await until("the partial close", () => client.privateState?.seq === 13);
    expect([...client.privateState!.trades.keys()]).toEqual(["T0-1"]);
    server.publish({ event: "closed_order", trade: closed("0") });
    await until("the close", () => client.privateState?.seq === 14);
    state = client.privateState!;
    expect(state.trades.size).toBe(0);
    expect(state.summary).toEqual(server.snapshot.summary);
    expect(seen.causes.slice(0, 3)).toEqual(["snapshot", "event", "summary"]);
  });

  it("ignores an event it already applied, and on a gap resumes from the last one applied", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("the snapshot", () => client.privateState !== undefined);
    server.publish({ event: "balances_changed", balances: { USD: "1" } });
    server.publish({ event: "balances_changed", balances: { USD: "2" } });
    await until("two events", () => client.privateState?.seq === 2);
    const time = new Date().toISOString();
    server.broadcast({ type: "event", seq: 2, time, event: "balances_changed", balances: { USD: "dup" } });
    server.broadcast({ type: "event", seq: 4, time, event: "balances_changed", balances: { USD: "gap" } });
    await until("a reconnect", () => server.connections.length === 2 && privateSubscribes()[1] !== undefined);
    expect(seen.errors).toContainEqual({ kind: "gap", expectedSeq: 3, receivedSeq: 4 });
    expect(privateSubscribes()[1]).toMatchObject({ op: "subscribe", channel: "private", since: 2 });
    expect(client.privateState!.balances).toEqual({ USD: "2" });
    server.publish({ event: "balances_changed", balances: { USD: "3" } });
    await until("the next event", () => client.privateState?.seq === 3);
    expect(seen.events.map((e) => e.seq)).toEqual([1, 2, 3]);
  });
});

describe("reconnecting", () => {
  it("after the server cut the connection: a new ticket, subscriptions again, the private channel resumed", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect({ subscriptions: [{ channel: "quotes" }, { channel: "private" }] });
    await until("the snapshot", () => client.privateState !== undefined);
    server.publish({ event: "trade_opened", trade: TRADE });
    server.publish({ event: "balances_changed", balances: { USD: "9900" } });
    await until("two events", () => client.privateState?.seq === 2);

    server.refuseTickets(503); // held off until the events below are in the log
    server.terminateAll();
    await until("the drop", () => seen.closes.length >= 1);
    expect(seen.closes[0]).toMatchObject({ code: 1006, sessionEnded: false });
    expect(client.status).toBe("reconnecting");
    server.publish({ event: "trade_updated", change: "exits", trade: { ...TRADE, takeProfit: "4600" } });
    server.publish({ event: "closed_order", trade: { ...closed("0"), takeProfit: "4600" } });
    server.refuseTickets(undefined);

    await until("the missed events", () => client.privateState?.seq === 4);
    expect(server.connections).toHaveLength(2);
    expect(sent(1)).toEqual([
      { op: "subscribe", channel: "private", since: 2 },
      { op: "subscribe", channel: "quotes" },
    ]);
    expect(seen.events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(client.privateState!.trades.size).toBe(0);
    expect(seen.opens).toBe(2);

    // A clean close by the server (going away) resumes the same way.
    server.closeAll(1001, "restarting");
    await until("the third connection", () => privateSubscribes()[2] !== undefined);
    expect(privateSubscribes()[2]).toMatchObject({ op: "subscribe", channel: "private", since: 4 });
    expect(seen.closes.at(-1)).toMatchObject({ code: 1001, reason: "restarting" });
  });

  it("replaces the state with a resync's when the events it missed are gone", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("the snapshot", () => client.privateState !== undefined);
    server.publish({ event: "trade_opened", trade: TRADE });
    await until("the event", () => client.privateState?.seq === 1);

    server.refuseTickets(503);
    server.terminateAll();
    await until("the drop", () => seen.closes.length === 1);
    for (let i = 0; i < 5; i++) server.publish({ event: "balances_changed", balances: { USD: String(i) } });
    server.retainFrom(4); // events 1–3 forgotten: a resume from 1 cannot be served
    server.snapshot = { ...server.snapshot, seq: 6, balances: { USD: "4" }, trades: [], orders: [ORDER] };
    server.refuseTickets(undefined);

    await until("the resync", () => seen.causes.includes("resync"));
    expect(privateSubscribes()[1]).toMatchObject({ op: "subscribe", channel: "private", since: 1 });
    const state = client.privateState!;
    expect(state.seq).toBe(6);
    expect(state.balances).toEqual({ USD: "4" });
    expect(state.trades.size).toBe(0);
    expect([...state.orders.values()]).toEqual([ORDER]);
    server.publish({ event: "order_updated", order: { ...ORDER, status: "filled" } });
    await until("the next event", () => client.privateState?.seq === 7);
    expect(client.privateState!.orders.size).toBe(0);
  });

  it("drops a connection on which nothing arrived for twice the welcome's heartbeat, and reconnects", async () => {
    server = await startFakeStreamServer({ heartbeatMs: 100 });
    const { client, seen } = connect();
    await until("open", () => client.status === "open");
    await sleep(300); // heartbeats and pongs keep it up
    expect(server.connections).toHaveLength(1);
    server.silence(true);
    await until("the drop", () => seen.closes.length === 1, 1_000);
    expect(seen.closes[0]).toMatchObject({ code: 4000, reason: "nothing received for 200 ms" });
    server.silence(false);
    await until("a new connection", () => server.connections.length === 2 && client.status === "open");
    // The client pinged meanwhile, at the welcome's period.
    expect(server.connections[0]!.received.filter((f) => f.op === "ping").length).toBeGreaterThanOrEqual(2);
  });
  it("keeps its own heartbeat when the welcome's is longer than a timer can wait", async () => {
    // The welcome says 2^31 ms; the silence timer at twice that would fire at once and drop every connection.
    server = await startFakeStreamServer({ heartbeatMs: 100, welcomeHeartbeatMs: 2 ** 31 });
    const { client, seen } = connect({ heartbeatMs: 100 });
    await until("open", () => client.status === "open");
    await sleep(300); // the server's heartbeats every 100 ms keep it up, on the client's own 200 ms silence bound
    expect(seen.closes).toEqual([]);
    expect(server.connections).toHaveLength(1);
  });

  it("a thread stalled past twice the heartbeat keeps a connection whose frames arrived in time", async () => {
    server = await startFakeStreamServer({ heartbeatMs: 100 });
    const { client, seen } = connect({ subscriptions: [{ channel: "quotes" }] });
    let stalls = 0;
    client.on("quote", () => {
      stalls++;
      // A frame goes out at once (in the client's socket buffer within a millisecond), and then the page is busy
      // (a long render, a frozen tab) for longer than 2 × heartbeatMs: the silence timer is overdue when it ends.
      if (stalls === 1) server.broadcast({ type: "heartbeat", time: new Date().toISOString() });
      else server.silence(true); // the second time, nothing comes during or after the stall
      const end = performance.now() + 300;
      while (performance.now() < end);
    });
    await until("open", () => client.status === "open");
    server.broadcast(QUOTE);
    await until("the stall", () => stalls === 1);
    await sleep(50);
    expect(seen.closes).toEqual([]);
    expect(client.status).toBe("open");

    // With nothing waiting to be read after the stall, the connection is dropped as silent all the same.
    server.broadcast(QUOTE);
    await until("the drop", () => seen.closes.length === 1, 1_000);
    expect(stalls).toBe(2);
    expect(seen.closes[0]).toMatchObject({ code: 4000, reason: "nothing received for 200 ms" });
  });

  it('a ticket request that cannot reach the API says why, not only Node\'s bare "fetch failed"', async () => {
    server = await startFakeStreamServer();
    // A port nothing listens on: the API down.
    const probe = createServer().listen(0, "127.0.0.1");
    await once(probe, "listening");
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const down = connect({ apiUrl: `http://127.0.0.1:${port}`, backoff: { initialMs: 1_000 } });
    await until("the error", () => down.seen.errors.length === 1);
    expect(down.seen.errors[0]).toEqual({
      kind: "ticket",
      status: null,
      message: `fetch failed: connect ECONNREFUSED 127.0.0.1:${port}`,
    });
    down.client.close();

    // An AggregateError (each of a host's addresses refused) has no message of its own: those it holds are told.
    const refused = (address: string) => new Error(`connect ECONNREFUSED ${address}`);
    const both = new AggregateError([refused("::1:3000"), refused("127.0.0.1:3000")]);
    const { seen } = connect({
      backoff: { initialMs: 1_000 },
      fetch: () => Promise.reject(new TypeError("fetch failed", { cause: both })),
    });
    await until("the error", () => seen.errors.length === 1);
    expect(seen.errors[0]).toMatchObject({
      message: "fetch failed: connect ECONNREFUSED ::1:3000; connect ECONNREFUSED 127.0.0.1:3000",
    });
  });

  it("aborts a ticket request unanswered after ticketTimeoutMs and retries it; close() aborts the one in flight", async () => {
    server = await startFakeStreamServer();
    const signals: AbortSignal[] = [];
    const { client, seen } = connect({
      ticketTimeoutMs: 50,
      random: () => 0,
      fetch: (_url, init) => {
        signals.push(init.signal);
        return new Promise(() => undefined); // never answers, and ignores the signal
      },
    });
    await until("a retry", () => signals.length === 2, 1_000);
    expect(signals[0]!.aborted).toBe(true);
    expect(seen.errors[0]).toEqual({
      kind: "ticket",
      status: null,
      message: "no answer to the ticket request in 50 ms",
    });
    expect(seen.closes[0]).toMatchObject({ code: 4000, reason: "ticket request failed", reconnectInMs: 5 });
    expect(client.status).toBe("reconnecting");

    client.close();
    expect(signals[1]!.aborted).toBe(true);
    await sleep(150); // past the timeout and many backoff periods
    expect(signals).toHaveLength(2);
    expect(seen.errors).toHaveLength(1);
    expect(seen.closes.map((c) => c.reconnectInMs)).toEqual([5, null]);
  });
});

describe("backoff", () => {
  it("waits between half the cap and the cap, the cap doubling per failed attempt up to the maximum", () => {
    const policy = { ...DEFAULT_BACKOFF, initialMs: 100, maxMs: 1_000 };
    expect([0, 1, 2, 3, 4, 10, 100].map((n) => backoffDelayMs(n, policy, () => 0))).toEqual([
      50, 100, 200, 400, 500, 500, 500,
    ]);
    expect([0, 1, 2, 3, 4, 10, 100].map((n) => backoffDelayMs(n, policy, () => 0.999999))).toEqual([
      100, 200, 400, 800, 1_000, 1_000, 1_000,
    ]);
    expect(backoffDelayMs(1, policy, () => 0.5)).toBe(150);
  });

  it("retries refused tickets after jittered, growing, capped pauses, and starts over after a stable connection", async () => {
    server = await startFakeStreamServer();
    const randoms = [0, 0.5, 0.999, 0.25, 0.75, 0.1];
    let draw = 0;
    server.refuseTickets(503);
    const { client, seen } = connect({
      // No spread after the cut below: the step alone shows that the count started over.
      backoff: { initialMs: 20, maxMs: 80, stableMs: 100, goingAwayMaxMs: 0 },
      random: () => randoms[draw++ % randoms.length]!,
    });
    await until("six refusals", () => server.ticketRequests.length >= 6);
    const delays = seen.closes.slice(0, 5).map((c) => c.reconnectInMs);
    expect(delays).toEqual([10, 30, 80, 50, 70]); // caps 20, 40, 80, 80, 80; jitter from the draws
    const gaps = server.ticketRequests.slice(1, 6).map((at, i) => at - server.ticketRequests[i]!);
    gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(delays[i]! - 2));
    expect(seen.errors[0]).toEqual({ kind: "ticket", status: 503, message: "Refused by the test." });

    server.refuseTickets(undefined);
    await until("open", () => client.status === "open", 1_000);
    await sleep(150); // past stableMs
    draw = 0;
    server.terminateAll();
    await until("the drop", () => seen.closes.at(-1)?.code === 1006);
    expect(seen.closes.at(-1)!.reconnectInMs).toBe(10); // attempt 0 again: cap 20, draw 0
  });

  it("after the server went away (1001), waits a random pause over 0–5 s, not the first backoff step", async () => {
    server = await startFakeStreamServer();
    let draw = 0.9;
    const { client, seen } = connect({ backoff: { initialMs: 10, maxMs: 40 }, random: () => draw });
    await until("open", () => client.status === "open");
    server.closeAll(1001, "deploying");
    await until("the close", () => seen.closes.length === 1);
    expect(seen.closes[0]).toMatchObject({ code: 1001, reconnectInMs: 4_500 });
    await sleep(200);
    expect(server.ticketRequests).toHaveLength(1); // still waiting
    client.close();
    expect(goingAwayDelayMs(DEFAULT_BACKOFF, () => 0)).toBe(0);
    draw = 0.999999;
    expect(goingAwayDelayMs(DEFAULT_BACKOFF, () => draw)).toBe(4_999);
  });

  it("after 1001 on a connection that was not stable, backs off as after a failed attempt, up to maxMs", async () => {
    server = await startFakeStreamServer();
    let draw = 0.5;
    const { client, seen } = connect({
      backoff: { initialMs: 20, maxMs: 80, stableMs: 100, goingAwayMaxMs: 100 },
      random: () => draw,
    });
    await until("open", () => client.status === "open");
    await sleep(150); // past stableMs
    // A server in a restart loop: every connection goes away as soon as it is up.
    const stopGoingAway = client.on("open", () => server.closeAll(1001, "restarting"));
    server.closeAll(1001, "deploying");
    await until("five closes", () => seen.closes.length === 5);
    stopGoingAway();
    // The spread alone after the stable connection (50); then the longer of it and the step of each failed attempt
    // (caps 40, 80, 80, 80 at draw 0.5: 30, 60, 60, 60).
    expect(seen.closes.map((c) => [c.code, c.reconnectInMs])).toEqual([
      [1001, 50],
      [1001, 50],
      [1001, 60],
      [1001, 60],
      [1001, 60],
    ]);

    await until("open again", () => client.status === "open" && server.connections.length === 6);
    await sleep(150); // past stableMs: the count starts over, and the next 1001 waits the spread alone
    draw = 0;
    server.closeAll(1001, "deploying");
    await until("the close", () => seen.closes.length === 6);
    expect(seen.closes[5]).toMatchObject({ code: 1001, reconnectInMs: 0 }); // the step would be 10
  });

  it("after a cut without a close frame (1006) on a stable connection, spreads the retry up to goingAwayMaxMs", async () => {
    server = await startFakeStreamServer();
    const draws = [0, 0.9];
    let n = 0;
    const { client, seen } = connect({
      // stableMs well above what a reconnect and the cut after it take on a loaded machine (the second half).
      backoff: { initialMs: 20, maxMs: 80, stableMs: 1_500, goingAwayMaxMs: 1_000 },
      random: () => draws[n++ % draws.length]!,
    });
    await until("open", () => client.status === "open");
    await sleep(1_600); // past stableMs
    // Deployed, the load balancer cuts every socket of a stream task it drains at once: no 1001 reaches the clients.
    server.terminateAll();
    await until("the close", () => seen.closes.length === 1);
    // The first step (cap 20, draw 0: 10), then a pause from it up to goingAwayMaxMs (draw 0.9: 10 + 891).
    expect(seen.closes[0]).toMatchObject({ code: 1006, reconnectInMs: 901 });

    await until("open again", () => client.status === "open" && server.connections.length === 2, 3_000);
    // Cut again before it is stable: a failed attempt, its backoff step alone (cap 40, draw 0: 20).
    n = 0;
    server.terminateAll();
    await until("the close", () => seen.closes.length === 2);
    expect(seen.closes[1]).toMatchObject({ code: 1006, reconnectInMs: 20 });
    expect(cutDelayMs(250, DEFAULT_BACKOFF, () => 0)).toBe(250);
    expect(cutDelayMs(250, DEFAULT_BACKOFF, () => 0.999999)).toBe(4_999);
    expect(cutDelayMs(250, { ...DEFAULT_BACKOFF, goingAwayMaxMs: 0 }, () => 0.5)).toBe(250);
  });

  it("counts a connection as stable by how long it stayed up, whatever the wall clock did meanwhile", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect({
      backoff: { initialMs: 20, maxMs: 80, stableMs: 50, goingAwayMaxMs: 40 },
      random: () => 0,
    });
    await until("open", () => client.status === "open");
    // The system clock is stepped back an hour (NTP, a manual change) while the connection is up.
    const realNow = Date.now.bind(Date);
    const stepped = vi.spyOn(Date, "now").mockImplementation(() => realNow() - 3_600_000);
    try {
      await sleep(100); // past stableMs
      server.closeAll(1001, "deploying");
      await until("the close", () => seen.closes.length === 1);
    } finally {
      stepped.mockRestore();
    }
    // Stable: the spread alone (0 at draw 0), not also the step of a failed attempt (10).
    expect(seen.closes[0]).toMatchObject({ code: 1001, reconnectInMs: 0 });
  });

  it("waits at least the Retry-After of a 429", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(429, 1);
    const { seen } = connect();
    await until("the refusal", () => seen.closes.length === 1);
    expect(seen.closes[0]!.reconnectInMs).toBe(1_000);
  });

  it("waits at least the Retry-After of a 503, as the API sends with UNAVAILABLE (5 s)", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(503, 5);
    const { seen } = connect();
    await until("the refusal", () => seen.closes.length === 1);
    expect(seen.closes[0]!.reconnectInMs).toBe(5_000);
  });

  it("reads a Retry-After given as an HTTP date too, and waits at most 5 min whatever it says", async () => {
    server = await startFakeStreamServer();
    // An HTTP date counts whole seconds: 3 s ahead is 2–3 s ahead.
    server.refuseTickets(429, new Date(Date.now() + 3_000).toUTCString());
    const dated = connect();
    await until("the refusal", () => dated.seen.closes.length === 1);
    expect(dated.seen.closes[0]!.reconnectInMs).toBeGreaterThan(1_500);
    expect(dated.seen.closes[0]!.reconnectInMs).toBeLessThanOrEqual(3_000);
    dated.client.close();

    server.refuseTickets(503, 3 * 86_400); // three days
    const parked = connect();
    await until("the refusal", () => parked.seen.closes.length === 1);
    expect(parked.seen.closes[0]!.reconnectInMs).toBe(RETRY_AFTER_MAX_MS);
  });

  it("reads Retry-After as delay-seconds or an HTTP date, 0 when absent, unreadable or past, capped at 5 min", () => {
    const now = Date.parse("2026-12-05T10:00:00.000Z");
    expect(RETRY_AFTER_MAX_MS).toBe(300_000);
    expect(retryAfterMs("12", now)).toBe(12_000);
    expect(retryAfterMs("Sat, 05 Dec 2026 10:00:30 GMT", now)).toBe(30_000);
    expect(retryAfterMs("Saturday, 05-Dec-26 10:00:30 GMT", now)).toBe(30_000); // the obsolete RFC 850 form
    expect(retryAfterMs("Sat, 05 Dec 2026 09:59:00 GMT", now)).toBe(0);
    expect([null, "", "0", "-5", "soon"].map((header) => retryAfterMs(header, now))).toEqual([0, 0, 0, 0, 0]);
    expect(retryAfterMs("301", now)).toBe(300_000);
    expect(retryAfterMs("Mon, 07 Dec 2026 10:00:00 GMT", now)).toBe(300_000);
  });
});

describe("the end of the session", () => {
  it("close code 4401: reported as the session ended, and no reconnect", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("open", () => client.status === "open");
    server.endSession();
    await until("the close", () => seen.closes.length === 1);
    expect(seen.closes[0]).toEqual({ code: 4401, reason: "session ended", reconnectInMs: null, sessionEnded: true });
    expect(client.status).toBe("ended");
    await sleep(100); // many backoff periods
    expect(server.ticketRequests).toHaveLength(1);
    expect(server.connections).toHaveLength(1);
  });

  it("a 401 on the ticket: the session ended, no retry", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect({ token: "not-the-token" });
    await until("the close", () => seen.closes.length === 1);
    expect(seen.closes[0]).toMatchObject({ code: 4401, sessionEnded: true, reconnectInMs: null });
    expect(seen.errors[0]).toEqual({ kind: "ticket", status: 401, message: "Sign in first." });
    expect(client.status).toBe("ended");
    await sleep(100);
    expect(server.ticketRequests).toHaveLength(1);
  });

  it("a 404 on the ticket (a wrong apiUrl) three times in a row: failed, no more retries; a 408 is retried", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(404);
    const { client, seen } = connect({ backoff: { initialMs: 5, maxMs: 5 } });
    await until("the third close", () => seen.closes.length === 3);
    expect(seen.closes.slice(0, 2).map((c) => c.reconnectInMs)).toEqual([expect.any(Number), expect.any(Number)]);
    expect(seen.closes[2]).toEqual({
      code: 4000,
      reason: "ticket refused: HTTP 404",
      reconnectInMs: null,
      sessionEnded: false,
    });
    expect(seen.errors[0]).toEqual({ kind: "ticket", status: 404, message: "Refused by the test." });
    expect(client.status).toBe("failed");
    await sleep(100); // many backoff periods
    expect(server.ticketRequests).toHaveLength(3);
    client.close();
    expect(seen.closes).toHaveLength(3);

    server.refuseTickets(408);
    const again = connect({ backoff: { initialMs: 5, maxMs: 5 } });
    await until("a retry", () => server.ticketRequests.length >= 3 + 2);
    expect(again.client.status).toBe("reconnecting");
    again.client.close();
  });

  it("a network error or timeout between 404s: the refusals are not in a row, and it keeps trying", async () => {
    server = await startFakeStreamServer();
    const answers = ["404", "network error", "404", "404", "timeout", "404", "404", "404"];
    let fetches = 0;
    const { client, seen } = connect({
      backoff: { initialMs: 5, maxMs: 5 },
      ticketTimeoutMs: 20,
      fetch: () => {
        const answer = answers[fetches++];
        if (answer === "network error") return Promise.reject(new TypeError("fetch failed"));
        if (answer === "timeout") return new Promise(() => undefined);
        return Promise.resolve({ status: 404, headers: { get: () => null }, json: () => Promise.resolve({}) });
      },
    });
    await until("failed", () => client.status === "failed");
    expect(seen.errors.map((e) => (e.kind === "ticket" ? e.status : e.kind))).toEqual([
      404,
      null,
      404,
      404,
      null,
      404,
      404,
      404,
    ]);
    // Only the last three 404s are in a row: the client fails on the last, and retries after every one before it.
    expect(seen.closes.map((c) => c.reconnectInMs === null)).toEqual([
      false,
      false,
      false,
      false,
      false,
      false,
      false,
      true,
    ]);
    await sleep(50); // many backoff periods
    expect(fetches).toBe(8);
  });

  it("close(): closes the connection and stops for good", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("open", () => client.status === "open");
    client.close();
    expect(client.status).toBe("closed");
    expect(seen.closes).toEqual([{ code: 1000, reason: "client closed", reconnectInMs: null, sessionEnded: false }]);
    await until("the server sees it", () => server.connections[0]!.socket.readyState === WebSocket.CLOSED);
    await sleep(100);
    expect(server.ticketRequests).toHaveLength(1);
  });
});

describe("close() from a listener", () => {
  const closedOnce = [{ code: 1000, reason: "client closed", reconnectInMs: null, sessionEnded: false }];

  it("from an error listener, on a failed ticket request or socket: no retry", async () => {
    server = await startFakeStreamServer();
    let fetches = 0;
    const offline = connect({
      subscriptions: [],
      fetch: () => {
        fetches++;
        return Promise.reject(new TypeError("fetch failed"));
      },
    });
    offline.client.on("error", () => offline.client.close());
    let sockets = 0;
    const noSockets = connect({
      subscriptions: [],
      WebSocket: function () {
        sockets++;
        throw new SyntaxError("no sockets here");
      } as unknown as WebSocketConstructor,
    });
    noSockets.client.on("error", () => noSockets.client.close());
    await until("the errors", () => offline.seen.errors.length === 1 && noSockets.seen.errors.length === 1);
    await sleep(100); // many backoff periods
    expect([fetches, sockets]).toEqual([1, 1]);
    for (const { client, seen } of [offline, noSockets]) {
      expect(client.status).toBe("closed");
      expect(seen.closes).toEqual(closedOnce);
    }
  });

  it("from an error listener, on a refused ticket request: no retry", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(503);
    const { client, seen } = connect({ subscriptions: [] });
    client.on("error", () => client.close());
    await until("the error", () => seen.errors.length === 1);
    await sleep(100);
    expect(server.ticketRequests).toHaveLength(1);
    expect(client.status).toBe("closed");
    expect(seen.closes).toEqual(closedOnce);
  });

  it("from a close listener, as a reconnect is announced: no reconnect, and status closed for good", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(503);
    const { client, seen } = connect({ subscriptions: [] });
    client.on("close", (info) => info.reconnectInMs !== null && client.close());
    await until("the closes", () => seen.closes.length === 2);
    await sleep(100);
    expect(server.ticketRequests).toHaveLength(1);
    expect(client.status).toBe("closed");
    expect(seen.closes.map((c) => c.reconnectInMs)).toEqual([expect.any(Number), null]);
  });

  it("from the first of two close listeners: the second's last close says closed, and nothing follows it", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(503);
    const client = new StreamClient({ apiUrl: server.apiUrl, WebSocket, token: server.token });
    clients.push(client);
    client.on("close", () => client.close());
    const later: unknown[] = [];
    client.on("close", (info) => later.push(info));
    client.on("error", (error) => later.push(error));
    client.connect();
    await until("the close", () => later.some((e) => (e as CloseInfo).reconnectInMs === null));
    await sleep(50);
    expect(client.status).toBe("closed");
    // The reconnecting close that the first listener answered with close() is not delivered after the final one.
    expect(later).toEqual([{ kind: "ticket", status: 503, message: "Refused by the test." }, ...closedOnce]);
  });

  it("from the first of two error listeners: the second gets the final close, not the error after it", async () => {
    server = await startFakeStreamServer();
    server.refuseTickets(503);
    const client = new StreamClient({ apiUrl: server.apiUrl, WebSocket, token: server.token });
    clients.push(client);
    client.on("error", () => client.close());
    const later: unknown[] = [];
    client.on("error", (error) => later.push(error));
    client.on("close", (info) => later.push(info));
    client.connect();
    await until("the close", () => later.length >= 1);
    await sleep(50);
    expect(later).toEqual(closedOnce);
  });

  it("from an error listener, on a seq gap: the connection is not replaced", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("the snapshot", () => client.privateState !== undefined);
    client.on("error", (error) => error.kind === "gap" && client.close());
    server.broadcast({ type: "event", seq: 2, time: new Date().toISOString(), event: "balances_changed" });
    await until("the close", () => seen.closes.length >= 1);
    await sleep(100);
    expect(server.ticketRequests).toHaveLength(1);
    expect(server.connections).toHaveLength(1);
    expect(client.status).toBe("closed");
    expect(seen.closes).toEqual(closedOnce);
  });

  it("from an error listener, on a subscribe that could not be sent after the welcome: no open event", async () => {
    server = await startFakeStreamServer();
    class UnsendableWebSocket extends WebSocket {
      override send(): void {
        throw new Error("not sendable");
      }
    }
    const { client, seen } = connect({ WebSocket: UnsendableWebSocket as unknown as WebSocketConstructor });
    client.on("error", () => client.close());
    await until("the close", () => seen.closes.length >= 1);
    await sleep(50);
    expect(seen.errors).toEqual([{ kind: "socket", message: "not sendable" }]);
    expect(seen.opens).toBe(0);
    expect(client.status).toBe("closed");
  });

  it("from an event listener: no state event follows", async () => {
    server = await startFakeStreamServer();
    const { client, seen } = connect();
    await until("the snapshot", () => client.privateState !== undefined);
    client.on("event", () => client.close());
    server.publish({ event: "balances_changed", balances: { USD: "1" } });
    await until("the close", () => seen.closes.length >= 1);
    await sleep(50);
    expect(seen.events.map((e) => e.seq)).toEqual([1]);
    expect(seen.causes).toEqual(["snapshot"]);
  });
});

describe("listeners added or removed during a delivery", () => {
  it("one added while an event is delivered gets the next event, not that one", async () => {
    server = await startFakeStreamServer();
    const { client } = connect();
    await until("the snapshot", () => client.privateState !== undefined);
    // A "wait for the next event" helper, called from a listener.
    const nextEvent = () =>
      new Promise<EventFrame>((resolve) => {
        const off = client.on("event", (event) => {
          off();
          resolve(event);
        });
      });
    let pair: [number, number] | undefined;
    client.on("event", (event) => {
      if (event.seq === 1) void nextEvent().then((next) => (pair = [event.seq, next.seq]));
    });
    server.publish({ event: "balances_changed", balances: { USD: "1" } });
    await until("event 1", () => client.privateState?.seq === 1);
    server.publish({ event: "balances_changed", balances: { USD: "2" } });
    await until("event 2", () => client.privateState?.seq === 2);
    await sleep(10);
    expect(pair).toEqual([1, 2]);
  });

  it("one that removes and adds itself again (re-arming) is called once per event, not again and again", async () => {
    server = await startFakeStreamServer();
    const { client } = connect({ subscriptions: [{ channel: "quotes" }] });
    let calls = 0;
    const listener = () => {
      calls++;
      if (calls > 100) return; // else the loop this test is about would hang it
      off();
      off = client.on("quote", listener);
    };
    let off = client.on("quote", listener);
    await until("open", () => client.status === "open");
    server.broadcast(QUOTE);
    await until("the quote", () => calls > 0);
    server.broadcast({ ...QUOTE, bid: "1.5" });
    await until("the second quote", () => calls > 1);
    await sleep(20);
    expect(calls).toBe(2);
  });

  it("one removed by an earlier listener is not called, even when added again meanwhile", async () => {
    server = await startFakeStreamServer();
    const { client } = connect({ subscriptions: [{ channel: "quotes" }] });
    const calls: string[] = [];
    const second = () => calls.push("second");
    client.on("quote", () => {
      calls.push("first");
      if (calls.length === 1) {
        offSecond();
        client.on("quote", second); // a new registration: from the next quote on
      }
    });
    const offSecond = client.on("quote", second);
    await until("open", () => client.status === "open");
    server.broadcast(QUOTE);
    await until("the quote", () => calls.length > 0);
    server.broadcast({ ...QUOTE, bid: "1.5" });
    await until("the second quote", () => calls.length > 2);
    await sleep(20);
    expect(calls).toEqual(["first", "first", "second"]);
  });
});

describe("the browser bundle", () => {
  it("builds for the browser with nothing of Node or the server in it", async () => {
    const code = await browserBundle();
    expect(code).toMatch(/StreamClient = class\b/);
    expect(code).not.toMatch(/\brequire\(|node:|\bBuffer\b|\bprocess\./);
    // The client alone: every module esbuild names in the bundle is one of client/, none of the server or zod.
    const modules = code.match(/^\/\/ \S+\.[cm]?[jt]s$/gm) ?? [];
    expect(modules).toContain("// client/stream-client.ts");
    expect(modules.filter((module) => !module.startsWith("// client/"))).toEqual([]);
    expect(code.length).toBeLessThan(40_000); // and small: zod alone is several times this
  });
});
