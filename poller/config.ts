/**
 * The poller's configuration, read once from the environment by main.ts with the shared readers
 * (platform/config.ts), so a bad value stops the process at start with a message naming the variable.
 */
import { keyPrefix as readKeyPrefix, oneOf, redisUrl, url, wholeNumber } from "../platform/config.ts";
import { BOOK_SILENCE_MS } from "./heartbeat.ts";

export type FeedMode = "auto" | "backpack" | "sim";

export interface PollerConfig {
  readonly redisUrl: string;
  /** Put before every key name (keyspace(prefix)); must match the engine's. */
  readonly keyPrefix: string;
  readonly feed: FeedMode;
  readonly backpackWsUrl: string;
  /** An external sim feed to use instead of starting one in-process. */
  readonly simWsUrl: string | undefined;
  /**
   * How long (ms of exchange time) a market's book may show nothing before its heartbeats stop (heartbeat.ts). A
   * quiet but live book sends nothing while its top is unchanged, so a longer bound keeps it tradable through quiet
   * hours, and keeps a book that stopped while its mark price flows tradable just as long.
   */
  readonly bookSilenceMs: number;
}

/** Every variable the poller reads. */
export const POLLER_ENV = [
  "REDIS_URL",
  "KEY_PREFIX",
  "FEED",
  "BACKPACK_WS_URL",
  "SIM_WS_URL",
  "POLLER_BOOK_SILENCE_MS",
  "POLLER_METRICS_PORT",
  "METRICS_HOST",
] as const;

type Env = Readonly<Record<string, string | undefined>>;

export function readPollerConfig(env: Env): PollerConfig {
  const keyPrefix = readKeyPrefix(env);
  const simWsUrlSet = (env.SIM_WS_URL?.trim() ?? "") !== "";
  return {
    redisUrl: redisUrl(env),
    keyPrefix,
    feed: oneOf(env, "FEED", ["auto", "backpack", "sim"], "auto"),
    backpackWsUrl: url(env, "BACKPACK_WS_URL", "wss://ws.backpack.exchange", ["ws:", "wss:"]),
    simWsUrl: simWsUrlSet ? url(env, "SIM_WS_URL", undefined, ["ws:", "wss:"]) : undefined,
    bookSilenceMs: wholeNumber(env, "POLLER_BOOK_SILENCE_MS", BOOK_SILENCE_MS, 1_000, 3_600_000),
  };
}
