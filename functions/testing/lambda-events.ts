/**
 * Test support: what AWS hands the Lambda entry. An API Gateway HTTP API event (payload format 2.0), as the
 * `$default` route delivers it, a Lambda context, and the environment the entry reads.
 */
import type { APIGatewayProxyResult, LambdaContext, LambdaEvent } from "hono/aws-lambda";

export type V2Event = Extract<LambdaEvent, { rawPath: string }>;
export type LambdaHandler = (event: LambdaEvent, context: unknown) => Promise<APIGatewayProxyResult>;

export interface ApiRequest {
  readonly method: "GET" | "POST" | "DELETE";
  /** Path and query string, as a browser would send them. */
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly cookies?: readonly string[];
  readonly body?: string;
}

/** Everything readApiConfig and server.ts read. */
const API_VARS = [
  "PORT",
  "HOST",
  "APP_URL",
  "APP_REDIRECT_URL",
  "CORS_ORIGINS",
  "DATABASE_URL",
  "REDIS_URL",
  "UPSTASH_REDIS_REST_URL",
  "UPSTASH_REDIS_REST_TOKEN",
  "UPSTASH_POLL_MIN_MS",
  "UPSTASH_POLL_MAX_MS",
  "KEY_PREFIX",
  "JWT_SECRET",
  "RESEND_API_KEY",
  "RESEND_BASE_URL",
  "EMAIL_FROM",
  "ENGINE_TIMEOUT_MS",
  "TRADE_RATE_LIMIT_PER_SEC",
  "SIGN_IN_LIMIT_PER_IP",
  "SIGN_IN_EMAILS_PER_DAY",
  "HISTORY_RATE_LIMIT_PER_SEC",
  "VERIFY_LIMIT_PER_IP",
  "HTTP_HEADERS_TIMEOUT_MS",
  "HTTP_REQUEST_TIMEOUT_MS",
  "HTTP_KEEP_ALIVE_TIMEOUT_MS",
  "DATA_DIR",
];

/**
 * Sets the API's environment to `env` alone: every variable above is cleared first, so nothing leaks in from the
 * shell running the tests (lambda.ts reads process.env on its first invocation). Returns what puts it back.
 */
export function setApiEnv(env: Record<string, string>): () => void {
  const saved = new Map(API_VARS.map((name) => [name, process.env[name]]));
  for (const name of API_VARS) delete process.env[name];
  Object.assign(process.env, env);
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}

let invocations = 0;

export function apiGatewayEvent(req: ApiRequest): V2Event {
  const url = new URL(req.path, "https://placeholder");
  const domainName = "abc123xyz.execute-api.eu-west-1.amazonaws.com";
  const userAgent = "lambda-int-test/1.0";
  const now = new Date();
  const query: Record<string, string> = {};
  for (const [name, value] of url.searchParams) query[name] = name in query ? `${query[name]},${value}` : value;
  const headers: Record<string, string> = {
    accept: "*/*",
    host: domainName,
    "user-agent": userAgent,
    "x-amzn-trace-id": `Root=1-${crypto.randomUUID()}`,
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-port": "443",
    "x-forwarded-proto": "https",
  };
  for (const [name, value] of Object.entries(req.headers ?? {})) headers[name.toLowerCase()] = value;
  if (req.body !== undefined) headers["content-length"] = String(Buffer.byteLength(req.body));
  invocations++;
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    ...(req.cookies !== undefined && { cookies: [...req.cookies] }),
    headers,
    ...(url.search !== "" && { queryStringParameters: query }),
    requestContext: {
      accountId: "123456789012",
      apiId: "abc123xyz",
      authentication: null,
      authorizer: {},
      domainName,
      domainPrefix: "abc123xyz",
      http: { method: req.method, path: url.pathname, protocol: "HTTP/1.1", sourceIp: "203.0.113.7", userAgent },
      requestId: `req-${invocations}`,
      routeKey: "$default",
      stage: "$default",
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    body: req.body ?? null,
    isBase64Encoded: false,
  };
}

export function lambdaContext(): LambdaContext {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: "api",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:api",
    memoryLimitInMB: "1024",
    awsRequestId: crypto.randomUUID(),
    logGroupName: "/aws/lambda/api",
    logStreamName: "2024/01/01/[$LATEST]test",
    getRemainingTimeInMillis: () => 30_000,
  };
}
