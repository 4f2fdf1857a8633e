/**
 * The API's configuration (docs/api.md, Configuration), read once by an entry and turned into the app's dependencies. Both
 * entries share this, so the Node server and the Lambda handler cannot drift apart.
 */
import type { Context } from "hono";
import type { ServerOptions } from "node:http";
import { keyspace } from "../contract/names.ts";
import {
  ConfigError,
  corsOrigins,
  keyPrefix,
  LOOPBACK_NAMES,
  redisUrl,
  text,
  url,
  wholeNumber,
} from "../platform/config.ts";
import type { Logger } from "../platform/log.ts";
import type { Queryable } from "../platform/postgres.ts";
import { createDevMailbox, createResendMailer } from "./auth/mailer.ts";
import { Sessions } from "./auth/sessions.ts";
import type { ApiDeps, ApiSettings } from "./context.ts";
import { createEngineClient } from "./engine-client.ts";
import type { ApiRedis } from "./redis/api-redis.ts";
import { createIoredisApiRedis } from "./redis/ioredis-api-redis.ts";
import { createUpstashApiRedis } from "./redis/upstash-api-redis.ts";

type Env = Readonly<Record<string, string | undefined>>;

/** The shortest session signing key taken, from JWT_SECRET or the Node API's kept file (auth/kept-secret.ts). */
export const JWT_SECRET_MIN_LENGTH = 32;

/**
 * EMAIL_FROM when unset: Resend's testing sender, which needs no domain of one's own but which Resend sends only to
 * the address of the Resend account itself (any other recipient: 403 `validation_error`, "You can only send testing
 * emails to your own email address", resend.com/docs/api-reference/errors). Enough to try sign-in locally with a
 * key; refused with NODE_ENV=production, where it would leave every other user without a sign-in link.
 */
export const TESTING_EMAIL_FROM = "Paper Broker <onboarding@resend.dev>";

export interface ApiConfig {
  readonly port: number;
  readonly databaseUrl: string;
  readonly redis:
    | { readonly kind: "tcp"; readonly url: string }
    | {
        readonly kind: "upstash";
        readonly url: string;
        readonly token: string;
        readonly pollMinMs: number;
        readonly pollMaxMs: number;
      };
  readonly prefix: string;
  readonly jwtSecret: string | undefined;
  readonly resend: { readonly apiKey: string; readonly baseUrl?: string | undefined } | undefined;
  readonly emailFrom: string;
  readonly engineTimeoutMs: number;
  readonly settings: ApiSettings;
}

