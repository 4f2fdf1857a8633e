/**
 * Test support: the API app wired to real Redis and Postgres with a real engine (the leader loop) and worker
 * running in this process on a unique key prefix and database, plus the local Resend-compatible recorder or the
 * dev mailbox. Route tests call `stack.app.request(…)` in-process; `signIn` walks the magic-link flow end to end.
 * The API's Postgres is the functions' driver through the local proxy, or, with `postgres: "neon-http"`, its deployed
 * path (`neon()` over HTTP) through the local Neon peer. With `cuttableWorkerPostgres` the worker reaches Postgres
 * through a proxy of its own that the test cuts and mends (a Postgres outage only the worker sees).
 */
import { Redis } from "ioredis";
import { keyspace, type Keyspace } from "../../contract/names.ts";
import type { PriceUpdate } from "../../contract/messages.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { makeParams } from "../../engine/core/params.ts";
import { isAfterId } from "../../engine/core/step.ts";
import { createState, type EngineState } from "../../engine/core/state.ts";
import { runLeader } from "../../engine/runner/leader.ts";
import { EngineLease } from "../../engine/runner/lease.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import { migrate } from "../../platform/migrate.ts";
import { connectPostgres } from "../../platform/postgres.ts";
import { startRedisProxy, type RedisProxy } from "../../platform/testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { runWorker } from "../../worker/worker.ts";
import type { Hono } from "hono";
import { createApp } from "../app.ts";
import { createDevMailbox } from "../auth/mailer.ts";
import { Sessions } from "../auth/sessions.ts";
import type { ApiDeps, ApiEnv, ApiSettings } from "../context.ts";
import { createEngineClient } from "../engine-client.ts";
import { connectFunctionsPostgres } from "../postgres.ts";
import { startNeonHttpPeer, type NeonHttpPeer } from "./neon-http-peer.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
import { createIoredisApiRedis } from "../redis/ioredis-api-redis.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";

export const REDIS_URL = TEST_REDIS_URL;
export const TEST_JWT_SECRET = "test-secret-that-is-long-enough-0123456789";

export interface ApiStack {
  readonly app: Hono<ApiEnv>;
  readonly deps: ApiDeps;
  readonly keys: Keyspace;
  readonly redis: Redis;
  readonly pg: TestDatabase;
  readonly state: EngineState;
  readonly logLines: Record<string, unknown>[];
  /** The local Neon SQL-over-HTTP peer the API's queries go through, with `postgres: "neon-http"`. */
  readonly neonPeer: NeonHttpPeer | undefined;
  /** The proxy between the worker and Postgres, with `cuttableWorkerPostgres`. */
  readonly workerPostgres: RedisProxy | undefined;
  /** XADDs a quote onto the log, as the poller would, and waits until the read model shows it. */
  setQuote(market: string, bid: string, ask: string): Promise<void>;
  /**
   * Waits until the worker has handled everything the engine published for the log as it is now: setQuote returns
   * once the quote read model shows the price, which the worker writes before the rest of its batch (a stop's close).
   */
  settled(): Promise<void>;
  /** Signs in through the magic link in the dev mailbox; returns the session token and user. */
  signIn(email: string): Promise<{ token: string; user: { id: string; email: string } }>;
  /** Stops (and optionally restarts) the engine's leader loop; the lease is released so the API sees no engine. */
  stopEngine(): Promise<void>;
  startEngine(): Promise<void>;
  /**
   * Runs `fn` while an engine holds the lease but does not answer (the leader stopped, a lease of another owner
   * set): instructions go into the log and wait there. The engine is back, and applies them, when it resolves.
   */
  withStuckEngine<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface ApiStackOptions {
  readonly settings?: Partial<ApiSettings>;
  readonly deps?: Partial<ApiDeps>;
  readonly engineTimeoutMs?: number;
  /** The API's Redis adapter; default ioredis. */
  readonly apiRedis?: ApiRedis;
  /** How the API reaches Postgres: the local WebSocket proxy (default) or `neon()` over HTTP via the local peer. */
  readonly postgres?: "local-proxy" | "neon-http";
  /** The worker's Postgres behind a proxy of its own (`workerPostgres`), tried again every 100 to 400 ms when down. */
  readonly cuttableWorkerPostgres?: boolean;
}

export async function startApiStack(overrides: ApiStackOptions = {}): Promise<ApiStack> {
  const prefix = `test:api:${crypto.randomUUID()}:`;
  const keys = keyspace(prefix);
  const logLines: Record<string, unknown>[] = [];
  const log: Logger = createLogger("api-test", {
    level: "debug",
    sink: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>),
  });
  const pg = await createTestDatabase();
  await migrate(pg.db, log);
  // The API on its own driver, as deployed code runs it; the worker and the tests' checks on the containers' one.
  const neonPeer = overrides.postgres === "neon-http" ? await startNeonHttpPeer({ postgresUrl: pg.url }) : undefined;
  const apiDb =
    neonPeer === undefined
      ? await connectFunctionsPostgres(pg.url, log)
      : await connectFunctionsPostgres(neonPeer.connectionString, log, { neonFetchOptions: neonPeer.fetchOptions });
  const redis = new Redis(REDIS_URL);
  const engineReader = new Redis(REDIS_URL);
  const workerReader = new Redis(REDIS_URL);
  const apiRedis: ApiRedis = overrides.apiRedis ?? createIoredisApiRedis(REDIS_URL);

