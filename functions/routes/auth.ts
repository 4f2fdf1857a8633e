/**
 * Magic-link sign-in (DESIGN §5, API.md): ask for a link, follow it, who am I, sign out.
 *
 * Asking for a link answers the same, and does the same work, for any address: a token is issued and an email sent
 * whether or not the address has an account (first sign-in creates it), so neither the answer nor its timing tells
 * an attacker which emails are registered. Limits per email and per IP stop mail bombing and guessing.
 */
import { Hono } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { countRequest, signInEmailSubject, signInIpSubject } from "../admission.ts";
import { signInEmail } from "../auth/mailer.ts";
import { SESSION_TTL_SECONDS } from "../auth/sessions.ts";
import {
  checkSignInToken,
  consumeSignInToken,
  ensureUser,
  issueSignInToken,
  SIGN_IN_TOKEN_TTL_MINUTES,
} from "../auth/sign-in-tokens.ts";
import type { ApiDeps, ApiEnv } from "../context.ts";
import { ApiError } from "../errors.ts";
import { currentSession, requireSession, SESSION_COOKIE } from "../middleware.ts";
import { signInRequest, verifyQuery } from "../schemas.ts";
import { readJson, readQuery } from "../validate.ts";

export const SIGN_IN_MESSAGE =
  "If the address can receive email, a sign-in link is on its way. It expires in 15 minutes.";

export function authRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { db, keys, redis, settings } = deps;
  const app = new Hono<ApiEnv>();

  app.post("/", async (c) => {
    const { email } = await readJson(c, signInRequest);
    await countRequest(redis, keys, "sign-in-ip", signInIpSubject(deps.clientIp(c)), settings.signInPerIp);
    await countRequest(redis, keys, "sign-in-email", signInEmailSubject(email), settings.signInPerEmail);
    const token = await issueSignInToken(db, email);
    const link = `${settings.appUrl.replace(/\/$/, "")}/api/v1/auth/verify?token=${token}`;
    await deps.mailer.send(signInEmail({ to: email, link, expiresInMinutes: SIGN_IN_TOKEN_TTL_MINUTES }));
    return c.json({ message: SIGN_IN_MESSAGE });
  });

  app.get("/verify", async (c) => {
    const { token } = readQuery(c, verifyQuery);
    const email = await checkSignInToken(db, token);
    if (email === undefined) throw new ApiError("INVALID_TOKEN");
    const user = await ensureUser(db, email);
    // The starting balance is granted before the answer, so the first request after sign-in can trade. The grant
    // is once per account in the engine: a repeated sign-in changes nothing.
    const answer = await deps.engine.send(user.id, `sign-in-${crypto.randomUUID()}`, { kind: "create_account" });
    if (!answer.ok) throw new Error(`create_account refused: ${answer.error.code}`);
    if (!(await consumeSignInToken(db, token))) throw new ApiError("INVALID_TOKEN");
    setCookie(c, SESSION_COOKIE, await deps.sessions.issue(user), {
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

  app.get("/me", requireSession(deps), (c) => {
    const session = c.get("session");
    return c.json({ user: { id: session.userId, email: session.email } });
  });

  // No session needed: signing out twice, or with an expired token, still clears the cookie.
  app.delete("/logout", async (c) => {
    const session = await currentSession(deps, c);
    if (session !== undefined) await deps.sessions.revoke(session);
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: settings.secureCookies, httpOnly: true, sameSite: "Lax" });
    return c.json({ message: "Signed out." });
  });

  return app;
}
