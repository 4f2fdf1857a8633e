/**
 * ApiRedis over TCP with ioredis, for the local server and containers. Unlike the always-on processes
 * (platform/redis.ts), a function must answer 503 rather than wait for Redis, so every call here is bounded:
 *
 * - Commands share one connection with a `commandTimeout`. The offline queue stays on, so a command issued while
 *   the connection is still being made (a cold start) waits for it instead of failing at once; `maxRetriesPerRequest:
 *   1` fails queued commands after two failed reconnects (milliseconds when nothing listens), and the command timeout
 *   bounds the rest (a host that swallows packets). Reconnecting goes on in the background.
 * - `waitFirst` is BLPOP, which holds its connection, so each waiter borrows one of a pool. Those carry no
 *   `commandTimeout` (it would cut a long pop short); instead a deadline of the pop's own timeout plus a grace rejects
 *   the call and discards the connection, whose state is then unknown. At most `maxBlocking` are in use at once:
 *   past that, a waiter polls LINDEX on the command connection as the REST adapter does (api-redis.ts pollFirst),
 *   leaving the answer on its key until it expires: a stalled engine leaves every request waiting, and each
 *   connection is one of Redis's `maxclients` and one of this process's file descriptors.
 * - RESP2 (`protocol: 2`): the reply shapes the Upstash REST side gives, so both adapters answer alike.
 * - EVAL goes out as EVALSHA (sha1 cached per script text), falling back to EVAL, which also loads the script, on
 *   NOSCRIPT. Scripts are constants in code, so the cache stays small.
 */
import { Redis } from "ioredis";
import type { Logger } from "../../platform/log.ts";
import { blpopTimeoutSeconds, pollFirst, REDIS_CALL_TIMEOUT_MS, scriptRunner, type ApiRedis } from "./api-redis.ts";
import { createBlockingConnections } from "./blocking-connections.ts";
import { logOutages } from "../../platform/redis.ts";

export interface IoredisApiRedisOptions {
  /** Bound on each non-blocking command, waiting for a connection included. Default REDIS_CALL_TIMEOUT_MS. */
  readonly commandTimeoutMs?: number;
  /** How long past its own timeout a BLPOP may stay unanswered before it rejects. Default 1 000 ms. */
  readonly blockingGraceMs?: number;
  /**
   * Idle blocking connections kept for reuse: about as many as requests wait for the engine at once, or each order
   * under load opens and drops a connection, which costs more than the request itself. Default 128.
   */
  readonly maxIdleBlocking?: number;
  /**
   * Blocking connections in use at once; past it, waiters poll (`pollMinMs`, `pollMaxMs`, as over REST). Default
   * MAX_BLOCKING_CONNECTIONS.
   */
  readonly maxBlocking?: number;
  /** The polls' first pause and the longest it grows to. Defaults 2 and 20 ms. */
  readonly pollMinMs?: number;
  readonly pollMaxMs?: number;
  readonly log?: Logger;
}

/**
 * Blocking connections one API process holds at most (docs/operations.md). Well above the requests that wait for the
 * engine at once when it answers (each waits milliseconds), and far below Redis's 10,000 `maxclients` and a process's
 * usual 1,024 file descriptors, so a stall that makes every request wait the full ENGINE_TIMEOUT_MS costs polls, not
 * connections.
 */
export const MAX_BLOCKING_CONNECTIONS = 256;

export function createIoredisApiRedis(url: string, options: IoredisApiRedisOptions = {}): ApiRedis {
  const commandTimeoutMs = options.commandTimeoutMs ?? REDIS_CALL_TIMEOUT_MS;
  const blockingGraceMs = options.blockingGraceMs ?? 1_000;
  const commands = new Redis(url, {
    protocol: 2,
    connectionName: "api",
    commandTimeout: commandTimeoutMs,
    connectTimeout: commandTimeoutMs,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    // Commands issued in the same tick by concurrent requests go out in one write: under load the API spent a
    // quarter of its CPU in per-command socket writes.
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(100 * attempt, 1_000),
  });
  logOutages(commands, options.log);
  const blocking = createBlockingConnections(
    () => {
      const connection = commands.duplicate({
        connectionName: "api-blocking",
        commandTimeout: undefined,
        enableAutoPipelining: false,
      });
      logOutages(connection, options.log);
      return connection;
    },
    {
      maxIdle: options.maxIdleBlocking ?? 128,
      maxBusy: options.maxBlocking ?? MAX_BLOCKING_CONNECTIONS,
    },
  );
  const pollMinMs = options.pollMinMs ?? 2;
  const pollMaxMs = Math.max(pollMinMs, options.pollMaxMs ?? 20);

  return {
    eval: scriptRunner(
      (sha, keys, args) => commands.evalsha(sha, keys.length, ...keys, ...args),
      (script, keys, args) => commands.eval(script, keys.length, ...keys, ...args),
    ),
    async waitFirst(key, timeoutMs) {
      const seconds = blpopTimeoutSeconds(timeoutMs);
      const connection = blocking.acquire();
      if (connection === undefined) return pollFirst(() => commands.lindex(key, 0), timeoutMs, pollMinMs, pollMaxMs);
      let reusable = false;
      try {
        const reply = await withDeadline(connection.blpop(key, seconds), timeoutMs + blockingGraceMs);
        reusable = true;
        return reply === null ? null : reply[1];
      } finally {
        blocking.release(connection, reusable);
      }
    },
    hgetall: (key) => commands.hgetall(key),
    get: (key) => commands.get(key),
    async set(key, value, ttlMs) {
      await commands.set(key, value, "PX", ttlMs);
    },
    lrange: (key, start, stop) => commands.lrange(key, start, stop),
    async ping() {
      await commands.ping();
    },
    async close() {
      blocking.close();
      // QUIT lets replies still in flight arrive; when Redis is down it fails (bounded), and disconnect ends it.
      await commands.quit().catch(() => undefined);
      commands.disconnect();
    },
  };
}

async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`BLPOP got no reply within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
