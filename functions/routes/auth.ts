/**
 * Magic-link sign-in (docs/api.md): ask for a link, follow it, who am I, sign out.
 *
 * Asking for a link answers the same, and does the same work, for any address: a token is issued and an email sent
 * whether or not the address has an account (first sign-in creates it), so neither the answer nor its timing tells
 * an attacker which emails are registered. Limits per email and per IP stop mail bombing and guessing.
 */
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import {
  countRequest,
  settleSignInBudget,
  signInEmailSubject,
  signInIpSubject,
  spendSignInBudget,
} from "../admission.ts";
import { signInEmail, surelyNotSent } from "../auth/mailer.ts";
import { SESSION_TTL_SECONDS } from "../auth/sessions.ts";
import { announceRevoked } from "../auth/stream-tickets.ts";
import {
  checkSignInToken,
  consumedBy,
  consumeSignInToken,
  ensureUser,
  issueSignInToken,
  SIGN_IN_TOKEN_TTL_MINUTES,
} from "../auth/sign-in-tokens.ts";
import { isBackendFailure } from "../backend-failure.ts";
import type { ApiDeps, ApiEnv } from "../context.ts";
import { ApiError } from "../errors.ts";
import { carriedSessions, limitRate, PLAIN_SESSION_COOKIE, requireSession, sessionCookieName } from "../middleware.ts";
import {
  JSON_BODY_ERRORS,
  apiRouter,
  createRoute,
  type ErrorCode,
  errorResponses,
  jsonBody,
  jsonResponse,
  PUBLIC,
  route,
  SIGNED_IN,
} from "../openapi.ts";
import { NEON_QUERY_TIMEOUT_MS } from "../postgres.ts";
import { REDIS_CALL_TIMEOUT_MS } from "../redis/api-redis.ts";
import { responses, signInRequest, verifyQuery } from "../schemas.ts";

/** What following a link still does once the engine has answered, at most: the token's query, the session's script. */
const AFTER_ACCOUNT_CREATED_MS = NEON_QUERY_TIMEOUT_MS + 2 * REDIS_CALL_TIMEOUT_MS;

export const SIGN_IN_MESSAGE =
  "If the address can receive email, a sign-in link is on its way. " +
  `It expires in ${SIGN_IN_TOKEN_TTL_MINUTES} minutes.`;

