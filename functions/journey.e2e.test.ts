/**
 * A new user's whole journey through the real processes, as they run in production: the engine, worker, poller and
 * API as separate Node processes on real Redis and Postgres, prices from a Backpack-protocol feed (the sim feed,
 * scripted), sign-in email through the real `resend` client to a local Resend-compatible recorder. Then every
 * process is killed with SIGKILL and started again: nothing is lost.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { startSimFeed, type SimFeed } from "../poller/sim-feed.ts";
import { componentNamed, type Component } from "../platform/components.ts";
import { freePort, spawnComponent, until, type Child } from "../platform/testing/processes.ts";
import { startResendRecorder, type ResendRecorder } from "./testing/resend-recorder.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";

const REDIS_URL = TEST_REDIS_URL;
const prefix = `test:journey:${randomUUID()}:`;

let pg: TestDatabase;
let sim: SimFeed;
let recorder: ResendRecorder;
let port: number;
const children = new Map<string, Child>();

function env(): Record<string, string> {
  return {
    REDIS_URL,
    DATABASE_URL: pg.url,
    KEY_PREFIX: prefix,
    SNAPSHOT_EVERY_MS: "500",
    ENGINE_LEASE_TTL_MS: "1500",
    WORKER_CLAIM_IDLE_MS: "1000",
    FEED: "backpack",
    BACKPACK_WS_URL: sim.url,
    PORT: String(port),
    HOST: "127.0.0.1",
    APP_URL: `http://127.0.0.1:${port}`,
    JWT_SECRET: "journey-secret-0123456789-0123456789-abcdef",
    RESEND_API_KEY: "re_journey_key",
    RESEND_BASE_URL: recorder.baseUrl,
    EMAIL_FROM: "Paper Broker <login@paper-broker.test>",
    ENGINE_TIMEOUT_MS: "3000",
    TRADE_RATE_LIMIT_PER_SEC: "1000",
    SIGN_IN_LIMIT_PER_IP: "1000",
  };
}

/** Starts a component as `npm start` does and waits until it says it is serving. */
async function start(name: Component["name"]): Promise<void> {
  const child = spawnComponent(name, env());
  children.set(name, child);
  await child.waitFor(componentNamed(name).readyEvent, 30_000);
}

/** The parts of API answers this test reads. */
interface ApiBody {
  [field: string]: unknown;
  trade: { id: string; [field: string]: unknown };
  trades: Record<string, string>[];
  error: { code: string; message: string };
}

async function http(method: string, path: string, options: { token?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers,
    body: options.body === undefined ? null : JSON.stringify(options.body),
    redirect: "manual",
  });
  const body = (await res.json()) as ApiBody;
  return { status: res.status, body, cookie: res.headers.get("set-cookie") };
}

async function signIn(email: string): Promise<string> {
  const before = recorder.sent.length;
  expect((await http("POST", "/api/v1/auth", { body: { email } })).status).toBe(200);
  await until(() => Promise.resolve(recorder.sent.length > before ? true : undefined), 5_000, "the sign-in email");
  const mail = recorder.sent.at(-1)!;
  expect(mail.body.to).toBe(email);
  const link = /http:\/\/\S+?token=[A-Za-z0-9_-]+/.exec(String(mail.body.text))![0];
  const verified = await http("GET", new URL(link).pathname + new URL(link).search);
  expect(verified.status).toBe(200);
  return /session=([^;]+)/.exec(verified.cookie ?? "")![1]!;
}

async function quote(market: string, bid: string, ask: string): Promise<void> {
  sim.setQuote(market, bid, ask);
  const asset = market.split("_")[0];
  await until(
    async () => {
      const { body } = await http("GET", "/api/v1/account/assets", { token: alice });
      const a = (body.assets as { symbol: string; bid: string; ask: string }[]).find((x) => x.symbol === asset);
      return a?.bid === bid && a.ask === ask ? true : undefined;
    },
    10_000,
    `quote ${market} ${bid}/${ask}`,
  );
}

let alice: string;

beforeAll(async () => {
  pg = await createTestDatabase();
  sim = await startSimFeed({ walking: false });
  recorder = await startResendRecorder();
  port = await freePort();
  // The API first: it runs the migrations the others also run; then the engine must be live before sign-in.
  await start("api");
  await Promise.all([start("engine"), start("worker"), start("poller")]);
}, 120_000);

afterAll(async () => {
  await Promise.all([...children.values()].map((c) => c.stop("SIGTERM")));
  await sim.stop();
  await recorder.close();
  const redis = new Redis(REDIS_URL);
  await deleteKeysWithPrefix(redis, prefix);
  await redis.quit();
  await pg.drop();
}, 60_000);

