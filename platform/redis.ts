/**
 * Redis for the always-on processes (ioredis over TCP). Streams are the log, so the connection retries forever
 * and commands wait for it instead of failing; a process that cannot reach Redis says so in its logs. A process
 * may turn off the resending of unanswered commands for a connection of its own (`RedisConnectionOptions`).
 */
import { Redis } from "ioredis";
import { ConfigError } from "./config.ts";
import type { Logger } from "./log.ts";

export interface RedisConnectionOptions {
  /**
   * Whether a command sent before the connection dropped, and not answered, is sent again once it is back (default
   * true, as ioredis does). false drops such a command: it is never sent again, and ioredis rejects its promise
   * (AbortError, "Command aborted due to connection close") once the connection is ready again, or at the close
   * already for a pipeline answered in part; until then it is pending. For a connection whose every command its user
   * races against the connection's `close` event, and for which a command Redis may have run already must not run
   * again (a group read: it would take the next entries). Whoever awaits such a command alone must handle that
   * rejection.
   */
  readonly resendUnanswered?: boolean;
  /**
   * How often (ms) a Redis still loading its data after a restart is asked again whether it is ready (ioredis's
   * `maxLoadingRetryTime`; by default its loading estimate, at most 10 s). A connection that bounds the silence
   * before it is ready needs the asking more often than that bound.
   */
  readonly loadingRecheckMs?: number;
}

export function connectRedis(url: string, log: Logger, name: string, options: RedisConnectionOptions = {}): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    // Blocking reads (XREAD BLOCK) and long outages must not turn into rejected commands.
    maxRetriesPerRequest: null,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
    lazyConnect: false,
    autoResendUnfulfilledCommands: options.resendUnanswered ?? true,
    ...(options.loadingRecheckMs === undefined ? {} : { maxLoadingRetryTime: options.loadingRecheckMs }),
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
 * What the engine and worker check of the Redis in use at start. AOF off only warns: a Redis restart then loses
 * acknowledged orders, which a development Redis may accept knowingly. An eviction policy other than `noeviction`
 * refuses to start (a ConfigError): every guard of the system (the log and the engine's lease, the read models'
 * watermarks, tombstones and marks, the events store, the answers) lives in Redis, and a key evicted under memory
 * pressure breaks one of them silently while everything runs on, where `noeviction` fails the write loudly instead.
 * It refuses whatever `maxmemory` is: a limit set later (CONFIG SET, a provider's plan) starts evicting at once,
 * with no restart to check again. A Redis that reports no policy (a managed one may not) gets a warning instead.
 */
export async function checkDurability(
  redis: Redis,
  log: Logger,
): Promise<{ appendonly: boolean | undefined; fsync: string; evictionPolicy: string | undefined }> {
  const [, appendonly] = (await redis.config("GET", "appendonly").catch(() => [])) as [string?, string?];
  const [, fsync = "unknown"] = (await redis.config("GET", "appendfsync").catch(() => [])) as [string?, string?];
  const evictionPolicy = await readEvictionPolicy(redis);
  const on = appendonly === undefined ? undefined : appendonly === "yes";
  if (on === undefined) {
    // Managed Redis (Upstash) does not expose its configuration; its persistence is the provider's to state.
    log.info("redis_durability", { appendonly: "not reported by this Redis", appendfsync: fsync, evictionPolicy });
  } else if (!on) {
    log.warn("redis_aof_off", {
      message:
        "Redis runs WITHOUT append-only persistence: a Redis restart loses acknowledged orders. Run it with --appendonly yes (and --appendfsync always for no loss at all).",
      evictionPolicy,
    });
  } else {
    log.info("redis_durability", { appendonly: on, appendfsync: fsync, evictionPolicy });
  }
  if (evictionPolicy === undefined) {
    log.warn("redis_eviction_unchecked", {
      message:
        "This Redis reports no maxmemory-policy (neither CONFIG GET nor INFO memory), so whether it evicts keys was not checked. It must not: an evicted key silently breaks the log, the lease and the read models' guards. On Upstash, keep the database's Eviction setting off (the default).",
    });
  } else if (evictionPolicy !== "noeviction") {
    throw new ConfigError(
      `Redis's maxmemory-policy must be noeviction, got "${evictionPolicy}": under memory pressure Redis would ` +
        "delete keys this system needs (the log, the engine's lease, the read models' guards, answers) and break it " +
        "silently. Run CONFIG SET maxmemory-policy noeviction (and set maxmemory-policy noeviction in redis.conf, " +
        "or --maxmemory-policy noeviction, so a restart keeps it); on Upstash, turn Eviction off in the database's " +
        "Configuration in the console.",
    );
  }
  return { appendonly: on, fsync, evictionPolicy };
}

/**
 * Redis's `maxmemory-policy`: from CONFIG GET, else from INFO memory's `maxmemory_policy` (managed Redis often refuses
 * CONFIG, or answers it with nothing, as Upstash does for all but one parameter, and may still report the policy
 * there); undefined when neither says.
 */
async function readEvictionPolicy(redis: Redis): Promise<string | undefined> {
  const [, configured] = (await redis.config("GET", "maxmemory-policy").catch(() => [])) as [string?, string?];
  if (configured !== undefined && configured !== "") return configured;
  const info = await redis.info("memory").catch(() => "");
  const reported = /^maxmemory_policy:(.*)$/m.exec(info)?.[1]?.trim();
  return reported === undefined || reported === "" ? undefined : reported;
}

/** What unlessClosed gives for a command whose connection closed before its answer came. */
export const CLOSED = Symbol("closed");

/**
 * `command`'s answer, or CLOSED when its connection closes first: ioredis then sends the command again once
 * reconnected, or (autoResendUnfulfilledCommands off) drops it and rejects it (AbortError) once reconnected, so any
 * later answer or rejection is not this caller's (the race has handled it). One still queued while disconnected is
 * sent on reconnecting.
 */
export async function unlessClosed<T>(redis: Redis, command: Promise<T>): Promise<T | typeof CLOSED> {
  let onClose!: () => void;
  const closed = new Promise<typeof CLOSED>((resolve) => (onClose = () => resolve(CLOSED)));
  redis.once("close", onClose);
  try {
    return await Promise.race([command, closed]);
  } finally {
    redis.off("close", onClose);
  }
}
