/**
 * Sign-in, sessions and the request guards (docs/api.md), in-process against real Redis and Postgres with
 * the real engine and worker running.
 */
import { createHash, createHmac } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp } from "../app.ts";
import { SIGN_IN_MESSAGE } from "./auth.ts";

const NO_SESSION = "Sign in first: send the session cookie, or the session token as Authorization: Bearer <token>.";
const SESSION_NOT_VALID =
  "The session is not valid: it expired, was signed out or is not one this API issued. Sign in again.";
import { createResendMailer } from "../auth/mailer.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
import { Sessions, SIGNED_OUT_EVERYWHERE_MARGIN_MS } from "../auth/sessions.ts";
import { CONSUME_SIGN_IN_TOKEN } from "../auth/sign-in-tokens.ts";
import { client, type Call } from "../testing/http.ts";
import { startApiStack, TEST_JWT_SECRET, type ApiStack } from "../testing/api-stack.ts";
import { startResendRecorder, type ResendRecorder } from "../testing/resend-recorder.ts";

let stack: ApiStack;
let anon: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack({
    settings: { signInPerEmail: { limit: 5, windowMs: 60_000 }, signInPerIp: { limit: 8, windowMs: 60_000 } },
  });
  anon = client(stack.app);
});
afterAll(() => stack.close());

async function latestLink(email: string): Promise<string> {
  const mail = (await stack.deps.devMailbox!.list(50)).find((m) => m.to === email);
  if (mail === undefined) throw new Error(`no email to ${email}`);
  const url = new URL(mail.link);
  return url.pathname + url.search;
}

/** Waits out the second after signing out everywhere in which a link asked for is void too. */
async function pastSignOutMargin(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, SIGNED_OUT_EVERYWHERE_MARGIN_MS + 100));
}

/** When the newest link to `email` was issued, by the database's clock (ms). */
async function linkIssuedAtMs(email: string): Promise<number> {
  const { rows } = await stack.deps.db.query<{ ms: number }>(
    `SELECT floor(extract(epoch FROM max(expires_at) - interval '15 minutes') * 1000)::float8 AS ms
       FROM sign_in_tokens WHERE email = $1`,
    [email],
  );
  return Number(rows[0]!.ms);
}

const secret = new TextEncoder().encode(TEST_JWT_SECRET);

/**
 * Follows a fresh link to `email` with `racers` requests at once, each held before it uses up the link until every
 * one has got there, its session listed by then: a double click, two tabs, a mail scanner's GET beside its owner's.
 */
async function raceLink(email: string, racers: number, redis = stack.deps.redis) {
  await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.4" });
  const link = await latestLink(email);
  let arrived = 0;
  let allArrived!: () => void;
  const together = new Promise<void>((resolve) => (allArrived = resolve));
  const db = new Proxy(stack.deps.db, {
    get: (target, name) =>
      name === "query"
        ? async (text: string, params?: unknown[]) => {
            if (text === CONSUME_SIGN_IN_TOKEN) {
              if (++arrived === racers) allArrived();
              await together;
            }
            return target.query(text, params);
          }
        : (Reflect.get(target, name) as unknown),
  });
  const sessions = new Sessions(new TextEncoder().encode(TEST_JWT_SECRET), redis, stack.keys);
  const racing = client(createApp({ ...stack.deps, db, redis, sessions }));
  const answers = await Promise.all(Array.from({ length: racers }, () => racing.get(link)));
  const winner = answers.find((a) => a.status === 200)!;
  return {
    answers: answers.map((a) => a.status).sort(),
    token: /session=([^;]+)/.exec(winner.headers.get("set-cookie") ?? "")![1]!,
    userId: (winner.body.user as { id: string }).id,
  };
}

