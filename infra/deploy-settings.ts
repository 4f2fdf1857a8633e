/**
 * What the environment `sst deploy` (or `sst dev`) runs in decides for a stage, beside its secrets: the public host
 * names of the API (API_DOMAIN) and of the stream (STREAM_DOMAIN), and the API's plain settings passed on to the
 * processes; the containers' settings are their plans' (plan.ts), and one set there to another value than its
 * default is warned about, not passed on.
 * sst.config.ts reads it once. No SST needed, so infra/deploy-settings.test.ts checks it, and that the
 * functions' own reader (functions/config.ts, which is not imported here: SST's platform types clash with it in the
 * infra type check) takes what this passes on.
 *
 * Why the API's host matters to a browser frontend: the session is an HttpOnly, SameSite=Lax cookie on the API's
 * host (the sign-in link points there). A browser sends a Lax cookie with a page's fetch only when the page and the
 * API are the same site: the same scheme and registrable domain (app.example.com and api.example.com are; ports do
 * not count). API Gateway's own host (<id>.execute-api.<region>.amazonaws.com) is no frontend's site, so without
 * API_DOMAIN every signed-in call a frontend makes, POST /api/v1/stream/ticket included, is 401.
 */
import { ConfigError, corsOrigins, wholeNumber } from "../platform/config.ts";
import { CONTAINER_PLANS, FUNCTION_TIMEOUT, FUNCTION_TIMEOUT_SECONDS, type ContainerName } from "./plan.ts";

type Env = Readonly<Record<string, string | undefined>>;

export interface DeploySettings {
  /** The API's host (API_DOMAIN), e.g. api.example.com; unset: API Gateway's own. */
  readonly apiDomain: string | undefined;
  /** The stream's host (STREAM_DOMAIN), e.g. stream.example.com: wss:// on 443 (plan.ts streamLoadBalancer). */
  readonly streamDomain: string | undefined;
  /** The functions' settings from FUNCTION_SETTINGS that are set: unset ones keep functions/config.ts's defaults. */
  readonly functionEnv: Readonly<Record<string, string>>;
  /** The stream container's, from STREAM_SETTINGS. */
  readonly streamEnv: Readonly<Record<string, string>>;
  /** What may not work as meant with these settings: sst.config.ts prints them. */
  readonly warnings: readonly string[];
}

/** The API's settings (docs/api.md, Configuration) passed on to the functions when set where `sst deploy` runs. */
export const FUNCTION_SETTINGS = [
  "CORS_ORIGINS",
  "APP_REDIRECT_URL",
  "ENGINE_TIMEOUT_MS",
  "TRADE_RATE_LIMIT_PER_SEC",
  "SIGN_IN_LIMIT_PER_IP",
  "SIGN_IN_EMAILS_PER_DAY",
  "VERIFY_LIMIT_PER_IP",
  "HISTORY_RATE_LIMIT_PER_SEC",
  "CANDLES_RATE_LIMIT_PER_SEC",
  "STREAM_TICKET_LIMIT_PER_MIN",
  "UPSTASH_POLL_MIN_MS",
  "UPSTASH_POLL_MAX_MS",
] as const;

/** The stream's: browser origins, besides the API's own, that may open a socket (as for the API). */
export const STREAM_SETTINGS = ["CORS_ORIGINS"] as const;

/**
 * What the API's configuration reads that the deploy neither sets (secrets, APP_URL, NODE_ENV, STREAM_URL) nor
 * passes on, and why.
 */
export const FUNCTION_SETTINGS_NOT_PASSED: Readonly<Record<string, string>> = {
  PORT: "the Node server's port; a function listens on none",
  STREAM_PORT: "only for STREAM_URL's local default; deployed, STREAM_URL is set",
  REDIS_URL: "the containers' Redis over TCP; the functions use Upstash's REST API",
  KEY_PREFIX:
    "the functions and every container must share it, and the containers do not get it: a stage has its own " +
    "Upstash database",
  RESEND_BASE_URL: "the tests' stand-in for Resend",
};

type Reader = ContainerName | "the functions";
const ALL_CONTAINERS: readonly Reader[] = ["engine", "worker", "poller", "stream"];

/** A setting the deploy does not pass on: the processes that read it, and the value they run with. */
export interface SettingNotPassed {
  readonly readers: readonly Reader[];
  /** Their readers' default, as .env.example shows it: no plan sets one of these, so a deployed process has this. */
  readonly deployed: string;
}

/**
 * The processes' settings (.env.example) that the deploy does not take from the environment it runs in: a
 * container's plain environment is its plan's (CONTAINER_PLANS in plan.ts), the same for every stage, so one of these
 * set where `sst deploy` runs would be dropped without a word. readDeploySettings warns about those set to another
 * value than the deployed one (a `.env` copied from .env.example repeats the defaults: no warning). To deploy one,
 * change the container's plan.
 */
