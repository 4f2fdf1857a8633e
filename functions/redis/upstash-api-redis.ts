/**
 * ApiRedis over Upstash's REST API with `@upstash/redis`, for the deployed Lambda functions (no TCP connection to
 * keep alive between invocations). Set so that replies match the ioredis adapter and every call is bounded:
 *
 * - `automaticDeserialization: false`: replies stay as Redis sent them, never JSON-parsed.
 * - `responseEncoding: "base64"` (the client's default, stated): the server base64-encodes every string, nested ones
 *   included, and the client decodes the bytes as UTF-8, as ioredis does; any value survives the JSON in between.
 * - No auto-pipelining: each call is its own request, so a failing script never shares a batch.
 * - Each call carries an AbortSignal made by a function: a deadline that fires then rejects the call (a plain
 *   signal would make this client *resolve* with "Aborted"). The client makes it once per call, before its retry
 *   loop, so it bounds the call, its retry on a network error included.
 * - `waitFirst` polls with LINDEX key 0 (api-redis.ts pollFirst): the REST API refuses blocking commands (BLPOP,
 *   XREAD … BLOCK). The first poll comes `pollMinMs` after the call, each pause then doubles up to `pollMaxMs`, then
 *   grows as a fifth of the time waited so far, and one last poll goes out at the deadline. An answer thus waits at
 *   most about one pause plus a round trip; each poll is one command (billed), about 30 for a 5 s wait that gets no
 *   answer. A poll that fails (a network error after the client's retry, its time limit, a gateway's error page) is
 *   taken as no answer yet; only a failed last poll rejects the wait: it cannot say whether an answer came.
 *   A poll reads without popping: HTTP cannot tell a lost reply from a lost request, and the client sends a request
 *   whose reply was lost again, so an LPOP that had popped the answer would be followed by one that finds nothing,
 *   and the client would get 504 for an order the engine carried out. The answer stays until its key expires.
 * - EVAL goes out as EVALSHA (sha1 cached per script text), falling back to EVAL on NOSCRIPT.
 */
import { Redis } from "@upstash/redis";
import { pollFirst, REDIS_CALL_TIMEOUT_MS, scriptRunner, type ApiRedis } from "./api-redis.ts";

export interface UpstashApiRedisOptions {
  readonly url: string;
  readonly token: string;
  /** Bound on each call, its retry included. Default REDIS_CALL_TIMEOUT_MS. */
  readonly requestTimeoutMs?: number;
  /** `waitFirst`'s first pause before polling, and the longest pause it grows to. Defaults 2 and 20 ms. */
  readonly pollMinMs?: number;
  readonly pollMaxMs?: number;
}

export function createUpstashApiRedis(options: UpstashApiRedisOptions): ApiRedis {
  const requestTimeoutMs = options.requestTimeoutMs ?? REDIS_CALL_TIMEOUT_MS;
  const redis = new Redis({
    url: options.url,
    token: options.token,
    automaticDeserialization: false,
    responseEncoding: "base64",
    enableAutoPipelining: false,
    enableTelemetry: false,
    retry: { retries: 1, backoff: () => 100 },
    signal: () => AbortSignal.timeout(requestTimeoutMs),
  });
  const pollMinMs = options.pollMinMs ?? 2;
  const pollMaxMs = Math.max(pollMinMs, options.pollMaxMs ?? 20);
  if (!Number.isFinite(pollMinMs) || pollMinMs <= 0)
    throw new RangeError(`pollMinMs: expected a positive number of milliseconds, received ${pollMinMs}`);

  return {
    eval: scriptRunner(
      (sha, keys, args) => redis.evalsha(sha, [...keys], [...args]),
      (script, keys, args) => redis.eval(script, [...keys], [...args]),
    ),
    waitFirst: (key, timeoutMs) =>
      pollFirst(() => redis.exec<string | null>(["LINDEX", key, "0"]), timeoutMs, pollMinMs, pollMaxMs),
    async hgetall(key) {
      const flat = await redis.exec<string[]>(["HGETALL", key]);
      const pairs: [string, string][] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
      // fromEntries defines own properties, so a field named "__proto__" stays a field (as in ioredis).
      return Object.fromEntries(pairs);
    },
    get: (key) => redis.exec<string | null>(["GET", key]),
    async set(key, value, ttlMs) {
      await redis.exec(["SET", key, value, "PX", String(ttlMs)]);
    },
    lrange: (key, start, stop) => redis.exec<string[]>(["LRANGE", key, String(start), String(stop)]),
    async ping() {
      await redis.exec(["PING"]);
    },
    // Nothing to close: each request is its own HTTP call.
    close: () => Promise.resolve(),
  };
}