describe("a new user's journey through the real processes", () => {
  it("signs in by email, trades on feed prices, hits a stop-loss, buys spot, and is kept apart from another user", async () => {
    expect((await http("GET", "/health")).body).toMatchObject({
      status: "ok",
      redis: true,
      postgres: true,
      engine: true,
    });
    alice = await signIn("alice@example.com");
    expect((await http("GET", "/api/v1/account/balance/usd", { token: alice })).body).toEqual({
      asset: "USD",
      balance: "10000",
    });

    await quote("ETH_USDC_PERP", "3000", "3000.5");
    const assets = (await http("GET", "/api/v1/account/assets", { token: alice })).body.assets as {
      symbol: string;
      source: string;
    }[];
    expect(assets.find((a) => a.symbol === "ETH")?.source).toBe("backpack");
    const long = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "long", margin: "200", leverage: 5, stopLoss: "2900", takeProfit: "3300" },
    });
    expect(long.status).toBe(201);
    expect(long.body.trade).toMatchObject({ openPrice: "3000.5", quantity: "0.3332", stopLoss: "2900" });
    const short = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "short", margin: "100", leverage: 2 },
    });
    expect(short.status).toBe(201);

    // The bid falls through the stop-loss: the long closes at that bid by itself.
    await quote("ETH_USDC_PERP", "2890", "2890.5");
    const history = await until(
      async () => {
        const h = await http("GET", "/api/v1/trade/history", { token: alice });
        return (h.body.trades as unknown[]).length === 1 ? h.body.trades : undefined;
      },
      10_000,
      "the stop-loss in the history",
    );
    expect(history[0]).toMatchObject({
      id: long.body.trade.id,
      closeReason: "stop_loss",
      closePrice: "2890",
      pnl: "-36.8186",
    }); // (2890 − 3000.5) × 0.3332
    const open = (await http("GET", "/api/v1/trade/open", { token: alice })).body.trades;
    expect(open.map((t) => t.id)).toEqual([short.body.trade.id]);
    expect(open[0]).toMatchObject({ quantity: "0.0666", currentPrice: "2890.5", unrealizedPnl: "7.2927" }); // (3000 − 2890.5) × 0.0666
    const spot = await http("POST", "/api/v1/trade/order", {
      token: alice,
      body: { asset: "ETH", side: "buy", quantity: "0.1" },
    });
    expect(spot.status).toBe(201);
    expect(spot.body.order).toMatchObject({ price: "2890.5", total: "289.05" });

    const bad = await http("POST", "/api/v1/trade/create", {
      token: alice,
      body: { asset: "ETH", type: "long", margin: "1.0000001", leverage: 5 },
    });
    expect([bad.status, bad.body.error.code]).toEqual([400, "INVALID_AMOUNT"]);
    const bob = await signIn("bob@example.com");
    expect(
      (await http("POST", "/api/v1/trade/close", { token: bob, body: { tradeId: short.body.trade.id } })).status,
    ).toBe(404);
    expect((await http("GET", "/api/v1/trade/open", { token: bob })).body.trades).toEqual([]);
  });

  it("survives kill -9 of every process: restarted, it has the same state and keeps trading", async () => {
    const before = {
      balances: (await http("GET", "/api/v1/account/balance", { token: alice })).body,
      open: (await http("GET", "/api/v1/trade/open", { token: alice })).body,
      history: (await http("GET", "/api/v1/trade/history", { token: alice })).body,
    };
    // Let the engine snapshot once at least, so the restart exercises snapshot + log replay.
    await new Promise((r) => setTimeout(r, 800));
    for (const name of ["engine", "worker", "poller", "api"] as const) await children.get(name)!.stop("SIGKILL");
    await start("api");
    await Promise.all([start("engine"), start("worker"), start("poller")]);
    expect((await http("GET", "/api/v1/account/balance", { token: alice })).body).toEqual(before.balances);
    expect((await http("GET", "/api/v1/trade/open", { token: alice })).body).toEqual(before.open);
    expect((await http("GET", "/api/v1/trade/history", { token: alice })).body).toEqual(before.history);
    await quote("ETH_USDC_PERP", "2800", "2800.5");
    const open = (before.open.trades as { id: string }[])[0]!;
    const closed = await http("POST", "/api/v1/trade/close", { token: alice, body: { tradeId: open.id } });
    expect(closed.status).toBe(200);
    expect(closed.body.trade).toMatchObject({ closePrice: "2800.5", closeReason: "manual" });
  });
});
