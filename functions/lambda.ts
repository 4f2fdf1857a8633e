/**
 * The API on AWS Lambda (behind API Gateway HTTP API, payload v2): the same app as server.ts through Hono's Lambda
 * adapter. Configuration is read and clients made once per container, on the first invocation, and reused by the
 * ones after. Deployed, Redis is Upstash over REST and Postgres is Neon over HTTP (functions/postgres.ts); migrations
 * are run by the always-on containers, not here. The start waits for neither Redis nor Postgres, so an outage of one
 * is a 503 of the routes that need it (and of /health), not a failed start, which API Gateway would answer with its
 * own bare 500 for every route. No Prometheus metrics: a function has no port to scrape, and a container
 * lives too briefly for counters to mean much (API Gateway's and Lambda's own CloudWatch metrics cover it).
 */
import type { Hono } from "hono";
import { getConnInfo, handle, type LambdaContext, type LambdaEvent } from "hono/aws-lambda";
import { ConfigError } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { createApp } from "./app.ts";
import { buildApiDeps, connectApiRedis, readApiConfig } from "./config.ts";
import type { ApiEnv } from "./context.ts";
import { connectFunctionsPostgres } from "./postgres.ts";

let app: Promise<Hono<ApiEnv>> | undefined;

/**
 * Kept of the invocation's remaining time to hand the answer back: the runtime takes milliseconds; the rest is slack
 * for timers that fire late on a busy container.
 */
const ANSWER_MARGIN_MS = 500;

async function buildApp(): Promise<Hono<ApiEnv>> {
  const config = readApiConfig(process.env);
  if (config.jwtSecret === undefined) throw new ConfigError("JWT_SECRET is required for the Lambda functions");
  if (config.resend === undefined)
    throw new ConfigError("RESEND_API_KEY is required for the Lambda functions (no dev mailbox in a deployment)");
  const log = createLogger("api");
  // Not waiting for Postgres: while it is down, the routes that need it answer 503 and the rest still work.
  const db = await connectFunctionsPostgres(config.databaseUrl, log, { waitForAnswer: false });
  return createApp(
    buildApiDeps({
      config,
      jwtSecret: config.jwtSecret,
      redis: connectApiRedis(config),
      db,
      log,
      clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
      timeLeftMs: (c) => {
        const context = (c.env as { lambdaContext?: LambdaContext } | undefined)?.lambdaContext;
        return context === undefined ? Infinity : context.getRemainingTimeInMillis() - ANSWER_MARGIN_MS;
      },
    }),
  );
}

export const handler = async (event: LambdaEvent, context: unknown) => {
  app ??= buildApp().catch((err: unknown) => {
    app = undefined; // a failed start is retried by the next invocation
    throw err;
  });
  return handle(await app)(event, context as never);
};
