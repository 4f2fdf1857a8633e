// The hub on plain data: sockets standing in as objects, fake timers, a store and the revocation check's answer held.
import { Registry } from "prom-client";
import type { WebSocket } from "ws";
import type { PrivateOutput, TradeView } from "../contract/messages.ts";
import type { EventsAfter, PrivateState } from "../worker/events.ts";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CLOSE_CODES } from "../client/protocol.ts";
import { createLogger } from "../platform/log.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import type { LoadBucket, StoredBucket } from "./candles.ts";
import { silentDropWithinMs, StreamHub, type HubDeps } from "./hub.ts";
import { NO_METRICS, streamMetrics } from "./metrics.ts";
import type { PrivateStore } from "./private-channel.ts";
import { quoteOutput } from "./testing/quote-output.ts";

const fakeSocket = () =>
  ({
    readyState: 1, // OPEN
    bufferedAmount: 0,
    on: () => undefined,
    send: () => undefined,
    ping: () => undefined,
    close: () => undefined,
  }) as unknown as WebSocket;

/**
 * A fake socket that keeps the listeners the hub registers: `send` delivers a client frame to its message listener,
 * `emit` calls any other. `fields` replace the fake's own (send, close, ping, bufferedAmount, …).
 */
const clientSocket = (fields: Record<string, unknown> = {}) => {
  const listeners = new Map<string, (...args: never[]) => void>();
  const ws = {
    ...fakeSocket(),
    on: (event: string, listener: (...args: never[]) => void) => void listeners.set(event, listener),
    ...fields,
  } as unknown as WebSocket & { readyState: number; bufferedAmount: number };
  const emit = (event: string, ...args: unknown[]) =>
    (listeners.get(event) as ((...a: unknown[]) => void) | undefined)?.(...args);
  return { ws, emit, send: (frame: object) => emit("message", Buffer.from(JSON.stringify(frame)), false) };
};

