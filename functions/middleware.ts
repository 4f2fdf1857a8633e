/**
 * Request guards shared by the routes: who is calling (session from the cookie or a Bearer header) and whether a
 * browser on another site is trying to change state (Origin check).
 */
import { getCookie } from "hono/cookie";
import { createMiddleware } from "hono/factory";
import type { Session } from "./auth/sessions.ts";
import type { ApiDeps, ApiEnv, ApiContext } from "./context.ts";
import { ApiError } from "./errors.ts";

export const SESSION_COOKIE = "session";

/** The session token a request carries: `Authorization: Bearer` first, else the `session` cookie. */
export function sessionToken(c: ApiContext): string | undefined {
  const header = c.req.header("authorization");
  if (header !== undefined) {
    const m = /^Bearer ([A-Za-z0-9._-]+)$/.exec(header);
    return m?.[1];
  }
  return getCookie(c, SESSION_COOKIE);
}

export async function currentSession(deps: ApiDeps, c: ApiContext): Promise<Session | undefined> {
  const token = sessionToken(c);
  return token === undefined ? undefined : deps.sessions.verify(token);
}

/**
 * 401 unless the request carries a valid, unrevoked session. With `revocation: "in-admission"` only the token is
 * checked here, and the route must check revocation itself before it acts (the trade POSTs do, in the admission
 * script: one Redis round trip fewer on the hot path).
 */
export function requireSession(deps: ApiDeps, options: { revocation: "now" | "in-admission" } = { revocation: "now" }) {
  return createMiddleware<ApiEnv>(async (c, next) => {
    const token = sessionToken(c);
    const session =
      token === undefined
        ? undefined
        : options.revocation === "now"
          ? await deps.sessions.verify(token)
          : await deps.sessions.authentic(token);
    if (session === undefined) throw new ApiError("UNAUTHENTICATED");
    c.set("session", session);
    await next();
  });
}

/**
 * State-changing requests from a browser must come from an allowed origin: the API's own or one on the CORS
 * allow-list. Browsers send Origin on every cross-site POST/DELETE, so a forged form or fetch from another site is
 * refused even though the SameSite=Lax cookie would not ride along on most of them anyway. Requests without Origin
 * (curl, scripts, server-to-server) are not browsers acting for someone else and pass.
 */
export function checkOrigin(allowed: ReadonlySet<string>) {
  return createMiddleware<ApiEnv>(async (c, next) => {
    const method = c.req.method;
    if (method !== "GET" && method !== "HEAD" && method !== "OPTIONS") {
      const origin = c.req.header("origin");
      if (origin !== undefined && !allowed.has(origin)) throw new ApiError("FORBIDDEN_ORIGIN");
    }
    await next();
  });
}
