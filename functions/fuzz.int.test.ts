/**
 * Fuzzing every endpoint with malformed bodies, query strings and headers (fast-check): the API must answer each
 * with a 4xx and a clear error code, never a 5xx, and nothing may change: no balance, no trade, no history row, no
 * entry on the engine's log, no sign-in token or email. Runs against the real engine and worker.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_ERRORS } from "./errors.ts";
import { REJECTIONS } from "../contract/rejections.ts";
import { startApiStack, type ApiStack } from "./testing/api-stack.ts";

let stack: ApiStack;
let token: string;
let userId: string;

beforeAll(async () => {
  stack = await startApiStack({
    settings: { signInPerIp: { limit: 1_000_000, windowMs: 60_000 }, tradeRate: { limit: 1_000_000, windowMs: 1000 } },
  });
  ({
    token,
    user: { id: userId },
  } = await stack.signIn("fuzz@example.com"));
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
});
afterAll(() => stack.close());

/** Everything that could change, read at once. */
async function observable(): Promise<string> {
  const [balances, open, input, tokens, users, closed, mails] = await Promise.all([
    stack.redis.hgetall(stack.keys.balancesKey(userId)),
    stack.redis.hgetall(stack.keys.openTradesKey(userId)),
    stack.redis.xlen(stack.keys.input),
    stack.pg.db.query("SELECT count(*)::int AS n FROM sign_in_tokens"),
    stack.pg.db.query("SELECT count(*)::int AS n FROM users"),
    stack.pg.db.query("SELECT count(*)::int AS n FROM closed_orders"),
    stack.redis.llen(stack.keys.devMailbox),
  ]);
  return JSON.stringify({ balances, open, input, tokens: tokens.rows, users: users.rows, closed: closed.rows, mails });
}

const KNOWN_CODES = new Set([...Object.keys(API_ERRORS), ...Object.keys(REJECTIONS)]);

/** Values that are wrong for every field of every body: wrong types, signs, sizes, scales and shapes. */
const badValue = fc.oneof(
  fc.constantFrom(
    null,
    true,
    false,
    "",
    " ",
    "-1",
    "1e3",
    "0x10",
    "NaN",
    "Infinity",
    "1.",
    ".5",
    "1,5",
    "１",
    "0",
    "0.0",
    "DOGE",
    "eth",
    "LONG",
    "T0-1'; DROP TABLE users; --",
    "a".repeat(300),
  ),
  fc.integer({ min: -1e9, max: -1 }),
  fc.double({ noNaN: false }).filter((d) => !Number.isFinite(d) || d < 0),
  fc.array(fc.anything(), { maxLength: 3 }),
  fc.object({ maxDepth: 1 }),
  fc.string({ minLength: 41, maxLength: 60 }).map((s) => `9${s}`),
);

const FIELDS: Record<string, string[]> = {
  "/api/v1/trade/create": ["asset", "type", "margin", "leverage", "stopLoss", "takeProfit"],
  "/api/v1/trade/close": ["tradeId"],
  "/api/v1/trade/order": ["asset", "side", "quantity"],
  "/api/v1/auth": ["email"],
};
const VALID: Record<string, Record<string, unknown>> = {
  "/api/v1/trade/create": { asset: "ETH", type: "long", margin: "10", leverage: 2 },
  "/api/v1/trade/close": { tradeId: "T0-1" },
  "/api/v1/trade/order": { asset: "ETH", side: "buy", quantity: "0.01" },
  "/api/v1/auth": { email: "someone@example.com" },
};

/** Optional fields that take null as "none" (docs/api.md): for them null is a valid value, not a bad one. */
const NULL_IS_NONE = new Set(["stopLoss", "takeProfit"]);

