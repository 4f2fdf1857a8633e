/**
 * A backing service that is down, or refuses every request for now, answers 503 UNAVAILABLE with the documented body
 * and Retry-After, on the deployed clients as on the local ones: Neon's `neon()` over HTTP (through the local Neon
 * peer, whose Postgres cannot be reached or refuses the role, with Neon itself unreachable, and with a Neon that takes
 * the request and never answers) and `@upstash/redis` (against a local server answering as a gateway in front of
 * Upstash would, and the local Upstash peer refusing the token or answering as over the plan's limits), besides
 * ioredis with nothing listening, and a Redis that refuses commands for its state: full (over both), busy with a
 * script. A refusal of the request itself stays a 500, without Retry-After.
 */
import { createServer, type Server } from "node:http";
import { connect as connectTcp, createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { Redis } from "ioredis";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Queryable, Row } from "../platform/postgres.ts";
import { freePort, startScratchRedis } from "../platform/testing/processes.ts";
import { createApp } from "./app.ts";
import type { ApiDeps } from "./context.ts";
import { connectFunctionsPostgres, NEON_QUERY_TIMEOUT_MS, type FunctionsPostgres } from "./postgres.ts";
import { createIoredisApiRedis } from "./redis/ioredis-api-redis.ts";
import { createUpstashApiRedis } from "./redis/upstash-api-redis.ts";
import { REDIS_URL, startApiStack, type ApiStack } from "./testing/api-stack.ts";
import { client } from "./testing/http.ts";
import { startNeonHttpPeer, type NeonHttpPeer } from "./testing/neon-http-peer.ts";
import { startUpstashBridge } from "./testing/upstash-bridge.ts";

const UNAVAILABLE = {
  error: { code: "UNAVAILABLE", message: "A backing service is unavailable; try again after Retry-After seconds." },
};
/** Every 503 says when to come back: UNAVAILABLE's seconds, as docs/api.md gives them. */
const RETRY_AFTER = "5";
/** A trade that would be admitted: what refuses it is Redis. */
const TRADE = { asset: "ETH", type: "long", margin: "10", leverage: 2 };
const INTERNAL = { error: { code: "INTERNAL", message: "Something went wrong on our side." } };

let stack: ApiStack;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  stack = await startApiStack();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await stack?.close();
});

/** The stack's app with some adapters swapped; each request from its own IP, so no rate limit is shared. */
function appWith(deps: Partial<ApiDeps>) {
  return client(createApp({ ...stack.deps, ...deps }));
}

const signIn = (api: ReturnType<typeof appWith>, email = "outage@example.com") =>
  api.post("/api/v1/auth", { email }, { "x-test-ip": `outage-${crypto.randomUUID()}` });

/** The deployed Postgres path, not waiting for an answer at start (as the Lambda entry does). */
async function neonOverHttp(peer: NeonHttpPeer, fetchOptions: Record<string, unknown> = peer.fetchOptions) {
  const db = await connectFunctionsPostgres(peer.connectionString, stack.deps.log, {
    neonFetchOptions: fetchOptions,
    waitForAnswer: false,
  });
  closers.push(() => db.close());
  return db;
}

