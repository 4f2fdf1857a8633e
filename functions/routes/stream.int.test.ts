/**
 * The live stream's HTTP side (docs/api.md): tickets and the revocation notice a logout sends the stream replicas,
 * in-process against real Redis and Postgres with the real engine and worker, on both Redis adapters (TCP, and
 * Upstash's REST API through the local peer), since the deployed functions use the second.
 */
import { decodeJwt } from "jose";
import { requestTicket, type FetchLike } from "../../client/stream-client.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../app.ts";
import { SIGNED_OUT_EVERYWHERE_MARGIN_MS } from "../auth/sessions.ts";
import { STREAM_TICKET_PATTERN, streamTicketHash } from "../auth/stream-tickets.ts";
import { createUpstashApiRedis } from "../redis/upstash-api-redis.ts";
import { REDIS_URL, startApiStack, type ApiStack, type ApiStackOptions } from "../testing/api-stack.ts";
import { client } from "../testing/http.ts";
import { startUpstashBridge, type UpstashBridge } from "../testing/upstash-bridge.ts";

const adapters: [string, (bridge: UpstashBridge) => ApiStackOptions][] = [
  ["ioredis", () => ({})],
  ["upstash", (bridge) => ({ apiRedis: createUpstashApiRedis({ url: bridge.url, token: bridge.token }) })],
];

