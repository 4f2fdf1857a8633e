/**
 * The live stream through the real processes: engine, worker, poller, API and stream as separate Node processes on
 * real Redis and Postgres, prices from the scripted sim feed, sign-in through the real `resend` client to a local
 * recorder, and clients that are the typed client of client/ over real sockets.
 *
 * 1. A stop-loss fires: the client sees the quote that crossed it, then the trade closed, then the balance, in that
 *    order, with contiguous sequence numbers; another user's client sees none of it.
 * 2. The stream process, the engine and the worker are each killed with SIGKILL while the users trade; clients
 *    reconnect and resume. Afterwards every client's event log is 1, 2, …, n with nothing missing or twice, and the
 *    state it built equals what the REST API says.
 * 3. The upgrade refuses a foreign Origin and a used ticket; logout closes the session's socket with 4401.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { StreamClient, type EventFrame, type PrivateState } from "../client/stream-client.ts";
import type { OrderView, TradeView } from "../contract/messages.ts";
import { createProcessStack, type ProcessStack, type Reply } from "../functions/testing/process-stack.ts";
import type { Component } from "../platform/components.ts";
import { until } from "../platform/testing/processes.ts";

let stack: ProcessStack;
const clients: StreamClient[] = [];
const http = (method: string, path: string, options: { token?: string; body?: unknown } = {}) =>
  stack.http(method, path, options);

/** What a client saw, in arrival order. */
interface Watched {
  client: StreamClient;
  frames: { kind: "quote" | "event"; seq?: number; event?: EventFrame["event"]; bid?: string; asset?: string }[];
  events: EventFrame[];
  state: PrivateState | undefined;
  closes: { code: number; sessionEnded: boolean }[];
}

function watch(token: string): Watched {
  const client = new StreamClient({
    apiUrl: `http://127.0.0.1:${stack.port}`,
    WebSocket,
    token,
    subscriptions: [{ channel: "quotes" }, { channel: "private" }],
    backoff: { initialMs: 100, maxMs: 1_000 },
  });
  const w: Watched = { client, frames: [], events: [], state: undefined, closes: [] };
  client.on("quote", (q) => w.frames.push({ kind: "quote", bid: q.bid, asset: q.asset }));
  client.on("event", (e, state) => {
    w.frames.push({ kind: "event", seq: e.seq, event: e.event });
    w.events.push(e);
    w.state = state;
  });
  client.on("state", (state) => (w.state = state));
  client.on("close", (info) => w.closes.push({ code: info.code, sessionEnded: info.sessionEnded }));
  client.connect();
  clients.push(client);
  return w;
}

/** The client's whole event log is 1, 2, …, n: nothing missing, nothing twice, in order. */
function expectContiguous(w: Watched, from = 1): void {
  const seqs = w.events.map((e) => e.seq);
  expect(seqs).toEqual(seqs.map((_, i) => i + from));
}

/** The client's private state equals what the REST API says: balances, and every open trade and pending order whole. */
async function expectStateMatchesRest(w: Watched, token: string): Promise<void> {
  const rest = async () => {
    const [balances, open, orders] = await Promise.all([
      http("GET", "/api/v1/account/balance", { token }),
      http("GET", "/api/v1/trade/open", { token }),
      http("GET", "/api/v1/trade/orders", { token }),
    ]);
    return {
      balances: balances.body.balances,
      // The REST view adds the current price and PnL; the stream's is the engine's view.
      trades: (open.body.trades as (TradeView & { currentPrice?: unknown; unrealizedPnl?: unknown })[]).map(
        ({ currentPrice: _p, unrealizedPnl: _u, ...trade }) => trade,
      ),
      orders: orders.body.orders as OrderView[],
    };
  };
  const mine = () => ({
    balances: w.state?.balances,
    trades: [...(w.state?.trades.values() ?? [])].sort(
      (a, b) => a.openedAt.localeCompare(b.openedAt) || a.id.localeCompare(b.id),
    ),
    orders: [...(w.state?.orders.values() ?? [])].sort(
      (a, b) => a.placedAt.localeCompare(b.placedAt) || a.id.localeCompare(b.id),
    ),
  });
  await until(
    async () => (JSON.stringify(await rest()) === JSON.stringify(mine()) ? true : undefined),
    20_000,
    "the client's state to equal the REST API's",
  ).catch(async (err: unknown) => {
    expect(mine()).toEqual(await rest()); // says what differs
    throw err;
  });
}

let alice: string;
let bob: string;

beforeAll(async () => {
  stack = await createProcessStack(`test:stream-e2e:${randomUUID()}:`);
  await stack.start("api");
  const others: Component["name"][] = ["engine", "worker", "poller", "stream"];
  await Promise.all(others.map((name) => stack.start(name)));
  alice = await stack.signIn("alice@example.com");
  bob = await stack.signIn("bob@example.com");
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await stack.stop();
}, 60_000);

