/**
 * Sessions: HS256 JWTs signed with `jose`, carried in the `session` cookie or an `Authorization: Bearer` header.
 * Each token has its own id (`jti`); logout records that id as revoked in Redis until the token would have expired
 * anyway, so the old token stops working everywhere at once while sessions stay stateless otherwise.
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

  async issue(user: { id: string; email: string }): Promise<string> {
    return new SignJWT({ email: user.email })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(user.id)
      .setJti(randomUUID())
      .setIssuer(ISSUER)
      .setIssuedAt()
      .setExpirationTime(`${SESSION_TTL_SECONDS}s`)
      .sign(await this.key);
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

  async isRevoked(session: Session): Promise<boolean> {
    return (await this.redis.get(this.revokedKey(session))) !== null;
  }

  revokedKey(session: Session): string {
    return this.keys.sessionRevokedKey(session.userId, session.sessionId);
  }

  async revoke(session: Session): Promise<void> {
    const remainingMs = session.expiresAt * 1000 - Date.now();
    if (remainingMs > 0) await this.redis.set(this.revokedKey(session), "1", remainingMs + 60_000);
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