/** A hub with nothing behind it (no store reads, no revocations, quiet, no metrics) but what a test sets. */
const hubWith = (deps: Partial<HubDeps> = {}): StreamHub =>
  new StreamHub({
    limits: DEFAULT_LIMITS,
    store: {
      readState: () => Promise.reject(new Error("not used")),
      readAfter: () => Promise.reject(new Error("not used")),
    },
    revokedSessions: () => Promise.resolve([]),
    log: createLogger("stream-test", { level: "error" }),
    metrics: NO_METRICS,
    ...deps,
  });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("the revocation backstop", () => {
  it("checks every open session each revocationCheckMs (30 s by default), never two checks at once", async () => {
    expect(DEFAULT_LIMITS.revocationCheckMs).toBe(30_000);
    const checks: { sessions: number; answer: (revoked: boolean[]) => void }[] = [];
    const hub = hubWith({
      revokedSessions: (sessions) =>
        new Promise((resolve) => checks.push({ sessions: sessions.length, answer: resolve })),
    });
    hub.start();
    for (const sessionId of ["s1", "s2"])
      hub.accept(fakeSocket(), { userId: "u", sessionId, sessionExpiresAtMs: Date.now() + 3_600_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(checks.map((c) => c.sessions)).toEqual([2]);
    // Redis is slow: the first check has not answered 90 s on, and no other started meanwhile.
    await vi.advanceTimersByTimeAsync(90_000);
    expect(checks).toHaveLength(1);
    checks[0]!.answer([false, false]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(checks).toHaveLength(2);
    checks[1]!.answer([false, false]);
    await vi.advanceTimersByTimeAsync(25_000);
    expect(checks).toHaveLength(2); // not again before 30 s
    await vi.advanceTimersByTimeAsync(6_000);
    expect(checks).toHaveLength(3);
    checks[2]!.answer([false, false]);
    hub.shutdown();
  });
});

describe("shutdown", () => {
  it("closes a socket handed over after it with 1001 at once, and does not take it in", () => {
    const hub = hubWith();
    hub.start();
    hub.shutdown();
    const closes: number[] = [];
    const sent: string[] = [];
    const ws = {
      ...fakeSocket(),
      send: (data: string) => sent.push(data),
      close: (code: number) => closes.push(code),
    } as unknown as WebSocket;
    hub.accept(ws, { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 3_600_000 });
    expect(closes).toEqual([1001]);
    expect(sent).toEqual([]); // no welcome
    expect(hub.connectionCount).toBe(0);
  });
});

describe("the private channel's first read", () => {
  it("failing after the channel was dropped and subscribed again leaves the socket and the new channel alone", async () => {
    const reads: { resolve: (state: PrivateState) => void; reject: (error: Error) => void }[] = [];
    const hub = hubWith({
      store: {
        readState: () => new Promise((resolve, reject) => reads.push({ resolve, reject })),
        readAfter: () => Promise.reject(new Error("not used")),
      },
    });
    hub.start();
    const frames: string[] = [];
    const closes: number[] = [];
    const { ws, send } = clientSocket({
      send: (data: string | Buffer) => frames.push((JSON.parse(String(data)) as { type: string }).type),
      close: (code: number) => closes.push(code),
    });
    hub.accept(ws, { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 3_600_000 });
    send({ op: "subscribe", channel: "private" });
    send({ op: "unsubscribe", channel: "private" });
    send({ op: "subscribe", channel: "private" });
    expect(reads).toHaveLength(2);
    reads[1]!.resolve({
      seq: 1,
      aheadSeq: 0,
      markContinues: false,
      aheadContinues: false,
      balances: { USD: "1000" },
      trades: [],
      orders: [],
    });
    await vi.advanceTimersByTimeAsync(0);
    reads[0]!.reject(new Error("Redis went away"));
    await vi.advanceTimersByTimeAsync(0);
    expect(closes).toEqual([]);
    expect(frames).toContain("snapshot");
    // The channel held is the second one: a third subscribe is refused as already subscribed.
    send({ op: "subscribe", channel: "private", id: "again" });
    expect(frames.at(-1)).toBe("error");
    hub.shutdown();
  });
});

describe("price-driven summaries", () => {
  const trade = (id: string, asset: string): TradeView => ({
    id,
    asset,
    type: "long",
    margin: "100",
    leverage: 10,
    quantity: "0.5",
    openPrice: "2000",
    stopLoss: null,
    takeProfit: null,
    trailingStop: null,
    liquidationPrice: "1810",
    openedAt: "2026-12-06T00:00:00.000Z",
  });
  const quote = (asset: string, bid: string) => ({ kind: "quote", body: JSON.stringify(quoteOutput(asset, bid)) });

  /**
   * A hub whose store answers every user's snapshot at seq 1 with 1,000 USD and `trades(userId)` open, unless `store`
   * answers otherwise.
   */
  function startHub(trades: (userId: string) => TradeView[], store: Partial<PrivateStore> = {}): StreamHub {
    const hub = hubWith({
      store: {
        readState: (userId) =>
          Promise.resolve({
            seq: 1,
            aheadSeq: 0,
            markContinues: false,
            aheadContinues: false,
            balances: { USD: "1000" },
            trades: trades(userId),
            orders: [],
          }),
        readAfter: () => Promise.reject(new Error("not used")),
        ...store,
      },
    });
    hub.start();
    return hub;
  }

  /** A socket of `userId` subscribed to its private channel (resuming after `since`); its frames go to `onFrame`. */
  function subscribePrivate(
    hub: StreamHub,
    userId: string,
    onFrame: (frame: {
      type: string;
      seq?: number;
      balance?: string;
      marginUsed?: string;
      summary?: { balance: string };
    }) => void,
    since?: number,
  ): void {
    const { ws, send } = clientSocket({
      send: (data: string | Buffer) => onFrame(JSON.parse(String(data)) as { type: string }),
    });
    hub.accept(ws, { userId, sessionId: userId, sessionExpiresAtMs: Date.now() + 3_600_000 });
    send({ op: "subscribe", channel: "private", since });
  }

  /** A trade's opening (`seq`) and its margin paid (`seq` + 1), one engine step, as the engine emits them. */
  function tradeOpening(userId: string, seq: number, opened: TradeView, usd: string): [PrivateOutput, PrivateOutput] {
    const inputId = `${Date.now()}-0`;
    const head = { inputId, userId };
    return [
      { ...head, type: "trade_opened", id: `${inputId}:0`, seq, trade: opened },
      { ...head, type: "balances_changed", id: `${inputId}:1`, seq: seq + 1, balances: { USD: usd } },
    ];
  }

  it("drops a quote older than the one it holds: two workers' fan-outs can come out of log order", async () => {
    const hub = startHub(() => []);
    const bids: string[] = [];
    const { ws, send } = clientSocket({
      send: (data: string | Buffer) => {
        const frame = JSON.parse(String(data)) as { type: string; bid?: string };
        if (frame.type === "quote") bids.push(frame.bid!);
      },
    });
    hub.accept(ws, { userId: "q", sessionId: "q", sessionExpiresAtMs: Date.now() + 3_600_000 });
    send({ op: "subscribe", channel: "quotes", assets: ["BTC"] });
    const [older, newer] = [quoteOutput("BTC", "100"), quoteOutput("BTC", "101")];
    const fanOut = (q: typeof older) => hub.handleEntry(`${Date.now()}-0`, { kind: "quote", body: JSON.stringify(q) });
    fanOut(newer);
    fanOut(older);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(bids).toEqual(["101"]);
    fanOut(newer); // sent again (its batch run again): nothing new
    await vi.advanceTimersByTimeAsync(1_000);
    expect(bids).toEqual(["101"]);
    hub.shutdown();
  });

  it("a quote owes a summary only to the channels with an open trade in its asset, at most one per interval", async () => {
    const hub = startHub((userId) => (userId === "eth" ? [trade("T0-1", "ETH")] : [trade("T0-2", "BTC")]));
    const summaries = new Map<string, number>();
    for (const userId of ["eth", "btc"])
      subscribePrivate(hub, userId, (frame) => {
        if (frame.type === "summary") summaries.set(userId, (summaries.get(userId) ?? 0) + 1);
      });
    await vi.advanceTimersByTimeAsync(2_000);
    summaries.clear(); // the snapshot's
    // Three ETH quotes within a second: the ETH holder gets one summary, the BTC holder none
    for (const bid of ["2001", "2002", "2003"]) hub.handleEntry(`${Date.now()}-0`, quote("ETH", bid));
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs);
    expect(Object.fromEntries(summaries)).toEqual({ eth: 1 });
    // No quote since: nothing more is owed
    await vi.advanceTimersByTimeAsync(5 * DEFAULT_LIMITS.summaryIntervalMs);
    expect(Object.fromEntries(summaries)).toEqual({ eth: 1 });
    hub.handleEntry(`${Date.now()}-0`, quote("BTC", "97000"));
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs);
    expect(Object.fromEntries(summaries)).toEqual({ eth: 1, btc: 1 });
    hub.shutdown();
  });

  it("goes to a slow client after the quotes it was held back from, since it is priced at them", async () => {
    const hub = startHub(() => [trade("T0-1", "ETH")]);
    const frames: string[] = [];
    const { ws, send } = clientSocket({
      send: (data: string | Buffer) => {
        const frame = JSON.parse(String(data)) as { type: string; bid?: string; unrealizedPnl?: string };
        if (frame.type === "quote") frames.push(`quote ${frame.bid}`);
        if (frame.type === "summary") frames.push(`summary ${frame.unrealizedPnl}`);
      },
    });
    hub.accept(ws, { userId: "eth", sessionId: "eth", sessionExpiresAtMs: Date.now() + 3_600_000 });
    send({ op: "subscribe", channel: "quotes", assets: ["ETH"] });
    send({ op: "subscribe", channel: "private" });
    await vi.advanceTimersByTimeAsync(2_000);
    hub.handleEntry(`${Date.now()}-0`, quote("ETH", "2001"));
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs);
    expect(frames).toEqual(["quote 2001", "summary 0.5"]);
    // The client stops reading: the next quote is held back, yet the summary it owes is priced at it
    ws.bufferedAmount = DEFAULT_LIMITS.quoteThinBytes;
    hub.handleEntry(`${Date.now()}-1`, quote("ETH", "2003"));
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs);
    expect(frames.slice(2)).toEqual(["quote 2003", "summary 1.5"]);
    hub.shutdown();
  });

  it("a snapshot or resync goes to a slow client after the quotes it was held back from: its summary uses them", async () => {
    // The resume's `since` is ahead of the store: it is answered with a resync.
    const hub = startHub(() => [trade("T0-1", "ETH")], {
      readAfter: () => Promise.resolve({ ok: false, reason: "ahead" }),
    });
    const frames = new Map<string, string[]>();
    for (const [client, since, sent, held] of [
      ["snapshot", undefined, "2001", "2003"],
      ["resync", 5, "2005", "2007"],
    ] as const) {
      const own: string[] = [];
      frames.set(client, own);
      const { ws, send } = clientSocket({
        send: (data: string | Buffer) => {
          const frame = JSON.parse(String(data)) as { type: string; bid?: string; summary?: { unrealizedPnl: string } };
          if (frame.type === "quote") own.push(`quote ${frame.bid}`);
          if (frame.type === "snapshot" || frame.type === "resync")
            own.push(`${frame.type} pnl ${frame.summary!.unrealizedPnl}`);
        },
      });
      hub.accept(ws, { userId: "eth", sessionId: client, sessionExpiresAtMs: Date.now() + 3_600_000 });
      send({ op: "subscribe", channel: "quotes", assets: ["ETH"] });
      await vi.advanceTimersByTimeAsync(1_000);
      own.length = 0; // the latest quote, sent on subscribing
      hub.handleEntry(`${Date.now()}-0`, quote("ETH", sent));
      // The client stops reading: the next quote is held back, yet the state it subscribes to next is priced at it
      ws.bufferedAmount = DEFAULT_LIMITS.quoteThinBytes;
      hub.handleEntry(`${Date.now()}-1`, quote("ETH", held));
      send({ op: "subscribe", channel: "private", since });
      await vi.advanceTimersByTimeAsync(0);
    }
    // 0.5 ETH long from 2,000
    expect(Object.fromEntries(frames)).toEqual({
      snapshot: ["quote 2001", "quote 2003", "snapshot pnl 1.5"],
      resync: ["quote 2005", "quote 2007", "resync pnl 3.5"],
    });
    hub.shutdown();
  });

  it("none between two events of one engine step: a trade's opening and its margin paid give one, after both", async () => {
    const hub = startHub(() => [trade("T0-1", "ETH")]);
    const frames: string[] = [];
    subscribePrivate(hub, "eth", (frame) => {
      if (frame.type === "event") frames.push(`event ${frame.seq}`);
      if (frame.type === "summary") frames.push(`summary ${frame.seq} balance ${frame.balance}`);
    });
    await vi.advanceTimersByTimeAsync(2_000);
    const [opened, paid] = tradeOpening("eth", 2, trade("T0-3", "ETH"), "900");
    const entry = (event: { seq: number }, more: boolean) => ({
      kind: "event",
      user: "eth",
      seq: String(event.seq),
      ...(more ? { more: "1" } : {}),
      body: JSON.stringify(event),
    });
    hub.handleEntry(`${Date.now()}-1`, entry(opened, true));
    // A quote of the open trade's asset owes a summary, but not while the step is half delivered
    hub.handleEntry(`${Date.now()}-2`, quote("ETH", "2001"));
    await vi.advanceTimersByTimeAsync(3 * DEFAULT_LIMITS.summaryIntervalMs);
    expect(frames).toEqual(["event 2"]);
    hub.handleEntry(`${Date.now()}-3`, entry(paid, false));
    await vi.advanceTimersByTimeAsync(3 * DEFAULT_LIMITS.summaryIntervalMs);
    // The balance counts margins in use: 900 free + 2 × 100, as before the step (after its first half: 1,200)
    expect(frames).toEqual(["event 2", "event 3", "summary 3 balance 1100"]);
    hub.shutdown();
  });

  it("none after a resume or snapshot at a step's first event until its next one: the store says it goes on", async () => {
    // A trade opened at 2 (its margin of 100 not yet paid: USD still 1,000), its step's next event, 3, not stored yet
    // (the worker's batch ended at 2). The store's mark is 2, and the event there was stored with `more`.
    const opened = trade("T0-3", "ETH");
    const [, paid] = tradeOpening("eth", 2, opened, "900");
    const reads: number[] = [];
    let paidStored = false;
    const hub = startHub(() => [], {
      readState: () =>
        Promise.resolve({
          seq: paidStored ? 3 : 2,
          aheadSeq: 0,
          markContinues: !paidStored,
          aheadContinues: false,
          balances: { USD: paidStored ? "900" : "1000" },
          trades: [opened],
          orders: [],
        }),
      // As the store answers a read from its mark: no event, and `since`'s own `more`
      readAfter: (_userId, since) => {
        reads.push(since);
        return Promise.resolve({ ok: true, events: [], continued: since === 2 ? [2] : [], mark: 2, aheadSeq: 0 });
      },
    });
    const frames = new Map<string, string[]>();
    for (const [client, since] of [
      ["resume", 2],
      ["snapshot", undefined],
    ] as const) {
      frames.set(client, []);
      subscribePrivate(
        hub,
        "eth",
        (frame) => {
          if (frame.type === "event") frames.get(client)!.push(`event ${frame.seq}`);
          if (frame.type === "summary") frames.get(client)!.push(`summary ${frame.seq} balance ${frame.balance}`);
          if (frame.type === "snapshot")
            frames.get(client)!.push(`snapshot ${frame.seq} balance ${frame.summary?.balance}`);
        },
        since,
      );
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(reads).toEqual([2]);
    // A quote of the trade's asset owes a summary: at seq 2 it would show a balance of 1,100 (the margin in use, and
    // still in the USD it is to be paid from). So would the snapshot's own summary: it waits for 3.
    hub.handleEntry(`${Date.now()}-1`, quote("ETH", "2001"));
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs + 500);
    expect(Object.fromEntries(frames)).toEqual({ resume: [], snapshot: [] });
    paidStored = true;
    hub.handleEntry(`${Date.now()}-2`, { kind: "event", user: "eth", seq: "3", body: JSON.stringify(paid) });
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs);
    expect(Object.fromEntries(frames)).toEqual({
      resume: ["event 3", "summary 3 balance 1000"],
      snapshot: ["snapshot 3 balance 1000"],
    });
    hub.shutdown();
  });

  it("none during a resume's replay: the account read for it already shows the events still to be sent", async () => {
    // The client saw seq 1; since then a second trade opened (2) and its margin was paid (3). The read of the events
    // after 1 is held: the channel has the account as of 3 and has sent nothing yet.
    const [opened, paid] = tradeOpening("eth", 2, trade("T0-3", "ETH"), "900");
    let answer: (after: EventsAfter) => void = () => undefined;
    const hub = startHub(() => [], {
      readState: () =>
        Promise.resolve({
          seq: 3,
          aheadSeq: 0,
          markContinues: false,
          aheadContinues: false,
          balances: { USD: "900" },
          trades: [trade("T0-1", "ETH"), trade("T0-3", "ETH")],
          orders: [],
        }),
      readAfter: () => new Promise((resolve) => (answer = resolve)),
    });
    const frames: string[] = [];
    subscribePrivate(
      hub,
      "eth",
      (frame) => {
        if (frame.type === "event") frames.push(`event ${frame.seq}`);
        if (frame.type === "summary") frames.push(`summary ${frame.seq} marginUsed ${frame.marginUsed}`);
      },
      1,
    );
    await vi.advanceTimersByTimeAsync(0);
    // A quote of the open trades' asset owes a summary: under seq 1 it would count the margin of the trade opened at 2
    hub.handleEntry(`${Date.now()}-1`, quote("ETH", "2001"));
    await vi.advanceTimersByTimeAsync(3 * DEFAULT_LIMITS.summaryIntervalMs);
    expect(frames).toEqual([]);
    answer({ ok: true, events: [opened, paid], continued: [2], mark: 3, aheadSeq: 0 });
    await vi.advanceTimersByTimeAsync(3 * DEFAULT_LIMITS.summaryIntervalMs);
    expect(frames).toEqual(["event 2", "event 3", "summary 3 marginUsed 200"]);
    // Caught up: the next quote's summary goes out as usual
    hub.handleEntry(`${Date.now()}-2`, quote("ETH", "2002"));
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.summaryIntervalMs);
    expect(frames.slice(3)).toEqual(["summary 3 marginUsed 200"]);
    hub.shutdown();
  });
});

