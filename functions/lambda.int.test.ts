/**
 * The Lambda entry invoked with API Gateway v2 events gives the same answers as the Node server.
 *
 * Both real entries run against one stack (testing/api-stack.ts: engine and worker in this process, a fresh
 * database, a unique key prefix): server.ts as a child process on a free port, lambda.ts's `handler` in this
 * process with the same environment. Every step goes through both, one after the other, and the answers must
 * match: status, body, headers (less the per-connection ones and the request id) and cookies (less the token).
 * The sequence acts as one user, so even the bodies that name ids and times are equal: the second sign-in finds the
 * first's user, and each trade POST is replayed through the other entry with the same Idempotency-Key.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { freePort, spawnComponent, type Child } from "../platform/testing/processes.ts";
import { REDIS_URL, startApiStack, TEST_JWT_SECRET, type ApiStack } from "./testing/api-stack.ts";
import {
  apiGatewayEvent,
  lambdaContext,
  setApiEnv,
  type ApiRequest,
  type LambdaHandler,
} from "./testing/lambda-events.ts";
import { startResendRecorder, type ResendRecorder } from "./testing/resend-recorder.ts";

const APP_URL = "http://localhost:3000";
const EMAIL = "twin@example.com";
/** Differ per connection or per call by design; API Gateway sets its own transport headers anyway. */
const UNCOMPARED_HEADERS = new Set([
  "date",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "x-request-id",
]);

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Record<string, string>;
  readonly cookies: string[];
}

let stack: ApiStack;
let recorder: ResendRecorder;
let server: Child | undefined;
let baseUrl: string;
let handler: LambdaHandler;
let restoreEnv: (() => void) | undefined;

beforeAll(async () => {
  stack = await startApiStack();
  const prefix = stack.keys.input.slice(0, -"engine:{0}:input".length);
  expect([keyspace(prefix).input, keyspace(prefix).devMailbox]).toEqual([stack.keys.input, stack.keys.devMailbox]);
  recorder = await startResendRecorder();
  // Both entries email through the real Resend client to the local recorder (the Lambda entry refuses to run
  // without a Resend key: a deployment has no dev mailbox).
  const env: Record<string, string> = {
    DATABASE_URL: stack.pg.url,
    REDIS_URL,
    KEY_PREFIX: prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    APP_URL,
    RESEND_API_KEY: "re_lambda_test",
    RESEND_BASE_URL: recorder.baseUrl,
    // A sender of a verified domain: the recorder, as Resend, sends from the testing sender only to the account.
    EMAIL_FROM: "Paper Broker <login@paper-broker.test>",
  };
  restoreEnv = setApiEnv(env);
  const port = await freePort();
  // spawnComponent passes process.env (set above, the rest of the API's variables cleared) plus these.
  server = spawnComponent("api", { ...env, PORT: String(port), HOST: "127.0.0.1" });
  await server.waitFor("listening", 30_000);
  baseUrl = `http://127.0.0.1:${port}`;
  // lambda.ts reads process.env on its first invocation, so the import may come before or after this point.
  ({ handler } = await import("./lambda.ts"));
}, 60_000);

afterAll(async () => {
  if (server !== undefined) expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  restoreEnv?.();
  await stack?.close();
  await recorder?.close();
}, 30_000);

async function viaNode(req: ApiRequest): Promise<Answer> {
  const cookie = req.cookies === undefined ? {} : { cookie: req.cookies.join("; ") };
  const res = await fetch(`${baseUrl}${req.path}`, {
    method: req.method,
    headers: { ...req.headers, ...cookie },
    ...(req.body !== undefined && { body: req.body }),
  });
  const headers: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value;
  });
  return { status: res.status, body: parse(await res.text()), headers, cookies: res.headers.getSetCookie() };
}

async function viaLambda(req: ApiRequest): Promise<Answer> {
  const result = await handler(apiGatewayEvent(req), lambdaContext());
  expect(result.isBase64Encoded).toBe(false);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {}))
    headers[name] = Array.isArray(value) ? value.join(", ") : value;
  expect(headers["set-cookie"], "payload v2 returns cookies in `cookies`, not as a header").toBeUndefined();
  return { status: result.statusCode, body: parse(result.body), headers, cookies: result.cookies ?? [] };
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { raw: text };
  }
}

