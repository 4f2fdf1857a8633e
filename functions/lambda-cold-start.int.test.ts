/**
 * A Lambda container that starts while Postgres cannot be reached. The start does not wait for Postgres, so /health
 * answers its contract (503 JSON, `postgres: false`), a route that needs only Redis answers as usual, and one that
 * needs Postgres answers 503 UNAVAILABLE: not API Gateway's bare 500 on every route until Postgres is back.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { freePort } from "../platform/testing/processes.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { REDIS_URL, TEST_JWT_SECRET } from "./testing/api-stack.ts";
import { apiGatewayEvent, lambdaContext, setApiEnv, type LambdaHandler } from "./testing/lambda-events.ts";

const prefix = `test:lambda-cold-start:${randomUUID()}:`;
let redis: Redis;
let restoreEnv: (() => void) | undefined;
let handler: LambdaHandler;

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  restoreEnv = setApiEnv({
    // A port nothing listens on: every query fails (the local-proxy path, as a Neon host would be fetched for real).
    DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/nowhere`,
    REDIS_URL,
    KEY_PREFIX: prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    APP_URL: "http://localhost:3000",
    RESEND_API_KEY: "re_cold_start_test",
  });
  ({ handler } = await import("./lambda.ts"));
});

afterAll(async () => {
  restoreEnv?.();
  await deleteKeysWithPrefix(redis, prefix);
  await redis.quit();
});

async function invoke(method: "GET" | "POST", path: string, body?: unknown) {
  const result = await handler(
    apiGatewayEvent({
      method,
      path,
      ...(body !== undefined && { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    }),
    lambdaContext(),
  );
  return {
    status: result.statusCode,
    type: result.headers?.["content-type"],
    retryAfter: result.headers?.["retry-after"],
    body: JSON.parse(result.body) as unknown,
  };
}

describe("a Lambda cold start while Postgres cannot be reached", () => {
  it("GET /health: 503 with the health body, postgres false, redis true", async () => {
    expect(await invoke("GET", "/health")).toEqual({
      status: 503,
      type: "application/json",
      retryAfter: "5",
      body: { status: "unavailable", redis: true, postgres: false, engine: false },
    });
  });

  it("a route that needs only Redis answers: GET /api/v1/market/quotes", async () => {
    const quote = { bid: "2000", ask: "2001", updatedAt: "2026-12-06T10:00:00.000Z", source: "sim" };
    await redis.hset(keyspace(prefix).quotesKey, "ETH", JSON.stringify(quote));
    expect(await invoke("GET", "/api/v1/market/quotes")).toEqual({
      status: 200,
      type: "application/json",
      retryAfter: undefined,
      body: { quotes: [{ asset: "ETH", market: "ETH_USDC_PERP", ...quote }] },
    });
  });

  it("a route that needs Postgres: 503 UNAVAILABLE with the documented body and Retry-After", async () => {
    expect(await invoke("POST", "/api/v1/auth", { email: "cold@example.com" })).toEqual({
      status: 503,
      type: "application/json",
      retryAfter: "5",
      body: {
        error: {
          code: "UNAVAILABLE",
          message: "A backing service is unavailable; try again after Retry-After seconds.",
        },
      },
    });
  });
});
