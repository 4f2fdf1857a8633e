/**
 * The whole system as separate Node processes, for whole-stack tests (`*.e2e.test.ts`): each component started as
 * `npm start` starts it (platform/components.ts), on real Redis (a unique KEY_PREFIX) and a fresh test database,
 * prices from the scripted sim feed, sign-in email through the real `resend` client to a local recorder. `stop`
 * removes everything it made.
 */
import { Redis } from "ioredis";
import { expect } from "vitest";
import { componentNamed, type Component } from "../../platform/components.ts";
import { freePorts, spawnComponent, until, type Child } from "../../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { startRedisProxy, type RedisProxy } from "../../platform/testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { startSimFeed, type SimFeed } from "../../poller/sim-feed.ts";
import { startResendRecorder, type ResendRecorder } from "./resend-recorder.ts";

export interface Reply<B = Record<string, unknown>> {
  readonly status: number;
  readonly body: B;
  readonly cookie: string | null;
}

export interface ProcessStack {
  readonly port: number;
  readonly streamPort: number;
  readonly sim: SimFeed;
  readonly recorder: ResendRecorder;
  readonly children: Map<string, Child>;
  /** The proxy every component reaches Postgres through, to cut and mend, when the stack was asked for one. */
  readonly postgresProxy: RedisProxy | undefined;
  /** Starts a component and waits until it says it is serving. */
  start(name: Component["name"]): Promise<void>;
  /** SIGKILL, then the same component again, as `npm start`'s supervisor would. */
  kill9AndRestart(name: Component["name"]): Promise<void>;
  /** One request to the API; `token` goes as `Authorization: Bearer`. */
  http<B = Record<string, unknown>>(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown },
  ): Promise<Reply<B>>;
  /** Asks for a sign-in email to `email`, as the API's form does: the magic link in the email the recorder got. */
  magicLink(email: string): Promise<string>;
  /** The magic-link sign-in through the recorder's email: the session token. */
  signIn(email: string): Promise<string>;
  /** Sets a quote on the feed and waits until the API's public quotes show it. */
  quote(market: string, bid: string, ask: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `env`: settings over the stack's own (e.g. `CORS_ORIGINS` for a page served elsewhere). `postgresProxy`: every
 * component reaches Postgres through a proxy the test can cut (platform/testing/redis-proxy.ts).
 */
export async function createProcessStack(
  prefix: string,
  env: Record<string, string> = {},
  options: { postgresProxy?: boolean } = {},
): Promise<ProcessStack> {
  const pg: TestDatabase = await createTestDatabase();
  const postgresProxy = options.postgresProxy === true ? await startRedisProxy(pg.url) : undefined;
  const databaseUrl = new URL(pg.url);
  if (postgresProxy !== undefined) databaseUrl.port = String(postgresProxy.port);
  const sim = await startSimFeed({ walking: false });
  const recorder = await startResendRecorder();
  const [port, streamPort] = (await freePorts(2)) as [number, number];
  const children = new Map<string, Child>();
  const settings: Record<string, string> = {
    REDIS_URL: TEST_REDIS_URL,
    DATABASE_URL: databaseUrl.toString(),
    KEY_PREFIX: prefix,
    SNAPSHOT_EVERY_MS: "500",
    ENGINE_LEASE_TTL_MS: "1500",
    WORKER_CLAIM_IDLE_MS: "1000",
    FEED: "backpack",
    BACKPACK_WS_URL: sim.url,
    PORT: String(port),
    HOST: "127.0.0.1",
    APP_URL: `http://127.0.0.1:${port}`,
    STREAM_PORT: String(streamPort),
    STREAM_URL: `ws://127.0.0.1:${streamPort}/api/v1/stream`,
    JWT_SECRET: "e2e-secret-0123456789-0123456789-abcdefgh",
    RESEND_API_KEY: "re_e2e_key",
    RESEND_BASE_URL: recorder.baseUrl,
    EMAIL_FROM: "Paper Broker <login@paper-broker.test>",
    ENGINE_TIMEOUT_MS: "3000",
    TRADE_RATE_LIMIT_PER_SEC: "1000",
    SIGN_IN_LIMIT_PER_IP: "1000",
    SIGN_IN_EMAILS_PER_DAY: "1000000",
    ...env,
  };

  const start = async (name: Component["name"]) => {
    const child = spawnComponent(name, settings);
    children.set(name, child);
    await child.waitFor(componentNamed(name).readyEvent, 30_000);
  };

  const http = async <B>(method: string, path: string, options: { token?: string; body?: unknown } = {}) => {
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers,
      body: options.body === undefined ? null : JSON.stringify(options.body),
      redirect: "manual",
    });
    const text = await res.text();
    const body = (text === "" ? {} : JSON.parse(text)) as B;
    return { status: res.status, body, cookie: res.headers.get("set-cookie") };
  };

  const magicLink = async (email: string) => {
    const before = recorder.sent.length;
    expect((await http("POST", "/api/v1/auth", { body: { email } })).status).toBe(200);
    await until(() => Promise.resolve(recorder.sent.length > before ? true : undefined), 5_000, "the sign-in email");
    const mail = recorder.sent.at(-1)!;
    expect(mail.body.to).toBe(email);
    return /http:\/\/\S+?token=[A-Za-z0-9_-]+/.exec(String(mail.body.text))![0];
  };

  return {
    port,
    streamPort,
    sim,
    recorder,
    children,
    postgresProxy,
    start,
    http,
    async kill9AndRestart(name) {
      const child = children.get(name)!;
      child.proc.kill("SIGKILL");
      await child.exited;
      await start(name);
    },
    magicLink,
    async signIn(email) {
      const link = new URL(await magicLink(email));
      const verified = await http("GET", link.pathname + link.search);
      expect(verified.status).toBe(200);
      return /session=([^;]+)/.exec(verified.cookie ?? "")![1]!;
    },
    async quote(market, bid, ask) {
      sim.setQuote(market, bid, ask);
      const asset = market.split("_")[0];
      await until(
        async () => {
          const { body } = await http<{ quotes: { asset: string; bid: string; ask: string }[] }>(
            "GET",
            "/api/v1/market/quotes",
          );
          const q = body.quotes.find((x) => x.asset === asset);
          return q?.bid === bid && q.ask === ask ? true : undefined;
        },
        10_000,
        `quote ${market} ${bid}/${ask}`,
      );
    },
    async stop() {
      await Promise.all([...children.values()].map((c) => c.stop("SIGTERM")));
      await sim.stop();
      await recorder.close();
      await postgresProxy?.close();
      const redis = new Redis(TEST_REDIS_URL);
      await deleteKeysWithPrefix(redis, prefix);
      await redis.quit();
      await pg.drop();
    },
  };
}