export const CONTAINER_SETTINGS_NOT_PASSED: Readonly<Record<string, SettingNotPassed>> = {
  INITIAL_BALANCE_USD: { readers: ["engine"], deployed: "10000" },
  SNAPSHOT_EVERY_MS: { readers: ["engine"], deployed: "10000" },
  SNAPSHOT_SAVE_TIMEOUT_MS: { readers: ["engine"], deployed: "60000" },
  ENGINE_LEASE_TTL_MS: { readers: ["engine"], deployed: "500" },
  ENGINE_STANDBY_POLL_MS: { readers: ["engine"], deployed: "50" },
  ENGINE_STATS_EVERY_MS: { readers: ["engine"], deployed: "10000" },
  ENGINE_METRICS_PORT: { readers: ["engine"], deployed: "9141" },
  WORKER_CLAIM_IDLE_MS: { readers: ["worker"], deployed: "30000" },
  WORKER_STATS_EVERY_MS: { readers: ["worker"], deployed: "10000" },
  WORKER_OUTPUT_KEEP_MS: { readers: ["worker"], deployed: "3600000" },
  WORKER_METRICS_PORT: { readers: ["worker"], deployed: "9142" },
  BACKPACK_WS_URL: { readers: ["poller"], deployed: "wss://ws.backpack.exchange" },
  POLLER_BOOK_SILENCE_MS: { readers: ["poller"], deployed: "15000" },
  POLLER_METRICS_PORT: { readers: ["poller"], deployed: "9143" },
  STREAM_HEARTBEAT_MS: { readers: ["stream"], deployed: "10000" },
  STREAM_MAX_MESSAGES_PER_SEC: { readers: ["stream"], deployed: "20" },
  STREAM_MAX_SUBSCRIPTIONS: { readers: ["stream"], deployed: "50" },
  STREAM_MAX_CONNECTIONS_PER_USER: { readers: ["stream"], deployed: "20" },
  STREAM_PRIVATE_BUFFER_CAP_BYTES: { readers: ["stream"], deployed: "1048576" },
  STREAM_METRICS_PORT: { readers: ["stream"], deployed: "9145" },
  METRICS_HOST: { readers: ALL_CONTAINERS, deployed: "127.0.0.1" },
  // Blank is unset, so a KEY_PREFIX set at all differs from the deployed one (none).
  KEY_PREFIX: { readers: [...ALL_CONTAINERS, "the functions"], deployed: "" },
  LOG_LEVEL: { readers: [...ALL_CONTAINERS, "the functions"], deployed: "info" },
};

/**
 * The longest ENGINE_TIMEOUT_MS a deployed trade request may wait for the engine: the function's timeout less 5 s
 * for the rest of the request (the session, rate limits, the instruction's XADD, the answer) over the network. Each
 * request's wait is also cut to what its function has left (functions/engine-client.ts), so a request whose other
 * steps were slow still answers 504 in time; this keeps the setting to what a request can wait for in full.
 */
export const ENGINE_TIMEOUT_MAX_MS = (FUNCTION_TIMEOUT_SECONDS - 5) * 1000;

export function readDeploySettings(env: Env): DeploySettings {
  const apiDomain = hostName(env, "API_DOMAIN");
  const streamDomain = hostName(env, "STREAM_DOMAIN");
  const functionEnv = settingsSet(env, FUNCTION_SETTINGS);
  const streamEnv = settingsSet(env, STREAM_SETTINGS);
  // The functions' reader allows up to 120 s (functions/config.ts); deployed, a wait that long outlasts the function.
  const engineTimeoutMs = wholeNumber(functionEnv, "ENGINE_TIMEOUT_MS", 0, 0, Number.MAX_SAFE_INTEGER);
  if (engineTimeoutMs > ENGINE_TIMEOUT_MAX_MS)
    throw new ConfigError(
      `ENGINE_TIMEOUT_MS must be at most ${ENGINE_TIMEOUT_MAX_MS} when deployed: the functions time out after ` +
        `${FUNCTION_TIMEOUT}, and the rest of a request needs 5 s of it; got ${engineTimeoutMs}`,
    );
  const warnings = [
    ...frontendWarnings(apiDomain, streamDomain, corsOrigins(functionEnv)),
    ...notPassedWarnings(settingsSet(env, Object.keys(CONTAINER_SETTINGS_NOT_PASSED))),
  ];
  return { apiDomain, streamDomain, functionEnv, streamEnv, warnings };
}

/** The API's public URL (APP_URL): https://API_DOMAIN when set, else API Gateway's own URL. */
export function appUrlFor<T>(apiDomain: string | undefined, gatewayUrl: T): T | string {
  return apiDomain === undefined ? gatewayUrl : `https://${apiDomain}`;
}

/**
 * The functions' plain environment; their secrets come beside it (infra/sst/api.ts). `T` is SST's Output there,
 * a string in the tests.
 */
