/**
 * ApiRedis over Upstash's REST API with `@upstash/redis`, for the deployed Lambda functions (no TCP connection to
 * keep alive between invocations). Set so that replies match the ioredis adapter and every call is bounded:
 *
 * - `automaticDeserialization: false`: replies stay as Redis sent them, never JSON-parsed.
 * - `responseEncoding: "base64"` (the client's default, stated): the server base64-encodes every string, nested ones
 *   included, and the client decodes the bytes as UTF-8, as ioredis does; any value survives the JSON in between.
 * - No auto-pipelining: each call is its own request, so a failing script or a BLPOP never shares a batch.
 * - Each request carries an AbortSignal made by a function: a deadline that fires then rejects the call (a plain
 *   signal would make this client *resolve* with "Aborted"). Retries on network errors are few and quick.
 * - BLPOP goes through `exec` on a client made for that call, whose deadline is the pop's timeout plus a grace.
 *   HTTP cannot tell a lost reply from a lost request: a BLPOP whose response is lost may have popped its element.
 * - EVAL goes out as EVALSHA (sha1 cached per script text), falling back to EVAL on NOSCRIPT.
 */
import { Redis } from "@upstash/redis";
import { blpopTimeoutSeconds, scriptRunner, type ApiRedis } from "./api-redis.ts";

export interface UpstashApiRedisOptions {
  readonly url: string;
  readonly token: string;
  /** Bound on each non-blocking request, retries excluded. Default 2 000 ms. */
  readonly requestTimeoutMs?: number;
  /** How long past its own timeout a BLPOP may stay unanswered before it rejects. Default 1 000 ms. */
  readonly blockingGraceMs?: number;
}

export function createUpstashApiRedis(options: UpstashApiRedisOptions): ApiRedis {
  const client = (timeoutMs: number) =>
    new Redis({
      url: options.url,
      token: options.token,
      automaticDeserialization: false,
      responseEncoding: "base64",
      enableAutoPipelining: false,
      enableTelemetry: false,
      retry: { retries: 1, backoff: () => 100 },
      signal: () => AbortSignal.timeout(timeoutMs),
    });
  const redis = client(options.requestTimeoutMs ?? 2_000);
  const blockingGraceMs = options.blockingGraceMs ?? 1_000;

  return {
    eval: scriptRunner(
      (sha, keys, args) => redis.evalsha(sha, [...keys], [...args]),
      (script, keys, args) => redis.eval(script, [...keys], [...args]),
    ),
    async blpop(key, timeoutMs) {
      const seconds = blpopTimeoutSeconds(timeoutMs);
      const reply = await client(timeoutMs + blockingGraceMs).exec<[string, string] | null>(["BLPOP", key, seconds]);
      return reply === null ? null : reply[1];
    },
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