export function readApiConfig(env: Env): ApiConfig {
  const port = wholeNumber(env, "PORT", 3000, 1, 65535);
  const appUrl = url(env, "APP_URL", `http://localhost:${port}`, ["http:", "https:"]);
  const upstashUrl = env.UPSTASH_REDIS_REST_URL?.trim();
  const jwtSecret = env.JWT_SECRET?.trim() || undefined;
  if (jwtSecret !== undefined && jwtSecret.length < JWT_SECRET_MIN_LENGTH)
    throw new ConfigError(
      `JWT_SECRET: expected at least ${JWT_SECRET_MIN_LENGTH} characters, received ${jwtSecret.length}`,
    );
  const resendKey = env.RESEND_API_KEY?.trim();
  // Without a key, sign-in links go to the dev mailbox: fine on a developer's machine, an account takeover anywhere
  // else (whoever reads the mailbox can sign in as anyone who asked for a link). The mailbox answers only requests
  // from loopback, and a proxy on the same machine (nginx in front of the API) makes every request look so: an
  // APP_URL that is not a loopback name says the API is reached from elsewhere, so it needs a real email provider.
  if (!resendKey && env.NODE_ENV === "production")
    throw new ConfigError("RESEND_API_KEY is required when NODE_ENV=production");
  const appHost = new URL(appUrl).hostname;
  if (!resendKey && !LOOPBACK_NAMES.includes(appHost))
    throw new ConfigError(
      `RESEND_API_KEY is required unless APP_URL's host is a loopback name (${LOOPBACK_NAMES.join(", ")}): ` +
        `without it sign-in links go to the dev mailbox, for this machine only; got APP_URL "${appUrl}" and no key`,
    );
  const emailFrom = text(env, "EMAIL_FROM", TESTING_EMAIL_FROM);
  if (env.NODE_ENV === "production" && isResendTestingSender(emailFrom))
    throw new ConfigError(
      "EMAIL_FROM: expected a sender on a domain verified in Resend when NODE_ENV=production, received " +
        `"${emailFrom}"${env.EMAIL_FROM?.trim() ? "" : " (the default)"}: Resend sends from resend.dev only to the ` +
        "Resend account's own address, so no one else could sign in",
    );
  const signInPerIp = wholeNumber(env, "SIGN_IN_LIMIT_PER_IP", 30, 1, 1_000_000);
  // However many addresses and IPs ask: what bounds the provider's bill and the bounces a sending domain's
  // reputation takes when a botnet asks for links to addresses that do not exist.
  const signInEmailsPerDay = wholeNumber(env, "SIGN_IN_EMAILS_PER_DAY", 1_000, 1, 100_000_000);
  const appRedirectUrl = env.APP_REDIRECT_URL?.trim()
    ? url(env, "APP_REDIRECT_URL", undefined, ["http:", "https:"])
    : undefined;
  // Over REST, which has no BLPOP, a trade request polls for its answer (functions/redis/upstash-api-redis.ts).
  // The stream runs as its own process (stream/): locally on STREAM_PORT beside the API, deployed behind its own
  // load balancer, whose address is STREAM_URL.
  // The stream's own reader takes 0, a free port, as other ports do; the API then cannot know where it is.
  const streamPort = wholeNumber(env, "STREAM_PORT", 3001, 0, 65535);
  if (streamPort === 0 && !env.STREAM_URL?.trim())
    throw new ConfigError(
      'STREAM_PORT must be from 1 to 65535 unless STREAM_URL is set (0, a free port, leaves the API no stream address to hand out), got "0"',
    );
  const streamUrl = url(env, "STREAM_URL", `ws://localhost:${streamPort}/api/v1/stream`, ["ws:", "wss:"]);
  const pollMinMs = wholeNumber(env, "UPSTASH_POLL_MIN_MS", 2, 1, 1_000);
  const pollMaxMs = wholeNumber(env, "UPSTASH_POLL_MAX_MS", 20, 1, 1_000);
  if (pollMaxMs < pollMinMs)
    throw new ConfigError(
      `UPSTASH_POLL_MAX_MS: expected at least UPSTASH_POLL_MIN_MS (${pollMinMs}), received ${pollMaxMs}`,
    );
  return {
    port,
    databaseUrl: url(env, "DATABASE_URL", undefined, ["postgres:", "postgresql:"]),
    redis: upstashUrl
      ? {
          kind: "upstash",
          url: url(env, "UPSTASH_REDIS_REST_URL", undefined, ["https:", "http:"]),
          token: text(env, "UPSTASH_REDIS_REST_TOKEN"),
          pollMinMs,
          pollMaxMs,
        }
      : { kind: "tcp", url: redisUrl(env) },
    prefix: keyPrefix(env),
    jwtSecret,
    resend: resendKey ? { apiKey: resendKey, baseUrl: env.RESEND_BASE_URL?.trim() || undefined } : undefined,
    emailFrom,
    engineTimeoutMs: wholeNumber(env, "ENGINE_TIMEOUT_MS", 5_000, 100, 120_000),
    settings: {
      appUrl,
      appRedirectUrl,
      corsOrigins: corsOrigins(env),
      // By the parsed scheme: "HTTPS://…" is https too.
      secureCookies: new URL(appUrl).protocol === "https:" || env.NODE_ENV === "production",
      tradeRate: { limit: wholeNumber(env, "TRADE_RATE_LIMIT_PER_SEC", 20, 1, 1_000_000), windowMs: 1000 },
      signInPerEmail: { limit: 5, windowMs: 15 * 60_000 },
      signInPerIp: { limit: signInPerIp, windowMs: 15 * 60_000 },
      signInPerDeployment: { limit: signInEmailsPerDay, windowMs: 24 * 3_600_000 },
      historyRate: { limit: wholeNumber(env, "HISTORY_RATE_LIMIT_PER_SEC", 10, 1, 1_000_000), windowMs: 1000 },
      candlesRate: { limit: wholeNumber(env, "CANDLES_RATE_LIMIT_PER_SEC", 10, 1, 1_000_000), windowMs: 1000 },
      verifyPerIp: {
        limit: wholeNumber(env, "VERIFY_LIMIT_PER_IP", signInPerIp, 1, 1_000_000),
        windowMs: 15 * 60_000,
      },
      streamTicketRate: { limit: wholeNumber(env, "STREAM_TICKET_LIMIT_PER_MIN", 60, 1, 1_000_000), windowMs: 60_000 },
      streamUrl,
    },
  };
}