export function functionPlainEnv<T>(
  settings: Pick<DeploySettings, "functionEnv">,
  urls: { readonly appUrl: T | string; readonly streamUrl: T | string },
): Record<string, T | string> {
  return {
    ...settings.functionEnv,
    // Sign-in links point at the API itself (<APP_URL>/api/v1/auth/verify), so the session cookie is set on the
    // API's host; https also makes it Secure.
    APP_URL: urls.appUrl,
    NODE_ENV: "production",
    // Handed out with each stream ticket: the stream's load balancer (wss:// with STREAM_DOMAIN).
    STREAM_URL: urls.streamUrl,
  };
}

/** The stream container's plain environment: its plan's, the deploy's, and the API's URL for the Origin check. */
export function streamPlainEnv<T>(
  settings: Pick<DeploySettings, "streamEnv">,
  appUrl: T | string,
): Record<string, T | string> {
  return { ...CONTAINER_PLANS.stream.env, ...settings.streamEnv, APP_URL: appUrl };
}

/** Lower case, as API Gateway requires; no scheme, port or path, which SST would take as part of the name. */
const HOST_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function hostName(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return undefined;
  if (!HOST_NAME.test(raw))
    throw new ConfigError(
      `${name} must be a host name like ${name === "API_DOMAIN" ? "api" : "stream"}.example.com (lower case; no ` +
        `scheme, port or path), got "${raw}"`,
    );
  return raw;
}

function settingsSet(env: Env, names: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    names.flatMap((name) => {
      const value = env[name]?.trim();
      return value === undefined || value === "" ? [] : [[name, value]];
    }),
  );
}

/**
 * One warning naming each setting in `set` (CONTAINER_SETTINGS_NOT_PASSED) whose value is not the one deployed
 * processes run with, or none.
 */
function notPassedWarnings(set: Readonly<Record<string, string>>): string[] {
  const names = Object.entries(set).flatMap(([name, value]) => {
    const { readers, deployed } = CONTAINER_SETTINGS_NOT_PASSED[name]!;
    return value === deployed ? [] : [`${name}=${value} (${readers.join(", ")}; deployed: ${deployed || "unset"})`];
  });
  if (names.length === 0) return [];
  return [
    `${names.join(", ")} ${names.length === 1 ? "is" : "are"} set where \`sst deploy\` runs, but a deploy passes ` +
      `${names.length === 1 ? "it" : "them"} to no process, which keeps the value after "deployed" (the default): a ` +
      "container's plain settings are its plan's (CONTAINER_PLANS in infra/plan.ts), and the functions get only " +
      "FUNCTION_SETTINGS (infra/deploy-settings.ts). Change a container's plan to deploy one there.",
  ];
}

/**
 * Browser frontends (CORS_ORIGINS) that cannot use their session with these domains, and one that cannot open the
 * stream: a page served over https may not open the plain ws:// a stream without STREAM_DOMAIN hands out.
 */
function frontendWarnings(
  apiDomain: string | undefined,
  streamDomain: string | undefined,
  origins: readonly string[],
): string[] {
  const warnings: string[] = [];
  const why =
    "the browser does not send the session cookie (SameSite=Lax) with their requests, so every signed-in call " +
    "from them is 401 (docs/operations.md, Deploying)";
  if (apiDomain === undefined && origins.length > 0)
    warnings.push(
      `CORS_ORIGINS lists ${origins.join(", ")}, but without API_DOMAIN the API is on API Gateway's own host, ` +
        `another site than any frontend: ${why}. Set API_DOMAIN to a host of the frontend's site (api.example.com ` +
        `for app.example.com).`,
    );
  if (apiDomain !== undefined) {
    const elsewhere = origins.filter((origin) => !maybeSameSite(origin, apiDomain));
    if (elsewhere.length > 0)
      warnings.push(`CORS_ORIGINS lists ${elsewhere.join(", ")}, not on the site of API_DOMAIN ${apiDomain}: ${why}.`);
  }
  if (streamDomain === undefined && origins.some((origin) => origin.startsWith("https:")))
    warnings.push(
      "CORS_ORIGINS lists pages served over https, but without STREAM_DOMAIN the stream is plain ws://, which " +
        "such a page may not open (mixed content). Set STREAM_DOMAIN, e.g. stream.example.com.",
    );
  return warnings;
}

/**
 * Whether a page at `origin` may be the same site as https://`apiHost`: https too, and the same last two labels of
 * the host (an IP address: all of it). Hosts that differ there are never the same site; without the public suffix
 * list, hosts that agree there may still not be (a.co.uk and b.co.uk), which this does not catch.
 */
function maybeSameSite(origin: string, apiHost: string): boolean {
  const { protocol, hostname } = new URL(origin);
  const site = (host: string) =>
    /^[\d.]+$/.test(host) || host.includes(":") || host.startsWith("[") ? host : host.split(".").slice(-2).join(".");
  return protocol === "https:" && site(hostname) === site(apiHost);
}
