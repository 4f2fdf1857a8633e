/**
 * Sessions: HS256 JWTs signed with `jose`, carried in the session cookie or an `Authorization: Bearer` header.
 * Each token has its own id (`jti`); logout records that id as revoked in Redis until the token would have expired
 * anyway, so the old token stops working everywhere at once while sessions stay stateless otherwise. Each user's
 * ids are also listed with their expiry (one script at sign-in), so that all of them can be signed out at once.
 * Signing out everywhere also records when, so that a sign-in link issued before then signs in no session: that
 * takes only Redis, as ending the sessions does, so a Postgres outage does not keep a stolen session alive.
 *
 * Verification pins the algorithm (no `alg: none`, no RS/HS confusion), the issuer and the expiry. A token whose
 * signature checked out is remembered (bounded, keyed by the exact token text) so a session's later requests skip
 * the signature work; its expiry is still checked on every use, and revocation is always asked of Redis.
 */
import { randomUUID, webcrypto } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";
import type { Keyspace } from "../../contract/names.ts";
import { userIdSchema } from "../../contract/messages.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
import { SIGN_IN_TOKEN_TTL_MINUTES } from "./sign-in-tokens.ts";

export const SESSION_TTL_SECONDS = 7 * 24 * 60 * 60;
const ISSUER = "paper-broker";
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * How long after the time of signing out everywhere a link issued is still refused. That time is the API's clock and
 * a link's issue time Postgres's (NTP keeps them within milliseconds). Erring this way, a link asked for up to a
 * second after signing out everywhere, plus however far the API's clock runs ahead, is refused too (ask again), so
 * that one asked for before it cannot sign in while the database's clock runs up to a second ahead of the API's.
 */
export const SIGNED_OUT_EVERYWHERE_MARGIN_MS = 1_000;

/**
 * How long the time of signing out everywhere is kept: while a link it refuses may still be signing in. Such a link
 * was issued at most the margin after it and is valid for 15 minutes; the 5 minutes more cover the margin and the
 * sign-in's own work between checking the link and listing its session (the engine's grant). Each is a duration on
 * one clock (this key's on Redis's, the link's on Postgres's), so a difference between the clocks does not shift it.
 */
const SIGNED_OUT_EVERYWHERE_KEPT_MS = (SIGN_IN_TOKEN_TTL_MINUTES + 5) * 60_000;

/**
 * KEYS[1] the user's sessions, KEYS[2] when the user last signed out everywhere; ARGV[1] now, ARGV[2] the new
 * session's id, ARGV[3] its expiry (both seconds), ARGV[4] when the sign-in link it is for was issued (ms), or "" for
 * none: returns 0, listing nothing, for a link issued no later than the margin after the user last signed out
 * everywhere. Otherwise drops the expired, lists the new one, and keeps the list as long as its newest session.
 */
const LIST_SESSION = `
local signedOut = tonumber(redis.call('GET', KEYS[2]))
if ARGV[4] ~= '' and signedOut and tonumber(ARGV[4]) <= signedOut + ${SIGNED_OUT_EVERYWHERE_MARGIN_MS} then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1`;

/**
 * A revocation key's value once the notice of a logout or of signing out everywhere went out to the stream replicas
 * (Sessions.noticeSent). Before that it says what revoked the session, as only signing out everywhere may be retried
 * with a token it revoked: "everywhere", or "logout" (or any other value). Every value revokes: readers ask only
 * whether the key exists.
 */
const NOTICE_SENT = "notice-sent";
const REVOKED_EVERYWHERE = "everywhere";
const REVOKED_BY_LOGOUT = "logout";

/** KEYS[1] a revocation key: records its notice sent, keeping its expiry; nothing when it has expired meanwhile. */
const MARK_NOTICE_SENT = `return redis.call('SET', KEYS[1], '${NOTICE_SENT}', 'XX', 'KEEPTTL')`;

/** KEYS[1] the user's sessions; ARGV[1] a session's id: takes it off the list. */
const UNLIST_SESSION = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/** KEYS[1] the user's sessions; ARGV[1] now (seconds): the ids and expiries of those not expired. */
const LIVE_SESSIONS = "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')";

