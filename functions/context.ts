/**
 * What every route gets: the adapters and settings an entry (server.ts, lambda.ts) wires once, and the Hono
 * environment type with the per-request session.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { Keyspace } from "../contract/names.ts";
import type { Logger } from "../platform/log.ts";
import type { Queryable } from "../platform/postgres.ts";
import type { IdempotencyKeyLimits, RateLimit } from "./admission.ts";
import type { DevMail, Mailer } from "./auth/mailer.ts";
import type { Session, Sessions } from "./auth/sessions.ts";
import type { EngineClient } from "./engine-client.ts";
import type { ApiRedis } from "./redis/api-redis.ts";

export interface ApiSettings {
  /** Public base URL: magic links point at it, and its origin may make state-changing requests. */
  readonly appUrl: string;
  /** Where a verified sign-in link redirects (302) instead of answering JSON. */
  readonly appRedirectUrl?: string | undefined;
  /** Other origins a browser may call the API from (CORS, Origin check). */
  readonly corsOrigins: readonly string[];
  /** Secure cookies: on whenever the API is served over https. */
  readonly secureCookies: boolean;
  readonly tradeRate: RateLimit;
  readonly signInPerEmail: RateLimit;
  readonly signInPerIp: RateLimit;
  /** Sign-in emails of the whole deployment, every address and IP together. */
  readonly signInPerDeployment: RateLimit;
  /** History reads per user, for each history route on its own: each is a Postgres query. */
  readonly historyRate: RateLimit;
  /** Candle reads per client IP (per /64 for IPv6), signed in or not: each is a Postgres query. */
  readonly candlesRate: RateLimit;
  /** Sign-in link checks per IP (counted like sign-ins, per /64 for IPv6): each is a Postgres query. */
  readonly verifyPerIp: RateLimit;
  /** Stream tickets per user: one per connection, reconnects included. */
  readonly streamTicketRate: RateLimit;
  /** The live stream's WebSocket URL, handed out with each ticket. */
  readonly streamUrl: string;
  /** Idempotency-Key records per user and their TTL; absent: IDEMPOTENCY_KEY_LIMITS (tests lower them). */
  readonly idempotencyKeys?: IdempotencyKeyLimits | undefined;
}

export interface ApiDeps {
  readonly redis: ApiRedis;
  readonly db: Queryable;
  readonly keys: Keyspace;
  readonly engine: EngineClient;
  readonly sessions: Sessions;
  readonly mailer: Mailer;
  /** Present when no email provider is configured: sign-in emails are kept here (local development). */
  readonly devMailbox?: { list(limit: number): Promise<DevMail[]> } | undefined;
  readonly log: Logger;
  readonly settings: ApiSettings;
  /** The caller's IP address as the entry's platform reports it (socket address, API Gateway source IP). */
  readonly clientIp: (c: Context) => string;
  /**
   * How long this request may still run before its platform ends it, less the time to hand the answer back: the
   * Lambda entry's remaining time (functions/engine-client.ts cuts the wait for the engine to it). Absent: no limit.
   */
  readonly timeLeftMs?: ((c: Context) => number) | undefined;
  /** Times each request for the metrics port (functions/metrics.ts); only the Node entry has one. */
  readonly requestMetrics?: MiddlewareHandler<ApiEnv> | undefined;
}

export type ApiEnv = {
  Variables: {
    session: Session;
    requestId: string;
    /** Set once a trade POST's admission script has checked the session's revocation (middleware.ts). */
    revocationChecked: boolean;
    /**
     * Set when requireSession's "notice-owed" let through a session revoked whose notice to the stream replicas is
     * still owed (signing out everywhere, retried after a 503).
     */
    sessionNoticeOwed: boolean;
  };
};
export type ApiContext = Context<ApiEnv>;
