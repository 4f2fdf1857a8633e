// The private channel: snapshot then events with contiguous seqs, resume after a disconnect without gap or
// duplicate, resync beyond retention or ahead, gaps filled from the store, never another user's events.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OrderView, PrivateOutput, TradeView } from "../contract/messages.ts";
import { privateEventOf } from "../contract/stream-fields.ts";
import { openTradesView, pendingOrdersView } from "../functions/views.ts";
import { EVENT_SCRIPTS, recordLostEvents } from "../worker/events.ts";
import { queueOutputWrite, READ_MODEL_SCRIPTS } from "../worker/read-models.ts";
import { quoteOutput } from "./testing/quote-output.ts";
import {
  balancesEvent,
  fanOut,
  fanOutEvents,
  startTestStream,
  storeEvents,
  type Frame,
  type TestStream,
  connectAs,
  eventSeqs,
  newUserId,
} from "./testing/stream-fixture.ts";

let t: TestStream;

beforeAll(async () => {
  t = await startTestStream();
});

afterAll(async () => {
  await t.close();
});

const user = newUserId;

const connect = (userId: string) => connectAs(t, userId);

/** Stores and fans out events seq from..to, as the worker does. */
async function emit(userId: string, from: number, to: number): Promise<PrivateOutput[]> {
  const events = [];
  for (let seq = from; seq <= to; seq++) events.push(balancesEvent(userId, seq, `${1000 + seq}`));
  await storeEvents(t, events);
  await fanOutEvents(t, events);
  return events;
}

/** Writes `output` as the worker does: its read-model change and its event in one script. */
async function writeOutput(output: PrivateOutput, more = false): Promise<void> {
  for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await t.redis.script("LOAD", script);
  const pipe = t.redis.pipeline();
  queueOutputWrite(pipe, t.keys, output, more);
  for (const [error] of (await pipe.exec())!) expect(error).toBeNull();
}

/** An engine step's first event: an ETH long with a margin of 100 opened, its margin not yet paid. */
function ethTradeOpened(userId: string, seq: number): PrivateOutput {
  const { id, inputId } = balancesEvent(userId, seq, "0");
  return {
    type: "trade_opened",
    id,
    inputId,
    userId,
    seq,
    trade: {
      id: "T0-1",
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
      quantity: "0.5",
      openPrice: "2000",
      stopLoss: null,
      takeProfit: null,
      trailingStop: null,
      liquidationPrice: "1810",
      openedAt: "2027-01-15T08:00:00.000Z",
    },
  };
}

const seqs = eventSeqs;
const hasSeq = (n: number) => (frames: Frame[]) => seqs(frames).includes(n);