/**
 * KEYS[1] the user's sessions, KEYS[2] when the user last signed out everywhere; ARGV[1] now (seconds), ARGV[2] now
 * (ms), ARGV[3] how long to keep it (ms): records now as the time the user signed out everywhere (unless a later one
 * is recorded), and returns the sessions not expired as LIVE_SESSIONS does. In one script, so a session is either
 * listed before it, and in the answer (to be revoked), or refused by LIST_SESSION after it, for an older link.
 */
const SIGN_OUT_EVERYWHERE = `
local at = tonumber(redis.call('GET', KEYS[2]))
if not at or at < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')`;

/**
 * KEYS: revocation keys; ARGV: their time to live (ms), in the same order, then "revoke" or "owed". With "revoke",
 * sets those not set yet and returns their positions (from 1), so that a session signed out already is not counted
 * again; either way, also returns as -position each already revoked whose notice to the stream replicas is still
 * owed (its value is not "notice-sent"). Each key is read or set once, so concurrent calls disagree on nothing.
 */
const REVOKE_ALL = `
local revoke = ARGV[#KEYS + 1] == 'revoke'
local result = {}
for i = 1, #KEYS do
  if revoke and redis.call('SET', KEYS[i], '${REVOKED_EVERYWHERE}', 'PX', ARGV[i], 'NX') then result[#result + 1] = i
  else
    local state = redis.call('GET', KEYS[i])
    if state and state ~= '${NOTICE_SENT}' then result[#result + 1] = -i end
  end
end
return result`;

/** What signing out everywhere did: the sessions it revoked, and those revoked before whose notice is still owed. */
export interface RevokedAll {
  readonly revoked: Session[];
  readonly noticeOwed: Session[];
}

export interface Session {
  readonly userId: string;
  readonly email: string;
  readonly sessionId: string;
  /** Expiry, seconds since the epoch. */
  readonly expiresAt: number;
}

export class Sessions {
  /** Imported once: handing jose raw bytes makes it import a WebCrypto key on every call (~90 µs per verify). */
  private readonly key: Promise<webcrypto.CryptoKey>;
  /** Tokens whose signature and claims were verified, oldest first. */
  private readonly verified = new Map<string, Session>();

  constructor(
    secret: Uint8Array,
    private readonly redis: ApiRedis,
    private readonly keys: Keyspace,
  ) {
    this.key = webcrypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
  }

  /**
   * A new session of `user`, listed under its user first: its token, and the session it stands for. Rejects when the
   * listing fails, so that no session exists that signing out everywhere would miss.
   */
  async issue(user: { id: string; email: string }): Promise<{ token: string; session: Session }> {
    return (await this.issueListed(user, ""))!;
  }

  /**
   * A new session of `user` for a sign-in link issued at `linkIssuedAtMs`, as `issue`; undefined, with none listed,
   * when the user has signed out everywhere since the link was issued, or within SIGNED_OUT_EVERYWHERE_MARGIN_MS
   * before: that voids the links of before. The sign-in calls this before it uses up the link, so that a failure to
   * list leaves the link working.
   */
  async issueForLink(
    user: { id: string; email: string },
    linkIssuedAtMs: number,
  ): Promise<{ token: string; session: Session } | undefined> {
    return this.issueListed(user, String(linkIssuedAtMs));
  }

  /**
   * Whether the user's sign-in link issued at `linkIssuedAtMs` is void, the user having signed out everywhere since
   * (or up to SIGNED_OUT_EVERYWHERE_MARGIN_MS before): the sign-in asks before its work, so that such a link is refused
   * at once rather than after the engine's grant. `issueForLink` checks again, in the script that lists the session,
   * which is the check that holds against signing out everywhere meanwhile.
   */
  async linkVoidedBySigningOut(userId: string, linkIssuedAtMs: number): Promise<boolean> {
    const signedOut = await this.redis.get(this.keys.signedOutEverywhereKey(userId));
    return signedOut !== null && linkIssuedAtMs <= Number(signedOut) + SIGNED_OUT_EVERYWHERE_MARGIN_MS;
  }