/** Whether a sender ("Name <address>" or a bare address) is on resend.dev, Resend's testing domain. */
function isResendTestingSender(from: string): boolean {
  const address = /<([^<>]*)>\s*$/.exec(from)?.[1] ?? from;
  const domain = address
    .slice(address.lastIndexOf("@") + 1)
    .trim()
    .toLowerCase()
    .replace(/\.$/, "");
  return domain === "resend.dev" || domain.endsWith(".resend.dev");
}

/** How long the Node server waits on a client (server.ts). */
export interface HttpTimeouts {
  /** From a request's first byte until its headers are in. */
  readonly headersTimeoutMs: number;
  /** From a request's first byte until its whole body is in; the handler's own time is not counted. */
  readonly requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open between requests. */
  readonly keepAliveTimeoutMs: number;
}

/**
 * Bodies here are at most 16 KB, so a client that has not sent its request within seconds is stalled or hostile;
 * Node's defaults (300 s for the request) would let a few thousand such connections pin the server's sockets.
 */
export function readHttpTimeouts(env: Env): HttpTimeouts {
  const requestTimeoutMs = wholeNumber(env, "HTTP_REQUEST_TIMEOUT_MS", 10_000, 100, 600_000);
  const headersTimeoutMs = wholeNumber(env, "HTTP_HEADERS_TIMEOUT_MS", Math.min(5_000, requestTimeoutMs), 100, 600_000);
  if (headersTimeoutMs > requestTimeoutMs) {
    const unset = env.HTTP_REQUEST_TIMEOUT_MS?.trim() ? "" : ", its default";
    throw new ConfigError(
      `HTTP_HEADERS_TIMEOUT_MS: expected at most HTTP_REQUEST_TIMEOUT_MS (${requestTimeoutMs}${unset}), received ${headersTimeoutMs}`,
    );
  }
  const keepAliveTimeoutMs = wholeNumber(env, "HTTP_KEEP_ALIVE_TIMEOUT_MS", 5_000, 100, 600_000);
  return { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs };
}

/**
 * The Node server's options for these timeouts. Node checks them on a timer (every 30 s by default), which would
 * let a stalled request live up to 30 s past its timeout; the check runs at a tenth of the shortest timeout instead.
 */
export function nodeServerOptions(t: HttpTimeouts): { serverOptions: ServerOptions } {
  return {
    serverOptions: {
      headersTimeout: t.headersTimeoutMs,
      requestTimeout: t.requestTimeoutMs,
      keepAliveTimeout: t.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(t.headersTimeoutMs / 10))),
    },
  };
}

export function connectApiRedis(config: ApiConfig): ApiRedis {
  return config.redis.kind === "upstash"
    ? createUpstashApiRedis(config.redis)
    : createIoredisApiRedis(config.redis.url);
}

export function buildApiDeps(options: {
  config: ApiConfig;
  jwtSecret: string;
  redis: ApiRedis;
  db: Queryable;
  log: Logger;
  clientIp: (c: Context) => string;
  timeLeftMs?: (c: Context) => number;
}): ApiDeps {
  const { config, redis, db, log } = options;
  const keys = keyspace(config.prefix);
  const devMailbox = config.resend === undefined ? createDevMailbox({ redis, key: keys.devMailbox, log }) : undefined;
  const mailer =
    config.resend === undefined
      ? devMailbox!
      : createResendMailer({
          apiKey: config.resend.apiKey,
          baseUrl: config.resend.baseUrl,
          from: config.emailFrom,
          log,
        });
  if (devMailbox !== undefined)
    log.warn("dev_mailbox", {
      message:
        "RESEND_API_KEY is not set: sign-in links are logged and kept in the dev mailbox (GET /api/v1/dev/mailbox) instead of being emailed.",
    });
  return {
    redis,
    db,
    keys,
    log,
    mailer,
    devMailbox,
    engine: createEngineClient(redis, keys, config.engineTimeoutMs, log),
    sessions: new Sessions(new TextEncoder().encode(options.jwtSecret), redis, keys),
    settings: config.settings,
    clientIp: options.clientIp,
    timeLeftMs: options.timeLeftMs,
  };
}
