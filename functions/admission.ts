/**
 * What a request must pass in Redis before it may act: fixed-window rate limits, and for trade POSTs the
 * Idempotency-Key check. The trade check is one Lua script in the user's hash tag (one round trip, one cluster
 * slot, every key it touches passed in KEYS): count the request, then remember which body the key was first used
 * with, or compare with it.
 *
 * A user's Idempotency-Key records are one hash (key hash → body hash) and one sorted set (key hash by when it was
 * first used, by the API's clock), so the script can cap them per user without touching keys it was not given:
 * past the cap it drops that user's oldest, and a record older than the TTL counts as absent. Both keys expire a
 * TTL after the user's last keyed request, so an idle user's records go as a whole.
 */
import { createHash, randomUUID } from "node:crypto";
import type { Keyspace } from "../contract/names.ts";
import type { Sessions } from "./auth/sessions.ts";
import { ApiError, SESSION_NOT_VALID } from "./errors.ts";
import { IDEMPOTENCY_KEY_PATTERN } from "./schemas.ts";
import { invalidField } from "./validate.ts";
import type { ApiRedis } from "./redis/api-redis.ts";

/**
 * What is left of a limit's window (ms, at least 1). A counter without an expiry (PERSIST by hand, say) would never
 * reset and lock its subject out for good: it gets its window again.
 */
const LEFT_OF_WINDOW = `
local function left(key, window)
  local ms = redis.call('PTTL', key)
  if ms < 0 then
    redis.call('PEXPIRE', key, window)
    ms = tonumber(window)
  end
  return math.max(ms, 1)
end
`;

/** KEYS[1] counter; ARGV[1] limit, ARGV[2] window ms. Returns the count, or over the limit minus the ms left of the window. */
const COUNT = `${LEFT_OF_WINDOW}
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return -left(KEYS[1], ARGV[2]) end
return n`;

/**
 * KEYS[1] the session's revocation marker, KEYS[2] counter, and with an Idempotency-Key KEYS[3] the user's records
 * (hash) and KEYS[4] their order (sorted set); ARGV[1] limit, ARGV[2] window ms, ARGV[3] body hash, ARGV[4] record
 * ttl ms, ARGV[5] key hash, ARGV[6] now ms, ARGV[7] records kept per user, ARGV[8] the request's path. A record is
 * the body hash (64 hex digits), a space and the path it was first used on (a record without a path compares by its
 * hash alone). Returns 'REVOKED', 'LIMITED <ms left of the window>', 'CONFLICT <first path>' or 'OK'.
 */
const ADMIT_TRADE = `${LEFT_OF_WINDOW}
if redis.call('EXISTS', KEYS[1]) == 1 then return 'REVOKED' end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 'LIMITED ' .. left(KEYS[2], ARGV[2]) end
if KEYS[3] then
  local now = tonumber(ARGV[6])
  local first = redis.call('HGET', KEYS[3], ARGV[5])
  local at = redis.call('ZSCORE', KEYS[4], ARGV[5])
  if first and at and tonumber(at) > now - tonumber(ARGV[4]) then
    if string.sub(first, 1, 64) ~= ARGV[3] then return 'CONFLICT ' .. string.sub(first, 66) end
    return 'OK'
  end
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[3] .. ' ' .. ARGV[8])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
  local over = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[7])
  if over > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[4], over)
    for i = 1, #oldest, 2 do redis.call('HDEL', KEYS[3], oldest[i]) end
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
return 'OK'`;

export interface RateLimit {
  readonly limit: number;
  readonly windowMs: number;
}

/**
 * Each rate limit (its name is part of its Redis key) and what it counts, as the answer over it says it: "at most
 * 60 stream tickets per user per minute" (docs/api.md, Rate limits).
 */
export const RATE_SCOPES = {
  trade: "trade requests per user",
  history: "trade and order history reads per user",
  "spot-orders": "spot order history reads per user",
  "stream-ticket": "stream tickets per user",
  candles: "candle reads per client IP",
  "sign-in-ip": "sign-in emails per client IP",
  "sign-in-email": "sign-in emails per address",
  "verify-ip": "sign-in link checks per client IP",
} as const;
export type RateScope = keyof typeof RATE_SCOPES;

/** Throws RATE_LIMITED when `subject` went over `limit` in the current window of `scope`. */
export async function countRequest(
  redis: ApiRedis,
  keys: Keyspace,
  scope: RateScope,
  subject: string,
  rate: RateLimit,
): Promise<void> {
  const n = await redis.eval(COUNT, [keys.rateLimitKey(scope, subject)], [String(rate.limit), String(rate.windowMs)]);
  // Over the limit: minus what is left of the window, in ms.
  if (typeof n === "number" && n < 0) throw limited(scope, rate, -n);
}