  private async issueListed(
    user: { id: string; email: string },
    linkIssuedAtMs: string,
  ): Promise<{ token: string; session: Session } | undefined> {
    const sessionId = randomUUID();
    const nowS = Math.floor(Date.now() / 1000);
    const expiresAt = nowS + SESSION_TTL_SECONDS;
    const token = await new SignJWT({ email: user.email })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(user.id)
      .setJti(sessionId)
      .setIssuer(ISSUER)
      .setIssuedAt(nowS)
      .setExpirationTime(expiresAt)
      .sign(await this.key);
    const listed = await this.redis.eval(
      LIST_SESSION,
      [this.keys.sessionsKey(user.id), this.keys.signedOutEverywhereKey(user.id)],
      [String(nowS), sessionId, String(expiresAt), linkIssuedAtMs],
    );
    if (listed === 0) return undefined;
    return { token, session: { userId: user.id, email: user.email, sessionId, expiresAt } };
  }

  /**
   * Takes a session `issue` made off its user's list, for one never handed out (the sign-in that made it found its
   * link used up meanwhile): signing out everywhere would otherwise count it, as a session someone holds.
   */
  async unlist(session: Session): Promise<void> {
    await this.redis.eval(UNLIST_SESSION, [this.keys.sessionsKey(session.userId)], [session.sessionId]);
  }

  /** The session a token stands for, or undefined when it is forged, expired, malformed or revoked. */
  async verify(token: string): Promise<Session | undefined> {
    const session = await this.authentic(token);
    if (session === undefined) return undefined;
    return (await this.isRevoked(session)) ? undefined : session;
  }

  /**
   * The session of a token with a valid signature and claims, not expired, without asking Redis about revocation:
   * for callers that check revocation in a script of their own (admission.ts), in the same round trip.
   */
  async authentic(token: string): Promise<Session | undefined> {
    let session = this.verified.get(token);
    if (session === undefined) {
      session = await this.decode(token);
      if (session === undefined) return undefined;
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(token, session);
    }
    return session.expiresAt * 1000 > Date.now() ? session : undefined;
  }

  /**
   * A keyed digest of `text` for `purpose`: HMAC-SHA-256 under the signing key, in hex. For a name that must not
   * tell whoever reads it what it stands for (a Redis key named after an email address): a plain hash would let
   * anyone with a list of candidates confirm each by hashing it, which this does not without the key. The purpose
   * and the text are joined by a NUL, which no token's signed text (base64url and dots) holds: no digest is a
   * token's signature.
   */
  async keyedDigest(purpose: string, text: string): Promise<string> {
    const mac = await webcrypto.subtle.sign("HMAC", await this.key, new TextEncoder().encode(`${purpose}\0${text}`));
    return Buffer.from(mac).toString("hex");
  }

  async isRevoked(session: Session): Promise<boolean> {
    return (await this.redis.get(this.revokedKey(session))) !== null;
  }

  revokedKey(session: Session): string {
    return this.keys.sessionRevokedKey(session.userId, session.sessionId);
  }

  async revoke(session: Session): Promise<void> {
    const remainingMs = session.expiresAt * 1000 - Date.now();
    if (remainingMs > 0) await this.redis.set(this.revokedKey(session), REVOKED_BY_LOGOUT, remainingMs + 60_000);
  }

  /**
   * Revokes `session` for a logout; true while its revocation notice to the stream replicas is owed: for a session
   * revoked now, and for one revoked before whose logout's notice is not known to have gone out (that logout failed
   * after revoking it, and this is its retry), until `noticeSent` records it. A session whose notice went out owes
   * none, so repeating a logout with its token does not add to the replicas' fan-out.
   */
  async revokeForLogout(session: Session): Promise<boolean> {
    const state = await this.redis.get(this.revokedKey(session));
    if (state === NOTICE_SENT) return false;
    if (state === null) await this.revoke(session);
    return true;
  }