/** A local HTTP server that answers every request with `status`, `type` and `body`. */
async function answering(status: number, type: string, body: string): Promise<string> {
  const server: Server = createServer((req, res) => {
    req.resume();
    res.writeHead(status, { "content-type": type }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function backendUnavailableLogged(fragment: string): boolean {
  return stack.logLines.some((l) => l.event === "backend_unavailable" && String(l.error).includes(fragment));
}

describe("Postgres down, on Neon's HTTP path", () => {
  it("the compute cannot be reached (Neon's 500 \"Couldn't connect to compute node\"): 503, /health too", async () => {
    const peer = await startNeonHttpPeer({ postgresUrl: `postgres://postgres@127.0.0.1:${await freePort()}/gone` });
    closers.push(() => peer.close());
    const api = appWith({ db: await neonOverHttp(peer) });
    const budget = () => stack.redis.hget(stack.keys.rateLimitKey("sign-in-budget", "deployment"), "n");
    const spentBefore = await budget();
    const res = await signIn(api);
    expect([res.status, res.body, res.headers.get("retry-after")]).toEqual([503, UNAVAILABLE, RETRY_AFTER]);
    expect(backendUnavailableLogged("Couldn't connect to compute node")).toBe(true);
    // Its link could not be stored, so no email went out: the deployment's email budget got its unit back.
    expect(await budget()).toBe(spentBefore ?? "0");
    const health = await api.get("/health");
    expect([health.status, health.body, health.headers.get("retry-after")]).toEqual([
      503,
      { status: "unavailable", redis: true, postgres: false, engine: true },
      RETRY_AFTER,
    ]);
  });

  it("Neon itself cannot be reached (fetch failed, the cause on sourceError): 503", async () => {
    const peer = await startNeonHttpPeer({ postgresUrl: stack.pg.url });
    closers.push(() => peer.close());
    const deadPort = await freePort();
    const nowhere = new Agent({
      connect: (_opts, callback) => {
        const socket = connectTcp(deadPort, "127.0.0.1");
        socket.once("connect", () => callback(null, socket));
        socket.once("error", (err) => callback(err, null));
      },
    });
    closers.push(() => nowhere.close());
    const res = await signIn(appWith({ db: await neonOverHttp(peer, { dispatcher: nowhere }) }));
    expect([res.status, res.body]).toEqual([503, UNAVAILABLE]);
    expect(backendUnavailableLogged("Error connecting to database: TypeError: fetch failed")).toBe(true);
  });

  it(
    "Neon accepts the connection and never answers: 503 within the query's time limit, /health too",
    { timeout: 15_000 },
    async () => {
      const stalled = createNetServer((socket) => sockets.add(socket.on("close", () => sockets.delete(socket))));
      const sockets = new Set<Socket>();
      await new Promise<void>((resolve) => stalled.listen(0, "127.0.0.1", resolve));
      closers.push(async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => stalled.close(resolve));
      });
      const peer = await startNeonHttpPeer({ postgresUrl: stack.pg.url });
      closers.push(() => peer.close());
      const port = (stalled.address() as AddressInfo).port;
      const silent = new Agent({
        connect: (_opts, callback) => {
          const socket = connectTcp(port, "127.0.0.1");
          socket.once("connect", () => callback(null, socket));
          socket.once("error", (err) => callback(err, null));
        },
      });
      closers.push(() => silent.destroy());
      const api = appWith({ db: await neonOverHttp(peer, { dispatcher: silent }) });
      const started = performance.now();
      const [res, health] = await Promise.all([signIn(api), api.get("/health")]);
      expect(performance.now() - started).toBeLessThan(NEON_QUERY_TIMEOUT_MS + 1_000);
      expect([res.status, res.body, res.headers.get("retry-after")]).toEqual([503, UNAVAILABLE, RETRY_AFTER]);
      expect(backendUnavailableLogged("TimeoutError")).toBe(true);
      expect([health.status, health.body]).toEqual([
        503,
        { status: "unavailable", redis: true, postgres: false, engine: true },
      ]);
    },
  );

  it("credentials refused (a role gone or its password reset; on Neon its proxy's own 400, no SQLSTATE): 503", async () => {
    const peer = await startNeonHttpPeer({ postgresUrl: stack.pg.url });
    closers.push(() => peer.close());
    const url = new URL(peer.connectionString);
    url.username = "no_such_role";
    const db = await connectFunctionsPostgres(url.toString(), stack.deps.log, {
      neonFetchOptions: peer.fetchOptions,
      waitForAnswer: false,
    });
    closers.push(() => db.close());
    const res = await signIn(appWith({ db }));
    expect([res.status, res.body]).toEqual([503, UNAVAILABLE]);
    // Neon's proxy checks the role itself: a role it does not know is its "password authentication failed".
    expect(backendUnavailableLogged("password authentication failed for user 'no_such_role'")).toBe(true);
  });

  it("a query Postgres refuses is still a bug: 500", async () => {
    const peer = await startNeonHttpPeer({ postgresUrl: stack.pg.url });
    closers.push(() => peer.close());
    const db: FunctionsPostgres = await neonOverHttp(peer);
    const broken: Queryable = { query: <R extends Row>() => db.query<R>("SELECT * FROM no_such_table") };
    const res = await signIn(appWith({ db: broken }));
    expect([res.status, res.body, res.headers.get("retry-after")]).toEqual([500, INTERNAL, null]);
  });
});

describe("Redis down, on Upstash's REST path", () => {
  it("a gateway in front of Upstash answers 502 text/html: 503", async () => {
    const url = await answering(502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>");
    const res = await signIn(appWith({ redis: createUpstashApiRedis({ url, token: "t" }) }));
    expect([res.status, res.body, res.headers.get("retry-after")]).toEqual([503, UNAVAILABLE, RETRY_AFTER]);
    expect(backendUnavailableLogged("UpstashJSONParseError")).toBe(true);
  });

  it("an empty 503, and a 503 whose JSON is not Upstash's (no error field): 503", async () => {
    for (const [type, body] of [
      ["text/plain", ""],
      ["application/json", '{"message":"Service Unavailable"}'],
    ] as const) {
      const url = await answering(503, type, body);
      const res = await signIn(appWith({ redis: createUpstashApiRedis({ url, token: "t" }) }));
      expect([res.status, res.body], body).toEqual([503, UNAVAILABLE]);
    }
  });

  it("Upstash refuses the token (a rotated or wrong one, 401) through @upstash/redis: 503", async () => {
    const bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: "current" });
    closers.push(() => bridge.close());
    const res = await signIn(appWith({ redis: createUpstashApiRedis({ url: bridge.url, token: "rotated" }) }));
    expect([res.status, res.body]).toEqual([503, UNAVAILABLE]);
    expect(backendUnavailableLogged("Unauthorized, command was:")).toBe(true);
  });

  it("Upstash refuses every request over the plan's limits (its documented errors): 503", async () => {
    const bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: "t" });
    closers.push(() => bridge.close());
    const api = appWith({ redis: createUpstashApiRedis(bridge) });
    for (const error of [
      "ERR max requests limit exceeded.",
      "ERR max daily request limit exceeded. Limit: 10000, Usage: 10000.",
      "ERR DB capacity quota exceeded",
    ]) {
      bridge.refuseEveryRequest(error);
      const res = await signIn(api);
      expect([res.status, res.body], error).toEqual([503, UNAVAILABLE]);
    }
    bridge.refuseEveryRequest(undefined);
    // Another address: the ones above count against the per-address limit when Redis answers
    expect((await signIn(api, "outage-over@example.com")).status).toBe(200);
  });

  it("a command Upstash refuses (400 with its error field) is still a bug: 500", async () => {
    const url = await answering(400, "application/json", '{"error":"ERR unknown command"}');
    const res = await signIn(appWith({ redis: createUpstashApiRedis({ url, token: "t" }) }));
    expect([res.status, res.body]).toEqual([500, INTERNAL]);
  });
});

