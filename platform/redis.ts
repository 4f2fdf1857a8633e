/**
 * Redis for the always-on processes (ioredis over TCP). Streams are the log, so the connection retries forever
 * and commands wait for it instead of failing; a process that cannot reach Redis says so in its logs. A process
 * may turn off the resending of unanswered commands for a connection of its own (`RedisConnectionOptions`).
 */
import { Redis } from "ioredis";
import type { Logger } from "./log.ts";

export interface RedisConnectionOptions {
  /**
   * Whether a command sent before the connection dropped, and not answered, is sent again once it is back (default
   * true, as ioredis does). false drops such a command, and its promise never settles: for a connection whose
   * every command its user races against the connection's `close` event, and for which a command Redis may have
   * run already must not run again (a group read: it would take the next entries).
   */
  readonly resendUnanswered?: boolean;
}

export function connectRedis(url: string, log: Logger, name: string, options: RedisConnectionOptions = {}): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    // Blocking reads (XREAD BLOCK) and long outages must not turn into rejected commands.
    maxRetriesPerRequest: null,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
    lazyConnect: false,
    autoResendUnfulfilledCommands: options.resendUnanswered ?? true,
  });
  logOutages(redis, log);
  return redis;
}

/** Logs the first error of an outage and the recovery, not every failed reconnect. */
export function logOutages(redis: Redis, log: Logger | undefined): void {
  let down = false;
  redis.on("error", (err: Error) => {
    if (!down) log?.warn("redis_error", { error: err.message });
    down = true;
  });
  redis.on("ready", () => {
    if (down) log?.info("redis_reconnected");
    down = false;
  });
}

/**
 * Warns loudly when the Redis in use does not persist the log: with AOF off, a Redis restart loses every
 * instruction since its last RDB save, which recovery (snapshot + log) cannot bring back.
 */
export async function checkDurability(
  redis: Redis,
  log: Logger,
): Promise<{ appendonly: boolean | undefined; fsync: string }> {
  const [, appendonly] = (await redis.config("GET", "appendonly").catch(() => [])) as [string?, string?];
  const [, fsync = "unknown"] = (await redis.config("GET", "appendfsync").catch(() => [])) as [string?, string?];
  if (appendonly === undefined) {
    // Managed Redis (Upstash) does not expose its configuration; its persistence is the provider's to state.
    log.info("redis_durability", { appendonly: "not reported by this Redis", appendfsync: fsync });
    return { appendonly: undefined, fsync };
  }
  const on = appendonly === "yes";
  if (!on) {
    log.warn("redis_aof_off", {
      message:
        "Redis runs WITHOUT append-only persistence: a Redis restart loses acknowledged orders. Run it with --appendonly yes (and --appendfsync always for no loss at all).",
    });
  } else {
    log.info("redis_durability", { appendonly: on, appendfsync: fsync });
  }
  return { appendonly: on, fsync };
}