export function authRoutes(deps: ApiDeps) {
  const { db, keys, redis, settings } = deps;
  const app = apiRouter();
  const sessionCookie = sessionCookieName(settings);
  const clearSessionCookie = (c: Context) => {
    const options = { path: "/", secure: settings.secureCookies, httpOnly: true, sameSite: "Lax" } as const;
    deleteCookie(c, sessionCookie, options);
    // One from before the name was __Host-session (carriedSessions has ended its session): the browser drops it too.
    if (sessionCookie !== PLAIN_SESSION_COOKIE && getCookie(c, PLAIN_SESSION_COOKIE) !== undefined)
      deleteCookie(c, PLAIN_SESSION_COOKIE, options);
  };

  /**
   * Asked once, in a query of its own (over Neon HTTP with a time limit of its own), after using the link up failed
   * with no answer; false when the answer is still unknown (Postgres still down, or not a query's time left in the
   * function, with the unlisting that then follows): the 503 stands.
   */
  const usedByThisSignIn = async (c: Context, token: string, sessionId: string): Promise<boolean> => {
    if (deps.timeLeftMs !== undefined && deps.timeLeftMs(c) < NEON_QUERY_TIMEOUT_MS + REDIS_CALL_TIMEOUT_MS)
      return false;
    return consumedBy(db, token, sessionId).catch((err: unknown) => {
      deps.log.warn("sign_in_link_use_unknown", { error: String(err) });
      return false;
    });
  };

  const signIn = createRoute({
    method: "post",
    path: "/",
    operationId: "requestSignInLink",
    tags: ["Auth"],
    summary: "Email a sign-in link",
    description:
      "Answers the same, and does the same work, for any address: whether it has an account is not revealed. " +
      `The link signs in (creating the account on first use) and expires in ${SIGN_IN_TOKEN_TTL_MINUTES} minutes. ` +
      "Limited per address and per IP, and in all per day (503 past that). An address the email provider refuses gets the same answer; 503 when the " +
      "provider cannot send now (down, over its limits, or refusing this deployment's key or sender), whose " +
      "Retry-After is then the provider's own wait when it named one, and 300 when sending waits for an operator " +
      "or a quota's reset.",
    security: PUBLIC,
    request: { body: jsonBody(signInRequest) },
    responses: {
      200: {
        description: "A link is on its way, if the address can receive email",
        content: { "application/json": { schema: responses.message, example: { message: SIGN_IN_MESSAGE } } },
      },
      ...errorResponses([...JSON_BODY_ERRORS, "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, signIn, async (c, { body: { email } }) => {
    await countRequest(redis, keys, "sign-in-ip", signInIpSubject(deps.clientIp(c)), settings.signInPerIp);
    const emailSubject = await signInEmailSubject(deps.sessions, email);
    await countRequest(redis, keys, "sign-in-email", emailSubject, settings.signInPerEmail);
    const unit = await spendSignInBudget(redis, keys, settings.signInPerDeployment);
    // Whether the email went out or may have: only one that surely did not gives its unit of the budget back.
    let mayHaveGone = false;
    try {
      const token = await issueSignInToken(db, email);
      const link = `${settings.appUrl.replace(/\/$/, "")}/api/v1/auth/verify?token=${token}`;
      mayHaveGone = true;
      // Resolves for an address the provider refused too (auth/mailer.ts): the answer must not tell it apart.
      const outcome = await deps.mailer.send(
        signInEmail({ to: email, link, expiresInMinutes: SIGN_IN_TOKEN_TTL_MINUTES }),
      );
      mayHaveGone = outcome === "sent";
    } catch (err) {
      if (surelyNotSent(err)) mayHaveGone = false;
      throw err;
    } finally {
      await settleSignInBudget(redis, keys, unit, mayHaveGone).catch((settleErr: unknown) =>
        deps.log.warn("sign_in_budget_settle_failed", { refund: !mayHaveGone, error: String(settleErr) }),
      );
      // Also when the send failed: an email that may have gone out keeps the budget's last unit spent.
      if (unit.last && mayHaveGone)
        deps.log.warn("sign_in_emails_used_up", {
          limit: settings.signInPerDeployment.limit,
          windowHours: settings.signInPerDeployment.windowMs / 3_600_000,
          hint: "SIGN_IN_EMAILS_PER_DAY: sign-in emails get 503 until the window ends, but for units given back",
        });
    }
    return c.json({ message: SIGN_IN_MESSAGE });
  });

  const verify = createRoute({
    method: "get",
    path: "/verify",
    operationId: "verifySignInLink",
    tags: ["Auth"],
    summary: "Follow a sign-in link",
    description:
      "Creates the user on first sign-in, grants the starting balance, and sets the session cookie (HttpOnly, " +
      "SameSite=Lax, 7 days): `__Host-session` when the API's cookies are Secure (APP_URL is https, or " +
      "NODE_ENV=production), `session` over plain http. A link works once, and using it voids the address's " +
      "other unused links. With APP_REDIRECT_URL configured it answers 302 to it instead, and a link that cannot " +
      "sign in (used, voided, expired, unknown or mangled: INVALID_TOKEN; without its token: INVALID_REQUEST) is a " +
      "302 to it too, with `error=<code>` added to its query, rather than the 401 or 400. " +
      "A HEAD request (what link checkers and mail scanners send) answers 200 with no body and does nothing: the " +
      "link is not checked, counted or used.",
    security: PUBLIC,
    middleware: [headChangesNothing, redirectFailedLink(settings.appRedirectUrl)],
    // Each check costs a Postgres query: counted per IP, so tokens cannot be guessed at speed.
    limit: limitRate(deps, "verify-ip", settings.verifyPerIp, (c) => signInIpSubject(deps.clientIp(c))),
    request: { query: verifyQuery },
    responses: {
      200: {
        description: "Signed in",
        headers: { "Set-Cookie": { description: `\`${sessionCookie}=<token>\``, schema: { type: "string" } } },
        content: { "application/json": { schema: responses.user } },
      },
      302: {
        description:
          "With APP_REDIRECT_URL configured: signed in and sent on to it, or the link could not sign in and " +
          "`error=INVALID_TOKEN` or `error=INVALID_REQUEST` is added to its query (no cookie then)",
        headers: {
          Location: {
            description: "APP_REDIRECT_URL, with `error=<code>` for a link that failed",
            schema: { type: "string" },
          },
          "Set-Cookie": { description: `\`${sessionCookie}=<token>\`, when signed in`, schema: { type: "string" } },
        },
      },
      ...errorResponses([
        "INVALID_REQUEST",
        "INVALID_TOKEN",
        "RATE_LIMITED",
        "UNAVAILABLE",
        "ENGINE_UNAVAILABLE",
        "ENGINE_TIMEOUT",
      ]),
    },
  });
  route(app, verify, async (c, { query: { token } }) => {
    const link = await checkSignInToken(db, token);
    if (link === undefined) throw new ApiError("INVALID_TOKEN");
    // A link signing out everywhere voided is refused before the engine's grant: with the engine down, that would
    // answer 503, inviting a retry that can only be refused. (A user signed out everywhere exists already.)
    if (link.userId !== undefined && (await deps.sessions.linkVoidedBySigningOut(link.userId, link.issuedAtMs)))
      throw new ApiError("INVALID_TOKEN");
    const user = await ensureUser(db, link.email);
    // The starting balance is granted before the answer, so the first request after sign-in can trade. The grant
    // is once per account in the engine: a repeated sign-in changes nothing.
    const timeLeft = deps.timeLeftMs;
    const answer = await deps.engine.send(
      user.id,
      `sign-in-${crypto.randomUUID()}`,
      { kind: "create_account" },
      timeLeft && (() => timeLeft(c) - AFTER_ACCOUNT_CREATED_MS),
    );
    if (!answer.ok) throw new Error(`create_account refused: ${answer.error.code}`);
    // Listed before the link is used up: a Redis that cannot list it fails this request (503), and the link still
    // works on a retry, rather than a session that signing out everywhere would miss. One that is not handed out (a
    // concurrent request used the link first, or using it failed) comes off the list again, or signing out
    // everywhere would count it. None is listed for a link issued before the user last signed out everywhere.
    const issued = await deps.sessions.issueForLink(user, link.issuedAtMs);
    if (issued === undefined) throw new ApiError("INVALID_TOKEN");
    const { token: sessionToken, session } = issued;
    const { sessionId } = session;
    const unlist = () =>
      deps.sessions.unlist(session).catch((err: unknown) =>
        // The answer stays what it was; the session, which nobody holds, stays listed.
        deps.log.warn("session_unlist_failed", { userId: user.id, error: String(err) }),
      );
    const consumed = await consumeSignInToken(db, token, sessionId).catch(async (err: unknown) => {
      // An answer lost after the link was used up (Postgres's time limit, a connection dropped after the commit)
      // would make the 503 a dead end: the retry it invites finds the link used. The row records who used it.
      if (isBackendFailure(err) && (await usedByThisSignIn(c, token, sessionId))) return true;
      await unlist();
      throw err;
    });
    if (!consumed) {
      await unlist(); // the answer is 401 either way: the link is used up
      throw new ApiError("INVALID_TOKEN");
    }
    setCookie(c, sessionCookie, sessionToken, {
      httpOnly: true,
      sameSite: "Lax",
      path: "/",
      secure: settings.secureCookies,
      maxAge: SESSION_TTL_SECONDS,
    });
    deps.log.info("signed_in", { userId: user.id });
    if (settings.appRedirectUrl !== undefined) return c.redirect(settings.appRedirectUrl, 302);
    return c.json({ user });
  });

  const me = createRoute({
    method: "get",
    path: "/me",
    operationId: "getCurrentUser",
    tags: ["Auth"],
    summary: "The signed-in user",
    security: SIGNED_IN,
    middleware: requireSession(deps),
    responses: {
      200: jsonResponse(responses.user, "The user the session belongs to"),
      ...errorResponses(["UNAUTHENTICATED", "UNAVAILABLE"]),
    },
  });
  route(app, me, (c) => {
    const session = c.get("session");
    return c.json({ user: { id: session.userId, email: session.email } });
  });

  // No session needed: signing out twice, or with an expired token, still clears the cookie.
  const logout = createRoute({
    method: "delete",
    path: "/logout",
    operationId: "signOut",
    tags: ["Auth"],
    summary: "Sign out",
    description:
      "Clears the cookie and revokes the session it carries, and the Bearer header's, each checked on its own " +
      "(a header of another scheme, or one whose session no longer holds, does not spare the cookie's); both stop " +
      "working everywhere, and their live stream sockets are closed (close code 4401). Needs no valid session: " +
      "signing out twice is fine. After a 503, retry with the same token: the stream may not have been told yet.",
    security: PUBLIC,
    responses: {
      200: {
        description: "Signed out",
        content: { "application/json": { schema: responses.message, example: { message: "Signed out." } } },
      },
      ...errorResponses(["FORBIDDEN_ORIGIN", "UNAVAILABLE"]),
    },
  });
  route(app, logout, async (c) => {
    for (const session of await carriedSessions(deps, c)) {
      // A session revoked already may still owe its notice: a retry of a logout whose notice failed (a 503) sends it,
      // or its stream sockets would stay open until the stream's 30 s backstop check.
      if (!(await deps.sessions.revokeForLogout(session))) continue;
      // After the revocation is recorded: a stream replica that checks it on the notice finds it.
      await announceRevoked(redis, keys, session);
      await deps.sessions.noticeSent(session);
    }
    clearSessionCookie(c);
    return c.json({ message: "Signed out." });
  });

  const logoutEverywhere = createRoute({
    method: "delete",
    path: "/sessions",
    operationId: "signOutEverywhere",
    tags: ["Auth"],
    summary: "Sign out every session of yours",
    description:
      "Revokes all of the user's sessions, this one included (every device and script signed in), closes their live " +
      "stream sockets (4401), voids the user's unused sign-in links and clears the cookie. For a session that may " +
      "be in someone else's hands. Needs only Redis: it works while Postgres is down. After a 503, retry with the " +
      "same token: the stream may not have been told yet, and a token the failed attempt revoked is taken for that " +
      "retry, which only tells it. A token a logout revoked is not (401), even one whose logout failed to tell " +
      "the stream: retry the logout for that.",
    security: SIGNED_IN,
    middleware: requireSession(deps, { revocation: "notice-owed" }),
    responses: {
      200: {
        description: "Signed out everywhere; the message counts the sessions revoked, not those signed out already",
        content: {
          "application/json": { schema: responses.message, example: { message: "Signed out of 3 sessions." } },
        },
      },
      ...errorResponses(["UNAUTHENTICATED", "FORBIDDEN_ORIGIN", "UNAVAILABLE"]),
    },
  });
  route(app, logoutEverywhere, async (c) => {
    const caller = c.get("session");
    // A caller revoked already is the retry of an attempt that revoked it and then failed to tell the stream (a 503):
    // it may only send the notices still owed. That attempt voided the links before it revoked anything.
    const retry = c.get("sessionNoticeOwed") === true;
    const { revoked, noticeOwed } = await deps.sessions.revokeAll(caller, { revoke: !retry });
    const announced = [...revoked, ...noticeOwed];
    // After the revocations are recorded: a stream replica that checks one on its notice finds it. Sessions revoked
    // before (by an attempt that failed) owe theirs too, or their sockets would stay open until the 30 s backstop.
    for (const session of announced) await announceRevoked(redis, keys, session);
    // Only once all went out, and the caller's last: until then the caller's token can retry (requireSession).
    announced.sort((a, b) => Number(a.sessionId === caller.sessionId) - Number(b.sessionId === caller.sessionId));
    for (const session of announced) await deps.sessions.noticeSent(session);
    clearSessionCookie(c);
    const n = revoked.length;
    return c.json({ message: `Signed out of ${n} session${n === 1 ? "" : "s"}.` });
  });

  return app;
}

/**
 * Hono serves HEAD with the GET handler, so a link checker or mail scanner that sends HEAD would use the link up
 * before its owner follows it. HEAD is answered here instead, with nothing checked, counted or used.
 */
const headChangesNothing: MiddlewareHandler<ApiEnv> = async (c, next) => {
  if (c.req.method !== "HEAD") return next();
  return c.body(null, 200, { "Cache-Control": "no-store" });
};

/** The codes of a followed link that cannot sign in: used, expired, unknown or mangled, or without its token. */
const FAILED_LINK: ReadonlySet<string> = new Set<ErrorCode>(["INVALID_TOKEN", "INVALID_REQUEST"]);

/**
 * With APP_REDIRECT_URL set, the link is followed by a person's browser and the frontend is where it lands: a link
 * that cannot sign in is sent there too, with the code in `error` (after APP_REDIRECT_URL's own query, kept as it
 * is), rather than shown a JSON 401. Limits and outages keep their JSON answer: following the link again later
 * works, and the browser stays on it.
 */
function redirectFailedLink(appRedirectUrl: string | undefined): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    await next();
    const error = c.error;
    if (appRedirectUrl === undefined || !(error instanceof ApiError) || !FAILED_LINK.has(error.code)) return;
    const to = new URL(appRedirectUrl);
    to.search = `${to.search === "" ? "?" : `${to.search}&`}error=${error.code}`;
    // Set over the error's answer, whose headers (the request id) it keeps.
    c.res = new Response(null, { status: 302, headers: { Location: to.href } });
  };
}
