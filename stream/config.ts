/**
 * The stream process's configuration, read once by stream/main.ts. Which browser origins may open a socket follows
 * the API's rule (functions/app.ts): APP_URL's origin, the CORS_ORIGINS list and, in development (no
 * RESEND_API_KEY), APP_URL's scheme and port on the other loopback names, so that a page that got its ticket from
 * http://127.0.0.1:3000 can use it.
 */
import { corsOrigins, developmentOrigins, keyPrefix, redisUrl, text, url, wholeNumber } from "../platform/config.ts";
import type { StreamLimits } from "./connection.ts";

type Env = Readonly<Record<string, string | undefined>>;

export interface StreamConfig {
  readonly port: number;
  readonly host: string;
  readonly redisUrl: string;
  /** The candles table: a coarser candle's bucket so far, read when its first subscriber comes. */
  readonly databaseUrl: string;
  readonly prefix: string;
  readonly allowedOrigins: ReadonlySet<string>;
  readonly limits: StreamLimits;
}

export function readStreamConfig(env: Env): StreamConfig {
  const apiPort = wholeNumber(env, "PORT", 3000, 1, 65535);
  const appUrl = url(env, "APP_URL", `http://localhost:${apiPort}`, ["http:", "https:"]);
  return {
    port: wholeNumber(env, "STREAM_PORT", 3001, 0, 65535),
    host: text(env, "STREAM_HOST", text(env, "HOST", "127.0.0.1")),
    redisUrl: redisUrl(env),
    databaseUrl: url(env, "DATABASE_URL", undefined, ["postgres:", "postgresql:"]),
    prefix: keyPrefix(env),
    allowedOrigins: new Set([new URL(appUrl).origin, ...corsOrigins(env), ...developmentOrigins(env, appUrl)]),
    limits: {
      ...DEFAULT_LIMITS,
      heartbeatMs: wholeNumber(env, "STREAM_HEARTBEAT_MS", DEFAULT_LIMITS.heartbeatMs, 100, 600_000),
      maxMessagesPerSec: wholeNumber(env, "STREAM_MAX_MESSAGES_PER_SEC", DEFAULT_LIMITS.maxMessagesPerSec, 1, 10_000),
      maxSubscriptions: wholeNumber(env, "STREAM_MAX_SUBSCRIPTIONS", DEFAULT_LIMITS.maxSubscriptions, 1, 10_000),
      maxConnectionsPerUser: wholeNumber(
        env,
        "STREAM_MAX_CONNECTIONS_PER_USER",
        DEFAULT_LIMITS.maxConnectionsPerUser,
        1,
        10_000,
      ),
      privateBufferCapBytes: wholeNumber(
        env,
        "STREAM_PRIVATE_BUFFER_CAP_BYTES",
        DEFAULT_LIMITS.privateBufferCapBytes,
        16_384,
        1 << 30,
      ),
    },
  };
}

export const DEFAULT_LIMITS: StreamLimits = {
  heartbeatMs: 10_000,
  maxMessagesPerSec: 20,
  // A client over the rate for this many seconds' worth of messages in a burst is closed (4029).
  rateBurstSeconds: 3,
  maxSubscriptions: 50,
  maxFrameBytes: 4096,
  // A user's tabs and devices fit; a script opening a socket per ticket (60 a minute) stops here, each socket being
  // memory, a share of every quote burst, and with the private channel an account read and a mirror.
  maxConnectionsPerUser: 20,
  // Above this many bytes waiting in the socket, quotes and candles are held back (latest kept) until it drains.
  quoteThinBytes: 64 * 1024,
  // Any frame that leaves more than this many bytes waiting, besides the largest frame among them, closes the socket
  // (4008): it resumes by seq.
  privateBufferCapBytes: 1024 * 1024,
  // Quotes per asset per client: at most one per this many ms (10 a second).
  quoteIntervalMs: 100,
  // At most one price-driven summary per connection per this many ms.
  summaryIntervalMs: 1_000,
  // The backstop check of every open session's revocation key, behind the logout notice on the fan-out (which closes
  // a signed-out session's sockets within a second). One EXISTS per session per check, and Upstash bills each.
  revocationCheckMs: 30_000,
};