describe("durations, on the monotonic clock", () => {
  // vitest's fake timers move performance.now() and Date.now() together; setSystemTime steps Date.now() alone, as
  // an NTP step (chrony's makestep, a VM resumed) or an operator fixing the time steps the wall clock.
  const WALL = new Date("2026-12-07T12:00:00Z");

  /** A hub with one socket (a session an hour long); what it is sent, its closes and its pings are recorded. */
  function setup(loadBucket?: LoadBucket) {
    vi.setSystemTime(WALL);
    const hub = hubWith({
      loadBucket,
    });
    hub.start();
    /** `sentAt`: the wall clock's time when it was sent. */
    const frames: { type: string; bid?: string; time?: string; sentAt: number }[] = [];
    const closes: number[] = [];
    let pings = 0;
    const socket = clientSocket({
      send: (data: string | Buffer) =>
        frames.push({ ...(JSON.parse(String(data)) as { type: string }), sentAt: Date.now() }),
      // The client answers every ping at once, echoing its payload.
      ping: (payload: Buffer) => {
        pings++;
        socket.emit("pong", payload);
      },
      close: (code: number) => closes.push(code),
      terminate: () => closes.push(1006),
    });
    const { ws, send } = socket;
    hub.accept(ws, { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 3_600_000 });
    return { hub, frames, closes, pings: () => pings, send };
  }

  it("a wall clock stepped back 5 s does not close a client sending one message a second over the rate", async () => {
    const { hub, closes, send } = setup();
    send({ op: "ping" });
    await vi.advanceTimersByTimeAsync(1_000);
    vi.setSystemTime(Date.now() - 5_000);
    for (let i = 0; i < 30; i++) {
      send({ op: "ping" });
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(closes).toEqual([]);
    hub.shutdown();
  });

  it("a client over the rate is still closed 4029 once the wall clock stepped forward: it earns no allowance", () => {
    const { hub, closes, send } = setup();
    vi.setSystemTime(Date.now() + 3_600_000 - 1_000); // forward, yet short of the session's expiry
    const burst = DEFAULT_LIMITS.maxMessagesPerSec * DEFAULT_LIMITS.rateBurstSeconds;
    for (let i = 0; i <= burst; i++) send({ op: "ping" });
    expect(closes).toEqual([4029]);
    hub.shutdown();
  });

  it("a wall clock stepped back 30 s holds back neither quotes nor heartbeats, and heartbeats tell the wall time", async () => {
    const { hub, frames, pings, send } = setup();
    send({ op: "subscribe", channel: "quotes", assets: ["BTC"] });
    hub.handleEntry(`${Date.now()}-0`, { kind: "quote", body: JSON.stringify(quoteOutput("BTC", "100")) });
    await vi.advanceTimersByTimeAsync(1_000);
    vi.setSystemTime(Date.now() - 30_000);
    const stepped = frames.length;
    const pingsBefore = pings();
    for (let i = 0; i < 25; i++) {
      hub.handleEntry(`${Date.now()}-0`, { kind: "quote", body: JSON.stringify(quoteOutput("BTC", `${101 + i}`)) });
      await vi.advanceTimersByTimeAsync(1_000);
    }
    const after = frames.slice(stepped);
    expect(after.filter((f) => f.type === "quote").map((f) => f.bid)).toEqual(
      Array.from({ length: 25 }, (_, i) => `${101 + i}`),
    );
    expect(pings() - pingsBefore).toBeGreaterThanOrEqual(2); // every heartbeatMs (10 s)
    // Quotes every second leave no 10 s of silence for a heartbeat: 15 s more without any
    await vi.advanceTimersByTimeAsync(15_000);
    const heartbeats = frames.slice(stepped).filter((f) => f.type === "heartbeat");
    expect(heartbeats).toHaveLength(1);
    expect(Date.parse(heartbeats[0]!.time!)).toBe(heartbeats[0]!.sentAt);
    hub.shutdown();
  });

  it("a wall clock stepped forward 25 s drops no socket as silent", async () => {
    const { hub, closes } = setup();
    await vi.advanceTimersByTimeAsync(2_000);
    vi.setSystemTime(Date.now() + 25_000);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(closes).toEqual([]);
    hub.shutdown();
  });

  it("a session still ends by the wall clock: stepped past its expiry, the socket is closed 4401", async () => {
    const { hub, closes } = setup();
    vi.setSystemTime(Date.now() + 3_600_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(closes).toEqual([4401]);
    hub.shutdown();
  });

  it("a candle loaded from the table leaves the heartbeats on time: every frame sent is timed alike", async () => {
    const stored: StoredBucket = {
      asset: "BTC",
      interval: "1m",
      openTime: "2026-12-07T12:00:00.000Z",
      open: "100",
      high: "100",
      low: "100",
      close: "100",
      firstMinuteMs: WALL.getTime(),
      lastMinuteMs: WALL.getTime(),
      openOutput: "1",
      closeOutput: "1",
    };
    const { hub, frames, send } = setup(() => Promise.resolve(stored));
    send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" });
    await vi.advanceTimersByTimeAsync(0);
    expect(frames.map((f) => f.type)).toEqual(["welcome", "subscribed", "candle"]);
    await vi.advanceTimersByTimeAsync(DEFAULT_LIMITS.heartbeatMs + 1_000);
    expect(frames.map((f) => f.type)).toEqual(["welcome", "subscribed", "candle", "heartbeat"]);
    hub.shutdown();
  });
});

describe("a socket on its way out", () => {
  /**
   * A socket of user "u" subscribed to its private channel (a snapshot at seq 1); `reads` counts the store's reads
   * of events, which a channel still running makes for an event notified past a gap.
   */
  async function subscribed() {
    let reads = 0;
    const hub = hubWith({
      store: {
        readState: () =>
          Promise.resolve({
            seq: 1,
            aheadSeq: 0,
            markContinues: false,
            aheadContinues: false,
            balances: { USD: "1000" },
            trades: [],
            orders: [],
          }),
        readAfter: () => {
          reads++;
          return Promise.resolve({ ok: true, events: [], continued: [], mark: 1, aheadSeq: 0 });
        },
      },
    });
    hub.start();
    const listeners = new Map<string, (...args: never[]) => void>();
    const closes: number[] = [];
    const ws = {
      ...fakeSocket(),
      on: (event: string, listener: never) => void listeners.set(event, listener),
      close: (code: number) => closes.push(code),
    } as unknown as WebSocket;
    hub.accept(ws, { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 3_600_000 });
    const send = (frame: object) =>
      (listeners.get("message") as (data: Buffer, isBinary: boolean) => void)(
        Buffer.from(JSON.stringify(frame)),
        false,
      );
    send({ op: "subscribe", channel: "private" });
    await vi.advanceTimersByTimeAsync(0);
    /** Seq 3 notified (2 missing): a running channel reads the store for 2. */
    const notifyPastGap = async () => {
      const inputId = `${Date.now()}-0`;
      const event = { type: "balances_changed", id: `${inputId}:0`, inputId, userId: "u", seq: 3, balances: {} };
      hub.handleEntry(`${Date.now()}-0`, { kind: "event", user: "u", seq: "3", body: JSON.stringify(event) });
      await vi.advanceTimersByTimeAsync(0);
    };
    return { hub, send, listeners, closes, notifyPastGap, reads: () => reads };
  }

  it("closed 4029 has its private channel stopped at once: it reads nothing more for a client it will not reach", async () => {
    const { hub, send, closes, notifyPastGap, reads } = await subscribed();
    for (let i = 0; i < DEFAULT_LIMITS.maxMessagesPerSec * DEFAULT_LIMITS.rateBurstSeconds; i++) send({ op: "ping" });
    expect(closes).toEqual([4029]);
    await notifyPastGap();
    expect(reads()).toBe(0);
    hub.shutdown();
  });

  it("failed by ws itself (a frame over maxFrameBytes, bad UTF-8) has its private channel stopped at once", async () => {
    const { hub, listeners, notifyPastGap, reads } = await subscribed();
    (listeners.get("error") as (error: Error) => void)(new RangeError("Max payload size exceeded"));
    await notifyPastGap();
    expect(reads()).toBe(0);
    hub.shutdown();
  });

  it("still open, its channel reads the store for a gap (what the two above rule out)", async () => {
    const { hub, notifyPastGap, reads } = await subscribed();
    await notifyPastGap();
    expect(reads()).toBe(1);
    hub.shutdown();
  });
});

describe("a socket whose client vanished", () => {
  it("is dropped within the 429's Retry-After, whatever the sweep's phase when it opened", async () => {
    for (const heartbeatMs of [DEFAULT_LIMITS.heartbeatMs, 1_000]) {
      const hub = hubWith({
        limits: { ...DEFAULT_LIMITS, heartbeatMs },
      });
      hub.start();
      // Opened just after a sweep, so the sweep that finds it silent comes as late as it can.
      await vi.advanceTimersByTimeAsync(1);
      let droppedAfterMs: number | undefined;
      const openedAt = Date.now();
      const ws = { ...fakeSocket(), terminate: () => (droppedAfterMs = Date.now() - openedAt) } as unknown as WebSocket;
      hub.accept(ws, { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 3_600_000 });
      await vi.advanceTimersByTimeAsync(3 * heartbeatMs);
      const retryAfterS = Math.ceil(silentDropWithinMs(heartbeatMs) / 1000); // as server.ts answers a 429
      expect(droppedAfterMs).toBeGreaterThan(2 * heartbeatMs);
      expect(droppedAfterMs).toBeLessThanOrEqual(retryAfterS * 1000);
      hub.shutdown();
    }
  });
});

describe("stream_closes_total", () => {
  it("counts a close by who closed first: the server's 4008 as by=server, a client's own 4008 as by=client", async () => {
    const registry = new Registry();
    const hub = hubWith({
      metrics: streamMetrics(registry),
    });
    hub.start();
    /** A socket whose close ws reports with `code` (the code of the close frame sent or received). */
    const socket = (bufferedAmount: number) => {
      const closes: number[] = [];
      const { ws, send, emit } = clientSocket({ bufferedAmount, close: (code: number) => closes.push(code) });
      hub.accept(ws, { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 3_600_000 });
      return { ws, closes, send, reportClose: (code: number) => emit("close", code) };
    };
    // Far over the send buffer's cap: the server closes it 4008 on its welcome, and the client answers the close.
    const slow = socket(10 * DEFAULT_LIMITS.privateBufferCapBytes);
    expect(slow.closes).toEqual([CLOSE_CODES.tooSlow]);
    slow.reportClose(CLOSE_CODES.tooSlow);
    // Clients that close with 4008 themselves, as any client (and a page script in a browser) may.
    for (let i = 0; i < 3; i++) {
      const own = socket(0);
      own.reportClose(CLOSE_CODES.tooSlow);
      expect(own.closes).toEqual([]);
    }
    // One that drops without a close frame: ws reports 1006, and the server did not terminate it.
    socket(0).reportClose(1006);
    // One whose close frame came first: ws answered it (CLOSING) and waits for the client to end the socket. The
    // server closes it 4008 meanwhile (what ws buffers after a close counts in bufferedAmount): still the client's.
    const first = socket(0);
    first.ws.readyState = 2; // CLOSING
    first.ws.bufferedAmount = 10 * DEFAULT_LIMITS.privateBufferCapBytes;
    first.send({ op: "ping", id: 1 });
    expect(first.closes).toEqual([CLOSE_CODES.tooSlow]);
    first.reportClose(1000);
    const values = (await registry.getSingleMetric("stream_closes_total")!.get()).values;
    expect(values.map((v) => ({ ...v.labels, value: v.value }))).toEqual([
      { code: "4008", by: "server", value: 1 },
      { code: "4008", by: "client", value: 3 },
      { code: "1006", by: "client", value: 1 },
      { code: "1000", by: "client", value: 1 },
    ]);
    hub.shutdown();
  });
});