describe("private channel", () => {
  it("answers a subscribe with the snapshot at the current seq, then every later event in order", async () => {
    const u = user();
    await emit(u, 1, 3);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    const snapshot = await client.until((f) => f.find((x) => x.type === "snapshot"));
    expect(snapshot).toMatchObject({ seq: 3, balances: { USD: "1003" }, trades: [], orders: [] });
    expect(snapshot.summary).toMatchObject({ balance: "1003", equity: "1003", marginLevel: null });
    const subscribedAt = client.frames.findIndex((f) => f.type === "subscribed");
    expect(subscribedAt).toBeLessThan(client.frames.indexOf(snapshot));
    await emit(u, 4, 8);
    await client.until(hasSeq(8));
    expect(seqs(client.frames)).toEqual([4, 5, 6, 7, 8]);
    const event = client.frames.find((f) => f.type === "event")!;
    expect(event).toMatchObject({ event: "balances_changed", balances: { USD: "1004" } });
    expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(event).not.toHaveProperty("userId");
    // A summary follows each batch of events delivered, tagged with the last seq.
    await client.until((frames) => frames.some((f) => f.type === "summary" && f.seq === 8));
    const summaries = client.of("summary");
    expect(summaries.at(-1)).toMatchObject({ seq: 8, balance: "1008" });
    client.close();
  });

  it("lists trades opened, and orders placed, at the same instant as the REST API does: by id number", async () => {
    const u = user();
    await emit(u, 1, 1);
    const at = "2027-01-15T08:00:00.000Z"; // one quote filled both entry orders
    const trade = (id: string): TradeView => ({
      id,
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
      openedAt: at,
    });
    const order = (id: string): OrderView => ({
      id,
      asset: "BTC",
      side: "long",
      type: "limit",
      price: "50000",
      margin: "1",
      leverage: 10,
      stopLoss: null,
      takeProfit: null,
      trailingStop: null,
      expiresAt: null,
      ocoWith: null,
      status: "pending",
      placedAt: at,
      updatedAt: at,
      fillPrice: null,
      tradeId: null,
      reason: null,
    });
    const ids = ["0-10", "0-9", "0-100"];
    const trades = Object.fromEntries(ids.map((id) => [`T${id}`, JSON.stringify(trade(`T${id}`))]));
    const orders = Object.fromEntries(ids.map((id) => [`P${id}`, JSON.stringify(order(`P${id}`))]));
    await t.redis.hset(t.keys.openTradesKey(u), trades);
    await t.redis.hset(t.keys.pendingOrdersKey(u), orders);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    const snapshot = await client.until((f) => f.find((x) => x.type === "snapshot"));
    client.close();
    const rest = {
      trades: openTradesView(trades, new Map()).map((x) => x.id),
      orders: pendingOrdersView(orders).map((x) => x.id),
    };
    expect(rest).toEqual({ trades: ["T0-9", "T0-10", "T0-100"], orders: ["P0-9", "P0-10", "P0-100"] });
    expect({
      trades: (snapshot.trades as TradeView[]).map((x) => x.id),
      orders: (snapshot.orders as OrderView[]).map((x) => x.id),
    }).toEqual(rest);
  });

  it("resumes after a disconnect from the last seq seen: no gap, no duplicate", async () => {
    const u = user();
    await emit(u, 1, 2);
    const first = await connect(u);
    first.send({ op: "subscribe", channel: "private" });
    await first.until((f) => f.some((x) => x.type === "snapshot"));
    await emit(u, 3, 5);
    await first.until(hasSeq(5));
    first.close();
    await first.closed;
    await emit(u, 6, 9); // missed while away
    const second = await connect(u);
    second.send({ op: "subscribe", channel: "private", since: 5 });
    await second.until(hasSeq(9));
    await emit(u, 10, 11);
    await second.until(hasSeq(11));
    expect(second.of("snapshot")).toEqual([]);
    expect(seqs(second.frames)).toEqual([6, 7, 8, 9, 10, 11]);
    second.close();
  });

  it("resyncs with a fresh snapshot when the events after `since` are no longer kept, or `since` is ahead", async () => {
    const u = user();
    await emit(u, 1, 6);
    await t.redis.zremrangebyscore(t.keys.eventsKey(u), 1, 3); // trimmed by retention
    const late = await connect(u);
    late.send({ op: "subscribe", channel: "private", since: 1 });
    const resync = await late.until((f) => f.find((x) => x.type === "resync"));
    expect(resync).toMatchObject({ reason: "beyond_retention", seq: 6, balances: { USD: "1006" } });
    // Exactly at the oldest kept − 1 is still a resume.
    const edge = await connect(u);
    edge.send({ op: "subscribe", channel: "private", since: 3 });
    await edge.until(hasSeq(6));
    expect(seqs(edge.frames)).toEqual([4, 5, 6]);
    const ahead = await connect(u);
    ahead.send({ op: "subscribe", channel: "private", since: 50 });
    expect(await ahead.until((f) => f.find((x) => x.type === "resync"))).toMatchObject({ reason: "ahead", seq: 6 });
    await emit(u, 7, 7);
    for (const c of [late, edge, ahead]) await c.until(hasSeq(7));
    expect(seqs(late.frames)).toEqual([7]);
    for (const c of [late, edge, ahead]) c.close();
  });

  it("fills a gap in the notifications from the store, and waits for a gap the store does not hold yet", async () => {
    const u = user();
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    await client.until((f) => f.some((x) => x.type === "snapshot"));
    const events = [1, 2, 3, 4, 5].map((seq) => balancesEvent(u, seq, `${seq}`));
    // 1 and 2 stored, only 2 notified: 1 comes from the store.
    await storeEvents(t, events.slice(0, 2));
    await fanOutEvents(t, [events[1]!]);
    await client.until(hasSeq(2));
    // 4 stored and notified before 3 is stored (a claimed batch): nothing past the gap goes out.
    await storeEvents(t, [events[3]!]);
    await fanOutEvents(t, [events[3]!]);
    await new Promise((r) => setTimeout(r, 300));
    expect(seqs(client.frames)).toEqual([1, 2]);
    await storeEvents(t, [events[2]!, events[4]!]);
    await fanOutEvents(t, [events[2]!, events[4]!]);
    await client.until(hasSeq(5));
    expect(seqs(client.frames)).toEqual([1, 2, 3, 4, 5]);
    client.close();
  });

  it("reads the events after a late one from the store when only the late one is fanned out", async () => {
    const u = user();
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    await client.until((f) => f.some((x) => x.type === "snapshot"));
    const events = [1, 2, 3, 4, 5].map((seq) => balancesEvent(u, seq, `${seq}`));
    await storeEvents(t, events.slice(0, 2));
    await fanOutEvents(t, events.slice(0, 2));
    await client.until(hasSeq(2));
    // 4 and 5 stored and fanned out above the gap; the channel waits, its retries backing off.
    await storeEvents(t, events.slice(3));
    await fanOutEvents(t, events.slice(3));
    await new Promise((r) => setTimeout(r, 2_000));
    expect(seqs(client.frames)).toEqual([1, 2]);
    // The late batch fans out only its own event (worker/events.ts): 4 and 5 come from the store, at once.
    await storeEvents(t, [events[2]!]);
    const sentAt = Date.now();
    await fanOutEvents(t, [events[2]!]);
    await client.until(hasSeq(5));
    expect(Date.now() - sentAt).toBeLessThan(500);
    expect(seqs(client.frames)).toEqual([1, 2, 3, 4, 5]);
    client.close();
  });

  it("a resume from the last seq stored sends no event and no resync, then the next events", async () => {
    const u = user();
    await emit(u, 1, 3);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private", since: 3 });
    await client.until((f) => f.some((x) => x.type === "subscribed"));
    await new Promise((r) => setTimeout(r, 200));
    expect(client.frames.filter((f) => ["event", "resync", "snapshot"].includes(f.type))).toEqual([]);
    await emit(u, 4, 4);
    await client.until(hasSeq(4));
    expect(seqs(client.frames)).toEqual([4]);
    expect(client.of("resync")).toEqual([]);
    client.close();
  });

  it("a resume from 0 once seq 1 has been trimmed is a resync", async () => {
    const u = user();
    await emit(u, 1, 3);
    await t.redis.zremrangebyscore(t.keys.eventsKey(u), 1, 1);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private", since: 0 });
    expect(await client.until((f) => f.find((x) => x.type === "resync"))).toMatchObject({
      reason: "beyond_retention",
      seq: 3,
      balances: { USD: "1003" },
    });
    expect(client.of("event")).toEqual([]);
    client.close();
  });

  it("a resume whose store read ends inside an engine step holds the summary until the step ends", async () => {
    const u = user();
    // 2 opened a trade and 3 pays its margin, in one step; the mark sits between them when the client resumes.
    await emit(u, 1, 1);
    const [opened, paid] = [balancesEvent(u, 2, "1002"), balancesEvent(u, 3, "1003")];
    await storeEvents(t, [opened], [2]);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private", since: 1 });
    await client.until(hasSeq(2));
    await storeEvents(t, [paid]);
    await fanOutEvents(t, [paid]);
    await client.until((f) => f.some((x) => x.type === "summary" && x.seq === 3));
    const sent = client.frames.filter((f) => f.type === "event" || f.type === "summary");
    expect(sent.map((f) => `${f.type} ${String(f.seq)}`)).toEqual(["event 2", "event 3", "summary 3"]);
    expect(client.of("event")[0]).not.toHaveProperty("more");
    client.close();
  });

  it("sends no summary, nor a snapshot, at a step's first event: each waits for its next event", async () => {
    const u = user();
    // 1 paid in 1,000 USD; 2 opened an ETH trade with a margin of 100, stored with `more`; the worker's batch ended
    // there, and 3 (its margin paid: USD 900) is still to come. The open trades show the trade, the balances not yet.
    const trade: TradeView = {
      id: "T0-1",
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
      quantity: "0.5",
      openPrice: "2000",
      stopLoss: null,
      takeProfit: null,
      trailingStop: null,
      liquidationPrice: "1810",
      openedAt: "2027-01-15T08:00:00.000Z",
    };
    const first = balancesEvent(u, 2, "1000");
    const opened: PrivateOutput = {
      type: "trade_opened",
      id: first.id,
      inputId: first.inputId,
      userId: u,
      seq: 2,
      trade,
    };
    await storeEvents(t, [balancesEvent(u, 1, "1000")]);
    await t.redis.hset(t.keys.openTradesKey(u), trade.id, JSON.stringify(trade));
    await storeEvents(t, [opened], [2]);
    const resumed = await connect(u); // it had 2 from its last socket
    resumed.send({ op: "subscribe", channel: "private", since: 2 });
    const fresh = await connect(u);
    fresh.send({ op: "subscribe", channel: "private" });
    await resumed.until((f) => f.some((x) => x.type === "subscribed"));
    await fresh.until((f) => f.some((x) => x.type === "subscribed"));
    await new Promise((r) => setTimeout(r, 100)); // the resume's read answered
    // A quote of the trade's asset owes the resumed socket a summary. At seq 2 it would show 1,100: the margin in
    // use, and still in the USD it is to be paid from. So would the snapshot's own summary: it waits for 3 (up to 2 s
    // from the subscribe; this is well within that).
    await fanOut(t, "quote", quoteOutput("ETH", "2001"));
    await new Promise((r) => setTimeout(r, 300)); // the resume's first tick after the quote
    const sent = (client: typeof fresh) =>
      client.frames
        .filter((f) => ["event", "summary", "snapshot"].includes(f.type))
        .map((f) => {
          const summary = (f.type === "snapshot" ? f.summary : f) as { balance: string };
          return `${f.type} ${String(f.seq)}${f.type === "event" ? "" : ` balance ${summary.balance}`}`;
        });
    expect([sent(resumed), sent(fresh)]).toEqual([[], []]);
    const paid = { ...balancesEvent(u, 3, "900"), id: `${opened.inputId}:1`, inputId: opened.inputId };
    await storeEvents(t, [paid]);
    await fanOutEvents(t, [paid]);
    await resumed.until((f) => f.some((x) => x.type === "summary"));
    expect(sent(resumed)).toEqual(["event 3", "summary 3 balance 1000"]);
    // The snapshot is read again once 3 is stored: it is at 3, and shows 1,000, never 1,100
    await fresh.until((f) => f.some((x) => x.type === "snapshot"));
    await new Promise((r) => setTimeout(r, 100));
    expect(sent(fresh)).toEqual(["snapshot 3 balance 1000"]);
    for (const client of [resumed, fresh]) client.close();
  });

  it("sends no snapshot in the middle of a step stored above a gap: it waits for the step's next event", async () => {
    const u = user();
    // 1 paid in 1,000 USD. 2 is in a batch a dead worker still holds (claimed ~30 s later), so the mark stays at 1,
    // whose step is whole. The live worker stores the next step above the gap, with its own scripts: 3 opened an ETH
    // trade with a margin of 100 (stored with `more`), 4 (its margin paid: USD 900) is still to come.
    await storeEvents(t, [balancesEvent(u, 1, "1000")]);
    const opened = ethTradeOpened(u, 3);
    await writeOutput(opened, true);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    await client.until((f) => f.some((x) => x.type === "subscribed"));
    // Read now, its summary would show 1,100: the margin in the trade, and still in the USD it is to be paid from
    await new Promise((r) => setTimeout(r, 300));
    expect(client.of("snapshot")).toEqual([]);
    const paid = { ...balancesEvent(u, 4, "900"), id: `${opened.inputId}:1`, inputId: opened.inputId };
    await writeOutput(paid);
    await fanOutEvents(t, [paid]);
    const snapshot = await client.until((f) => f.find((x) => x.type === "snapshot"));
    expect(snapshot).toMatchObject({ seq: 1, balances: { USD: "900" }, summary: { balance: "1000" } });
    client.close();
  });

  it("sends the snapshot at once above a gap when the step's next event was refused (recorded lost)", async () => {
    const u = user();
    // 1 paid in 1,000 USD; 2 is held by a dead worker. The live worker's batch: 3 opened an ETH trade with a margin
    // of 100 (`more`), 4 (its margin paid) was refused and recorded lost, before the batch's outputs were written, as
    // the worker does. The step is never stored whole: waiting for it would only hold the snapshot back.
    await storeEvents(t, [balancesEvent(u, 1, "1000")]);
    await recordLostEvents(t.redis, t.keys, [{ userId: u, seq: 4 }]);
    await writeOutput(ethTradeOpened(u, 3), true);
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    const snapshot = await client.until((f) => f.find((x) => x.type === "snapshot"));
    // The read models keep the half step, as a snapshot sent after the wait would have shown them
    expect(snapshot).toMatchObject({ seq: 1, balances: { USD: "1000" }, summary: { balance: "1100" } });
    expect(t.logs.filter((l) => l.event === "private_state_mid_step" && l.userId === u)).toEqual([]);
    client.close();
  });

  it("after the fan-out reader lost its connection, every private channel looks in the store", async () => {
    const u = user();
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    await client.until((f) => f.some((x) => x.type === "snapshot"));
    // Stored while the notifications are lost (trimmed from the fan-out during an outage, say).
    await storeEvents(t, [balancesEvent(u, 1, "1"), balancesEvent(u, 2, "2")]);
    await new Promise((r) => setTimeout(r, 100));
    expect(client.of("event")).toEqual([]);
    const clients = (await t.redis.client("LIST")) as string;
    const id = clients
      .split("\n")
      .find((line) => line.includes(` name=${t.readerName} `))
      ?.match(/^id=(\d+)/)?.[1];
    expect(id).toBeDefined();
    await t.redis.client("KILL", "ID", id!);
    await client.until(hasSeq(2));
    expect(seqs(client.frames)).toEqual([1, 2]);
    client.close();
  });

  it("never delivers another user's events, though both users' sockets are on the same replica", async () => {
    const alice = user();
    const bob = user();
    const a = await connect(alice);
    const b = await connect(bob);
    a.send({ op: "subscribe", channel: "private" });
    b.send({ op: "subscribe", channel: "private" });
    await a.until((f) => f.some((x) => x.type === "snapshot"));
    await b.until((f) => f.some((x) => x.type === "snapshot"));
    await emit(bob, 1, 3);
    await emit(alice, 1, 1);
    await a.until(hasSeq(1));
    await b.until(hasSeq(3));
    // A fan-out entry whose body names another user than its `user` field is dropped.
    const forged = { ...balancesEvent(bob, 2, "999999"), userId: bob };
    await t.redis.xadd(
      t.keys.streamFanout,
      "*",
      "kind",
      "event",
      "user",
      alice,
      "seq",
      2,
      "body",
      JSON.stringify(forged),
    );
    await emit(alice, 2, 2);
    await a.until(hasSeq(2));
    const aliceEvents = a.of("event");
    expect(aliceEvents.map((f) => (f.balances as { USD: string }).USD)).toEqual(["1001", "1002"]);
    expect(JSON.stringify(a.frames)).not.toContain(bob);
    a.close();
    b.close();
  });

  it("a second private subscribe on the same socket is an error, and unsubscribe stops delivery", async () => {
    const u = user();
    const client = await connect(u);
    client.send({ op: "subscribe", channel: "private" });
    client.send({ op: "subscribe", channel: "private", since: 0 });
    expect(await client.until((f) => f.find((x) => x.type === "error"))).toMatchObject({ code: "ALREADY_SUBSCRIBED" });
    client.send({ op: "unsubscribe", channel: "private" });
    await client.until((f) => f.some((x) => x.type === "unsubscribed"));
    await emit(u, 1, 1);
    client.send({ op: "ping", id: "after" });
    await client.until((f) => f.some((x) => x.type === "pong"));
    await new Promise((r) => setTimeout(r, 100));
    expect(client.of("event")).toEqual([]);
    client.close();
  });
});

it("a refused entry naming a seq far past the user's, recorded lost, holds back neither events nor summaries", async () => {
  const u = user();
  await emit(u, 1, 3);
  // What the worker does with an entry refused for its body: the user and seq it names are recorded lost.
  const body = { type: "balances_changed", id: "x", userId: u, seq: 1_000_000, balances: {} };
  const lost = privateEventOf(["type", "balances_changed", "body", JSON.stringify(body)]);
  await recordLostEvents(t.redis, t.keys, [{ userId: lost.userId!, seq: lost.seq! }]);
  const client = await connect(u);
  client.send({ op: "subscribe", channel: "private" });
  await client.until((f) => f.find((x) => x.type === "snapshot"));
  await emit(u, 4, 6);
  await client.until((frames) => frames.some((f) => f.type === "summary" && f.seq === 6));
  expect(seqs(client.frames)).toEqual([4, 5, 6]);
  client.close();
});