/** A valid body with one field made invalid, a field added, or the body replaced by garbage. */
const badBody = (path: string) =>
  fc.oneof(
    fc
      .record({ field: fc.constantFrom(...FIELDS[path]!), value: badValue })
      // What is sent counts: JSON.stringify writes NaN and ±Infinity as null too.
      .filter(({ field, value }) => !(JSON.stringify(value) === "null" && NULL_IS_NONE.has(field)))
      .map(({ field, value }) => JSON.stringify({ ...VALID[path], [field]: value })),
    fc
      .record({
        field: fc.string({ minLength: 1, maxLength: 12 }).filter((f) => !FIELDS[path]!.includes(f)),
        value: fc.jsonValue(),
      })
      .map(({ field, value }) => JSON.stringify({ ...VALID[path], [field]: value })),
    fc
      .jsonValue()
      .filter((v) => v === null || typeof v !== "object" || Array.isArray(v))
      .map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 200 }),
    fc.constantFrom(
      "{",
      '{"asset":',
      "[",
      '{"a":1}}',
      "\u0000",
      '{"__proto__":{"asset":"ETH"}}',
      '{"asset":"ETH","asset":1}',
      "[".repeat(100),
    ),
  );

const queryString = fc.oneof(
  fc
    .dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 40 }), { maxKeys: 3 })
    .map((d) => new URLSearchParams(d).toString()),
  fc.constantFrom(
    "limit=-1",
    "limit=1e3",
    "limit=abc",
    "limit=101",
    "limit=1&limit=2",
    "cursor=",
    "cursor=%ZZ",
    "token=%E0%A4%A",
    "token=",
    "cursor=W10",
    "cursor=WyJ4IiwieSJd",
    "a=%00",
  ),
);

describe("fuzzing every endpoint", () => {
  it(
    "malformed bodies on every POST: always a 4xx with a known code, never a change",
    { timeout: 300_000 },
    async () => {
      const before = await observable();
      for (const path of Object.keys(FIELDS)) {
        await fc.assert(
          fc.asyncProperty(badBody(path), fc.boolean(), async (body, withKey) => {
            const headers: Record<string, string> = {
              "content-type": "application/json",
              authorization: `Bearer ${token}`,
            };
            if (withKey) headers["idempotency-key"] = "fuzz";
            const res = await stack.app.request(path, { method: "POST", body, headers });
            const json = (await res.json()) as { error?: { code: string } };
            expect(res.status, body).toBeGreaterThanOrEqual(400);
            expect(res.status, body).toBeLessThan(500);
            expect(KNOWN_CODES.has(json.error?.code ?? ""), body).toBe(true);
          }),
          { numRuns: 600 },
        );
      }
      expect(await observable()).toBe(before);
    },
  );

  it(
    "malformed query strings and headers on every endpoint: never a 5xx, never a change",
    { timeout: 300_000 },
    async () => {
      const before = await observable();
      const paths = [
        "/api/v1/auth/verify",
        "/api/v1/auth/me",
        "/api/v1/trade/open",
        "/api/v1/trade/history",
        "/api/v1/trade/spot-orders",
        "/api/v1/account/balance/usd",
        "/api/v1/account/summary",
        "/api/v1/account/balance",
        "/api/v1/account/assets",
        "/health",
        "/api/v1/openapi.json",
      ];
      const auth = fc.constantFrom(
        undefined,
        `Bearer ${token}`,
        "Bearer",
        "Bearer x.y.z",
        `Bearer ${token.slice(0, -2)}`,
        "Basic abc",
        `Bearer ${"a".repeat(5000)}`,
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...paths),
          queryString,
          auth,
          fc.constantFrom("GET", "DELETE", "PUT", "PATCH"),
          async (path, query, authorization, method) => {
            const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
            const target = method === "DELETE" ? "/api/v1/auth/logout" : path;
            // A logout with a valid token is the one legitimate change: it would revoke the fuzzer's own session.
            if (method === "DELETE" && authorization === `Bearer ${token}`) return;
            const res = await stack.app.request(`${target}?${query}`, { method, headers });
            expect(res.status, `${method} ${target}?${query}`).toBeLessThan(500);
            await res.arrayBuffer();
          },
        ),
        { numRuns: 2000 },
      );
      expect(await observable()).toBe(before);
    },
  );
});
