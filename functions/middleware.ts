/**
 * Request guards shared by the routes: who is calling (session from the cookie or a Bearer header), whether a
 * browser on another site is trying to change state (Origin check), whether a page is reaching a development server
 * through DNS rebinding (Host check), read rate limits, and the answer for a path or method that has no route.
 */
import type { Context, Hono } from "hono";
import { getCookie } from "hono/cookie";
import { createMiddleware } from "hono/factory";
import { countRequest, type RateLimit, type RateScope } from "./admission.ts";
import type { Session } from "./auth/sessions.ts";
import type { ApiDeps, ApiEnv, ApiContext, ApiSettings } from "./context.ts";
import { ApiError, AUTHORIZATION_NOT_BEARER, errorBody, SESSION_NOT_VALID } from "./errors.ts";
import { quoted } from "./validate.ts";
import { LOOPBACK_NAMES } from "../platform/config.ts";
import type { RateCheck } from "./openapi.ts";

/**
 * The session cookie's name. With Secure cookies it is `__Host-session`: a browser keeps a `__Host-` cookie only
 * from this very host, over https, Secure, on Path=/ and without Domain, so a sibling subdomain (or whoever answers
 * for one over http) cannot plant a session cookie that this API would take (session fixation: the victim signed
 * in as the attacker). Over plain http (local development) it is `session`, since browsers and curl's cookie jar
 * refuse a `__Host-` cookie that is not Secure. Only this name is read: a cookie under the other one is no session.
 */
export function sessionCookieName(settings: Pick<ApiSettings, "secureCookies">): string {
  return settings.secureCookies ? "__Host-session" : PLAIN_SESSION_COOKIE;
}

/** The session token a request carries: `Authorization: Bearer` first, else the session cookie `cookieName`. */
export function sessionToken(c: ApiContext, cookieName: string): string | undefined {
  return c.req.header("authorization") === undefined ? getCookie(c, cookieName) : bearerToken(c);
}

/** The token of an `Authorization: Bearer` header; undefined without the header or for another scheme. */
function bearerToken(c: ApiContext): string | undefined {
  const header = c.req.header("authorization");
  if (header === undefined) return undefined;
  // The scheme is case-insensitive (RFC 9110 §11.1). A Bearer header with an empty or malformed token is a
  // session that does not hold, not a missing one: it is handed on, and verifying it fails.
  const m = /^bearer(?:[ \t]+(.*))?$/i.exec(header.trim());
  return m === null ? undefined : (m[1] ?? "").trim();
}

/** The session cookie's name over http, and before `__Host-session` with Secure cookies (sessionCookieName). */
export const PLAIN_SESSION_COOKIE = "session";

/**
 * Every valid session a request carries, revoked or not (Sessions.authentic): the Bearer header's and the cookie's,
 * each checked on its own.
 * For signing out, which must end the cookie's session it clears even when the header is another scheme (a proxy's
 * Basic credentials) or a stale token: there the header does not win. With Secure cookies, a `session` cookie's too:
 * one set before the name became `__Host-session` is no longer a session here, but its token still is one as a
 * Bearer header until it expires, and signing out must end it (one planted by someone else ends their session only).
 * Revoked ones too: a logout retried after its revocation notice failed must still send it.
 */
export async function carriedSessions(deps: ApiDeps, c: ApiContext): Promise<Session[]> {
  const name = sessionCookieName(deps.settings);
  const plain = name === PLAIN_SESSION_COOKIE ? undefined : getCookie(c, PLAIN_SESSION_COOKIE);
  const tokens = new Set([bearerToken(c), getCookie(c, name), plain]);
  const sessions: Session[] = [];
  for (const token of tokens) {
    const session = token === undefined ? undefined : await deps.sessions.authentic(token);
    if (session !== undefined) sessions.push(session);
  }
  return sessions;
}

/**
 * 401 unless the request carries a valid, unrevoked session; the message says whether none came or the one that came
 * does not hold. With `revocation: "in-admission"` only the token is checked here, and the route must check
 * revocation itself before it acts (the trade POSTs do, in the admission script: one Redis round trip fewer on the
 * hot path) and say so in `revocationChecked`. A request refused before that (a bad body, an amount's decimals) has
 * its revocation checked here on the way out, so a signed-out session is 401 whatever else is wrong with the request.
 * With `revocation: "notice-owed"` a session that signing out everywhere revoked, whose notice to the stream replicas
 * is still owed, passes too, with `sessionNoticeOwed` set: only for signing out everywhere, whose retry after a 503
 * (its own session revoked by the first attempt) may do nothing but send the notices owed. One a logout revoked is
 * refused: that is no retry, and the call would sign out nothing.
 */