/** The same request through the Lambda entry, then the Node server; returns both answers after checking they match. */
async function both(req: ApiRequest): Promise<[lambda: Answer, node: Answer]> {
  const lambda = await viaLambda(req);
  const node = await viaNode(req);
  expectSameAnswer(lambda, node, `${req.method} ${req.path}`);
  return [lambda, node];
}

function expectSameAnswer(lambda: Answer, node: Answer, what: string): void {
  expect(lambda.status, what).toBe(node.status);
  expect(lambda.body, what).toEqual(node.body);
  expect(comparable(lambda.headers), what).toEqual(comparable(node.headers));
  expect(lambda.cookies.map(withoutToken), what).toEqual(node.cookies.map(withoutToken));
  for (const answer of [lambda, node]) expect(answer.headers["x-request-id"], what).toMatch(/^[0-9a-f-]{36}$/);
}

function comparable(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !UNCOMPARED_HEADERS.has(name)));
}

function withoutToken(cookie: string): string {
  return cookie.replace(/^session=[^;]+/, "session=<token>");
}

function sessionToken(answer: Answer): string {
  const token = answer.cookies.map((c) => /^session=([^;]+)/.exec(c)?.[1]).find((t) => t !== undefined);
  if (token === undefined) throw new Error(`no session cookie in ${JSON.stringify(answer.cookies)}`);
  return token;
}