describe("magic-link sign-in", () => {
  it("answers the same for a new and a known address, and does the same work for both", async () => {
    await stack.signIn("known@example.com");
    const tokensBefore = Number((await stack.pg.db.query("SELECT count(*) AS n FROM sign_in_tokens")).rows[0]!.n);
    const known = await anon.post("/api/v1/auth", { email: "known@example.com" }, { "x-test-ip": "10.0.0.1" });
    const unknown = await anon.post("/api/v1/auth", { email: "nobody-yet@example.com" }, { "x-test-ip": "10.0.0.1" });
    expect(known.status).toBe(200);
    expect(unknown.status).toBe(200);
    expect(unknown.body).toEqual(known.body);
    expect(known.body).toEqual({ message: SIGN_IN_MESSAGE });
    // Same work: a token stored for each, an email sent to each, and no user created before the link is followed.
    const tokensAfter = Number((await stack.pg.db.query("SELECT count(*) AS n FROM sign_in_tokens")).rows[0]!.n);
    expect(tokensAfter - tokensBefore).toBe(2);
    expect(await latestLink("nobody-yet@example.com")).toMatch(/^\/api\/v1\/auth\/verify\?token=[A-Za-z0-9_-]{43}$/);
    expect((await stack.pg.db.query("SELECT 1 FROM users WHERE email = 'nobody-yet@example.com'")).rowCount).toBe(0);
  });

  it("stores only a hash of the token", async () => {
    await anon.post("/api/v1/auth", { email: "hash@example.com" });
    const token = new URL(`http://x${await latestLink("hash@example.com")}`).searchParams.get("token")!;
    const { rows } = await stack.pg.db.query<{ token_hash: Buffer }>(
      "SELECT token_hash FROM sign_in_tokens WHERE email = 'hash@example.com'",
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.token_hash.length).toBe(32);
    expect(rows[0]!.token_hash.toString("base64url")).not.toBe(token);
    const all = await stack.pg.db.query("SELECT * FROM sign_in_tokens");
    expect(JSON.stringify(all.rows)).not.toContain(token);
  });

  it("first sign-in creates the user, grants the balance before answering and sets the session cookie", async () => {
    await anon.post("/api/v1/auth", { email: "New.User@Example.com" });
    const verified = await anon.get(await latestLink("new.user@example.com"));
    expect(verified.status).toBe(200);
    const user = verified.body.user as { id: string; email: string };
    expect(user.email).toBe("new.user@example.com");
    expect(user.id).toMatch(/^[0-9a-f-]{36}$/);
    const cookie = verified.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^session=[^;]+;/);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Lax");
    expect(cookie).toContain("Path=/");
    expect(cookie).not.toContain("Secure"); // http in tests; https APP_URL turns it on
    const token = /session=([^;]+)/.exec(cookie)![1]!;
    // The very next request sees the grant: it was applied before verify answered.
    const withCookie = await anon.get("/api/v1/account/balance/usd", { cookie: `session=${token}` });
    expect(withCookie.body).toEqual({ asset: "USD", balance: "10000" });
    expect((await client(stack.app, token).get("/api/v1/auth/me")).body).toEqual({ user });
  });

  it("redirects to APP_REDIRECT_URL after sign-in when it is set, with the cookie", async () => {
    const redirecting = createApp({
      ...stack.deps,
      settings: { ...stack.deps.settings, appRedirectUrl: "https://app.example.com/welcome" },
    });
    await anon.post("/api/v1/auth", { email: "redirect@example.com" });
    const res = await redirecting.request(await latestLink("redirect@example.com"));
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("https://app.example.com/welcome");
    const token = /session=([^;]+)/.exec(res.headers.get("set-cookie") ?? "")?.[1];
    expect((await client(stack.app, token).get("/api/v1/auth/me")).body).toMatchObject({
      user: { email: "redirect@example.com" },
    });
  });

  it("with APP_REDIRECT_URL set, a link that cannot sign in redirects there too, the code in `error`", async () => {
    const redirectingTo = (appRedirectUrl: string) =>
      client(createApp({ ...stack.deps, settings: { ...stack.deps.settings, appRedirectUrl } }));
    const app = redirectingTo("https://app.example.com/welcome?from=email#signed-in");
    const from = { "x-test-ip": "10.0.8.1" };
    await anon.post("/api/v1/auth", { email: "failed-link@example.com" }, from);
    const link = await latestLink("failed-link@example.com");
    expect((await app.get(link, from)).status).toBe(302); // signed in: the link is used up
    const failed = (answer: Call) => [answer.status, answer.headers.get("location"), answer.headers.get("set-cookie")];
    const refused = "https://app.example.com/welcome?from=email&error=INVALID_TOKEN#signed-in";
    const used = await app.get(link, from);
    expect(failed(used)).toEqual([302, refused, null]);
    expect(used.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(failed(await app.get(`/api/v1/auth/verify?token=${"A".repeat(43)}`, from))).toEqual([302, refused, null]);
    expect(failed(await app.get("/api/v1/auth/verify?token=short", from))).toEqual([302, refused, null]);
    await anon.post("/api/v1/auth", { email: "late-link@example.com" }, from);
    const late = await latestLink("late-link@example.com");
    await stack.pg.db.query(
      "UPDATE sign_in_tokens SET expires_at = now() - interval '1 second' WHERE email = 'late-link@example.com'",
    );
    expect(failed(await app.get(late, from))).toEqual([302, refused, null]);
    expect(failed(await app.get("/api/v1/auth/verify", from))).toEqual([
      302,
      "https://app.example.com/welcome?from=email&error=INVALID_REQUEST#signed-in",
      null,
    ]);
    // Without a query of its own, the code is the query.
    const bare = await redirectingTo("https://app.example.com").get(link, from);
    expect(bare.headers.get("location")).toBe("https://app.example.com/?error=INVALID_TOKEN");
  });

  it("a link works once; a used, expired, unknown or malformed token is 401 INVALID_TOKEN", async () => {
    await anon.post("/api/v1/auth", { email: "once@example.com" });
    const link = await latestLink("once@example.com");
    expect((await anon.get(link)).status).toBe(200);
    const reused = await anon.get(link);
    expect([reused.status, reused.body.error]).toEqual([
      401,
      {
        code: "INVALID_TOKEN",
        message: "The sign-in link is invalid, used or expired; ask for a new one with POST /api/v1/auth {email}.",
      },
    ]);

    await anon.post("/api/v1/auth", { email: "late@example.com" });
    const late = await latestLink("late@example.com");
    await stack.pg.db.query(
      "UPDATE sign_in_tokens SET expires_at = now() - interval '1 second' WHERE email = 'late@example.com'",
    );
    expect((await anon.get(late)).body.error?.code).toBe("INVALID_TOKEN");
    expect((await anon.get(`/api/v1/auth/verify?token=${"A".repeat(43)}`)).status).toBe(401);
    expect((await anon.get("/api/v1/auth/verify?token=short")).status).toBe(401);
    const overlong = await anon.get(`/api/v1/auth/verify?token=${"A".repeat(5000)}`);
    expect([overlong.status, overlong.body.error?.code]).toEqual([401, "INVALID_TOKEN"]);
    const missing = await anon.get("/api/v1/auth/verify");
    expect([missing.status, missing.body.error]).toEqual([
      400,
      { code: "INVALID_REQUEST", message: "token: expected a non-empty string, received nothing." },
    ]);
    expect((await stack.pg.db.query("SELECT 1 FROM users WHERE email = 'late@example.com'")).rowCount).toBe(0);
  });

  it("using a link voids the address's other unused links; so does signing out everywhere", async () => {
    const email = "void@example.com";
    const ask = () => anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.3" });
    const links = async () =>
      (await stack.deps.devMailbox!.list(50))
        .filter((m) => m.to === email)
        .map((m) => new URL(m.link).pathname + new URL(m.link).search);
    await ask();
    await ask();
    const [newer, older] = await links();
    expect((await anon.get(older!)).status).toBe(200);
    const voided = await anon.get(newer!);
    expect([voided.status, voided.body.error?.code]).toEqual([401, "INVALID_TOKEN"]);

    const { token } = await stack.signIn(email);
    await ask();
    const [unused] = await links();
    expect((await client(stack.app, token).del("/api/v1/auth/sessions")).status).toBe(200);
    expect((await anon.get(unused!)).body.error?.code).toBe("INVALID_TOKEN");
    // Another address's link is not touched.
    await anon.post("/api/v1/auth", { email: "kept@example.com" }, { "x-test-ip": "10.9.0.3" });
    const kept = await latestLink("kept@example.com");
    await pastSignOutMargin();
    await ask();
    expect((await anon.get((await links())[0]!)).status).toBe(200);
    expect((await anon.get(kept)).status).toBe(200);
  });

  it("HEAD on a link (a link checker, a mail scanner) answers 200 and leaves the link unused", async () => {
    await anon.post("/api/v1/auth", { email: "head@example.com" }, { "x-test-ip": "10.9.0.1" });
    const link = await latestLink("head@example.com");
    for (const path of [link, `/api/v1/auth/verify?token=${"A".repeat(43)}`, "/api/v1/auth/verify"]) {
      const head = await stack.app.request(path, { method: "HEAD" });
      expect([head.status, head.headers.get("set-cookie"), await head.text()], path).toEqual([200, null, ""]);
    }
    expect((await stack.pg.db.query("SELECT 1 FROM users WHERE email = 'head@example.com'")).rowCount).toBe(0);
    expect(await anon.get(link)).toMatchObject({ status: 200, body: { user: { email: "head@example.com" } } });
  });

  it("limits sign-in emails per address and per IP with 429 and Retry-After", async () => {
    const email = "limited@example.com";
    for (let i = 0; i < 5; i++)
      expect((await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.0.0.2" })).status).toBe(200);
    const sixth = await anon.post("/api/v1/auth", { email: "LIMITED@example.com" }, { "x-test-ip": "10.0.0.3" });
    expect([sixth.status, sixth.body.error?.code]).toEqual([429, "RATE_LIMITED"]);
    expect(sixth.body.error?.message).toBe(
      "Too many requests: at most 5 sign-in emails per address per minute; try again in 60 s.",
    );
    expect(Number(sixth.headers.get("retry-after"))).toBeGreaterThan(0);
    // A +tag reaches the same inbox: it shares the budget.
    expect(
      (await anon.post("/api/v1/auth", { email: "limited+again@example.com" }, { "x-test-ip": "10.0.0.4" })).status,
    ).toBe(429);
    const sent = (await stack.deps.devMailbox!.list(50)).filter((m) => m.to === email);
    expect(sent).toHaveLength(5);

    for (let i = 0; i < 8; i++)
      expect(
        (await anon.post("/api/v1/auth", { email: `ip${i}@example.com` }, { "x-test-ip": "10.0.0.9" })).status,
      ).toBe(200);
    expect(
      (await anon.post("/api/v1/auth", { email: "ip-next@example.com" }, { "x-test-ip": "10.0.0.9" })).status,
    ).toBe(429);
    expect(
      (await anon.post("/api/v1/auth", { email: "ip-next@example.com" }, { "x-test-ip": "10.0.0.10" })).status,
    ).toBe(200);
  });

  it("stops sign-in emails at the deployment's budget with 503, tells the operator once, and sends nothing past it", async () => {
    const budget = { limit: 3, windowMs: 24 * 3_600_000 };
    const signInPerIp = { limit: 2, windowMs: 60_000 };
    const capped = await startApiStack({ settings: { signInPerDeployment: budget, signInPerIp } });
    try {
      const asker = client(capped.app);
      const ask = (i: number, ip = `10.7.0.${i}`) =>
        asker.post("/api/v1/auth", { email: `budget${i}@example.com` }, { "x-test-ip": ip });
      // A refusal for the asker's own limit is still a 429, and spends none of the budget.
      expect([(await ask(0, "10.7.1.1")).status, (await ask(1, "10.7.1.1")).status]).toEqual([200, 200]);
      expect((await ask(9, "10.7.1.1")).status).toBe(429);
      expect(capped.logLines.filter((l) => l.event === "sign_in_emails_used_up")).toEqual([]);
      expect((await ask(2)).status).toBe(200);
      const used = capped.logLines.filter((l) => l.event === "sign_in_emails_used_up");
      expect(used).toEqual([expect.objectContaining({ level: "warn", limit: 3, windowHours: 24 })]);
      const tokensBefore = (await capped.pg.db.query("SELECT count(*)::int AS n FROM sign_in_tokens")).rows[0];

      const over = await ask(3);
      expect([over.status, over.body.error?.code]).toEqual([503, "UNAVAILABLE"]);
      expect(over.body.error?.message).toBe(
        "Sign-in emails are paused: this service sends at most 3 per 24 hours, and has sent them; try again in 86400 s.",
      );
      expect(over.headers.get("retry-after")).toBe("86400");
      expect((await capped.deps.devMailbox!.list(50)).map((m) => m.to).sort()).toEqual([
        "budget0@example.com",
        "budget1@example.com",
        "budget2@example.com",
      ]);
      expect((await capped.pg.db.query("SELECT count(*)::int AS n FROM sign_in_tokens")).rows[0]).toEqual(tokensBefore);
      // Retry-After is what is left of the window; the warning is not repeated for each refusal.
      await capped.redis.pexpire(capped.keys.rateLimitKey("sign-in-budget", "deployment"), 12_300);
      expect((await ask(4)).headers.get("retry-after")).toBe("13");
      expect(capped.logLines.filter((l) => l.event === "sign_in_emails_used_up")).toHaveLength(1);
    } finally {
      await capped.close();
    }
  });

  it("counts an address under an HMAC of its inbox: no key names it, nor its plain hash", async () => {
    const from = { "x-test-ip": "10.0.0.5" };
    expect((await anon.post("/api/v1/auth", { email: "Keyed.Limit@Example.com" }, from)).status).toBe(200);
    expect((await anon.post("/api/v1/auth", { email: "keyed.limit+2@example.com" }, from)).status).toBe(200);
    const inbox = "keyed.limit@example.com";
    const keyed = createHmac("sha256", TEST_JWT_SECRET).update(`sign-in-email\0${inbox}`).digest("hex");
    const plain = createHash("sha256").update(inbox).digest("hex");
    // Both spellings reach one inbox: one counter, at 2.
    expect(await stack.redis.get(stack.keys.rateLimitKey("sign-in-email", keyed))).toBe("2");
    const counters = await stack.redis.keys(stack.keys.rateLimitKey("*", "*"));
    expect(counters.length).toBeGreaterThan(1);
    expect(counters.filter((key) => key.includes(plain) || /keyed|limit@|example/i.test(key))).toEqual([]);
  });

  it("serves the dev mailbox only to this machine: its links sign anyone in", async () => {
    expect((await anon.get("/api/v1/dev/mailbox", { "x-test-ip": "10.1.2.3" })).status).toBe(404);
    expect((await anon.get("/api/v1/dev/mailbox", { "x-test-ip": "::1" })).status).toBe(200);
    expect((await anon.get("/api/v1/dev/mailbox", { "x-test-ip": "::ffff:127.0.0.1" })).status).toBe(200);
    // A proxy on this machine connects from loopback on behalf of anyone: what it passes on is refused.
    for (const header of ["x-forwarded-for", "forwarded", "x-real-ip", "via"])
      expect((await anon.get("/api/v1/dev/mailbox", { [header]: "203.0.113.7" })).status, header).toBe(404);
  });

  it("refuses a malformed email with a 400 naming the field", async () => {
    const res = await anon.post("/api/v1/auth", { email: "not-an-email" });
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    expect(res.body.error?.message).toContain("email");
    for (const email of ["+@example.com", "a@example-.com", `${"x".repeat(65)}@example.com`]) {
      const refused = await anon.post("/api/v1/auth", { email });
      expect([refused.status, refused.body.error?.code], email).toEqual([400, "INVALID_REQUEST"]);
      expect(refused.body.error?.message, email).toMatch(/^email: expected an email address, received "/);
    }
  });
});

describe("the sign-in email provider failing", () => {
  let recorder: ResendRecorder;
  beforeAll(async () => {
    recorder = await startResendRecorder();
  });
  afterAll(() => recorder.close());

  /** The app with the real Resend client pointed at the recorder, logging where the stack's log lines go. */
  const withResend = (apiKey = "re_test_0123456789abcdef") =>
    client(
      createApp({
        ...stack.deps,
        mailer: createResendMailer({
          apiKey,
          baseUrl: recorder.baseUrl,
          from: "Paper Broker <login@paper-broker.test>",
          log: stack.deps.log,
          timeoutMs: 200,
        }),
      }),
    );
  let n = 0;
  /** A sign-in request from an address and IP of its own, so that no limit is reached. */
  const ask = (api: ReturnType<typeof client>) => {
    n += 1;
    return api.post("/api/v1/auth", { email: `provider${n}@example.com` }, { "x-test-ip": `10.7.0.${n}` });
  };
  const logged = (event: string) => stack.logLines.filter((l) => l.event === event);

  it("an outage, a limit or no answer in time is 503 UNAVAILABLE, not 500, with Resend's wait or UNAVAILABLE's", async () => {
    const api = withResend();
    const failures: [number, unknown, Record<string, string>, string][] = [
      [500, { statusCode: 500, name: "application_error", message: "An unexpected error occurred." }, {}, "5"],
      [503, { statusCode: 503, name: "service_unavailable", message: "API is temporarily unavailable" }, {}, "5"],
      [429, { statusCode: 429, name: "rate_limit_exceeded", message: "Too many requests." }, {}, "5"],
      // Resend's rate limit says when: passed on, at least 1 and at most a day.
      [
        429,
        { statusCode: 429, name: "rate_limit_exceeded", message: "Too many requests." },
        { "retry-after": "7" },
        "7",
      ],
      [429, { statusCode: 429, name: "rate_limit_exceeded", message: "Too many." }, { "retry-after": "0" }, "1"],
      [503, { statusCode: 503, name: "service_unavailable", message: "Down." }, { "retry-after": "999999" }, "86400"],
      // An HTTP date is not taken: UNAVAILABLE's wait instead.
      [
        503,
        { statusCode: 503, name: "service_unavailable", message: "Down." },
        { "retry-after": "Wed, 21 Oct 2099 07:28:00 GMT" },
        "5",
      ],
      // A quota used up is not over in seconds, whatever the header says.
      [429, { statusCode: 429, name: "daily_quota_exceeded", message: "Daily quota." }, {}, "300"],
      [429, { statusCode: 429, name: "monthly_quota_exceeded", message: "Quota." }, { "retry-after": "1" }, "300"],
      [
        429,
        { statusCode: 429, name: "daily_quota_exceeded", message: "Daily quota." },
        { "retry-after": "3600" },
        "3600",
      ],
    ];
    for (const [status, body, headers, retryAfter] of failures) {
      recorder.failNext(status, body, headers);
      const res = await ask(api);
      expect([res.status, res.body.error?.code, res.headers.get("retry-after")], JSON.stringify(body)).toEqual([
        503,
        "UNAVAILABLE",
        retryAfter,
      ]);
    }
    recorder.stallNext();
    const stalled = await ask(api);
    expect([stalled.status, stalled.body.error?.code, stalled.headers.get("retry-after")]).toEqual([
      503,
      "UNAVAILABLE",
      "5",
    ]);
    expect(logged("backend_unavailable").some((l) => String(l.error).includes("no answer within 200 ms"))).toBe(true);
  });

  it("only an email that surely did not go out gives its unit of the deployment's budget back; a refusal spends none", async () => {
    const capped = await startApiStack({ settings: { signInPerDeployment: { limit: 3, windowMs: 24 * 3_600_000 } } });
    try {
      const api = client(
        createApp({
          ...capped.deps,
          mailer: createResendMailer({
            apiKey: "re_test_0123456789abcdef",
            baseUrl: recorder.baseUrl,
            from: "Paper Broker <login@paper-broker.test>",
            log: capped.deps.log,
            timeoutMs: 200,
          }),
        }),
      );
      const budgetKey = capped.keys.rateLimitKey("sign-in-budget", "deployment");
      const spent = () => capped.redis.hget(budgetKey, "n");
      const usedUp = () => capped.logLines.filter((l) => l.event === "sign_in_emails_used_up");
      const down = { statusCode: 503, name: "service_unavailable", message: "Down." };
      const sentBefore = recorder.sent.length;
      // Resend answered that it did not take it: given back.
      recorder.failNext(503, down);
      expect((await ask(api)).status).toBe(503);
      expect(await spent()).toBe("0");
      expect((await ask(api)).status).toBe(200);
      // No answer in time: Resend may have it, so it stays spent.
      recorder.stallNext();
      expect((await ask(api)).status).toBe(503);
      expect(await spent()).toBe("2");

      // An address Resend refuses gets the usual 200, and no email: given back.
      recorder.failNext(422, { statusCode: 422, name: "validation_error", message: "Invalid `to` field." });
      expect((await ask(api)).status).toBe(200);
      expect(await spent()).toBe("2");
      // The last email failing is not the budget used up: no warning, and it can be spent again.
      recorder.failNext(503, down);
      expect((await ask(api)).status).toBe(503);
      expect(usedUp()).toEqual([]);
      expect((await ask(api)).status).toBe(200);
      expect(recorder.sent.length - sentBefore).toBe(2);
      expect(usedUp()).toHaveLength(1);
      for (let i = 0; i < 3; i += 1) {
        const over = await ask(api);
        expect([over.status, over.body.error?.message?.startsWith("Sign-in emails are paused")]).toEqual([503, true]);
      }
      // Refusals spent nothing, and every unit was settled: only the count is left.
      expect(await capped.redis.hgetall(budgetKey)).toEqual({ n: "3" });

      // A new window. A 500 may come after Resend took the email: kept. A refusal of our request (our bug: 500)
      // says it was not taken: given back.
      await capped.redis.del(budgetKey);
      recorder.failNext(500, { statusCode: 500, name: "application_error", message: "An unexpected error occurred." });
      expect((await ask(api)).status).toBe(503);
      expect(await spent()).toBe("1");
      recorder.failNext(451, { statusCode: 451, name: "security_error", message: "Security check failed." });
      expect((await ask(api)).status).toBe(500);
      expect(await spent()).toBe("1");
      // Nor with the connection lost after Resend took it: it went out, and stays spent.
      const tookBefore = recorder.sent.length;
      recorder.dropNext();
      expect((await ask(api)).status).toBe(503);
      expect([recorder.sent.length - tookBefore, await spent()]).toEqual([1, "2"]);
      // The last unit's email with no answer in time may have gone out: the budget is used up, and the operator told.
      recorder.stallNext();
      expect((await ask(api)).status).toBe(503);
      expect([await spent(), usedUp().length]).toEqual(["3", 2]);
    } finally {
      await capped.close();
    }
  });

  it("a sent email whose unit Redis would not settle still answers 200, and the operator is told", async () => {
    const settleRefused = new Error("READONLY You can't write against a read only replica.");
    const redis: ApiRedis = {
      ...stack.deps.redis,
      eval: (script, keys, args) =>
        script.includes("HDEL") ? Promise.reject(settleRefused) : stack.deps.redis.eval(script, keys, args),
    };
    const api = client(createApp({ ...stack.deps, redis }));
    const before = logged("sign_in_budget_settle_failed").length;
    expect((await ask(api)).status).toBe(200);
    expect(logged("sign_in_budget_settle_failed").slice(before)).toEqual([
      expect.objectContaining({ level: "warn", refund: false, error: String(settleRefused) }),
    ]);
  });

  it("our key refused is 503 UNAVAILABLE for minutes, with an error log naming RESEND_API_KEY", async () => {
    const before = logged("email_setting_refused").length;
    const res = await ask(withResend("sk_live_not_resend")); // the recorder answers 403 invalid_api_key
    expect([res.status, res.body.error?.code, res.headers.get("retry-after")]).toEqual([503, "UNAVAILABLE", "300"]);
    expect(logged("email_setting_refused").slice(before)).toEqual([
      expect.objectContaining({ level: "error", setting: "RESEND_API_KEY" }),
    ]);
  });

  it("an address Resend refuses gets the answer any address gets, and a warning in the log", async () => {
    const api = withResend();
    const sent = await ask(api);
    // 400 is the status Resend's errors page documents for a field it refuses; 422 is what it has also answered.
    for (const statusCode of [422, 400]) {
      const before = logged("email_address_refused").length;
      recorder.failNext(statusCode, { statusCode, name: "validation_error", message: "Invalid `to` field." });
      const refused = await ask(api);
      expect([refused.status, refused.body], String(statusCode)).toEqual([sent.status, sent.body]);
      expect(refused.body).toEqual({ message: SIGN_IN_MESSAGE });
      expect(logged("email_address_refused").slice(before)).toEqual([
        expect.objectContaining({ level: "warn", provider: "resend" }),
      ]);
    }
  });
});

describe("sessions", () => {
  it("accepts the token as a cookie or a Bearer header, and nothing else", async () => {
    const { token, user } = await stack.signIn("carol@example.com");
    expect((await anon.get("/api/v1/auth/me", { cookie: `session=${token}` })).body).toEqual({ user });
    expect((await client(stack.app, token).get("/api/v1/auth/me")).body).toEqual({ user });
    const none = await anon.get("/api/v1/auth/me");
    expect([none.status, none.body.error]).toEqual([401, { code: "UNAUTHENTICATED", message: NO_SESSION }]);
    const basic = await anon.get("/api/v1/auth/me", { authorization: `Basic ${token}` });
    expect([basic.status, basic.body.error]).toEqual([
      401,
      { code: "UNAUTHENTICATED", message: "Authorization: expected Bearer <session token>; no other scheme is taken." },
    ]);
    // The scheme in any case; a Bearer header whose token is empty or malformed carries a session that does not hold.
    expect((await anon.get("/api/v1/auth/me", { authorization: `bearer ${token}` })).body).toEqual({ user });
    for (const authorization of ["Bearer", "Bearer ", "Bearer a b", "BEARER x%y", `Bearer ${token}!`]) {
      const res = await anon.get("/api/v1/auth/me", { authorization });
      expect([res.status, res.body.error], authorization).toEqual([
        401,
        { code: "UNAUTHENTICATED", message: SESSION_NOT_VALID },
      ]);
    }
  });

  it("with Secure cookies, names it __Host-session (host-only) and takes no session cookie under another name", async () => {
    const secure = client(createApp({ ...stack.deps, settings: { ...stack.deps.settings, secureCookies: true } }));
    const from = { "x-test-ip": "10.9.0.4" };
    await anon.post("/api/v1/auth", { email: "host-only@example.com" }, from);
    const verified = await secure.get(await latestLink("host-only@example.com"), from);
    expect(verified.status).toBe(200);
    const cookie = verified.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^__Host-session=[^;]+;/);
    expect(cookie.split(/;\s*/).slice(1)).toEqual(
      expect.arrayContaining(["Secure", "Path=/", "HttpOnly", "SameSite=Lax"]) as unknown,
    );
    expect(cookie).not.toMatch(/domain=/i);
    const token = /^__Host-session=([^;]+)/.exec(cookie)![1]!;
    expect((await secure.get("/api/v1/auth/me", { cookie: `__Host-session=${token}` })).status).toBe(200);
    // What a sibling subdomain (or a man in the middle on its http) can plant is no session here.
    const planted = await secure.get("/api/v1/auth/me", { cookie: `session=${token}` });
    expect([planted.status, planted.body.error]).toEqual([401, { code: "UNAUTHENTICATED", message: NO_SESSION }]);
    // Without Secure cookies (local http) the name is `session`, and only that one is read.
    expect((await anon.get("/api/v1/auth/me", { cookie: `__Host-session=${token}` })).status).toBe(401);
    // Signing out clears the __Host- cookie and revokes its session.
    const out = await secure.del("/api/v1/auth/logout", { cookie: `__Host-session=${token}` });
    expect(out.headers.get("set-cookie")).toMatch(/^__Host-session=;.*Max-Age=0.*Secure/);
    expect((await client(stack.app, token).get("/api/v1/auth/me")).status).toBe(401);
  });

  it("with Secure cookies, signing out also ends and clears a `session` cookie set before the name changed", async () => {
    const secure = client(createApp({ ...stack.deps, settings: { ...stack.deps.settings, secureCookies: true } }));
    const { token } = await stack.signIn("renamed@example.com"); // a token a `session` cookie held before
    const out = await secure.del("/api/v1/auth/logout", { cookie: `session=${token}` });
    expect([out.status, out.body]).toEqual([200, { message: "Signed out." }]);
    const cleared = out.headers.getSetCookie();
    expect(cleared).toEqual([
      expect.stringMatching(/^__Host-session=;.*Max-Age=0/) as unknown,
      expect.stringMatching(/^session=;.*Max-Age=0/) as unknown,
    ]);
    // Its token no longer holds anywhere, as a Bearer header included
    const me = await client(stack.app, token).get("/api/v1/auth/me");
    expect([me.status, me.body.error?.message]).toEqual([401, SESSION_NOT_VALID]);
    // Over http the name is `session`: nothing else to clear
    const { token: other } = await stack.signIn("plain@example.com");
    const plain = await anon.del("/api/v1/auth/logout", { cookie: `session=${other}` });
    expect(plain.headers.getSetCookie()).toEqual([expect.stringMatching(/^session=;.*Max-Age=0/) as unknown]);
  });

  it("refuses forged, alg:none, tampered, expired and wrong-issuer tokens", async () => {
    const { user, token } = await stack.signIn("dave@example.com");
    const claims = { email: user.email };
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(user.id)
      .setJti("x1")
      .setIssuer("paper-broker")
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode("another-secret-that-is-long-enough-000000"));
    const none = new UnsecuredJWT(claims)
      .setSubject(user.id)
      .setJti("x2")
      .setIssuer("paper-broker")
      .setIssuedAt()
      .setExpirationTime("1h")
      .encode();
    const expired = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(user.id)
      .setJti("x3")
      .setIssuer("paper-broker")
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(secret);
    const wrongIssuer = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(user.id)
      .setJti("x4")
      .setIssuer("someone-else")
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(secret);
    const [head, payload, signature] = token.split(".");
    const other = JSON.parse(Buffer.from(payload!, "base64url").toString()) as Record<string, unknown>;
    const tampered = `${head}.${Buffer.from(JSON.stringify({ ...other, sub: "00000000-0000-0000-0000-000000000000" })).toString("base64url")}.${signature}`;
    for (const bad of [forged, none, expired, wrongIssuer, tampered, "garbage", `${token}x`]) {
      const res = await client(stack.app, bad).get("/api/v1/account/balance");
      expect(res.status, bad).toBe(401);
      // Not "sign in first": a session came, and the client should learn that it no longer holds.
      expect(res.body.error, bad).toEqual({ code: "UNAUTHENTICATED", message: SESSION_NOT_VALID });
    }
    expect((await client(stack.app, token).get("/api/v1/account/balance")).status).toBe(200);
  });

  it("logout clears the cookie and revokes the token everywhere; other sessions keep working", async () => {
    const first = await stack.signIn("erin@example.com");
    const second = await stack.signIn("erin@example.com");
    const out = await client(stack.app, first.token).del("/api/v1/auth/logout");
    expect(out.status).toBe(200);
    expect(out.headers.get("set-cookie")).toMatch(/session=;.*Max-Age=0/);
    const me = await client(stack.app, first.token).get("/api/v1/auth/me");
    expect([me.status, me.body.error?.message]).toEqual([401, SESSION_NOT_VALID]);
    expect((await anon.get("/api/v1/auth/me", { cookie: `session=${first.token}` })).status).toBe(401);
    // Trade POSTs check revocation inside their admission script: refused there too, before anything is logged.
    const inputBefore = await stack.redis.xlen(stack.keys.input);
    const order = await client(stack.app, first.token).post("/api/v1/trade/order", {
      asset: "ETH",
      side: "buy",
      quantity: "0.1",
    });
    expect([order.status, order.body.error]).toEqual([401, { code: "UNAUTHENTICATED", message: SESSION_NOT_VALID }]);
    expect(await stack.redis.xlen(stack.keys.input)).toBe(inputBefore);
    // Modify and close look up the trade's asset for its decimals first: a signed-out session learns nothing there
    // about which trades are open (an open one would be a 400 for too many decimals, an unknown one a 404).
    await stack.redis.hset(stack.keys.openTradesKey(first.user.id), "T0-77", JSON.stringify({ asset: "ETH" }));
    const probes = [
      ["/api/v1/trade/modify", { tradeId: "T0-77", stopLoss: "1.123456789" }],
      ["/api/v1/trade/close", { tradeId: "T0-77", quantity: "0.123456789" }],
    ] as const;
    for (const [path, body] of probes) {
      const probe = await client(stack.app, first.token).post(path, body);
      expect([probe.status, probe.body.error], path).toEqual([
        401,
        { code: "UNAUTHENTICATED", message: SESSION_NOT_VALID },
      ]);
      const live = await client(stack.app, second.token).post(path, body);
      expect([live.status, live.body.error?.code], path).toEqual([400, "INVALID_AMOUNT"]);
    }
    expect(await stack.redis.xlen(stack.keys.input)).toBe(inputBefore);
    expect((await client(stack.app, second.token).get("/api/v1/auth/me")).status).toBe(200);
    expect((await anon.del("/api/v1/auth/logout")).status).toBe(200); // signed out already: still fine
  });

  it("logout revokes the cookie's session it clears whatever Authorization holds, and the header's too", async () => {
    const me = (token: string) => anon.get("/api/v1/auth/me", { authorization: `Bearer ${token}` });
    // Another scheme (a staging proxy's Basic credentials) beside the cookie.
    const behindProxy = await stack.signIn("proxied@example.com");
    const out = await anon.del("/api/v1/auth/logout", {
      cookie: `session=${behindProxy.token}`,
      authorization: "Basic Zm9vOmJhcg==",
    });
    expect([out.status, out.body]).toEqual([200, { message: "Signed out." }]);
    expect(out.headers.get("set-cookie")).toMatch(/session=;.*Max-Age=0/);
    expect((await me(behindProxy.token)).status).toBe(401);

    // A Bearer token signed out already beside the live cookie.
    const stale = await stack.signIn("stale@example.com");
    expect((await client(stack.app, stale.token).del("/api/v1/auth/logout")).status).toBe(200);
    const live = await stack.signIn("stale@example.com");
    await anon.del("/api/v1/auth/logout", { cookie: `session=${live.token}`, authorization: `Bearer ${stale.token}` });
    expect((await me(live.token)).status).toBe(401);

    // Two live sessions, one in each: both end; the user's third keeps working.
    const [header, cookie, other] = [
      await stack.signIn("both@example.com"),
      await stack.signIn("both@example.com"),
      await stack.signIn("both@example.com"),
    ];
    await anon.del("/api/v1/auth/logout", {
      cookie: `session=${cookie.token}`,
      authorization: `Bearer ${header.token}`,
    });
    expect([(await me(header.token)).status, (await me(cookie.token)).status]).toEqual([401, 401]);
    expect((await me(other.token)).status).toBe(200);
  });

  it("signing out everywhere counts only live sessions: not one signed out already, nor one expired", async () => {
    const first = await stack.signIn("fay@example.com");
    expect((await client(stack.app, first.token).del("/api/v1/auth/logout")).status).toBe(200);
    const second = await stack.signIn("fay@example.com");
    // Listed after the sign-in, which drops the expired from the list.
    await stack.redis.zadd(stack.keys.sessionsKey(second.user.id), Math.floor(Date.now() / 1000) - 10, "expired-one");
    const out = await client(stack.app, second.token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
    expect((await client(stack.app, second.token).get("/api/v1/auth/me")).status).toBe(401);
  });

  it("signing out everywhere needs no Postgres: while it is down, every session ends and older links are void", async () => {
    const email = "pg-down-everywhere@example.com";
    const stolen = await stack.signIn(email);
    const mine = await stack.signIn(email);
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.5" });
    const unused = await latestLink(email);
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const db = new Proxy(stack.deps.db, {
      get: (target, name) =>
        name === "query" ? () => Promise.reject(refused) : (Reflect.get(target, name) as unknown),
    });
    const out = await client(createApp({ ...stack.deps, db }), mine.token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 2 sessions." }]);
    expect((await client(stack.app, stolen.token).get("/api/v1/auth/me")).status).toBe(401);
    // Postgres back: the link asked for before signs in no session; one asked for after does.
    const old = await anon.get(unused);
    expect([old.status, old.body.error?.code, old.headers.get("set-cookie")]).toEqual([401, "INVALID_TOKEN", null]);
    expect(await stack.redis.zcard(stack.keys.sessionsKey(mine.user.id))).toBe(2);
    await pastSignOutMargin();
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.5" });
    expect((await anon.get(await latestLink(email))).status).toBe(200);
  });

  it("a link asked for just before signing out everywhere is void while the database's clock is ahead by under a second", async () => {
    const email = "skewed-everywhere@example.com";
    const { token } = await stack.signIn(email);
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.7" });
    const link = await latestLink(email);
    // The API's clock reads 600 ms before the database's stamp on the link: the call comes after the link, by the
    // database's clock, though its own time is earlier.
    const now = vi.spyOn(Date, "now").mockReturnValue((await linkIssuedAtMs(email)) - 600);
    const out = await client(stack.app, token)
      .del("/api/v1/auth/sessions")
      .finally(() => now.mockRestore());
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
    const followed = await anon.get(link);
    expect([followed.status, followed.body.error?.code, followed.headers.get("set-cookie")]).toEqual([
      401,
      "INVALID_TOKEN",
      null,
    ]);
    // Past the margin, a link signs in: one asked for well after signing out everywhere.
    await pastSignOutMargin();
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.7" });
    expect((await anon.get(await latestLink(email))).status).toBe(200);
  });

  it("a link signing out everywhere voided is 401 at once while the engine is down, not a 503 to retry", async () => {
    const email = "engine-down-everywhere@example.com";
    const { token } = await stack.signIn(email);
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.8" });
    const link = await latestLink(email);
    expect((await client(stack.app, token).del("/api/v1/auth/sessions")).status).toBe(200);
    await stack.stopEngine();
    try {
      const followed = await anon.get(link);
      expect([followed.status, followed.body.error?.code, followed.headers.get("set-cookie")]).toEqual([
        401,
        "INVALID_TOKEN",
        null,
      ]);
    } finally {
      await stack.startEngine();
    }
  });

  it("a link checked before signing out everywhere, its session listed after, signs in no session", async () => {
    const email = "crossed-everywhere@example.com";
    const { token } = await stack.signIn(email);
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": "10.9.0.6" });
    const link = await latestLink(email);
    // The link's sign-in is held just before it lists its session until signing out everywhere has answered.
    let listing!: () => void;
    const reachedListing = new Promise<void>((resolve) => (listing = resolve));
    let signedOut!: () => void;
    const everywhereDone = new Promise<void>((resolve) => (signedOut = resolve));
    const redis = new Proxy(stack.deps.redis, {
      get: (target, name) =>
        name === "eval"
          ? async (script: string, keys: readonly string[], args: readonly string[]) => {
              if (keys[1]?.endsWith(":signed-out-everywhere") && script.includes("ZADD")) {
                listing();
                await everywhereDone;
              }
              return target.eval(script, keys, args);
            }
          : (Reflect.get(target, name) as unknown),
    });
    const sessions = new Sessions(new TextEncoder().encode(TEST_JWT_SECRET), redis, stack.keys);
    const following = client(createApp({ ...stack.deps, sessions })).get(link);
    await reachedListing;
    const out = await client(stack.app, token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
    signedOut();
    const followed = await following;
    expect([followed.status, followed.body.error?.code, followed.headers.get("set-cookie")]).toEqual([
      401,
      "INVALID_TOKEN",
      null,
    ]);
  });

  it("a link followed by several requests at once leaves one session listed: signing out all counts it alone", async () => {
    const { answers, userId, token } = await raceLink("raced@example.com", 4);
    expect(answers).toEqual([200, 401, 401, 401]);
    expect(await stack.redis.zcard(stack.keys.sessionsKey(userId))).toBe(1);
    const out = await client(stack.app, token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);

    // Redis failing to take a loser's session off the list: still the loser's 401, and a warning.
    const before = stack.logLines.filter((l) => l.event === "session_unlist_failed").length;
    const redis = new Proxy(stack.deps.redis, {
      get: (target, name) =>
        name === "eval"
          ? (script: string, keys: readonly string[], args: readonly string[]) =>
              script.includes("ZREM'")
                ? Promise.reject(new Error("Connection is closed."))
                : target.eval(script, keys, args)
          : (Reflect.get(target, name) as unknown),
    });
    const failing = await raceLink("raced-blip@example.com", 2, redis);
    expect(failing.answers).toEqual([200, 401]);
    expect(stack.logLines.filter((l) => l.event === "session_unlist_failed").slice(before)).toEqual([
      expect.objectContaining({ level: "warn", userId: failing.userId, error: "Error: Connection is closed." }),
    ]);
  });

  it("a session Redis cannot list is not issued (503), the link still works, signing out all ends it", async () => {
    await anon.post("/api/v1/auth", { email: "blip@example.com" }, { "x-test-ip": "10.9.0.2" });
    const link = await latestLink("blip@example.com");
    let failures = 1; // the next listing of a session fails, as in a Redis blip
    const redis = new Proxy(stack.deps.redis, {
      get: (target, name) =>
        name === "eval"
          ? (script: string, keys: readonly string[], args: readonly string[]) =>
              keys[0]?.endsWith(":sessions") && failures-- > 0
                ? Promise.reject(new Error("Connection is closed."))
                : target.eval(script, keys, args)
          : (Reflect.get(target, name) as unknown),
    });
    const blip = client(
      createApp({
        ...stack.deps,
        sessions: new Sessions(new TextEncoder().encode(TEST_JWT_SECRET), redis, stack.keys),
      }),
    );
    const failed = await blip.get(link);
    expect([failed.status, failed.body.error?.code, failed.headers.get("set-cookie")]).toEqual([
      503,
      "UNAVAILABLE",
      null,
    ]);
    const signedIn = await blip.get(link);
    expect(signedIn.status).toBe(200);
    const first = /session=([^;]+)/.exec(signedIn.headers.get("set-cookie") ?? "")![1]!;
    const second = await stack.signIn("blip@example.com");
    const out = await client(stack.app, second.token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 2 sessions." }]);
    expect((await client(stack.app, first).get("/api/v1/auth/me")).status).toBe(401);
  });

  /**
   * An app whose Postgres loses its answer to using up a link: `commit` says whether the statement ran before the
   * answer was lost (the reply dropped after the commit) or not (the request never got there). `lookupFails` fails
   * the query that then asks whether the link was used, as a Postgres still out of reach would.
   */
  function losingConsume(options: { commit: boolean; lookupFails?: boolean; onConsume?: () => void }) {
    const db = new Proxy(stack.deps.db, {
      get: (target, name) =>
        name === "query"
          ? async (text: string, params?: unknown[]) => {
              if (text === CONSUME_SIGN_IN_TOKEN) {
                options.onConsume?.();
                if (options.commit) await target.query(text, params);
                const timeout = new Error("The operation was aborted due to timeout");
                timeout.name = "TimeoutError"; // what the per-query AbortSignal throws over Neon HTTP
                throw timeout;
              }
              if (options.lookupFails === true && text.includes("session_id = $2 FOR UPDATE"))
                throw new Error("Connection terminated unexpectedly");
              return target.query(text, params);
            }
          : (Reflect.get(target, name) as unknown),
    });
    return db;
  }

  async function freshLink(email: string, ip: string) {
    await anon.post("/api/v1/auth", { email }, { "x-test-ip": ip });
    return latestLink(email);
  }

  it("a link used up whose answer was lost signs in: the row says this request used it, so no dead-end 503", async () => {
    const link = await freshLink("lost-answer@example.com", "10.77.0.1");
    const lossy = client(createApp({ ...stack.deps, db: losingConsume({ commit: true }) }));
    const first = await lossy.get(link, { "x-test-ip": "10.77.0.2" });
    expect(first.status).toBe(200);
    const token = /session=([^;]+)/.exec(first.headers.get("set-cookie") ?? "")![1]!;
    expect((await client(stack.app, token).get("/api/v1/auth/me")).status).toBe(200);
    // Still once: following it again is refused, and no other request gets a session from it.
    const again = await anon.get(link, { "x-test-ip": "10.77.0.3" });
    expect([again.status, again.body.error?.code]).toEqual([401, "INVALID_TOKEN"]);
    const out = await client(stack.app, token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
  });

  it("a link whose use got no answer and did not happen answers 503, keeps working, and lists no session", async () => {
    const link = await freshLink("lost-request@example.com", "10.77.0.4");
    const lossy = client(createApp({ ...stack.deps, db: losingConsume({ commit: false }) }));
    const failed = await lossy.get(link, { "x-test-ip": "10.77.0.5" });
    expect([failed.status, failed.body.error?.code, failed.headers.get("set-cookie")]).toEqual([
      503,
      "UNAVAILABLE",
      null,
    ]);
    const retry = await anon.get(link, { "x-test-ip": "10.77.0.6" });
    expect(retry.status).toBe(200);
    const token = /session=([^;]+)/.exec(retry.headers.get("set-cookie") ?? "")![1]!;
    const out = await client(stack.app, token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
  });

  it("when asking whether the link was used fails too, or the function has no time left for it, the 503 stands", async () => {
    const before = stack.logLines.filter((l) => l.event === "sign_in_link_use_unknown").length;
    const link = await freshLink("lost-twice@example.com", "10.77.0.7");
    const lossy = client(createApp({ ...stack.deps, db: losingConsume({ commit: true, lookupFails: true }) }));
    const failed = await lossy.get(link, { "x-test-ip": "10.77.0.8" });
    expect([failed.status, failed.body.error?.code, failed.headers.get("set-cookie")]).toEqual([
      503,
      "UNAVAILABLE",
      null,
    ]);
    expect(stack.logLines.filter((l) => l.event === "sign_in_link_use_unknown").slice(before)).toEqual([
      expect.objectContaining({ level: "warn", error: "Error: Connection terminated unexpectedly" }),
    ]);
    // The link was used up by the lost statement: a retry is refused, as docs/api.md says.
    expect((await anon.get(link, { "x-test-ip": "10.77.0.9" })).status).toBe(401);

    // A Lambda with under a query's time left after the lost answer does not ask.
    let timeLeft = 60_000;
    const late = await freshLink("lost-late@example.com", "10.77.0.10");
    const hurried = client(
      createApp({
        ...stack.deps,
        db: losingConsume({ commit: true, onConsume: () => (timeLeft = 1_000) }),
        timeLeftMs: () => timeLeft,
      }),
    );
    expect((await hurried.get(late, { "x-test-ip": "10.77.0.11" })).status).toBe(503);
    const signedIn = await stack.signIn("lost-late@example.com");
    const out = await client(stack.app, signedIn.token).del("/api/v1/auth/sessions");
    // The session of the 503 was taken off the list: it is not counted.
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
  });
});

describe("request guards", () => {
  it("refuses state-changing requests from another origin, allows the app's own and the allow-list", async () => {
    const { token } = await stack.signIn("frank@example.com");
    const frank = client(stack.app, token);
    const evil = await frank.post(
      "/api/v1/trade/order",
      { asset: "ETH", side: "buy", quantity: "1" },
      { origin: "https://evil.example" },
    );
    expect([evil.status, evil.body.error?.code]).toEqual([403, "FORBIDDEN_ORIGIN"]);
    expect((await frank.del("/api/v1/auth/logout", { origin: "https://evil.example" })).status).toBe(403);
    expect((await frank.get("/api/v1/auth/me")).status).toBe(200); // the refused logout revoked nothing
    expect(
      (await anon.post("/api/v1/auth", { email: "o@example.com" }, { origin: "http://localhost:3000" })).status,
    ).toBe(200);
    expect(
      (await anon.post("/api/v1/auth", { email: "o@example.com" }, { origin: "https://app.example.com" })).status,
    ).toBe(200);
    const preflight = await stack.app.request("/api/v1/trade/create", {
      method: "OPTIONS",
      headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
    });
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(preflight.headers.get("access-control-allow-credentials")).toBe("true");
    const foreign = await stack.app.request("/api/v1/trade/create", {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("in development on localhost, takes the same port's loopback origins; deployed, only APP_URL's", async () => {
    // The stack is npm start's setup: APP_URL http://localhost:3000, no email provider (the dev mailbox is on).
    const from = (origin: string, app = stack.app) =>
      client(app).post(
        "/api/v1/auth",
        { email: `loopback-${crypto.randomUUID()}@example.com` },
        { origin, "x-test-ip": "10.0.9.1" },
      );
    for (const origin of ["http://127.0.0.1:3000", "http://[::1]:3000", "http://localhost:3000"])
      expect([origin, (await from(origin)).status]).toEqual([origin, 200]);
    for (const origin of [
      "http://127.0.0.1:3001",
      "https://127.0.0.1:3000",
      "http://127.0.0.1",
      "http://10.0.0.1:3000",
    ])
      expect([origin, (await from(origin)).status]).toEqual([origin, 403]);
    // The document names the address the page was reached at: "Try it out" may call only the page's origin.
    const servers = async (app: typeof stack.app, host: string) =>
      (await client(app).get("/api/v1/openapi.json", { host })).body.servers;
    expect(await servers(stack.app, "127.0.0.1:3000")).toEqual([{ url: "http://127.0.0.1:3000" }]);
    expect(await servers(stack.app, "[::1]:3000")).toEqual([{ url: "http://[::1]:3000" }]);
    expect(await servers(stack.app, "localhost:3000")).toEqual([{ url: "http://localhost:3000" }]);

    // Deployed (an email provider: no dev mailbox), and in development on a name that is not a loopback one: strict.
    const deployed = createApp({ ...stack.deps, devMailbox: undefined });
    const named = createApp({ ...stack.deps, settings: { ...stack.deps.settings, appUrl: "http://dev.example:3000" } });
    for (const app of [deployed, named]) {
      const refused = await from("http://127.0.0.1:3000", app);
      expect([refused.status, refused.body.error?.code]).toEqual([403, "FORBIDDEN_ORIGIN"]);
    }
    expect(await servers(deployed, "127.0.0.1:3000")).toEqual([{ url: "http://localhost:3000" }]);
  });

  it("answers bad bodies with clear 4xx codes", async () => {
    const { token } = await stack.signIn("gina@example.com");
    const gina = client(stack.app, token);
    const cases: [unknown, number, string][] = [
      ["{not json", 400, "MALFORMED_JSON"],
      ["", 400, "MALFORMED_JSON"],
      [{ asset: "DOGE", type: "long", margin: "1", leverage: 1 }, 400, "UNKNOWN_ASSET"],
      [{ asset: "ETH", type: "long", margin: "-1", leverage: 1 }, 400, "INVALID_AMOUNT"],
      [{ asset: "ETH", type: "long", margin: "1e5", leverage: 1 }, 400, "INVALID_AMOUNT"],
      [{ asset: "ETH", type: "long", margin: "1", leverage: 1.5 }, 400, "INVALID_REQUEST"],
      [{ asset: "ETH", type: "long", margin: "1", leverage: "10" }, 400, "INVALID_REQUEST"],
      [{ asset: "ETH", type: "sideways", margin: "1", leverage: 1 }, 400, "INVALID_REQUEST"],
      [{ asset: "ETH", type: "long", margin: "1", leverage: 1, stoploss: "5" }, 400, "INVALID_REQUEST"],
      [[1, 2, 3], 400, "INVALID_REQUEST"],
    ];
    for (const [body, status, code] of cases) {
      const res = await gina.post("/api/v1/trade/create", body);
      expect([res.status, res.body.error?.code], JSON.stringify(body)).toEqual([status, code]);
    }
    const wrongType = await gina.post("/api/v1/trade/create", "{}", { "content-type": "text/plain" });
    expect([wrongType.status, wrongType.body.error?.code]).toEqual([415, "UNSUPPORTED_MEDIA_TYPE"]);
    // Where the text stops being JSON, in JSON.parse's words (whose tail differs between Node versions)
    expect((await gina.post("/api/v1/trade/create", "{not json")).body.error?.message).toMatch(
      /^The body is not valid JSON: Expected property name or '}' in JSON at position 1\b.*\.$/,
    );
    expect((await gina.post("/api/v1/trade/create", "")).body.error?.message).toBe(
      "The body is not valid JSON: it is empty.",
    );
    // Valid JSON one level past the limit: the message says why it was not read
    const nested = (levels: number) => `${"[".repeat(levels - 1)}{"a":1}${"]".repeat(levels - 1)}`;
    const deep = await gina.post("/api/v1/trade/create", nested(33));
    expect([deep.status, deep.body.error]).toEqual([
      400,
      {
        code: "MALFORMED_JSON",
        message: "The body is nested too deeply: at most 32 levels of arrays and objects are read.",
      },
    ]);
    const deepest = await gina.post("/api/v1/trade/create", nested(32)); // read, then refused as not an order
    expect([deepest.status, deepest.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    // Over 16 KiB: the limit, and with a Content-Length the size sent (without one the read stops at the limit)
    const big = JSON.stringify({ asset: "ETH", pad: "x".repeat(20_000) });
    const huge = await gina.post("/api/v1/trade/create", big);
    expect([huge.status, huge.body.error]).toEqual([
      413,
      { code: "PAYLOAD_TOO_LARGE", message: "The body is over the limit of 16,384 bytes (16 KiB)." },
    ]);
    const sized = await gina.post("/api/v1/trade/create", big, { "content-length": String(big.length) });
    expect([sized.status, sized.body.error]).toEqual([
      413,
      {
        code: "PAYLOAD_TOO_LARGE",
        message: "The body is over the limit of 16,384 bytes (16 KiB); received 20,024 bytes.",
      },
    ]);
    expect((await gina.get("/api/v1/trade/history?limit=0")).status).toBe(400);
    expect((await gina.get("/api/v1/trade/history?cursor=bogus")).body.error?.code).toBe("INVALID_CURSOR");
    expect((await gina.get("/api/v1/nope")).status).toBe(404);
    expect(((await gina.get("/api/v1/trade/open")).body.trades as unknown[]).length).toBe(0);
  });

  it("limits trading per user with 429", async () => {
    const limited = await startApiStack({ settings: { tradeRate: { limit: 3, windowMs: 60_000 } } });
    try {
      const { token, user } = await limited.signIn("hank@example.com");
      const hank = client(limited.app, token);
      const codes: number[] = [];
      for (let i = 0; i < 5; i++)
        codes.push((await hank.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "1" })).status);
      expect(codes).toEqual([422, 422, 422, 429, 429]); // no price yet: refused by the engine, but counted
      const over = await hank.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "1" });
      expect(over.body.error?.message).toBe(
        "Too many requests: at most 3 trade requests per user per minute; try again in 60 s.",
      );
      // Retry-After is what is left of the window, not a whole one.
      await limited.redis.pexpire(limited.keys.rateLimitKey("trade", user.id), 12_300);
      const later = await hank.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "1" });
      expect(later.status).toBe(429);
      expect(Number(later.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(Number(later.headers.get("retry-after"))).toBeLessThanOrEqual(13);
    } finally {
      await limited.close();
    }
  });

  it("never leaks internals: a failing dependency gives a bare error body, the log keeps the detail", async () => {
    const { token } = await stack.signIn("ivy@example.com");
    // A bug whose message happens to mention a connection is still a bug: 500, not "try again" 503.
    const broken = createApp({
      ...stack.deps,
      db: {
        query: () =>
          Promise.reject(new TypeError("relation closed_orders is on fire: cannot read 'connection' (timeout)")),
      },
    });
    const res = await client(broken, token).get("/api/v1/trade/history");
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: { code: "INTERNAL", message: "Something went wrong on our side." } });
    expect(stack.logLines.some((l) => l.event === "request_failed" && String(l.error).includes("on fire"))).toBe(true);
    const down = createApp({
      ...stack.deps,
      db: {
        query: () =>
          Promise.reject(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" })),
      },
    });
    const unavailable = await client(down, token).get("/api/v1/trade/history");
    expect([unavailable.status, unavailable.body.error?.code]).toEqual([503, "UNAVAILABLE"]);
    expect((await client(down, token).get("/health")).status).toBe(503);
    expect((await anon.get("/health")).body).toEqual({ status: "ok", redis: true, postgres: true, engine: true });
  });
});
