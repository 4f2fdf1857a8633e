/**
 * Sessions: HS256 JWTs signed with `jose`, carried in the `session` cookie or an `Authorization: Bearer` header.
 * Each token has its own id (`jti`); logout records that id as revoked in Redis until the token would have expired
 * anyway, so the old token stops working everywhere at once while sessions stay stateless otherwise.
 *
 * Verification pins the algorithm (no `alg: none`, no RS/HS confusion), the issuer and the expiry.
 */
import { randomUUID } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";
import type { Keyspace } from "../../contract/names.ts";
import { userIdSchema } from "../../contract/messages.ts";
import type { ApiRedis } from "../redis/api-redis.ts";

export const SESSION_TTL_SECONDS = 7 * 24 * 60 * 60;
const ISSUER = "paper-broker";

export interface Session {
  readonly userId: string;
  readonly email: string;
  readonly sessionId: string;
  /** Expiry, seconds since the epoch. */
  readonly expiresAt: number;
}

export class Sessions {
  constructor(
    private readonly secret: Uint8Array,
    private readonly redis: ApiRedis,
    private readonly keys: Keyspace,
  ) {}

  async issue(user: { id: string; email: string }): Promise<string> {
    return new SignJWT({ email: user.email })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(user.id)
      .setJti(randomUUID())
      .setIssuer(ISSUER)
      .setIssuedAt()
      .setExpirationTime(`${SESSION_TTL_SECONDS}s`)
      .sign(this.secret);
  }

  /** The session a token stands for, or undefined when it is forged, expired, malformed or revoked. */
  async verify(token: string): Promise<Session | undefined> {
    const session = await this.decode(token);
    if (session === undefined) return undefined;
    const revoked = await this.redis.get(this.keys.sessionRevokedKey(session.userId, session.sessionId));
    return revoked === null ? session : undefined;
  }

  async revoke(session: Session): Promise<void> {
    const remainingMs = session.expiresAt * 1000 - Date.now();
    if (remainingMs > 0) await this.redis.set(this.keys.sessionRevokedKey(session.userId, session.sessionId), "1", remainingMs + 60_000);
  }

  private async decode(token: string): Promise<Session | undefined> {
    if (token.length > 2048) return undefined;
    try {
      const { payload } = await jwtVerify(token, this.secret, { algorithms: ["HS256"], issuer: ISSUER, requiredClaims: ["sub", "jti", "exp", "iat"] });
      const userId = userIdSchema.safeParse(payload.sub);
      if (!userId.success || typeof payload.email !== "string" || typeof payload.jti !== "string" || typeof payload.exp !== "number") return undefined;
      if (!/^[A-Za-z0-9-]{1,64}$/.test(payload.jti)) return undefined;
      return { userId: userId.data, email: payload.email, sessionId: payload.jti, expiresAt: payload.exp };
    } catch (err) {
      if (err instanceof errors.JOSEError) return undefined;
      throw err;
    }
  }
}