/**
 * KEYS[1] the budget (a hash: `n` the units spent in its window, and a field per unit whose email is still being
 * sent); ARGV[1] limit, ARGV[2] window ms, ARGV[3] the unit's id. Spends a unit: the count after it, or, with none
 * left, minus the ms left of the window (a refusal spends nothing). The window starts with the hash, not with its
 * first unit, so a refund back to 0 does not restart it.
 */
const SPEND = `${LEFT_OF_WINDOW}
if tonumber(redis.call('HGET', KEYS[1], 'n') or '0') >= tonumber(ARGV[1]) then return -left(KEYS[1], ARGV[2]) end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], ARGV[3], '1')
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n`;

/**
 * KEYS[1] the budget; ARGV[1] the unit's id, ARGV[2] '1' to give the unit back (its email did not go out), '0' to
 * keep it spent. Settles a unit once: a resent call (a client retrying after a lost reply) finds its field gone, and
 * so does a unit of a window that has since ended, which must not be given back to the next.
 */
const SETTLE = `if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and ARGV[2] == '1' then
  redis.call('HINCRBY', KEYS[1], 'n', -1)
end
return 0`;

const signInBudgetKey = (keys: Keyspace) => keys.rateLimitKey("sign-in-budget", "deployment");

/** A unit of the sign-in email budget, spent and not yet settled. */
export interface SignInBudgetUnit {
  readonly id: string;
  /** This unit was the budget's last. */
  readonly last: boolean;
}

/**
 * Spends a unit of the deployment's sign-in email budget, every address and IP together
 * (`api:{deployment}:rate:sign-in-budget`). Past it, 503 UNAVAILABLE rather than 429: the asker went over no limit
 * of their own, the service cannot send now; Retry-After is what is left of the window. The unit must then be
 * settled (`settleSignInBudget`): kept when the email went out or may have, given back when it surely did not.
 */
export async function spendSignInBudget(redis: ApiRedis, keys: Keyspace, rate: RateLimit): Promise<SignInBudgetUnit> {
  const id = `u:${randomUUID()}`;
  const n = await redis.eval(SPEND, [signInBudgetKey(keys)], [String(rate.limit), String(rate.windowMs), id]);
  if (typeof n === "number" && n < 0) {
    const retryAfter = retryAfterSeconds(rate, -n);
    throw new ApiError(
      "UNAVAILABLE",
      `Sign-in emails are paused: this service sends at most ${rate.limit} per ${windowWords(rate.windowMs)}, ` +
        `and has sent them; try again in ${retryAfter} s.`,
      { "Retry-After": String(retryAfter) },
    );
  }
  return { id, last: n === rate.limit };
}

/**
 * Settles a unit: `sent: false` gives it back, so that an email provider refusing or failing (with an answer that
 * says so) does not use up the day's budget by retries; `sent: true` keeps it. Idempotent, and a no-op once the
 * unit's window has ended. A unit never settled (the process died) stays spent, and its field goes with its window.
 */
export async function settleSignInBudget(
  redis: ApiRedis,
  keys: Keyspace,
  unit: SignInBudgetUnit,
  sent: boolean,
): Promise<void> {
  await redis.eval(SETTLE, [signInBudgetKey(keys)], [unit.id, sent ? "0" : "1"]);
}

/**
 * Who a sign-in limit counts. An address and its `+tag` variants (and, at Gmail, its dotted spellings) reach one
 * inbox, so they share one budget; otherwise one inbox could be sent links without end. The email limit counts a
 * keyed digest of the inbox (HMAC-SHA-256 under the session signing key, `Sessions.keyedDigest`), so that no address
 * is spelt out in a Redis key name (`api:{<digest>}:rate:sign-in-email`), where key listings, slow logs and
 * monitoring tools show it, and so that whoever reads those cannot confirm that an address signed in lately by
 * hashing it, as an unkeyed hash would let them. An IPv6 client usually holds a whole /64, so it is counted per /64,
 * not per address.
 */
export async function signInEmailSubject(sessions: Pick<Sessions, "keyedDigest">, email: string): Promise<string> {
  return sessions.keyedDigest("sign-in-email", inboxOf(email));
}

/** The inbox an address reaches: without its `+tag`, and at Gmail without dots, at gmail.com. */
export function inboxOf(email: string): string {
  const at = email.lastIndexOf("@");
  if (at < 0) return email;
  const domain = email.slice(at + 1);
  let local = email.slice(0, at).split("+")[0]!;
  if (domain === "gmail.com" || domain === "googlemail.com") local = local.replaceAll(".", "");
  return `${local}@${domain === "googlemail.com" ? "gmail.com" : domain}`;
}