export function requireSession(
  deps: ApiDeps,
  options: { revocation: "now" | "in-admission" | "notice-owed" } = { revocation: "now" },
) {
  const cookieName = sessionCookieName(deps.settings);
  return createMiddleware<ApiEnv>(async (c, next) => {
    // Already checked for this request (a rate limit mounted in front of the route needed the user).
    if (c.get("session") !== undefined) return next();
    const token = sessionToken(c, cookieName);
    if (token === undefined) {
      const sent = c.req.header("authorization") === undefined ? undefined : AUTHORIZATION_NOT_BEARER;
      throw new ApiError("UNAUTHENTICATED", sent);
    }
    const session =
      options.revocation === "now" ? await deps.sessions.verify(token) : await deps.sessions.authentic(token);
    if (session === undefined) throw new ApiError("UNAUTHENTICATED", SESSION_NOT_VALID);
    if (options.revocation === "notice-owed") {
      const revocation = await deps.sessions.revocationOf(session);
      if (revocation !== "live" && revocation !== "everywhere-notice-owed")
        throw new ApiError("UNAUTHENTICATED", SESSION_NOT_VALID);
      c.set("sessionNoticeOwed", revocation === "everywhere-notice-owed");
    }
    c.set("session", session);
    await next();
    // Only on a refusal, so an admitted request keeps its one round trip; and not on one from the admission script
    // or after it (over a limit, a conflict, the engine's), which checked revocation first. An outage (5xx) stays as
    // it is; a Redis that cannot answer this check turns the refusal into a 503, as on the routes that check first.
    const refused = c.res.status >= 400 && c.res.status < 500 && c.res.status !== 401;
    if (options.revocation === "in-admission" && refused && c.get("revocationChecked") !== true) {
      if (await deps.sessions.isRevoked(session)) throw new ApiError("UNAUTHENTICATED", SESSION_NOT_VALID);
    }
  });
}

/**
 * State-changing requests from a browser must come from an allowed origin: the API's own or one on the CORS
 * allow-list. Browsers send Origin on every cross-site POST/DELETE, so a forged form or fetch from another site is
 * refused even though the SameSite=Lax cookie would not ride along on most of them anyway. Requests without Origin
 * (curl, scripts, server-to-server) are not browsers acting for someone else and pass.
 */
export function checkOrigin(appOrigin: string, allowed: ReadonlySet<string>) {
  return createMiddleware<ApiEnv>(async (c, next) => {
    const method = c.req.method;
    if (method !== "GET" && method !== "HEAD" && method !== "OPTIONS") {
      const origin = c.req.header("origin");
      if (origin !== undefined && !allowed.has(origin)) {
        // The developer of a frontend on another port meets this first: the answer says which setting admits it.
        throw new ApiError(
          "FORBIDDEN_ORIGIN",
          `Requests from the origin ${quoted(origin)} are not allowed: a browser may call this API only from ` +
            `APP_URL's origin (${appOrigin}) or one listed in CORS_ORIGINS.`,
        );
      }
    }
    await next();
  });
}

/**
 * A route's `limit` (openapi.ts route: after its input is read): counts the request against `rate` for the subject
 * `subjectOf` names (a user, an IP); 429 with Retry-After over it.
 */
export function limitRate(
  deps: ApiDeps,
  scope: RateScope,
  rate: RateLimit,
  subjectOf: (c: ApiContext) => string,
): RateCheck {
  return (c) => countRequest(deps.redis, deps.keys, scope, subjectOf(c), rate);
}

/**
 * For development only (the dev mailbox is on): answers a request only when its Host is APP_URL's host, or a
 * loopback name (localhost, 127.0.0.1, [::1]) on APP_URL's port. A web page the developer visits can point its own
 * domain name at 127.0.0.1 (DNS rebinding) and then read this server's answers as same-origin, the dev mailbox's
 * sign-in links among them; the browser still sends that domain as Host, so it is refused here. A request without
 * Host (HTTP/1.0, in-process calls) comes from no browser and passes.
 */
export function checkHost(appUrl: string) {
  const app = new URL(appUrl);
  const schemePort = app.protocol === "https:" ? "443" : "80";
  const port = app.port || schemePort;
  const allowed = new Set([hostKey(app.host, schemePort), ...LOOPBACK_NAMES.map((name) => `${name}:${port}`)]);
  const where = app.port === "" ? app.hostname : `${app.hostname}:${port}`;
  return createMiddleware<ApiEnv>(async (c, next) => {
    const host = c.req.header("host");
    // As browsers and curl send it, Host is already in the set's form: parsed only when it is not.
    if (host !== undefined && !allowed.has(host) && !allowed.has(hostKey(host, schemePort))) {
      throw new ApiError(
        "FORBIDDEN_HOST",
        `This development server answers only to ${where} (APP_URL) or a loopback address on port ${port}, ` +
          "so that another site cannot reach it through DNS rebinding; set APP_URL to the address you use.",
      );
    }
    await next();
  });
}