describe("the live stream through the real processes", () => {
  it("a stop-loss: the quote that crossed it, then the close, then the balance, with contiguous seqs; the other user sees none of it", async () => {
    await stack.quote("ETH_USDC_PERP", "4000", "4001");
    const a = watch(alice);
    const b = watch(bob);
    await until(
      () => Promise.resolve(a.state !== undefined && b.state !== undefined ? true : undefined),
      10_000,
      "snapshots",
    );
    const seqBefore = a.state!.seq;

    const opened = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "long", margin: "100", leverage: 10, stopLoss: "3900" },
    });
    expect(opened.status).toBe(201);
    const tradeId = (opened.body.trade as { id: string }).id;
    await until(
      () => Promise.resolve(a.state?.trades.has(tradeId) === true ? true : undefined),
      10_000,
      "trade_opened",
    );

    stack.sim.setQuote("ETH_USDC_PERP", "3890", "3891");
    await until(
      () => Promise.resolve(a.state?.trades.has(tradeId) === false ? true : undefined),
      10_000,
      "the stop-loss",
    );
    await until(
      () => Promise.resolve(a.events.at(-1)?.event === "balances_changed" ? true : undefined),
      10_000,
      "the balance after the close",
    );

    const crossing = a.frames.findIndex((f) => f.kind === "quote" && f.asset === "ETH" && f.bid === "3890");
    const closed = a.frames.findIndex((f) => f.kind === "event" && f.event === "closed_order");
    const balance = a.frames.findIndex((f, i) => i > closed && f.kind === "event" && f.event === "balances_changed");
    expect(crossing, JSON.stringify(a.frames)).toBeGreaterThanOrEqual(0);
    expect(closed).toBeGreaterThan(crossing);
    expect(balance).toBeGreaterThan(closed);
    const close = a.events.find((e) => e.event === "closed_order");
    expect(close).toMatchObject({ trade: { id: tradeId, closeReason: "stop_loss" } });
    // From the snapshot on: every event once, in order.
    expect(a.events[0]!.seq).toBe(seqBefore + 1);
    expectContiguous(a, seqBefore + 1);
    await expectStateMatchesRest(a, alice);

    // Bob got quotes but none of Alice's events; his own log is still his own.
    expect(b.events.every((e) => !("trade" in e) || e.trade.id !== tradeId)).toBe(true);
    expect(b.frames.some((f) => f.kind === "quote")).toBe(true);
    expect(b.events).toEqual([]);
  });

  it("SIGKILL of the stream, the engine and the worker while users trade: clients resume with nothing missing or twice", async () => {
    const a = watch(alice);
    const b = watch(bob);
    await until(
      () => Promise.resolve(a.state !== undefined && b.state !== undefined ? true : undefined),
      10_000,
      "snapshots",
    );
    const firstA = a.state!.seq + 1;
    const firstB = b.state!.seq + 1;

    let trading = true;
    const failures: string[] = [];
    const trader = async (token: string) => {
      let n = 0;
      while (trading) {
        n++;
        const opened = await http("POST", "/api/v1/trade/create", {
          token,
          body: { asset: "ETH", type: n % 2 === 0 ? "long" : "short", margin: "10", leverage: 2 },
          // A 503/504 while the engine is down is expected; the client's log must still match the final state.
        }).catch((err: unknown): Reply => ({ status: 0, body: { error: String(err) }, cookie: null }));
        if (opened.status === 201) {
          const id = (opened.body.trade as { id: string }).id;
          await http("POST", "/api/v1/trade/close", { token, body: { tradeId: id } }).catch(() => undefined);
        } else if (opened.status !== 503 && opened.status !== 504 && opened.status !== 0) {
          failures.push(`${opened.status} ${JSON.stringify(opened.body)}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const running = Promise.all([trader(alice), trader(bob)]);

    for (const name of ["stream", "engine", "worker"] as const) {
      await new Promise((r) => setTimeout(r, 1_500));
      await stack.kill9AndRestart(name);
    }
    await new Promise((r) => setTimeout(r, 1_500));
    trading = false;
    await running;
    expect(failures).toEqual([]);

    for (const [w, token, first] of [
      [a, alice, firstA],
      [b, bob, firstB],
    ] as const) {
      await expectStateMatchesRest(w, token);
      expect(w.events.length).toBeGreaterThan(4);
      expectContiguous(w, first);
      // The stream's SIGKILL cut every socket: the client reconnected at least once.
      expect(w.closes.length).toBeGreaterThan(0);
    }
  }, 120_000);

  it("refuses a foreign Origin and a used ticket at the upgrade; logout closes the socket with 4401", async () => {
    const ticket = async (token: string) =>
      (await http("POST", "/api/v1/stream/ticket", { token })).body as { ticket: string; url: string };
    const upgrade = (url: string, headers: Record<string, string> = {}) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => {
          ws.close();
          resolve(101);
        });
        ws.on("error", () => undefined);
      });

    const t1 = await ticket(alice);
    expect(await upgrade(`${t1.url}?ticket=${t1.ticket}`, { origin: "https://evil.example" })).toBe(403);
    const t2 = await ticket(alice);
    expect(await upgrade(`${t2.url}?ticket=${t2.ticket}`)).toBe(101);
    expect(await upgrade(`${t2.url}?ticket=${t2.ticket}`)).toBe(401);

    const carol = await stack.signIn("carol@example.com");
    const c = watch(carol);
    await until(() => Promise.resolve(c.state !== undefined ? true : undefined), 10_000, "carol's snapshot");
    expect((await http("DELETE", "/api/v1/auth/logout", { token: carol })).status).toBeLessThan(300);
    await until(
      () => Promise.resolve(c.closes.some((x) => x.code === 4401 && x.sessionEnded) ? true : undefined),
      2_000,
      "the socket closed with 4401 within 2 s of logout",
    );
  });
});