  // A test file sets its quotes once and trades on them for minutes; live, the poller's per-market heartbeat keeps a
  // market fresh within the 5 s default. Staleness itself is the engine's specs' subject (engine/core/quotes.test.ts).
  const state = createState(makeParams({ staleQuoteMs: 10 * 60_000 }));
  let engine: { stop: AbortController; done: Promise<unknown>; lease: EngineLease } | undefined;
  const startEngine = async () => {
    const lease = new EngineLease(redis, keys, "api-test-engine", 5_000, log);
    if (!(await lease.tryAcquire())) throw new Error("test engine could not take the lease");
    const stop = new AbortController();
    let live!: () => void;
    const isLive = new Promise<void>((r) => (live = r));
    const done = runLeader(
      { reader: engineReader, writer: redis, keys, log, lease, state, blockMs: 50, onLive: live },
      stop.signal,
    );
    await isLive;
    engine = { stop, done, lease };
  };
  const stopEngine = async () => {
    if (engine === undefined) return;
    engine.stop.abort();
    await engine.done;
    await engine.lease.release();
    engine = undefined;
  };
  await startEngine();
  const workerPostgres = overrides.cuttableWorkerPostgres === true ? await startRedisProxy(pg.url) : undefined;
  const workerDb =
    workerPostgres && (await connectPostgres(proxiedUrl(pg.url, workerPostgres), log, { closeTimeoutMs: 100 }));
  const workerStop = new AbortController();
  const worker = runWorker(
    {
      reader: workerReader,
      writer: redis,
      db: workerDb ?? pg.db,
      keys,
      log,
      consumer: "api-test-worker",
      blockMs: 50,
      ...(workerPostgres && { postgresRetry: { firstMs: 100, maxMs: 400 } }),
    },
    workerStop.signal,
  );

  const settings: ApiSettings = {
    appUrl: "http://localhost:3000",
    corsOrigins: ["https://app.example.com"],
    secureCookies: false,
    tradeRate: { limit: 1000, windowMs: 1000 },
    signInPerEmail: { limit: 5, windowMs: 15 * 60_000 },
    signInPerIp: { limit: 1000, windowMs: 15 * 60_000 },
    signInPerDeployment: { limit: 1_000_000, windowMs: 24 * 3_600_000 },
    historyRate: { limit: 1_000_000, windowMs: 1000 },
    candlesRate: { limit: 1_000_000, windowMs: 1000 },
    verifyPerIp: { limit: 1_000_000, windowMs: 15 * 60_000 },
    streamTicketRate: { limit: 1_000_000, windowMs: 60_000 },
    streamUrl: "ws://localhost:3001/api/v1/stream",
    ...overrides.settings,
  };
  const devMailbox = createDevMailbox({ redis: apiRedis, key: keys.devMailbox, log });
  const deps: ApiDeps = {
    redis: apiRedis,
    db: apiDb,
    keys,
    log,
    mailer: devMailbox,
    devMailbox,
    engine: createEngineClient(apiRedis, keys, overrides.engineTimeoutMs ?? 5_000, log),
    sessions: new Sessions(new TextEncoder().encode(TEST_JWT_SECRET), apiRedis, keys),
    settings,
    clientIp: (c) => c.req.header("x-test-ip") ?? "127.0.0.1",
    ...overrides.deps,
  };
  const app = createApp(deps);