  /** Records that `session`'s revocation notice went out (revokeForLogout). */
  async noticeSent(session: Session): Promise<void> {
    await this.redis.eval(MARK_NOTICE_SENT, [this.revokedKey(session)], []);
  }

  /**
   * Whether `session` is revoked, by what and how far: "live" (not revoked), "everywhere-notice-owed" (revoked by
   * signing out everywhere, and its notice to the stream replicas not known to have gone out: that attempt failed
   * after revoking it), "notice-owed" (the same for a logout), or "notice-sent".
   */
  async revocationOf(session: Session): Promise<"live" | "everywhere-notice-owed" | "notice-owed" | "notice-sent"> {
    const state = await this.redis.get(this.revokedKey(session));
    if (state === null) return "live";
    if (state === NOTICE_SENT) return "notice-sent";
    return state === REVOKED_EVERYWHERE ? "everywhere-notice-owed" : "notice-owed";
  }

  /**
   * Records that `session`'s user signed out everywhere now, which voids the sign-in links issued before, then revokes
   * every listed session of the user that has not expired, and `session` itself, and finds those revoked before that
   * still owe their notice. With `revoke: false` (a retry from a session the first attempt revoked, after it had
   * recorded the time) it only finds the latter. A session a link signs in while this runs is listed before the time
   * is recorded, and revoked here, or refused. Each owes its notice until `noticeSent`.
   */
  async revokeAll(session: Session, options: { revoke: boolean } = { revoke: true }): Promise<RevokedAll> {
    const nowMs = Date.now();
    const nowS = String(Math.floor(nowMs / 1000));
    const sessionsKey = this.keys.sessionsKey(session.userId);
    const listed = (
      options.revoke
        ? await this.redis.eval(
            SIGN_OUT_EVERYWHERE,
            [sessionsKey, this.keys.signedOutEverywhereKey(session.userId)],
            [nowS, String(nowMs), String(SIGNED_OUT_EVERYWHERE_KEPT_MS)],
          )
        : await this.redis.eval(LIVE_SESSIONS, [sessionsKey], [nowS])
    ) as string[];
    const sessions = new Map([[session.sessionId, session]]);
    for (let i = 0; i + 1 < listed.length; i += 2) {
      const sessionId = listed[i]!;
      if (!sessions.has(sessionId))
        sessions.set(sessionId, { ...session, sessionId, expiresAt: Number(listed[i + 1]) });
    }
    const all = [...sessions.values()].filter((s) => s.expiresAt * 1000 > nowMs);
    if (all.length === 0) return { revoked: [], noticeOwed: [] };
    const positions = (await this.redis.eval(
      REVOKE_ALL,
      all.map((s) => this.revokedKey(s)),
      [...all.map((s) => String(s.expiresAt * 1000 - nowMs + 60_000)), options.revoke ? "revoke" : "owed"],
    )) as number[];
    return {
      revoked: positions.filter((i) => i > 0).map((i) => all[i - 1]!),
      noticeOwed: positions.filter((i) => i < 0).map((i) => all[-i - 1]!),
    };
  }

  private async decode(token: string): Promise<Session | undefined> {
    if (token.length > 2048) return undefined;
    try {
      const { payload } = await jwtVerify(token, await this.key, {
        algorithms: ["HS256"],
        issuer: ISSUER,
        requiredClaims: ["sub", "jti", "exp", "iat"],
      });
      const userId = userIdSchema.safeParse(payload.sub);
      if (
        !userId.success ||
        typeof payload.email !== "string" ||
        typeof payload.jti !== "string" ||
        typeof payload.exp !== "number"
      )
        return undefined;
      if (!/^[A-Za-z0-9-]{1,64}$/.test(payload.jti)) return undefined;
      return { userId: userId.data, email: payload.email, sessionId: payload.jti, expiresAt: payload.exp };
    } catch (err) {
      if (err instanceof errors.JOSEError) return undefined;
      throw err;
    }
  }
}
