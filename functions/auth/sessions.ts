/**
 * Sessions: HS256 JWTs signed with `jose`, carried in the session cookie or an `Authorization: Bearer` header.
 * Each token has its own id (`jti`); logout records that id as revoked in Redis until the token would have expired
 * anyway, so the old token stops working everywhere at once while sessions stay stateless otherwise. Each user's
 * ids are also listed with their expiry (one script at sign-in), so that all of them can be signed out at once.
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

export const SESSION_TTL_SECONDS = 7 * 24 * 60 * 60;
const ISSUER = "paper-broker";
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * KEYS[1] the user's sessions; ARGV[1] now, ARGV[2] the new session's id, ARGV[3] its expiry (both seconds): drops
 * the expired, lists the new one, and keeps the list as long as its newest session.
 */
const LIST_SESSION = `
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
   * A new session's token, listed under its user first: rejects when the listing fails, so that no session exists
   * that signing out everywhere would miss. The sign-in calls this before it uses up the link, so that such a
   * failure leaves the link working.
   */
  /** A new session of `user`, listed: its token, and the session it stands for. */
  async issue(user: { id: string; email: string }): Promise<{ token: string; session: Session }> {
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
    await this.redis.eval(LIST_SESSION, [this.keys.sessionsKey(user.id)], [String(nowS), sessionId, String(expiresAt)]);
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
   * Revokes every listed session of `session`'s user that has not expired, and `session` itself, and finds those
   * revoked before that still owe their notice. With `revoke: false` (a retry from a session the first attempt
   * revoked) it only finds the latter. One signed in while this runs (after the list was read) stays signed in.
   * Each owes its notice until `noticeSent`.
   */
  async revokeAll(session: Session, options: { revoke: boolean } = { revoke: true }): Promise<RevokedAll> {
    const nowMs = Date.now();
    const listed = (await this.redis.eval(
      LIVE_SESSIONS,
      [this.keys.sessionsKey(session.userId)],
      [String(Math.floor(nowMs / 1000))],
    )) as string[];
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
