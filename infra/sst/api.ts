/**
 * The HTTP API: API Gateway (HTTP API, payload v2) in front of three Lambda functions, auth, trade and account,
 * each running the same Hono app (functions/lambda.ts) for its own route group (infra/plan.ts), so each group has
 * its own concurrency, logs and cold starts. They are stateless: a trade request XADDs to Redis over Upstash's
 * REST API and waits for the engine's answer there. Needs SST's globals: import only from sst.config.ts's `run`.
 */
import {
  API_ROUTES,
  apiGatewayArgs,
  FUNCTION_COPY_FILES,
  FUNCTION_RUNTIME,
  FUNCTION_SECRET_ENV,
  FUNCTION_TIMEOUT,
  LAMBDA_HANDLER,
  type FunctionName,
} from "../plan.ts";
import { secretEnv, type Secrets } from "./secrets.ts";

/**
 * The gateway alone, first: the stream service needs the API's URL (APP_URL, for the Origin check), and the
 * functions, added by `addFunctions` after the services, need the stream's (STREAM_URL). `domain`: API_DOMAIN.
 */
export function createGateway(domain: string | undefined): sst.aws.ApiGatewayV2 {
  return new sst.aws.ApiGatewayV2("Api", apiGatewayArgs(domain));
}

/** `environment`: the functions' plain settings (deploy-settings.ts functionPlainEnv); their secrets are added here. */
export function addFunctions(
  api: sst.aws.ApiGatewayV2,
  secrets: Secrets,
  environment: Record<string, $util.Input<string>>,
): void {
  const env = { ...secretEnv(FUNCTION_SECRET_ENV, secrets), ...environment };
  for (const [name, routes] of Object.entries(API_ROUTES) as [FunctionName, readonly string[]][]) {
    const fn = new sst.aws.Function(name, {
      handler: LAMBDA_HANDLER,
      runtime: FUNCTION_RUNTIME,
      timeout: FUNCTION_TIMEOUT,
      memory: "512 MB",
      environment: env,
      // The API reference page's Swagger UI files, read at run time from node_modules beside the bundle.
      copyFiles: FUNCTION_COPY_FILES.map((f) => ({ ...f })),
    });
    for (const route of routes) api.route(route, fn.arn);
  }
}
