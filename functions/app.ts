/**
 * The HTTP API as one Hono app: routes, middleware and the error handler, built from adapters the entry passes in
 * (server.ts for Node, lambda.ts for AWS Lambda), so tests build a fresh app and call it in-process.
 *
 * Every error leaves as `{"error": {"code", "message"}}`. An ApiError carries its own status; anything else is a
 * bug or an outage: it is logged with the request id, and the client gets a bare 500 (or 503 when a backing
 * service failed, as backend-failure.ts decides, with Retry-After) with no stack trace or internal detail. Every 503
 * and 429 says in Retry-After when to come back.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import type { ApiDeps, ApiEnv } from "./context.ts";
import { isBackendFailure, retryAfterSeconds } from "./backend-failure.ts";
import { API_ERRORS, ApiError, errorBody } from "./errors.ts";
import { DOCS_CSP, DOCS_PAGE, docsAsset } from "./docs-page.ts";
import { loopbackOrigins } from "../platform/config.ts";
import { checkHost, checkOrigin, sessionCookieName, unknownRoute } from "./middleware.ts";
import { apiRouter, createRoute, errorResponses, openApiDocument, PUBLIC, retryAfterHeader, route } from "./openapi.ts";
import { accountRoutes } from "./routes/account.ts";
import { authRoutes } from "./routes/auth.ts";
import { marketRoutes } from "./routes/market.ts";
import { spotOrderRoutes } from "./routes/spot-orders.ts";
import { streamRoutes } from "./routes/stream.ts";
import { orderRoutes } from "./routes/orders.ts";
import { tradeRoutes } from "./routes/trade.ts";
import { responses } from "./schemas.ts";

export function createApp(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const { settings, log } = deps;
  const appOrigin = new URL(settings.appUrl).origin;
  // A development server on localhost is also reached at 127.0.0.1 and [::1]: each is its own page's origin.
  const localOrigins = deps.devMailbox === undefined ? [] : loopbackOrigins(settings.appUrl);
  const allowedOrigins = new Set([appOrigin, ...settings.corsOrigins, ...localOrigins]);
  const app = apiRouter();
  if (deps.requestMetrics !== undefined) app.use(deps.requestMetrics); // first: it times everything after it

  app.use(async (c, next) => {
    const requestId = crypto.randomUUID();
    c.set("requestId", requestId);
    c.header("X-Request-Id", requestId);
    await next();
    // No answer may be kept and served again, by a browser or a proxy put in front later: a session's balances and
    // trades are one user's, and the public quotes and current candle change by the second. The docs assets, which
    // may be kept, set their own. After the answer is made, not before: a header set early is copied over the
    // handler's own when a middleware has read c.res in between (Hono's res setter), as cors does.
    if (c.res.headers.get("Cache-Control") === null) c.header("Cache-Control", "no-store");
  });
  if (deps.devMailbox !== undefined) app.use(checkHost(settings.appUrl));
  const apiHeaders = secureHeaders({
    crossOriginResourcePolicy: false,
    // JSON only: nothing in an answer may load or run anything (the docs page has its own policy).
    contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
  });
  // The API reference page loads its stylesheet and scripts from this origin (docs-page.ts).
  const docsHeaders = secureHeaders({ crossOriginResourcePolicy: false, contentSecurityPolicy: DOCS_CSP });
  app.use((c, next) => (/^\/api\/v1\/docs(\/|$)/.test(c.req.path) ? docsHeaders : apiHeaders)(c, next));
  app.use(
    "/api/*",
    cors({
      origin: (origin) => (allowedOrigins.has(origin) ? origin : null),
      credentials: true,
      allowHeaders: ["Content-Type", "Authorization", "Idempotency-Key"],
      allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
      exposeHeaders: ["X-Request-Id", "Retry-After"],
      maxAge: 600,
    }),
  );
  app.use("/api/*", checkOrigin(appOrigin, allowedOrigins));

  const health = createRoute({
    method: "get",
    path: "/health",
    operationId: "getHealth",
    tags: ["System"],
    summary: "Liveness, and readiness of Redis and Postgres",
    description: "503 when Redis or Postgres cannot be reached. `engine` says whether an engine holds the lease.",
    security: PUBLIC,
    responses: {
      ...errorResponses([]), // 400 for a query parameter (it takes none), 500
      200: {
        description: "Redis and Postgres answer",
        content: {
          "application/json": {
            schema: responses.health,
            example: { status: "ok", redis: true, postgres: true, engine: true },
          },
        },
      },
      503: {
        description: "Redis or Postgres does not answer",
        headers: retryAfterHeader(`Seconds to wait before trying again: ${API_ERRORS.UNAVAILABLE.retryAfterSeconds}.`),
        content: {
          "application/json": {
            schema: responses.health,
            example: { status: "unavailable", redis: true, postgres: false, engine: true },
          },
        },
      },
    },
  });
  route(app, health, async (c) => {
    const [redis, postgres, engine] = await Promise.all([
      deps.redis.ping().then(
        () => true,
        () => false,
      ),
      deps.db.query("SELECT 1").then(
        () => true,
        () => false,
      ),
      deps.redis.get(deps.keys.engineLease).then(
        (v) => v !== null,
        () => false,
      ),
    ]);
    const ok = redis && postgres;
    if (!ok) c.header("Retry-After", String(API_ERRORS.UNAVAILABLE.retryAfterSeconds));
    return c.json({ status: ok ? "ok" : "unavailable", redis, postgres, engine }, ok ? 200 : 503);
  });

  app.route("/api/v1/auth", authRoutes(deps));
  app.route("/api/v1/trade", tradeRoutes(deps));
  app.route("/api/v1/trade", spotOrderRoutes(deps));
  app.route("/api/v1/trade", orderRoutes(deps));
  app.route("/api/v1/account", accountRoutes(deps));
  app.route("/api/v1/market", marketRoutes(deps));
  app.route("/api/v1/stream", streamRoutes(deps));
  if (deps.devMailbox !== undefined) {
    const mailbox = deps.devMailbox;
    // Local development only (no email provider configured): the sign-in emails, newest first. The links in it
    // sign anyone in, so it answers only to this machine, and not to a request a proxy passed on (a proxy on this
    // machine connects from loopback on behalf of anyone). Not part of the contract: left out of the document.
    const devMailbox = createRoute({
      method: "get",
      path: "/api/v1/dev/mailbox",
      hide: true,
      responses: {
        200: {
          description: "The latest sign-in emails",
          content: { "application/json": { schema: responses.mailbox } },
        },
      },
    });
    route(app, devMailbox, async (c) => {
      if (!isLoopback(deps.clientIp(c)) || PROXY_HEADERS.some((name) => c.req.header(name) !== undefined))
        throw new ApiError("NOT_FOUND");
      return c.json({ emails: await mailbox.list(20) });
    });
  }
  // Built once per server URL, on first request: it never changes.
  const documents = new Map<string, Record<string, unknown>>();
  app.get("/api/v1/openapi.json", (c) => {
    // "Try it out" calls the document's server, and the page's CSP lets it call only the page's origin: a development
    // server reached at 127.0.0.1 rather than APP_URL's localhost names the address it was reached at.
    const reachedAt = `${new URL(settings.appUrl).protocol}//${c.req.header("host") ?? ""}`;
    const server = localOrigins.includes(reachedAt) ? reachedAt : appOrigin;
    let document = documents.get(server);
    if (document === undefined)
      documents.set(server, (document = openApiDocument(app, server, sessionCookieName(settings))));
    return c.json(document);
  });
  app.get("/api/v1/docs", (c) => c.html(DOCS_PAGE));
  // The page's script and stylesheet: what the installed swagger-ui-dist holds, the same for everyone.
  app.get("/api/v1/docs/:file", async (c) => {
    const asset = await docsAsset(c.req.param("file"));
    if (asset === undefined) throw new ApiError("NOT_FOUND");
    return c.body(asset.body, 200, { "Content-Type": asset.type, "Cache-Control": "public, max-age=3600" });
  });

  app.notFound(unknownRoute(app, settings.streamUrl));
  app.onError((err, c) => {
    if (err instanceof ApiError) {
      // A client that hung up mid-body (or was cut off by the server's timeouts): its business, not an outage.
      if (err.code === "INCOMPLETE_BODY")
        log.debug("request_aborted", { requestId: c.get("requestId"), method: c.req.method, path: c.req.path });
      for (const [name, value] of Object.entries(err.headers)) c.header(name, value);
      return c.json({ ...err.extra, ...errorBody(err.code, err.message) }, err.status);
    }
    if (err instanceof HTTPException && err.status < 500) {
      return c.json(errorBody("INVALID_REQUEST", API_ERRORS.INVALID_REQUEST.message), err.status);
    }
    const requestId = c.get("requestId");
    const unavailable = isBackendFailure(err);
    log.error(unavailable ? "backend_unavailable" : "request_failed", {
      requestId,
      method: c.req.method,
      path: c.req.path,
      error: err instanceof Error ? err.stack : String(err),
    });
    const code = unavailable ? "UNAVAILABLE" : "INTERNAL";
    if (unavailable) c.header("Retry-After", String(retryAfterSeconds(err)));
    return c.json(errorBody(code, API_ERRORS[code].message), unavailable ? 503 : 500);
  });
  return app;
}

/** Headers a proxy adds to what it passes on. */
const PROXY_HEADERS = ["forwarded", "x-forwarded-for", "x-real-ip", "via"];

function isLoopback(ip: string): boolean {
  return ip === "::1" || /^(::ffff:)?127\./.test(ip);
}