/** `hostname:port` in lower case (the scheme's port when none is given), or "" when `host` is not host[:port]. */
function hostKey(host: string, schemePort: string): string {
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) return "";
  try {
    const url = new URL(`http://${host}`);
    // URL drops an explicit :80 (http's default), which is not necessarily the scheme's.
    return `${url.hostname}:${url.port || (/:\d+$/.test(host) ? "80" : schemePort)}`;
  } catch {
    return "";
  }
}

/** Paths are shown up to this length in an answer. */
const SHOWN_PATH = 100;

/**
 * The answer when no route matched: 405 with `Allow` when the path exists for other methods, else a 404 that points
 * to the API reference, and to the path without its trailing slash when that one exists (routes match exactly: a
 * redirect would turn a POST into a GET in many clients). The routes are read from the app itself, so every route
 * declared is known here. A WebSocket upgrade, or a path under the stream's, is told where the stream is
 * (`streamUrl`, STREAM_URL): the stream is its own process on its own port, and "everything is on the API's port"
 * is a newcomer's first guess.
 */
export function unknownRoute(app: Pick<Hono<ApiEnv>, "routes">, streamUrl: string) {
  return (c: Context<ApiEnv>) => {
    const path = shownPath(c.req.path);
    const methods = allowedMethods(app.routes, c.req.path);
    if (methods.length > 0) {
      c.header("Allow", methods.join(", "));
      const message = `${path} does not take ${c.req.method}; it takes ${methods.join(", ")}. See the API reference at /api/v1/docs.`;
      return c.json(errorBody("METHOD_NOT_ALLOWED", message), 405);
    }
    const slash = withoutSlash(app, c.req.path, c.req.method);
    const stream = slash === undefined && forTheStream(c) ? ` ${whereTheStreamIs(streamUrl)}` : "";
    const end = slash ?? ".";
    const message = `There is nothing at ${c.req.method} ${path}${end}${stream} See the API reference at /api/v1/docs.`;
    return c.json(errorBody("NOT_FOUND", message), 404);
  };
}

/** A WebSocket upgrade to any path, or a request for a path under the stream's (/api/v1/stream). */
function forTheStream(c: Context<ApiEnv>): boolean {
  return c.req.header("upgrade")?.toLowerCase() === "websocket" || /^\/api\/v1\/stream(\/|$)/.test(c.req.path);
}

function whereTheStreamIs(streamUrl: string): string {
  return (
    `The live stream is a WebSocket at ${streamUrl} (STREAM_URL): open the url that POST /api/v1/stream/ticket ` +
    "answers, with ?ticket=<ticket>."
  );
}

function shownPath(path: string): string {
  return path.length > SHOWN_PATH ? `${path.slice(0, SHOWN_PATH)}…` : path;
}

/**
 * "; did you mean /x, …?" when `path` ends in slashes and is a route's own path without them (with its methods, if
 * not `method`). A route with a parameter is left out: `/api/v1/docs/nope/` would be told of `/api/v1/docs/nope`,
 * which the pattern matches and which is a 404 too.
 */
function withoutSlash(app: Pick<Hono<ApiEnv>, "routes">, path: string, method: string): string | undefined {
  const bare = path.replace(/\/+$/, "");
  if (bare === path || bare === "") return undefined;
  const methods = allowedMethods(
    app.routes.filter((route) => !route.path.includes(":")),
    bare,
  );
  if (methods.length === 0) return undefined;
  const takes = methods.includes(method) ? "" : `, which takes ${methods.join(", ")}`;
  return `; did you mean ${shownPath(bare)}, without the trailing slash${takes}?`;
}

/** The methods declared for `path` (HEAD goes with GET: Hono answers it from the GET route). */
function allowedMethods(routes: readonly { method: string; path: string }[], path: string): string[] {
  const methods = new Set<string>();
  for (const route of routes) {
    // Middleware: mounted for every method, or on a wildcard path.
    if (route.method === "ALL" || route.path.includes("*")) continue;
    if (routePattern(route.path).test(path)) methods.add(route.method);
  }
  if (methods.has("GET")) methods.add("HEAD");
  return [...methods];
}

const patterns = new Map<string, RegExp>();

/** A Hono route path as a regular expression: `:name` (or `:name{regex}`) is one segment. */
function routePattern(path: string): RegExp {
  let pattern = patterns.get(path);
  if (pattern === undefined) {
    const source = path
      .split("/")
      .map((segment) => (segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    pattern = new RegExp(`^${source}$`);
    patterns.set(path, pattern);
  }
  return pattern;
}