describe.each(adapters)("stream tickets and revocation notices (%s)", (adapter, options) => {
  let bridge: UpstashBridge;
  let stack: ApiStack;

  beforeAll(async () => {
    bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: `stream-${adapter}` });
    stack = await startApiStack({
      ...options(bridge),
      settings: { streamTicketRate: { limit: 3, windowMs: 60_000 }, streamUrl: "wss://stream.example.com/x" },
    });
  });
  afterAll(async () => {
    await stack.close();
    await bridge.close();
  });

  it("issues a single-use ticket stored by its hash for at most 30 s, naming the user, session and its expiry", async () => {
    const { token, user } = await stack.signIn(`ticket-${adapter}@example.com`);
    const before = Date.now();
    const answer = await client(stack.app, token).post("/api/v1/stream/ticket", "");
    expect(answer.status).toBe(201);
    const { ticket, url, expiresAt } = answer.body as { ticket: string; url: string; expiresAt: string };
    expect(ticket).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 bytes, base64url without padding
    expect(ticket).toMatch(STREAM_TICKET_PATTERN); // the shape the stream takes
    expect(url).toBe("wss://stream.example.com/x");
    const expiresAtMs = Date.parse(expiresAt);
    expect(expiresAtMs).toBeGreaterThanOrEqual(before + 30_000);
    expect(expiresAtMs).toBeLessThanOrEqual(Date.now() + 30_000);

    const key = stack.keys.streamTicketKey(streamTicketHash(ticket));
    const ttl = await stack.redis.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(30_000);
    const claims = decodeJwt(token);
    expect(JSON.parse((await stack.redis.get(key))!)).toEqual({
      userId: user.id,
      sessionId: claims.jti,
      sessionExpiresAtMs: claims.exp! * 1000,
    });
    // Only the hash is stored: the ticket itself is in no key name and no value.
    const stored = await stack.redis.keys(stack.keys.streamTicketKey("*"));
    expect(stored.join(" ")).not.toContain(ticket);

    const second = await client(stack.app, token).post("/api/v1/stream/ticket", "");
    expect((second.body as { ticket: string }).ticket).not.toBe(ticket);
  });

  it("takes no body, or {}; a field is a 400 naming it, as request objects are strict everywhere", async () => {
    const { token } = await stack.signIn(`body-${adapter}@example.com`);
    const api = client(stack.app, token);
    const bare = await stack.app.request("/api/v1/stream/ticket", {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(bare.status).toBe(201);
    expect((await api.post("/api/v1/stream/ticket", {})).status).toBe(201);
    const field = await api.post("/api/v1/stream/ticket", { x: 1 });
    expect([field.status, field.body.error]).toEqual([
      400,
      { code: "INVALID_REQUEST", message: 'Unknown field "x"; this request takes no fields.' },
    ]);
    expect((await api.post("/api/v1/stream/ticket", "{")).body.error?.code).toBe("MALFORMED_JSON");
    const text = await api.post("/api/v1/stream/ticket", "x=1", { "content-type": "text/plain" });
    expect([text.status, text.body.error?.code]).toEqual([415, "UNSUPPORTED_MEDIA_TYPE"]);
    // This suite allows 3 tickets a minute: the requests refused for their body did not count.
    expect((await api.post("/api/v1/stream/ticket", "")).status).toBe(201);
    expect((await api.post("/api/v1/stream/ticket", "")).status).toBe(429);
  });

  it("answers the stream client's ticket request (client/) with a URL to open the socket at", async () => {
    const { token } = await stack.signIn(`client-${adapter}@example.com`);
    const fetch: FetchLike = (url, init) => Promise.resolve(stack.app.request(url, init));
    const ticket = await requestTicket(fetch, { apiUrl: "http://localhost:3000", token });
    if (!ticket.ok) throw new Error(`refused: ${ticket.status} ${ticket.message}`);
    const url = new URL(ticket.url);
    expect(url.origin + url.pathname).toBe("wss://stream.example.com/x");
    const key = stack.keys.streamTicketKey(streamTicketHash(url.searchParams.get("ticket")!));
    expect(await stack.redis.exists(key)).toBe(1);
    expect(await requestTicket(fetch, { apiUrl: "http://localhost:3000", token: "forged" })).toMatchObject({
      ok: false,
      status: 401,
    });
  });

  it("needs a session: none, a forged one or a signed-out one is 401 and stores nothing", async () => {
    const anon = client(stack.app);
    const stored = async () => (await stack.redis.keys(stack.keys.streamTicketKey("*"))).length;
    const count = await stored();
    expect((await anon.post("/api/v1/stream/ticket", "")).body.error).toEqual({
      code: "UNAUTHENTICATED",
      message: "Sign in first: send the session cookie, or the session token as Authorization: Bearer <token>.",
    });
    // A bogus token is not "sign in first": the answer says the session sent does not hold.
    const bogus = await client(stack.app, "not.a.jwt").post("/api/v1/stream/ticket", "");
    expect([bogus.status, bogus.body.error?.code, bogus.body.error?.message]).toEqual([
      401,
      "UNAUTHENTICATED",
      "The session is not valid: it expired, was signed out or is not one this API issued. Sign in again.",
    ]);
    const { token } = await stack.signIn(`signed-out-${adapter}@example.com`);
    await client(stack.app, token).del("/api/v1/auth/logout");
    expect((await client(stack.app, token).post("/api/v1/stream/ticket", "")).status).toBe(401);
    expect(await stored()).toBe(count);
  });

  it("is limited per user: over the limit is 429 with Retry-After", async () => {
    const { token } = await stack.signIn(`limited-${adapter}@example.com`);
    const api = client(stack.app, token);
    for (let i = 0; i < 3; i++) expect((await api.post("/api/v1/stream/ticket", "")).status).toBe(201);
    const limited = await api.post("/api/v1/stream/ticket", "");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(limited.body.error?.message).toBe(
      "Too many requests: at most 3 stream tickets per user per minute; try again in 60 s.",
    );
    // Another user has their own budget.
    const other = await stack.signIn(`unlimited-${adapter}@example.com`);
    expect((await client(stack.app, other.token).post("/api/v1/stream/ticket", "")).status).toBe(201);
  });

  it("refuses a browser on another origin, naming the origin and the settings that would admit it", async () => {
    const { token } = await stack.signIn(`origin-${adapter}@example.com`);
    const answer = await client(stack.app, token).post("/api/v1/stream/ticket", "", {
      origin: "http://localhost:5173",
    });
    expect(answer.status).toBe(403);
    expect(answer.body.error).toEqual({
      code: "FORBIDDEN_ORIGIN",
      message:
        'Requests from the origin "http://localhost:5173" are not allowed: a browser may call this API only from ' +
        "APP_URL's origin (http://localhost:3000) or one listed in CORS_ORIGINS.",
    });
  });

  it("logout tells the stream replicas, after recording the revocation; a second logout tells nothing", async () => {
    const { token, user } = await stack.signIn(`logout-${adapter}@example.com`);
    const sessionId = decodeJwt(token).jti!;
    const from = (await stack.redis.xrevrange(stack.keys.streamFanout, "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    expect((await client(stack.app, token).del("/api/v1/auth/logout")).status).toBe(200);
    const notices = async () =>
      (await stack.redis.xrange(stack.keys.streamFanout, `(${from}`, "+"))
        .map(([, fields]) => fields)
        .filter((fields) => fields[1] === "revoked");
    expect(await notices()).toEqual([["kind", "revoked", "body", JSON.stringify({ userId: user.id, sessionId })]]);
    expect(await stack.redis.exists(stack.keys.sessionRevokedKey(user.id, sessionId))).toBe(1);
    expect((await client(stack.app, token).del("/api/v1/auth/logout")).status).toBe(200);
    expect(await notices()).toHaveLength(1);
  });

  it("a logout retried after its notice failed sends it then, and once sent, not again", async () => {
    const { token, user } = await stack.signIn(`retried-${adapter}@example.com`);
    const sessionId = decodeJwt(token).jti!;
    const from = (await stack.redis.xrevrange(stack.keys.streamFanout, "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    const notices = async () =>
      (await stack.redis.xrange(stack.keys.streamFanout, `(${from}`, "+"))
        .map(([, fields]) => fields)
        .filter((fields) => fields[1] === "revoked");
    // The notice's call fails after the revocation was recorded (a timeout, a lost reply): the logout is a 503.
    const redis = new Proxy(stack.deps.redis, {
      get: (target, name) =>
        name === "eval"
          ? (script: string, keys: readonly string[], args: readonly string[]) =>
              keys[0] === stack.keys.streamFanout
                ? Promise.reject(new Error("Connection is closed."))
                : target.eval(script, keys, args)
          : (Reflect.get(target, name) as unknown),
    });
    const failed = await client(createApp({ ...stack.deps, redis }), token).del("/api/v1/auth/logout");
    expect([failed.status, failed.body.error?.code]).toEqual([503, "UNAVAILABLE"]);
    expect(await stack.redis.exists(stack.keys.sessionRevokedKey(user.id, sessionId))).toBe(1);
    expect(await notices()).toEqual([]);
    // The retry finds the session revoked, and sends the notice it owes.
    expect((await client(stack.app, token).del("/api/v1/auth/logout")).status).toBe(200);
    expect(await notices()).toEqual([["kind", "revoked", "body", JSON.stringify({ userId: user.id, sessionId })]]);
    expect((await client(stack.app, token).del("/api/v1/auth/logout")).status).toBe(200);
    expect(await notices()).toHaveLength(1);
    expect((await client(stack.app, token).get("/api/v1/auth/me")).status).toBe(401);
  });

  it("a token a logout revoked, its notice owed, is no retry of signing out everywhere: 401, nothing signed out", async () => {
    const email = `logout-then-everywhere-${adapter}@example.com`;
    const phone = await stack.signIn(email);
    const laptop = await stack.signIn(email);
    // The laptop's logout records the revocation, then its notice fails: a 503, the notice owed.
    const redis = new Proxy(stack.deps.redis, {
      get: (target, name) =>
        name === "eval"
          ? (script: string, keys: readonly string[], args: readonly string[]) =>
              keys[0] === stack.keys.streamFanout
                ? Promise.reject(new Error("Connection is closed."))
                : target.eval(script, keys, args)
          : (Reflect.get(target, name) as unknown),
    });
    const failed = await client(createApp({ ...stack.deps, redis }), laptop.token).del("/api/v1/auth/logout");
    expect([failed.status, failed.body.error?.code]).toEqual([503, "UNAVAILABLE"]);
    // Signing out everywhere with that token would have been taken for its own retry, and signed out nobody.
    const everywhere = await client(stack.app, laptop.token).del("/api/v1/auth/sessions");
    expect([everywhere.status, everywhere.body.error?.code]).toEqual([401, "UNAUTHENTICATED"]);
    expect((await client(stack.app, phone.token).get("/api/v1/auth/me")).status).toBe(200);
    // The logout's own retry still sends the notice it owes.
    expect((await client(stack.app, laptop.token).del("/api/v1/auth/logout")).status).toBe(200);
    const laptopId = decodeJwt(laptop.token).jti!;
    expect(await stack.redis.get(stack.keys.sessionRevokedKey(laptop.user.id, laptopId))).toBe("notice-sent");
  });

  it("signing out everywhere revokes every session of the user and tells the replicas of each", async () => {
    const email = `everywhere-${adapter}@example.com`;
    const sessions = [await stack.signIn(email), await stack.signIn(email), await stack.signIn(email)];
    const userId = sessions[0]!.user.id;
    const other = await stack.signIn(`elsewhere-${adapter}@example.com`);
    // One signed out already: not counted, not announced again.
    const gone = await stack.signIn(email);
    expect((await client(stack.app, gone.token).del("/api/v1/auth/logout")).status).toBe(200);
    const from = (await stack.redis.xrevrange(stack.keys.streamFanout, "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    // One listed but expired: not counted, not revoked.
    await stack.redis.zadd(stack.keys.sessionsKey(userId), Math.floor(Date.now() / 1000) - 10, "expired-one");
    const out = await client(stack.app, sessions[1]!.token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 3 sessions." }]);
    expect(out.headers.get("set-cookie")).toMatch(/session=;.*Max-Age=0/);
    for (const { token } of sessions) {
      const me = await client(stack.app, token).get("/api/v1/auth/me");
      expect([me.status, me.body.error?.code]).toEqual([401, "UNAUTHENTICATED"]);
    }
    expect((await client(stack.app, other.token).get("/api/v1/auth/me")).status).toBe(200);
    const told = (await stack.redis.xrange(stack.keys.streamFanout, `(${from}`, "+"))
      .map(([, fields]) => fields)
      .filter((fields) => fields[1] === "revoked")
      .map((fields) => JSON.parse(fields[3]!) as { userId: string; sessionId: string });
    const ids = sessions.map(({ token }) => decodeJwt(token).jti!);
    expect(told.map((n) => n.sessionId).sort()).toEqual([...ids].sort());
    expect(new Set(told.map((n) => n.userId))).toEqual(new Set([userId]));
    // A sign-in after it is a new session, and works: its link asked for past the second that is void too.
    await new Promise((resolve) => setTimeout(resolve, SIGNED_OUT_EVERYWHERE_MARGIN_MS + 100));
    const again = await stack.signIn(email);
    expect((await client(stack.app, again.token).get("/api/v1/auth/me")).status).toBe(200);
    // Signed out already: 401, as any revoked session.
    expect((await client(stack.app, sessions[0]!.token).del("/api/v1/auth/sessions")).status).toBe(401);
  });

  it("signing out everywhere retried after a notice failed tells the replicas then, and once told, not again", async () => {
    const email = `everywhere-retried-${adapter}@example.com`;
    const sessions = [await stack.signIn(email), await stack.signIn(email)];
    const userId = sessions[0]!.user.id;
    const ids = sessions.map(({ token }) => decodeJwt(token).jti!).sort();
    const from = (await stack.redis.xrevrange(stack.keys.streamFanout, "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    const told = async () =>
      (await stack.redis.xrange(stack.keys.streamFanout, `(${from}`, "+"))
        .map(([, fields]) => fields)
        .filter((fields) => fields[1] === "revoked")
        .map((fields) => (JSON.parse(fields[3]!) as { sessionId: string }).sessionId);
    // The second notice's call fails after every revocation was recorded: a 503.
    let notices = 0;
    const redis = new Proxy(stack.deps.redis, {
      get: (target, name) =>
        name === "eval"
          ? (script: string, keys: readonly string[], args: readonly string[]) =>
              keys[0] === stack.keys.streamFanout && ++notices === 2
                ? Promise.reject(new Error("Connection is closed."))
                : target.eval(script, keys, args)
          : (Reflect.get(target, name) as unknown),
    });
    const caller = sessions[0]!.token;
    const failed = await client(createApp({ ...stack.deps, redis }), caller).del("/api/v1/auth/sessions");
    expect([failed.status, failed.body.error?.code]).toEqual([503, "UNAVAILABLE"]);
    expect(await told()).toHaveLength(1);
    // The retry with the same (now revoked) token tells the replicas of both, and revokes nothing more.
    const retry = await client(stack.app, caller).del("/api/v1/auth/sessions");
    expect([retry.status, retry.body]).toEqual([200, { message: "Signed out of 0 sessions." }]);
    expect([...new Set(await told())].sort()).toEqual(ids);
    const count = (await told()).length;
    // Told: the token is refused now, as any revoked session's, and nothing more is sent.
    expect((await client(stack.app, caller).del("/api/v1/auth/sessions")).status).toBe(401);
    expect((await client(stack.app, sessions[1]!.token).del("/api/v1/auth/sessions")).status).toBe(401);
    expect(await told()).toHaveLength(count);
    for (const { token } of sessions) expect((await client(stack.app, token).get("/api/v1/auth/me")).status).toBe(401);
    for (const id of ids) expect(await stack.redis.get(stack.keys.sessionRevokedKey(userId, id))).toBe("notice-sent");
  });

  it("signing out everywhere from a new session also tells the replicas of sessions whose notice a failure left owed", async () => {
    const email = `everywhere-owed-${adapter}@example.com`;
    const old = await stack.signIn(email);
    const oldId = decodeJwt(old.token).jti!;
    // Revoked, its notice never sent (an attempt that failed after revoking it, never retried).
    await stack.redis.set(stack.keys.sessionRevokedKey(old.user.id, oldId), "1", "PX", 60_000);
    const from = (await stack.redis.xrevrange(stack.keys.streamFanout, "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    const fresh = await stack.signIn(email);
    const out = await client(stack.app, fresh.token).del("/api/v1/auth/sessions");
    expect([out.status, out.body]).toEqual([200, { message: "Signed out of 1 session." }]);
    const told = (await stack.redis.xrange(stack.keys.streamFanout, `(${from}`, "+"))
      .map(([, fields]) => fields)
      .filter((fields) => fields[1] === "revoked")
      .map((fields) => (JSON.parse(fields[3]!) as { sessionId: string }).sessionId);
    expect(told.sort()).toEqual([oldId, decodeJwt(fresh.token).jti!].sort());
  });
});