describe("Redis down, over TCP", () => {
  it("ioredis with nothing listening: 503", { timeout: 15_000 }, async () => {
    const redis = createIoredisApiRedis(`redis://127.0.0.1:${await freePort()}`);
    closers.push(() => redis.close());
    const res = await signIn(appWith({ redis }));
    expect([res.status, res.body, res.headers.get("retry-after")]).toEqual([503, UNAVAILABLE, RETRY_AFTER]);
  });
  it("a full Redis refusing writes (OOM under noeviction): 503 on a trade, over ioredis and Upstash's REST alike", async () => {
    // maxmemory 1 byte: every command that may add data is refused, every time.
    const full = await startScratchRedis("outages-oom", ["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    closers.push(() => full.stop());
    const redis = createIoredisApiRedis(full.url);
    closers.push(() => redis.close());
    const bridge = await startUpstashBridge({ redisUrl: full.url, token: "t" });
    closers.push(() => bridge.close());
    const { token } = await stack.signIn("outage-oom@example.com");
    for (const [transport, adapter] of [
      ["ioredis", redis],
      ["Upstash", createUpstashApiRedis(bridge)],
    ] as const) {
      const res = await client(createApp({ ...stack.deps, redis: adapter }), token).post("/api/v1/trade/create", TRADE);
      expect([res.status, res.body, res.headers.get("retry-after")], transport).toEqual([
        503,
        UNAVAILABLE,
        RETRY_AFTER,
      ]);
    }
    expect(backendUnavailableLogged("OOM command not allowed")).toBe(true);
  });

  it("a Redis busy running a script (BUSY): 503 on a trade", async () => {
    const busy = await startScratchRedis("outages-busy", ["--busy-reply-threshold", "50"]);
    closers.push(() => busy.stop());
    const redis = createIoredisApiRedis(busy.url);
    closers.push(() => redis.close());
    // Connected before the script starts: ioredis's ready check on a busy Redis would fail otherwise.
    await redis.ping();
    const { token } = await stack.signIn("outage-busy@example.com");
    // Both connected before, too: only SCRIPT KILL and SHUTDOWN NOSAVE are served meanwhile.
    const runner = new Redis(busy.url);
    const killer = new Redis(busy.url);
    await Promise.all([runner.ping(), killer.ping()]);
    const looping = runner.eval("while true do end", 0).catch((err: unknown) => err);
    try {
      // Past the threshold, Redis answers BUSY to every other command.
      await new Promise((r) => setTimeout(r, 200));
      const res = await client(createApp({ ...stack.deps, redis }), token).post("/api/v1/trade/create", TRADE);
      expect([res.status, res.body, res.headers.get("retry-after")]).toEqual([503, UNAVAILABLE, RETRY_AFTER]);
      expect(backendUnavailableLogged("BUSY Redis is busy running a script")).toBe(true);
    } finally {
      await killer.script("KILL");
      await looping;
      killer.disconnect();
      runner.disconnect();
    }
  });
});