const get = (path: string, headers: Record<string, string> = {}, cookies?: string[]): ApiRequest => ({
  method: "GET",
  path,
  headers,
  ...(cookies !== undefined && { cookies }),
});
const post = (path: string, body: unknown, headers: Record<string, string> = {}): ApiRequest => ({
  method: "POST",
  path,
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The sign-in links sent to `email`, newest first (as the dev mailbox lists them). */
function linksTo(email: string): Promise<string[]> {
  const mails = recorder.sent.filter((m) => m.body.to === email).reverse();
  return Promise.resolve(
    mails.map((m) => {
      const link = /http\S+?token=[A-Za-z0-9_-]+/.exec(String(m.body.text))![0];
      expect(link.startsWith(`${APP_URL}/api/v1/auth/verify?token=`)).toBe(true);
      const url = new URL(link);
      return url.pathname + url.search;
    }),
  );
}

let lambdaToken: string;
let nodeToken: string;
let user: { id: string; email: string };

describe("the Lambda entry and the Node server answer alike", () => {
  it("GET /health", async () => {
    const [lambda] = await both(get("/health"));
    expect(lambda.status).toBe(200);
    expect(lambda.body).toEqual({ status: "ok", redis: true, postgres: true, engine: true });
  });

  it("POST /api/v1/auth from the app's origin, with the CORS headers", async () => {
    const [lambda] = await both(post("/api/v1/auth", { email: EMAIL }, { origin: APP_URL }));
    expect(lambda.status).toBe(200);
    expect(lambda.body).toEqual({ message: expect.stringContaining("sign-in link") as unknown });
    expect(lambda.headers["access-control-allow-origin"]).toBe(APP_URL);
    expect(lambda.headers["access-control-allow-credentials"]).toBe("true");
  });

  it("follows each entry's own magic link to the same user and a session cookie", async () => {
    // Newest first: the Node server's request came second.
    const [forNode, forLambda, ...older] = await linksTo(EMAIL);
    expect(older).toEqual([]);
    expect(forLambda).not.toBe(forNode);
    const lambda = await viaLambda(get(forLambda!));
    // Using a link voids the address's other unused links: the Node server's is void now, on either entry.
    const [voided] = await both(get(forNode!));
    expect(voided.status).toBe(401);
    expect((await viaNode(post("/api/v1/auth", { email: EMAIL }, { origin: APP_URL }))).status).toBe(200);
    const [fresh] = await linksTo(EMAIL);
    const node = await viaNode(get(fresh!));
    expectSameAnswer(lambda, node, "GET /api/v1/auth/verify");
    expect(lambda.status).toBe(200);
    user = (lambda.body as { user: typeof user }).user;
    expect(user).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown, email: EMAIL });
    expect(lambda.cookies).toHaveLength(1);
    for (const part of ["HttpOnly", "SameSite=Lax", "Path=/"]) expect(lambda.cookies[0]!.split("; ")).toContain(part);
    lambdaToken = sessionToken(lambda);
    nodeToken = sessionToken(node);
    expect(lambdaToken).not.toBe(nodeToken);
  });

  it("GET /api/v1/auth/me: a session from one entry works on the other, as Bearer or cookie", async () => {
    const fromNode = await viaLambda(get("/api/v1/auth/me", bearer(nodeToken)));
    const fromLambda = await viaNode(get("/api/v1/auth/me", bearer(lambdaToken)));
    expectSameAnswer(fromNode, fromLambda, "GET /api/v1/auth/me (Bearer)");
    expect([fromNode.status, fromNode.body]).toEqual([200, { user }]);
    const [byCookie] = await both(get("/api/v1/auth/me", {}, [`theme=dark`, `session=${nodeToken}`]));
    expect(byCookie.body).toEqual({ user });
  });

  it("GET /api/v1/account/balance", async () => {
    const [lambda] = await both(get("/api/v1/account/balance", bearer(lambdaToken)));
    expect(lambda.body).toEqual({ balances: { USD: "10000", ETH: "0", BTC: "0", SOL: "0", ADA: "0" } });
  });

  it("GET /api/v1/account/assets after a quote", async () => {
    await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
    await stack.setQuote("BTC_USDC_PERP", "60000", "60010.5");
    const [lambda] = await both(get("/api/v1/account/assets", bearer(nodeToken)));
    expect(lambda.status).toBe(200);
    expect((lambda.body as { assets: unknown[] }).assets[0]).toMatchObject({ symbol: "ETH", bid: "2000", ask: "2001" });
  });

  it("POST /api/v1/trade/create: the same Idempotency-Key and body through either entry acts once", async () => {
    const eth = post(
      "/api/v1/trade/create",
      { asset: "ETH", type: "long", margin: "100", leverage: 10 },
      { ...bearer(lambdaToken), "idempotency-key": "open-eth" },
    );
    const [lambda] = await both(eth);
    expect(lambda.status).toBe(201);
    expect(lambda.body).toMatchObject({ trade: { asset: "ETH", type: "long", margin: "100", openPrice: "2001" } });
    const [open] = await both(get("/api/v1/trade/open", bearer(nodeToken)));
    expect((open.body as { trades: { id: string }[] }).trades.map((t) => t.id)).toEqual([
      (lambda.body as { trade: { id: string } }).trade.id,
    ]);

    // The other way round: first through the Node server, replayed through Lambda.
    const btc = post(
      "/api/v1/trade/create",
      { asset: "BTC", type: "short", margin: "10", leverage: 2 },
      { ...bearer(nodeToken), "idempotency-key": "open-btc" },
    );
    const node = await viaNode(btc);
    const replayed = await viaLambda(btc);
    expectSameAnswer(replayed, node, "POST /api/v1/trade/create (Node first)");
    expect(node.status).toBe(201);
    const [bothOpen] = await both(get("/api/v1/trade/open", bearer(lambdaToken)));
    expect((bothOpen.body as { trades: unknown[] }).trades).toHaveLength(2);
  });

  it("POST /api/v1/trade/close, then GET /api/v1/trade/history page by page", async () => {
    const open = (await viaNode(get("/api/v1/trade/open", bearer(nodeToken)))).body as {
      trades: { id: string; asset: string }[];
    };
    const idOf = (asset: string) => open.trades.find((t) => t.asset === asset)!.id;
    const [closedEth] = await both(
      post("/api/v1/trade/close", { tradeId: idOf("ETH") }, { ...bearer(nodeToken), "idempotency-key": "close-eth" }),
    );
    expect([closedEth.status, closedEth.body]).toMatchObject([
      200,
      { trade: { id: idOf("ETH"), closePrice: "2000", closeReason: "manual" } },
    ]);
    const closeBtc = post(
      "/api/v1/trade/close",
      { tradeId: idOf("BTC") },
      { ...bearer(lambdaToken), "idempotency-key": "close-btc" },
    );
    const node = await viaNode(closeBtc);
    expectSameAnswer(await viaLambda(closeBtc), node, "POST /api/v1/trade/close (Node first)");
    expect(node.status).toBe(200);
    await both(get("/api/v1/trade/open", bearer(lambdaToken)));

    const [first] = await both(get("/api/v1/trade/history?limit=1", bearer(lambdaToken)));
    const page1 = first.body as { trades: { id: string }[]; nextCursor: string | null };
    expect(page1.trades.map((t) => t.id)).toEqual([idOf("BTC")]);
    expect(typeof page1.nextCursor).toBe("string");
    const [second] = await both(get(`/api/v1/trade/history?limit=1&cursor=${page1.nextCursor!}`, bearer(nodeToken)));
    expect(second.body).toMatchObject({ trades: [{ id: idOf("ETH") }], nextCursor: null });
    await both(get("/api/v1/account/balance", bearer(nodeToken)));
  });

  it("answers errors alike: malformed JSON, no session, unknown trade, too large, foreign origin, unknown route", async () => {
    const cases: [ApiRequest, number, string][] = [
      [post("/api/v1/trade/create", "{not json", bearer(lambdaToken)), 400, "MALFORMED_JSON"],
      [get("/api/v1/account/balance"), 401, "UNAUTHENTICATED"],
      [post("/api/v1/trade/close", { tradeId: "T0-999999" }, bearer(nodeToken)), 404, "TRADE_NOT_FOUND"],
      [
        post("/api/v1/trade/create", JSON.stringify({ asset: "ETH", pad: "x".repeat(20_000) }), bearer(lambdaToken)),
        413,
        "PAYLOAD_TOO_LARGE",
      ],
      [post("/api/v1/auth", { email: EMAIL }, { origin: "https://evil.example" }), 403, "FORBIDDEN_ORIGIN"],
      [get("/api/v1/nope", bearer(nodeToken)), 404, "NOT_FOUND"],
    ];
    for (const [req, status, code] of cases) {
      const [lambda] = await both(req);
      expect(
        [lambda.status, (lambda.body as { error?: { code: string } }).error?.code],
        `${req.method} ${req.path}`,
      ).toEqual([status, code]);
    }
  });

  it("GET /api/v1/openapi.json", async () => {
    const [lambda] = await both(get("/api/v1/openapi.json"));
    expect(lambda.status).toBe(200);
    expect(lambda.body).toMatchObject({ openapi: expect.any(String) as unknown });
  });

  it("GET /api/v1/docs and its Swagger UI files, read from the installed package by the bundle too", async () => {
    const [page] = await both(get("/api/v1/docs"));
    expect(page.status).toBe(200);
    expect(String((page.body as { raw: string }).raw)).toContain('src="docs/swagger-ui-bundle.js"');
    for (const [file, type] of [
      ["swagger-ui-bundle.js", "text/javascript"],
      ["swagger-ui.css", "text/css"],
      ["init.js", "text/javascript"],
    ] as const) {
      const [lambda] = await both(get(`/api/v1/docs/${file}`));
      expect(lambda.status, file).toBe(200);
      expect(lambda.headers["content-type"], file).toContain(type);
      expect(String((lambda.body as { raw: string }).raw).length, file).toBeGreaterThan(100);
    }
    expect((await both(get("/api/v1/docs/nope.js")))[0].status).toBe(404);
  });

  it("DELETE /api/v1/auth/logout clears the cookie, and the token stops working on both entries", async () => {
    const lambda = await viaLambda({
      method: "DELETE",
      path: "/api/v1/auth/logout",
      cookies: [`session=${lambdaToken}`],
    });
    const node = await viaNode({ method: "DELETE", path: "/api/v1/auth/logout", cookies: [`session=${nodeToken}`] });
    expectSameAnswer(lambda, node, "DELETE /api/v1/auth/logout");
    expect(lambda.status).toBe(200);
    expect(lambda.cookies).toEqual([expect.stringMatching(/^session=;.*Max-Age=0/) as unknown]);
    for (const token of [lambdaToken, nodeToken]) {
      const [gone] = await both(get("/api/v1/auth/me", bearer(token)));
      expect(gone.status).toBe(401);
    }
  });
});

describe("the Lambda entry answers within the invocation's time", () => {
  it("a trade the engine does not answer: 504 before the function's time runs out, not after ENGINE_TIMEOUT_MS", async () => {
    const { token } = await stack.signIn("lambda-late@example.com");
    const order = post(
      "/api/v1/trade/order",
      { asset: "SOL", side: "buy", quantity: "1" },
      { ...bearer(token), "idempotency-key": `late-${crypto.randomUUID()}` },
    );
    // Less time left than ENGINE_TIMEOUT_MS (5 s here), as in an invocation whose earlier steps were slow
    const leftMs = 4_000;
    const started = performance.now();
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => leftMs - (performance.now() - started) };
    const result = await stack.withStuckEngine(() => handler(apiGatewayEvent(order), context));
    const tookMs = performance.now() - started;
    expect([result.statusCode, (parse(result.body) as { error: { code: string } }).error.code]).toEqual([
      504,
      "ENGINE_TIMEOUT",
    ]);
    // The wait ends with room for its last read and the answer's way back
    expect(tookMs).toBeLessThan(leftMs - 1_000);
  });
});
