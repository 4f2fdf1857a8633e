/**
 * The API's guards against clients that misbehave: a client hanging up mid-body is its own business (no error log,
 * no 503), a request that never completes is cut off in seconds, a development server answers only to its own Host
 * (DNS rebinding), and reads that cost a Postgres query are rate limited. Over real HTTP: the app on a Node server in
 * this process (its log is read at debug level), and the real API process for the timeouts it is configured with.
 */
import { serve } from "@hono/node-server";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, spawnComponent, until, type Child } from "../platform/testing/processes.ts";
import { createApp } from "./app.ts";
import { client } from "./testing/http.ts";
import { REDIS_URL, startApiStack, TEST_JWT_SECRET, type ApiStack } from "./testing/api-stack.ts";

let stack: ApiStack;
let server: ReturnType<typeof serve>;
let port: number;

beforeAll(async () => {
  stack = await startApiStack({
    settings: {
      historyRate: { limit: 3, windowMs: 60_000 },
      verifyPerIp: { limit: 2, windowMs: 60_000 },
    },
  });
  await new Promise<void>((resolve) => {
    server = serve({ fetch: stack.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await stack.close();
});

/** Sends `data` on a new connection; resolves with everything the server sent once it closes the connection. */
function exchange(
  target: number,
  data: string,
  options: { hangUpAfterMs?: number; halfCloseAfterMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(target, "127.0.0.1");
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (answer += chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(answer));
    socket.write(data);
    if (options.hangUpAfterMs !== undefined) setTimeout(() => socket.destroy(), options.hangUpAfterMs);
    if (options.halfCloseAfterMs !== undefined) setTimeout(() => socket.end(), options.halfCloseAfterMs);
  });
}

const HALF_BODY = '{"asset":"ETH","side":"bu';

describe("a client that hangs up mid-body", () => {
  it.each([
    ["with Content-Length", `Content-Length: 60\r\n\r\n${HALF_BODY}`],
    ["chunked", `Transfer-Encoding: chunked\r\n\r\n${HALF_BODY.length.toString(16)}\r\n${HALF_BODY}\r\n`],
  ])("%s: logged at debug as request_aborted, never backend_unavailable", async (_, rest) => {
    const from = stack.logLines.length;
    const { token } = await stack.signIn(`hangs-up-${crypto.randomUUID()}@example.com`);
    await exchange(
      port,
      `POST /api/v1/trade/order HTTP/1.1\r\nHost: localhost:3000\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\n${rest}`,
      { hangUpAfterMs: 100 },
    );
    const aborted = await until(
      () => Promise.resolve(stack.logLines.slice(from).find((l) => l.event === "request_aborted")),
      5_000,
      "request_aborted",
    );
    expect(aborted).toMatchObject({ level: "debug", method: "POST", path: "/api/v1/trade/order" });
    expect(JSON.stringify(aborted)).not.toContain("stack");
    const since = stack.logLines.slice(from);
    expect(since.filter((l) => l.level === "error" || l.level === "warn")).toEqual([]);
    expect(since.map((l) => l.event)).not.toContain("backend_unavailable");
  });
});

describe("a client that closes its sending side mid-body", () => {
  it("gets Node's bare 400 and the request is not acted on", async () => {
    const from = stack.logLines.length;
    const { token } = await stack.signIn(`half-closes-${crypto.randomUUID()}@example.com`);
    const logLength = await stack.redis.xlen(stack.keys.input);
    const answer = await exchange(
      port,
      `POST /api/v1/trade/order HTTP/1.1\r\nHost: localhost:3000\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: 60\r\n\r\n${HALF_BODY}`,
      { halfCloseAfterMs: 100 },
    );
    expect(answer).toBe("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    const since = stack.logLines.slice(from);
    expect(since.filter((l) => l.level === "error" || l.level === "warn")).toEqual([]);
    expect(await stack.redis.xlen(stack.keys.input)).toBe(logLength); // nothing sent to the engine
  });
});

describe("the real API process with short timeouts", () => {
  let api: Child;
  let apiPort: number;

  beforeAll(async () => {
    apiPort = await freePort();
    api = spawnComponent("api", {
      DATABASE_URL: stack.pg.url,
      REDIS_URL,
      KEY_PREFIX: stack.keys.input.slice(0, -"engine:{0}:input".length),
      JWT_SECRET: TEST_JWT_SECRET,
      PORT: String(apiPort),
      HOST: "127.0.0.1",
      APP_URL: `http://localhost:${apiPort}`,
      RESEND_API_KEY: "", // the dev mailbox, so the Host check is on
      HTTP_REQUEST_TIMEOUT_MS: "1000",
      HTTP_HEADERS_TIMEOUT_MS: "500",
    });
    await api.waitFor("listening", 30_000);
  }, 60_000);
  afterAll(async () => {
    expect(await api.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("cuts off a body that never completes with 408 in about the configured time, not Node's 300 s", async () => {
    const started = Date.now();
    const answer = await exchange(
      apiPort,
      `POST /api/v1/auth HTTP/1.1\r\nHost: localhost:${apiPort}\r\nContent-Type: application/json\r\n` +
        'Content-Length: 100\r\n\r\n{"email":',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("cuts off headers that never complete", async () => {
    const started = Date.now();
    const answer = await exchange(apiPort, `GET /health HTTP/1.1\r\nHost: localhost:${apiPort}\r\nX-Slow:`);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("times each request, not the connection: a keep-alive connection outlives the request timeout", async () => {
    const socket = connect(apiPort, "127.0.0.1");
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (answer += chunk));
    const answered = (n: number) => () =>
      Promise.resolve((answer.match(/HTTP\/1\.1 200 /g)?.length ?? 0) >= n || undefined);
    for (let n = 1; n <= 3; n++) {
      socket.write(`GET /health HTTP/1.1\r\nHost: localhost:${apiPort}\r\n\r\n`);
      await until(answered(n), 5_000, `answer ${n}`);
      await new Promise((r) => setTimeout(r, 600)); // three of these: longer than the 1 s request timeout
    }
    expect(socket.destroyed).toBe(false);
    socket.destroy();
  });

  it("does not log an aborted body as an outage", async () => {
    const from = api.lines.length;
    await exchange(
      apiPort,
      `POST /api/v1/auth HTTP/1.1\r\nHost: localhost:${apiPort}\r\nContent-Type: application/json\r\n` +
        'Content-Length: 100\r\n\r\n{"email":',
      { hangUpAfterMs: 100 },
    );
    // The next request is answered after the aborted one was handled.
    await fetch(`http://127.0.0.1:${apiPort}/health`).then((r) => r.arrayBuffer());
    await new Promise((r) => setTimeout(r, 200));
    expect(api.lines.slice(from).filter((l) => l.level === "error" || l.level === "warn")).toEqual([]);
  });

  it("in development answers only to APP_URL's host and loopback names on its port (DNS rebinding)", async () => {
    const ask = (host: string, path = "/api/v1/dev/mailbox") =>
      exchange(apiPort, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    for (const host of [`localhost:${apiPort}`, `127.0.0.1:${apiPort}`, `[::1]:${apiPort}`, `LOCALHOST:${apiPort}`])
      expect(await ask(host), host).toMatch(/^HTTP\/1\.1 200 /);
    for (const host of [
      `rebind.attacker.example:${apiPort}`,
      "rebind.attacker.example",
      "localhost", // port 80
      `localhost:${apiPort + 1}`,
    ]) {
      const answer = await ask(host);
      expect(answer, host).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer, host).toContain('"code":"FORBIDDEN_HOST"');
      expect(answer, host).not.toContain("emails");
    }
    // Not a host at all: refused before the app sees it (the Node adapter cannot build a URL from it) or by it.
    for (const host of [`localhost:${apiPort}@attacker.example`, `attacker.example/@localhost:${apiPort}`]) {
      const answer = await ask(host);
      expect(answer, host).toMatch(/^HTTP\/1\.1 40[03] /);
      expect(answer, host).not.toContain("emails");
    }
    expect(await ask(`rebind.attacker.example:${apiPort}`, "/api/v1/auth/verify?token=x")).toMatch(/^HTTP\/1\.1 403 /);
  });
});

describe("Host check", () => {
  it("is off when sign-in links are emailed (no dev mailbox): a deployment answers to its own domain names", async () => {
    const deployed = createApp({ ...stack.deps, devMailbox: undefined });
    const res = await deployed.request("/health", { headers: { host: "api.example.com" } });
    expect(res.status).toBe(200);
    const dev = await stack.app.request("/health", { headers: { host: "api.example.com" } });
    expect(dev.status).toBe(403);
  });
});

describe("query parameters", () => {
  const noneTaken = (name: string) => ({
    code: "INVALID_REQUEST",
    message: `Unknown query parameter "${name}"; this request takes no query parameters.`,
  });

  it("a route that takes none refuses any, naming it, as the histories refuse an unknown one", async () => {
    const gus = client(stack.app, (await stack.signIn("gus@example.com")).token);
    const reads = [
      "/api/v1/trade/open",
      "/api/v1/trade/orders",
      "/api/v1/account/balance/usd",
      "/api/v1/account/balance",
      "/api/v1/account/summary",
      "/api/v1/account/assets",
      "/api/v1/market/quotes",
      "/api/v1/auth/me",
      "/health",
    ];
    for (const path of reads) {
      expect((await gus.get(path)).status, path).toBe(200);
      expect((await gus.get(`${path}?`)).status, `${path}?`).toBe(200); // an empty query names nothing
      const refused = await gus.get(`${path}?asset=BTC`);
      expect([refused.status, refused.body], path).toEqual([400, { error: noneTaken("asset") }]);
    }
    // A trade POST or a ticket with a query is refused before anything reaches the engine or counts.
    const inputs = await stack.redis.xlen(stack.keys.input);
    const order = await gus.post("/api/v1/trade/order?dryRun=1", { asset: "ETH", side: "buy", quantity: "0.01" });
    expect([order.status, order.body.error]).toEqual([400, noneTaken("dryRun")]);
    const ticket = await gus.post("/api/v1/stream/ticket?reconnect=1", {});
    expect([ticket.status, ticket.body.error]).toEqual([400, noneTaken("reconnect")]);
    expect(await stack.redis.xlen(stack.keys.input)).toBe(inputs);
    // The same shape as a history's unknown parameter.
    const history = await gus.get("/api/v1/trade/history?asset=BTC");
    expect([history.status, history.body.error]).toEqual([
      400,
      { code: "INVALID_REQUEST", message: 'Unknown query parameter "asset"; this request takes limit and cursor.' },
    ]);
  });

  it("a sign-out with a query signs nothing out: `?all=1` is not DELETE /auth/sessions", async () => {
    const hal = client(stack.app, (await stack.signIn("hal@example.com")).token);
    const refused = await hal.del("/api/v1/auth/logout?all=1");
    expect([refused.status, refused.body.error]).toEqual([400, noneTaken("all")]);
    expect((await hal.get("/api/v1/auth/me")).status).toBe(200);
  });

  it("the sign-in link reads its token and ignores what a mail provider's link tracking adds", async () => {
    const anon = client(stack.app);
    const res = await anon.get("/api/v1/auth/verify?token=not-a-token&utm_source=email", { "x-test-ip": "10.9.1.1" });
    expect([res.status, res.body.error?.code]).toEqual([401, "INVALID_TOKEN"]);
  });
});

describe("caching", () => {
  it("every answer says no-store: signed-in reads, writes, errors and the public market reads", async () => {
    const ida = client(stack.app, (await stack.signIn("ida@example.com")).token);
    const anon = client(stack.app);
    const answers = {
      "GET /account/balance": await ida.get("/api/v1/account/balance"),
      "GET /account/summary": await ida.get("/api/v1/account/summary"),
      "GET /trade/open": await ida.get("/api/v1/trade/open"),
      "GET /trade/history": await ida.get("/api/v1/trade/history"),
      "GET /auth/me": await ida.get("/api/v1/auth/me"),
      "POST /stream/ticket": await ida.post("/api/v1/stream/ticket", {}),
      "POST /trade/order (refused)": await ida.post("/api/v1/trade/order", { asset: "ETH", side: "buy" }),
      "GET /account/balance (401)": await anon.get("/api/v1/account/balance"),
      "GET /auth/verify (401)": await anon.get("/api/v1/auth/verify?token=x", { "x-test-ip": "10.9.2.1" }),
      "GET /nowhere (404)": await anon.get("/api/v1/nowhere"),
      "GET /market/quotes": await anon.get("/api/v1/market/quotes"),
      "GET /market/candles": await anon.get("/api/v1/market/candles?asset=ETH&interval=1m"),
      "GET /health": await anon.get("/health"),
    };
    const statuses = Object.values(answers).map((answer) => answer.status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 201, 400, 401, 401, 404, 200, 200, 200]);
    for (const [what, answer] of Object.entries(answers))
      expect(answer.headers.get("cache-control"), what).toBe("no-store");
  });

  it("lets the reference page's script and stylesheet be kept, an hour", async () => {
    const css = await client(stack.app).get("/api/v1/docs/swagger-ui.css");
    expect([css.status, css.headers.get("cache-control")]).toEqual([200, "public, max-age=3600"]);
  });
});

describe("rate limits on reads", () => {
  it("limits the history per user, with 429 and Retry-After; another user keeps their budget", async () => {
    const carl = client(stack.app, (await stack.signIn("carl@example.com")).token);
    const dora = client(stack.app, (await stack.signIn("dora@example.com")).token);
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await carl.get("/api/v1/trade/history")).status);
    expect(codes).toEqual([200, 200, 200, 429]);
    const limited = await carl.get("/api/v1/trade/history");
    expect(limited.body.error?.code).toBe("RATE_LIMITED");
    expect(limited.headers.get("retry-after")).toBe("60");
    expect((await dora.get("/api/v1/trade/history")).status).toBe(200);
    expect((await carl.get("/api/v1/trade/open")).status).toBe(200); // a Redis read: not counted
  });

  it("does not count a request refused for its query: it changes nothing", async () => {
    const fay = client(stack.app, (await stack.signIn("fay@example.com")).token);
    const february30 = Buffer.from(JSON.stringify(["2026-02-30T00:00:00.000Z", "T0-1"])).toString("base64url");
    const refusals = [
      ["limit=0", "INVALID_REQUEST"],
      ["cursor=bm90LWEtY3Vyc29y", "INVALID_CURSOR"],
      [`cursor=${february30}`, "INVALID_CURSOR"],
    ];
    for (const path of ["/api/v1/trade/history", "/api/v1/trade/orders/history", "/api/v1/trade/spot-orders"])
      for (const [query, code] of refusals)
        for (let i = 0; i < 2; i++) {
          const refused = await fay.get(`${path}?${query}`);
          expect([refused.status, refused.body.error?.code], `${path}?${query}`).toEqual([400, code]);
        }
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push((await fay.get("/api/v1/trade/history")).status);
    for (let i = 0; i < 3; i++) codes.push((await fay.get("/api/v1/trade/spot-orders")).status);
    expect(codes).toEqual([200, 200, 200, 200, 200, 200]);
    expect((await fay.get("/api/v1/trade/orders/history")).status).toBe(429);
  });

  it("limits the spot order history per user on its own budget, beside the closed-trade history's", async () => {
    const { token: erinToken, user: erinUser } = await stack.signIn("erin@example.com");
    const [erin, erinId] = [client(stack.app, erinToken), erinUser.id];
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push((await erin.get("/api/v1/trade/history")).status);
    for (let i = 0; i < 4; i++) codes.push((await erin.get("/api/v1/trade/spot-orders")).status);
    expect(codes).toEqual([200, 200, 200, 200, 200, 200, 429]);
    const limited = await erin.get("/api/v1/trade/spot-orders");
    expect([limited.body.error?.code, limited.headers.get("retry-after")]).toEqual(["RATE_LIMITED", "60"]);
    // Retry-After is what is left of the window, not a whole one.
    await stack.redis.pexpire(stack.keys.rateLimitKey("spot-orders", erinId), 12_300);
    const left = Number((await erin.get("/api/v1/trade/spot-orders")).headers.get("retry-after"));
    expect(left).toBeGreaterThanOrEqual(1);
    expect(left).toBeLessThanOrEqual(13);
    // A counter that lost its expiry gets its window back, rather than locking erin out for good.
    await stack.redis.persist(stack.keys.rateLimitKey("spot-orders", erinId));
    expect((await erin.get("/api/v1/trade/spot-orders")).headers.get("retry-after")).toBe("60");
    expect(await stack.redis.pttl(stack.keys.rateLimitKey("spot-orders", erinId))).toBeGreaterThan(0);
  });

  it("limits sign-in link checks per IP, with 429 and Retry-After", async () => {
    const anon = client(stack.app);
    const from = (ip: string) => anon.get("/api/v1/auth/verify?token=not-a-token", { "x-test-ip": ip });
    expect((await from("10.9.0.1")).status).toBe(401);
    expect((await from("10.9.0.1")).status).toBe(401);
    const limited = await from("10.9.0.1");
    expect([limited.status, limited.body.error?.code]).toEqual([429, "RATE_LIMITED"]);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect((await from("10.9.0.2")).status).toBe(401);
  });
});