export function signInIpSubject(ip: string): string {
  if (!ip.includes(":") || /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip)) return ip;
  const [head = "", tail = ""] = ip.toLowerCase().split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  const groups = ip.includes("::")
    ? [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/** An Idempotency-Key is remembered as long as the engine remembers request ids (24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * Idempotency-Key records kept per user: the engine's per-user horizon (`idempotencyMaxPerUser`), since a key the
 * engine has forgotten would act again anyway; and what bounds one user's records in Redis (docs/operations.md),
 * which a user sending fresh keys at the rate limit would otherwise grow by ~1.7M a day.
 */
export const IDEMPOTENCY_KEYS_PER_USER = 10_000;

/** How many Idempotency-Key records a user keeps and for how long (tests lower both). */
export interface IdempotencyKeyLimits {
  readonly perUser: number;
  readonly ttlMs: number;
}

export const IDEMPOTENCY_KEY_LIMITS: IdempotencyKeyLimits = {
  perUser: IDEMPOTENCY_KEYS_PER_USER,
  ttlMs: IDEMPOTENCY_TTL_MS,
};

/** Which operation a request is: its name goes into the body hash, its path into the answer to a conflict. */
export interface Endpoint {
  readonly name: string;
  readonly path: string;
}

/**
 * Admits a trade request: checks the session is not revoked, counts the request against the user's trade limit
 * and, with an Idempotency-Key, checks the endpoint and body against the key's first use (remembered within
 * `limits`). Returns the engine request id: derived from the key (so a retry acts once), or random without one.
 */
export async function admitTrade(
  redis: ApiRedis,
  keys: Keyspace,
  session: { userId: string; revokedKey: string },
  rate: RateLimit,
  idempotencyKey: string | undefined,
  endpoint: Endpoint,
  body: unknown,
  limits: IdempotencyKeyLimits = IDEMPOTENCY_KEY_LIMITS,
): Promise<string> {
  const { userId } = session;
  const keyHash = idempotencyKey === undefined ? undefined : sha256(idempotencyKey);
  const records = keyHash === undefined ? [] : [keys.idempotencyRecords(userId), keys.idempotencyOrder(userId)];
  // The validated, normalised body: `"margin": 100` and `"margin": "100"` are the same request.
  const bodyHash = sha256(`${endpoint.name}\n${canonicalJson(body)}`);
  const verdict = await redis.eval(
    ADMIT_TRADE,
    [session.revokedKey, keys.rateLimitKey("trade", userId), ...records],
    [
      String(rate.limit),
      String(rate.windowMs),
      bodyHash,
      String(limits.ttlMs),
      keyHash ?? "",
      String(Date.now()),
      String(limits.perUser),
      endpoint.path,
    ],
  );
  if (verdict === "REVOKED") throw new ApiError("UNAUTHENTICATED", SESSION_NOT_VALID);
  if (typeof verdict === "string" && verdict.startsWith("LIMITED "))
    throw limited("trade", rate, Number(verdict.slice(8)));
  if (typeof verdict === "string" && verdict.startsWith("CONFLICT ")) throw conflict(verdict.slice(9), endpoint.path);
  if (verdict !== "OK") throw new Error(`unexpected admission verdict ${String(verdict)}`);
  return keyHash === undefined ? `r-${crypto.randomUUID()}` : `k-${keyHash.slice(0, 48)}`;
}

export function readIdempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY_PATTERN.test(header)) {
    const expected = "1 to 128 printable ASCII characters without spaces";
    throw invalidField("INVALID_IDEMPOTENCY_KEY", "Idempotency-Key", expected, header);
  }
  return header;
}

/** A key used before with another request: which endpoint it was first used on, when that is not this one. */
function conflict(firstPath: string, path: string): ApiError {
  if (firstPath === "" || firstPath === path) return new ApiError("IDEMPOTENCY_CONFLICT");
  return new ApiError(
    "IDEMPOTENCY_CONFLICT",
    `This Idempotency-Key was first used on POST ${firstPath}, not POST ${path}; use a new key for each action.`,
  );
}

/**
 * The answer over a limit: the limit and its window, and the wait Retry-After gives, what is left of the window
 * (`leftMs`; unknown: a whole window), in whole seconds, at least one.
 */
export function limited(scope: RateScope, rate: RateLimit, leftMs = rate.windowMs): ApiError {
  const retryAfter = retryAfterSeconds(rate, leftMs);
  return new ApiError(
    "RATE_LIMITED",
    `Too many requests: at most ${rate.limit} ${RATE_SCOPES[scope]} per ${windowWords(rate.windowMs)}; ` +
      `try again in ${retryAfter} s.`,
    { "Retry-After": String(retryAfter) },
  );
}

/** What is left of a window (`leftMs`, at most the window), in whole seconds, at least one. */
function retryAfterSeconds(rate: RateLimit, leftMs: number): number {
  return Math.max(1, Math.ceil(Math.min(leftMs, rate.windowMs) / 1000));
}

/** A window in words: "second", "minute", "15 minutes". */
function windowWords(ms: number): string {
  for (const [size, unit] of [
    [3_600_000, "hour"],
    [60_000, "minute"],
    [1000, "second"],
  ] as const) {
    if (ms % size === 0) return ms === size ? unit : `${ms / size} ${unit}s`;
  }
  return `${ms} ms`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
