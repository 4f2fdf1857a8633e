/**
 * What a request must pass in Redis before it may act: fixed-window rate limits, and for trade POSTs the
 * Idempotency-Key check. The trade check is one Lua script in the user's hash tag (one round trip, one cluster
 * slot): count the request, then remember which body the key was first used with, or compare with it.
 */
import { createHash } from "node:crypto";
import type { Keyspace } from "../contract/names.ts";
import { ApiError } from "./errors.ts";
import { IDEMPOTENCY_KEY_PATTERN } from "./schemas.ts";
import { invalidField } from "./validate.ts";
import type { ApiRedis } from "./redis/api-redis.ts";

/** KEYS[1] counter; ARGV[1] limit, ARGV[2] window ms. Returns 0 when over the limit, else the count. */
const COUNT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return n`;

/**
 * KEYS[1] the session's revocation marker, KEYS[2] counter, KEYS[3] idempotency record (optional); ARGV[1] limit,
 * ARGV[2] window ms, ARGV[3] body hash, ARGV[4] record ttl ms. Returns 'REVOKED', 'LIMITED', 'CONFLICT' or 'OK'.
 */
const ADMIT_TRADE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 'REVOKED' end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 'LIMITED' end
if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if not first then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  elseif first ~= ARGV[3] then return 'CONFLICT' end
end
return 'OK'`;

export interface RateLimit {
  readonly limit: number;
  readonly windowMs: number;
}

/** Throws RATE_LIMITED when `subject` went over `limit` in the current window of `scope`. */
export async function countRequest(
  redis: ApiRedis,
  keys: Keyspace,
  scope: string,
  subject: string,
  rate: RateLimit,
): Promise<void> {
  const n = await redis.eval(COUNT, [keys.rateLimitKey(scope, subject)], [String(rate.limit), String(rate.windowMs)]);
  if (n === 0) throw limited(rate);
}

/**
 * Who a sign-in limit counts. An address and its `+tag` variants (and, at Gmail, its dotted spellings) reach one
 * inbox, so they share one budget; otherwise one inbox could be sent links without end. An IPv6 client usually
 * holds a whole /64, so it is counted per /64, not per address.
 */
export function signInEmailSubject(email: string): string {
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
 * Admits a trade request: checks the session is not revoked, counts the request against the user's trade limit
 * and, with an Idempotency-Key, checks the body against the key's first use. Returns the engine request id:
 * derived from the key (so a retry acts once), or random without one.
 */
export async function admitTrade(
  redis: ApiRedis,
  keys: Keyspace,
  session: { userId: string; revokedKey: string },
  rate: RateLimit,
  idempotencyKey: string | undefined,
  endpoint: string,
  body: unknown,
): Promise<string> {
  const { userId } = session;
  const keyHash = idempotencyKey === undefined ? undefined : sha256(idempotencyKey);
  const record = keyHash === undefined ? [] : [keys.idempotencyKey(userId, keyHash)];
  // The validated, normalised body: `"margin": 100` and `"margin": "100"` are the same request.
  const bodyHash = sha256(`${endpoint}\n${canonicalJson(body)}`);
  const verdict = await redis.eval(
    ADMIT_TRADE,
    [session.revokedKey, keys.rateLimitKey("trade", userId), ...record],
    [String(rate.limit), String(rate.windowMs), bodyHash, String(IDEMPOTENCY_TTL_MS)],
  );
  if (verdict === "REVOKED") throw new ApiError("UNAUTHENTICATED");
  if (verdict === "LIMITED") throw limited(rate);
  if (verdict === "CONFLICT") throw new ApiError("IDEMPOTENCY_CONFLICT");
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

function limited(rate: RateLimit): ApiError {
  return new ApiError("RATE_LIMITED", undefined, { "Retry-After": String(Math.ceil(rate.windowMs / 1000)) });
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
