/**
 * The HTTP API: API Gateway (HTTP API, payload v2) in front of three Lambda functions, auth, trade and account,
 * each running the same Hono app (functions/lambda.ts) for its own route group (infra/plan.ts), so each group has
 * its own concurrency, logs and cold starts. They are stateless: a trade request XADDs to Redis over Upstash's
 * REST API and waits for the engine's answer there. Needs SST's globals: import only from sst.config.ts's `run`.
 */
import {
  API_ROUTES,
  FUNCTION_COPY_FILES,
  FUNCTION_RUNTIME,
  FUNCTION_SECRET_ENV,
  FUNCTION_TIMEOUT,
  LAMBDA_HANDLER,
  type FunctionName,
} from "../plan.ts";
import { secretEnv, type Secrets } from "./secrets.ts";

/**
 * The gateway alone, first: the stream service needs its URL (APP_URL, for the Origin check), and the functions,
 * added by `addFunctions` after the services, need the stream's (STREAM_URL).
 */
export function createGateway(): sst.aws.ApiGatewayV2 {
  // CORS is the app's job (CORS_ORIGINS, and its origin check on state-changing requests): API Gateway's own
  // handling would answer preflights before the app sees them.
  return new sst.aws.ApiGatewayV2("Api", { cors: false });
}

export function addFunctions(api: sst.aws.ApiGatewayV2, secrets: Secrets, streamUrl: $util.Input<string>): void {
  const environment = {
    ...secretEnv(FUNCTION_SECRET_ENV, secrets),
    // Sign-in links point at the API itself (<APP_URL>/api/v1/auth/verify); https also makes the cookie Secure.
    APP_URL: api.url,
    NODE_ENV: "production",
    // Handed out with each stream ticket: the stream service's load balancer (wss:// with STREAM_DOMAIN).
    STREAM_URL: streamUrl,
    // Not secrets: taken from the environment `sst deploy` runs in, e.g. CORS_ORIGINS=https://app.example.com.
    ...(process.env.CORS_ORIGINS ? { CORS_ORIGINS: process.env.CORS_ORIGINS } : {}),
    ...(process.env.APP_REDIRECT_URL ? { APP_REDIRECT_URL: process.env.APP_REDIRECT_URL } : {}),
  };
  for (const [name, routes] of Object.entries(API_ROUTES) as [FunctionName, readonly string[]][]) {
    const fn = new sst.aws.Function(name, {
      handler: LAMBDA_HANDLER,
      runtime: FUNCTION_RUNTIME,
      timeout: FUNCTION_TIMEOUT,
      memory: "512 MB",
      environment,
      // The API reference page's Swagger UI files, read at run time from node_modules beside the bundle.
      copyFiles: FUNCTION_COPY_FILES.map((f) => ({ ...f })),
    });
    for (const route of routes) api.route(route, fn.arn);
  }
}
