/**
 * The Redis the functions see: the few operations the API needs, behind one small interface with two adapters,
 * `ioredis` over TCP (local server, containers) and `@upstash/redis` over REST (deployed Lambda functions). One
 * contract suite (api-redis.contract.ts) runs the same cases against both, the Upstash one through a local
 * peer for Upstash's REST API in front of the real Redis (testing/upstash-bridge.ts).
 *
 * Replies come back as Redis sends them (strings stay strings, never JSON-decoded), so both adapters answer alike.
 * Where the transports differ, the interface names the outcome and each adapter gets there its own way: `waitFirst`
 * is BLPOP over TCP (polling LINDEX, as over REST, when the process's blocking connections are all in use), and
 * polling LINDEX over REST, which has no blocking commands.
 */
import { createHash } from "node:crypto";

export interface ApiRedis {
  /**
   * Runs a Lua script (EVAL, or EVALSHA where the adapter can cache it). Integer replies are numbers, bulk strings
   * strings, nil null, arrays arrays; a script error rejects. A status reply (`redis.call('SET', …)`) is its text
   * when it is the whole reply; inside an array a script returns its text instead (`redis.call('SET', …).ok`, a bulk
   * string): Upstash sends a nested status OK unencoded, and @upstash/redis, which base64-decodes every string
   * directly inside a result array, turns it into "8".
   */
  eval(script: string, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  /**
   * The first element of the list at `key` once there is one: null when none arrived within `timeoutMs`.
   * `timeoutMs` must be positive: a function answering HTTP must never wait forever. Rejects when it could not look
   * (over REST only when its last poll failed: a poll that fails before the deadline is taken as no answer yet).
   * Whether the element stays on the list is the adapter's: BLPOP over TCP pops it; polling (over REST, and over TCP
   * past the cap of blocking connections) leaves it,
   * since the client sends a request whose reply was lost again, and a pop sent again would find the list empty. So
   * a key waited on must expire of itself, and have one reader: the engine's answers, one attempt's per key, with an
   * expiry (functions/engine-client.ts).
   */
  waitFirst(key: string, timeoutMs: number): Promise<string | null>;
  /** HGETALL: an empty object when the key does not exist. */
  hgetall(key: string): Promise<Record<string, string>>;
  get(key: string): Promise<string | null>;
  /** SET with an expiry in milliseconds. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** LRANGE: an empty array when the key does not exist. */
  lrange(key: string, start: number, stop: number): Promise<string[]>;
  /** Rejects when Redis does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The bound on one call of either adapter unless set otherwise (ioredis's command timeout, the Upstash request's
 * signal, its retry included); `waitFirst` answers at most as much past its own timeout. A script Redis must be sent
 * again (NOSCRIPT) takes two calls. The functions' time budget counts on these (functions/engine-client.ts).
 */
export const REDIS_CALL_TIMEOUT_MS = 2_000;

/** A `waitFirst` timeout: positive and finite, or a bug (Redis reads a BLPOP timeout of 0 as "wait forever"). */
export function checkWaitTimeout(timeoutMs: number): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new RangeError(`waitFirst: timeoutMs must be a positive number of milliseconds, received ${timeoutMs}`);
}

/**
 * `waitFirst` by polling `read` (a LINDEX of the key's first element), for a transport or a moment without BLPOP:
 * the REST adapter always, the TCP one past its cap of blocking connections. The first poll comes `pollMinMs` after
 * the call, each pause then doubles up to `pollMaxMs`, then grows as a fifth of the time waited so far (a stalled
 * engine with many requests waiting must not spend Redis's command budget, which the engine and worker share), and
 * one last poll goes out at the deadline (none after a poll that ended past it, so a wait overruns its timeout by
 * one call at most). A poll that fails is taken as no answer yet and the next goes out on the same schedule: the
 * answer is on its key whenever it comes, and one blip must not end a wait that would have got it. Only when the
 * last poll, at or past the deadline, fails does the wait reject, with that poll's error.
 */
export async function pollFirst(
  read: () => Promise<string | null>,
  timeoutMs: number,
  pollMinMs: number,
  pollMaxMs: number,
): Promise<string | null> {
  checkWaitTimeout(timeoutMs);
  const deadline = performance.now() + timeoutMs;
  for (let pause = pollMinMs; ;) {
    const left = deadline - performance.now();
    if (left > 0) await sleep(Math.min(pause, left));
    const last = left <= pause;
    let reply: string | null = null;
    try {
      reply = await read();
    } catch (err) {
      if (last || performance.now() >= deadline) throw err;
    }
    // A slow poll that ends past the deadline is the last: one more would overrun the wait by another call.
    if (reply !== null || last || performance.now() >= deadline) return reply;
    pause = Math.max(Math.min(pause * 2, pollMaxMs), (timeoutMs - left) / 5);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** BLPOP's timeout argument: seconds, fractional, from whole milliseconds. */
export function blpopTimeoutSeconds(timeoutMs: number): string {
  checkWaitTimeout(timeoutMs);
  return String(Math.ceil(timeoutMs) / 1000);
}

/**
 * Whether a call's failure is the server's own answer to the command, an error reply (ioredis's ReplyError; over
 * REST, Upstash's JSON `error` body, which @upstash/redis throws as an UpstashError): the command was refused, or ran
 * and failed. Anything else (a timeout, a connection or a reply lost, a body from something in front of Upstash)
 * failed on the way there or back, and the command may have run. By `name`, as bundling keeps it; @upstash/redis
 * writes "undefined" where a non-2xx JSON body had no `error` field, i.e. was not Upstash's.
 */
export function isCommandReply(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === "ReplyError") return true;
  return err.name === "UpstashError" && !err.message.startsWith("undefined, command was: ");
}

type ScriptCall = (scriptOrSha: string, keys: readonly string[], args: readonly string[]) => Promise<unknown>;

/**
 * `ApiRedis.eval` for an adapter: EVALSHA with the script's SHA-1 (computed once per script), and EVAL when Redis
 * does not have it yet (NOSCRIPT), which also caches it there for the next call.
 *
 * NOSCRIPT is looked for as @upstash/redis's own EVALSHA fallback does, in any case and anywhere in the error, since
 * Upstash's wording of it is not documented; but only in Redis's part of the message. @upstash/redis appends the
 * command with its arguments (", command was: [...]"), which carry request data: a script that failed after it ran
 * must not run a second time because an argument read "noscript".
 */
export function scriptRunner(evalsha: ScriptCall, evalScript: ScriptCall): ApiRedis["eval"] {
  const shas = new Map<string, string>();
  return async (script, keys, args) => {
    let sha = shas.get(script);
    if (sha === undefined) {
      sha = createHash("sha1").update(script).digest("hex");
      shas.set(script, sha);
    }
    try {
      return await evalsha(sha, keys, args);
    } catch (error) {
      if (!(error instanceof Error && isNoScript(error.message))) throw error;
      return await evalScript(script, keys, args);
    }
  };
}

function isNoScript(message: string): boolean {
  const at = message.indexOf(", command was: ");
  return (at === -1 ? message : message.slice(0, at)).toLowerCase().includes("noscript");
}