  return {
    app,
    deps,
    keys,
    redis,
    pg,
    state,
    logLines,
    neonPeer,
    workerPostgres,
    stopEngine,
    startEngine,
    async withStuckEngine(fn) {
      await stopEngine();
      await redis.set(keys.engineLease, "stuck:1", "PX", 60_000);
      try {
        return await fn();
      } finally {
        await redis.del(keys.engineLease);
        await startEngine();
      }
    },
    async settled() {
      const lastInput = xinfoFields(await redis.xinfo("STREAM", keys.input))["last-generated-id"] as string;
      for (let i = 0; i < 500; i++) {
        const published = await redis.get(keys.enginePublished);
        const groups = (await redis.xinfo("GROUPS", keys.output)) as unknown[][];
        const group = groups.map(xinfoFields).find((g) => g["name"] === keys.workerGroup);
        const output = xinfoFields(await redis.xinfo("STREAM", keys.output))["last-generated-id"];
        const handled = group?.["pending"] === 0 && group["last-delivered-id"] === output;
        if (published !== null && !isAfterId(lastInput, published) && handled) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error("the worker did not catch up with the engine within 5 s");
    },
    async setQuote(market, bid, ask) {
      const update: PriceUpdate = {
        type: "price_update",
        market,
        bid,
        ask,
        exchangeTimeUs: String(Date.now() * 1000),
        source: "sim",
      };
      await redis.xadd(keys.input, "*", ...encodeFields(update));
      const asset = market.split("_")[0]!;
      for (let i = 0; i < 500; i++) {
        const json = await redis.hget(keys.quotesKey, asset);
        if (json !== null) {
          const q = JSON.parse(json) as { bid: string; ask: string };
          if (q.bid === bid && q.ask === ask) return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`quote ${market} ${bid}/${ask} never reached the read model`);
    },
    async signIn(email) {
      const asked = await app.request("/api/v1/auth", {
        method: "POST",
        headers: { "content-type": "application/json", "x-test-ip": `signin-${crypto.randomUUID()}` },
        body: JSON.stringify({ email }),
      });
      if (asked.status !== 200) throw new Error(`sign-in request failed: ${asked.status} ${await asked.text()}`);
      const mail = (await devMailbox.list(20)).find((m) => m.to === email.toLowerCase());
      if (mail === undefined) throw new Error(`no sign-in email for ${email}`);
      const verified = await app.request(new URL(mail.link).pathname + new URL(mail.link).search, {
        headers: { "x-test-ip": `verify-${crypto.randomUUID()}` }, // its own IP: tests limit verify per IP
      });
      if (verified.status !== 200) throw new Error(`verify failed: ${verified.status} ${await verified.text()}`);
      const cookie = verified.headers.get("set-cookie") ?? "";
      const token = /session=([^;]+)/.exec(cookie)?.[1];
      if (token === undefined) throw new Error("no session cookie");
      const { user } = (await verified.json()) as { user: { id: string; email: string } };
      return { token, user };
    },
    async close() {
      await stopEngine();
      workerStop.abort();
      await worker;
      await deleteKeysWithPrefix(redis, prefix);
      await Promise.all([apiRedis.close(), engineReader.quit(), workerReader.quit()]);
      await redis.quit();
      await apiDb.close();
      await neonPeer?.close();
      await workerDb?.close();
      await workerPostgres?.close();
      await pg.drop();
    },
  };
}

/** `url` with the proxy's port. */
function proxiedUrl(url: string, proxy: RedisProxy): string {
  const proxied = new URL(url);
  proxied.port = String(proxy.port);
  return proxied.toString();
}

/** XINFO's flat [name, value, …] reply as an object. */
function xinfoFields(reply: unknown): Record<string, unknown> {
  const flat = reply as unknown[];
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}
