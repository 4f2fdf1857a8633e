/**
 * The deployment as plain data: the secrets, which secret feeds which environment variable of which process, the
 * containers' commands and sizes, and which Lambda function serves which API route. The SST modules (infra/sst/)
 * only turn these tables into resources; keeping the decisions here lets infra/deploy.test.ts check them against
 * the entries, package.json and the Dockerfile without SST's globals or an AWS account.
 *
 * The processes read their configuration from the environment (.env.example), so secrets reach them as
 * environment variables under those names, not through SST's `Resource` SDK: the same code runs under `npm start`,
 * in the Docker image and on Lambda.
 */
import { DOCS_UI_FILES, DOCS_UI_PACKAGE } from "../functions/docs-page.ts";
import { componentNamed, nodeArgs, type Component } from "../platform/components.ts";
import { ConfigError } from "../platform/config.ts";
import { readMetricsConfig } from "../platform/metrics.ts";

/**
 * Set per stage with `npx sst secret set <Name> <value> --stage <stage>`, every one of them: none has a placeholder
 * (infra/sst/secrets.ts), so a deploy with one unset stops before anything is created.
 */
export const SECRETS = {
  DatabaseUrl: "Neon connection string, postgres://…@…neon.tech/…?sslmode=verify-full (functions and containers)",
  RedisUrl: "Upstash Redis over TCP, rediss://default:<password>@<host>.upstash.io:6379 (containers, ioredis)",
  UpstashRedisRestUrl: "Upstash Redis REST URL, https://<host>.upstash.io (functions, @upstash/redis)",
  UpstashRedisRestToken: "Upstash Redis REST token (functions)",
  JwtSecret: "Session signing key, at least 32 characters, e.g. `openssl rand -base64 48` (functions)",
  ResendApiKey: "Resend API key: required, the functions refuse to start without it (functions)",
  // Resend's testing sender (onboarding@resend.dev) reaches only the Resend account's own address: the functions
  // refuse it (NODE_ENV=production), so there is no default to fall back on.
  EmailFrom: "Sender of sign-in emails, `Name <address>` on a domain verified in Resend (functions)",
} as const;

export type SecretName = keyof typeof SECRETS;

/** Environment variable ← secret, for the API functions (functions/config.ts reads these names). */
export const FUNCTION_SECRET_ENV = {
  DATABASE_URL: "DatabaseUrl",
  UPSTASH_REDIS_REST_URL: "UpstashRedisRestUrl",
  UPSTASH_REDIS_REST_TOKEN: "UpstashRedisRestToken",
  JWT_SECRET: "JwtSecret",
  RESEND_API_KEY: "ResendApiKey",
  EMAIL_FROM: "EmailFrom",
} as const satisfies Record<string, SecretName>;

export type ContainerName = Exclude<Component["name"], "api">;

/** The always-on containers. The API is not one of them: deployed, it runs as Lambda functions. */
export const CONTAINERS: readonly ContainerName[] = ["engine", "worker", "poller", "stream"];

export interface ContainerPlan {
  /** Environment variable ← secret. */
  readonly secretEnv: Readonly<Record<string, SecretName>>;
  /** Plain settings, the same for every stage. */
  readonly env: Readonly<Record<string, string>>;
  readonly cpu: "0.25 vCPU" | "0.5 vCPU" | "1 vCPU" | "2 vCPU";
  readonly memory: `${number} GB`;
  /** Tasks kept running (ECS desired count), fixed: none of them scales on load. */
  readonly tasks: number;
  /** How a rolling deploy replaces the tasks; ECS's defaults (new tasks start before old ones stop) where absent. */
  readonly deploy?: DeployPlan;
}

/**
 * A rolling deploy: the service's task count bounds while it runs (ECS deploymentMinimumHealthyPercent and
 * deploymentMaximumPercent, as percentages of `tasks`), the container health check that says when a new task counts
 * as healthy (absent: once it runs), and how long a stopped task has between SIGTERM and SIGKILL (ECS stopTimeout;
 * absent: ECS's default, 30 s).
 */
export interface DeployPlan {
  readonly minimumHealthyPercent: number;
  readonly maximumPercent: number;
  readonly health?: HealthCheckPlan;
  readonly stopTimeoutSeconds?: number;
}

/** ECS's container health check (HealthCheck in the task definition), durations in seconds. */
export interface HealthCheckPlan {
  readonly command: readonly string[];
  /** Failed checks within this time after the start do not count: time for a restore. ECS allows 0–300. */
  readonly startPeriodSeconds: number;
  /** ECS allows 5–300. */
  readonly intervalSeconds: number;
  /** One run's limit. ECS allows 2–60. */
  readonly timeoutSeconds: number;
  /** Consecutive failures, after the start period, that make the container unhealthy (ECS replaces it). 1–10. */
  readonly retries: number;
}

/**
 * The health check command: asks `GET /ready` at `host`:`port`, the engine's metrics server inside the task, and
 * succeeds on a 200. Bash and its /dev/tcp, not `node -e`: the image has no curl or wget, and starting a Node process
 * per check would take a slice of the leader's one vCPU every interval, where bash needs a few milliseconds.
 */
export function readyCheckCommand(port: number, host = "127.0.0.1"): string[] {
  const script = String.raw`exec 3<>/dev/tcp/${host}/${port} && printf 'GET /ready HTTP/1.0\r\n\r\n' >&3 && read -r status <&3 && [[ $status == "HTTP/1."?" 200 "* ]]`;
  return ["CMD", "bash", "-c", script];
}

/**
 * Where the health check finds the engine's `/ready`: the metrics server the engine starts from the same environment
 * (platform/metrics.ts), on the task's loopback when it listens on every interface. Settings under which no check
 * could pass are refused here, when `sst deploy` loads this file, rather than found by ECS replacing engines that
 * never become healthy: `off` serves no /ready, and `0` takes a port the check cannot know.
 */
export function engineReadyTarget(env: Readonly<Record<string, string>>): { host: string; port: number } {
  const metrics = readMetricsConfig(env, "engine");
  const refuse = (why: string) =>
    new ConfigError(
      `infra/plan.ts: the engine's ${metrics.variable}=${env[metrics.variable]} ${why}, and the container health ` +
        `check asks GET /ready there: deployed engines would never become healthy. Leave it unset (port ` +
        `${componentNamed("engine").metricsPort}) or give a fixed port.`,
    );
  if (metrics.port === undefined) throw refuse("serves no metrics server");
  if (metrics.port === 0) throw refuse("takes a free port, unknown to the check");
  const wildcard = ["0.0.0.0", "::", "[::]"].includes(metrics.host);
  return { host: wildcard ? "127.0.0.1" : metrics.host, port: metrics.port };
}

/**
 * The engine's rolling deploy hands over instead of stopping both engines. ECS starts the new tasks before it stops
 * any old one (100 % of the tasks stay healthy, up to 200 % run), and with a container health check it counts a new
 * task as healthy only once the check passes (AWS, ECS API reference, DeploymentConfiguration,
 * minimumHealthyPercent). The check asks the engine's `/ready`, which answers 200 once the engine leads or is a
 * hot standby caught up with the log, so the old tasks are stopped only when new standbys are hot; the old leader
 * then releases the lease on SIGTERM and a standby takes over within one poll. A new image whose engine never gets
 * ready is rolled back (SST turns on ECS's deployment circuit breaker with rollback), the old tasks untouched.
 * `env`: the engine container's plain settings, where its metrics port and host come from.
 */
export function engineDeploy(env: Readonly<Record<string, string>>): Required<DeployPlan> {
  const ready = engineReadyTarget(env);
  return {
    minimumHealthyPercent: 100,
    maximumPercent: 200,
    health: {
      command: readyCheckCommand(ready.port, ready.host),
      // ECS's maximum. A restore of the full book takes ~5 s on this machine (benchmarks.md); a Fargate vCPU and
      // Neon over the network are slower, and a standby must then catch up with the log. Until ready, 503s are free.
      startPeriodSeconds: 300,
      intervalSeconds: 10,
      timeoutSeconds: 5,
      retries: 3,
    },
    // Fargate's maximum (ECS API reference, ContainerDefinition, stopTimeout; the default is 30 s). The leader
    // releases the lease at once on SIGTERM; what follows is its final snapshot (encode and write, a few seconds here
    // at 1M open trades), which a SIGKILL would lose and the next restore would replay instead.
    stopTimeoutSeconds: 120,
  };
}

/**
 * Stop, then start: with at most 100 % of the tasks running and none required healthy, ECS stops the old task before
 * it starts the new one (AWS, ECS API reference, DeploymentConfiguration). For a service of one task that must never
 * run twice at once; the price is a gap without it on each deploy, until the new task runs, as when its task dies and
 * is replaced.
 */
export const STOP_THEN_START_DEPLOY: DeployPlan = { minimumHealthyPercent: 0, maximumPercent: 100 };

/**
 * The worker's consumer name in the output group (WORKER_NAME): fixed, so the task that replaces one (a deploy, a
 * crash) takes up its name and first finishes what it left pending, in log order, before it reads anything newer.
 * Under a new name those entries would wait WORKER_CLAIM_IDLE_MS for a claim while the new worker answered later
 * requests, whose answers could then come before the rows they depend on (docs/operations.md, Recovery). One name
 * for one task: the worker's deploy never runs two (STOP_THEN_START_DEPLOY).
 */
export const WORKER_NAME = "worker";

/**
 * Every container logs JSON lines (platform/log.ts), one CloudWatch event each, whose fields (`event`, `level`, …)
 * Logs Insights and metric filters can match. Said outright rather than left to LOG_FORMAT's default, which picks
 * pretty, coloured lines when stdout is a terminal: SST gives every container one (containerDefinitions below).
 */
const LOG_ENV = { LOG_FORMAT: "json" } as const;

/** The engine container's plain settings (ENGINE_METRICS_PORT, METRICS_HOST, … as in .env.example). */
const ENGINE_ENV: Readonly<Record<string, string>> = { ...LOG_ENV };

export const ENGINE_DEPLOY: Required<DeployPlan> = engineDeploy(ENGINE_ENV);

export const CONTAINER_PLANS: Readonly<Record<ContainerName, ContainerPlan>> = {
  // Two tasks: one leads (the Redis lease), the other is a hot standby that follows the log in memory and takes over in
  // under a second when the leader dies or stops. A rolling deploy starts the new tasks first (ENGINE_DEPLOY).
  // Memory for the in-memory state twice (the leader's thread and its snapshotter's) and snapshot encoding: at 1M open
  // trades an engine peaks near 2.2 GB (its heap limit, platform/components.ts; docs/benchmarks.md).
  engine: {
    secretEnv: { REDIS_URL: "RedisUrl", DATABASE_URL: "DatabaseUrl" },
    env: ENGINE_ENV,
    cpu: "1 vCPU",
    memory: "4 GB",
    tasks: 2,
    deploy: ENGINE_DEPLOY,
  },
  // One is enough for the output rate. Under one fixed name (WORKER_NAME), stopped before its replacement starts: two
  // workers at once could release a later answer before an earlier batch's rows are written (docs/operations.md).
  worker: {
    secretEnv: { REDIS_URL: "RedisUrl", DATABASE_URL: "DatabaseUrl" },
    env: { ...LOG_ENV, WORKER_NAME },
    cpu: "0.25 vCPU",
    memory: "0.5 GB",
    tasks: 1,
    deploy: STOP_THEN_START_DEPLOY,
  },
  // Deployed, prices must be real: no silent fallback to the simulated feed (FEED=auto is for local runs). One, stopped
  // before its replacement starts: two pollers would interleave two series of the same prices in the log, and the
  // engine takes a quote with other prices even when its exchange time is older, so quotes would step back and forth.
  poller: {
    secretEnv: { REDIS_URL: "RedisUrl" },
    env: { ...LOG_ENV, FEED: "backpack" },
    cpu: "0.25 vCPU",
    memory: "0.5 GB",
    tasks: 1,
    deploy: STOP_THEN_START_DEPLOY,
  },
  // WebSocket clients, behind the load balancer (streamLoadBalancer); it listens on every interface of the task.
  // Any number of tasks may run (each reads the whole fan-out); one until load says otherwise. Its APP_URL and
  // CORS_ORIGINS come from the deploy (infra/deploy-settings.ts streamPlainEnv).
  stream: {
    secretEnv: { REDIS_URL: "RedisUrl", DATABASE_URL: "DatabaseUrl" },
    env: { ...LOG_ENV, STREAM_HOST: "0.0.0.0", STREAM_PORT: "3001" },
    cpu: "0.5 vCPU",
    memory: "1 GB",
    tasks: 1,
  },
};

/**
 * A service's container definitions as deployed, from the JSON string SST builds for its task definition (one
 * container, the service's), rewritten through `transform.taskDefinition`. SST sets `pseudoTerminal: true` on every
 * container it defines (sst/sst platform/src/components/aws/fargate.ts, createTaskDefinition): a terminal on stdout,
 * which turns each line's `\n` into `\r\n` and would make LOG_FORMAT's default pretty. Turned off here, so stdout is
 * the log driver's pipe. The deploy plan's stop timeout, if it has one, is set here too (ECS stopTimeout).
 */
export function containerDefinitions(json: string, deploy: DeployPlan | undefined): string {
  const stopTimeout = deploy?.stopTimeoutSeconds;
  return JSON.stringify(
    (JSON.parse(json) as Record<string, unknown>[]).map((container) => ({
      ...container,
      pseudoTerminal: false,
      ...(stopTimeout === undefined ? {} : { stopTimeout }),
    })),
  );
}

/**
 * How long the stream's load balancer keeps an idle connection, to a client or to a task (AWS's default, set anyway
 * so the stream's keep-alive can be checked against it): well above the stream's heartbeat (10 s), and below the
 * stream server's keep-alive (stream/server.ts KEEP_ALIVE_TIMEOUT_MS), so the load balancer closes the connections it
 * pools before the task does, as AWS recommends to avoid 502s.
 */
export const STREAM_IDLE_TIMEOUT_SECONDS = 60;

/**
 * How long the stream's load balancer drains a task being stopped (a deploy, a scale-in) before ECS sends it SIGTERM:
 * the target group's deregistration delay. AWS's default is 300 s, and SST's Service sets none. ECS stops a task
 * behind a load balancer only once its target has drained ("Optimize load balancer connection draining parameters",
 * Amazon ECS Developer Guide), and a WebSocket client never ends its connection of itself, so the whole delay would
 * pass on every stop, after which the load balancer ends the task's connections ("Deregistration delay", ELB User
 * Guide): the clients are cut whatever the delay, and reconnect to the other tasks. So: long enough for an upgrade
 * already in progress to be answered (its ticket check, stream/server.ts TICKET_CHECK_TIMEOUT_MS), no longer. And
 * no shorter than the client's `backoff.stableMs` (10 s): every socket the load balancer cuts then counts as stable,
 * and its client spreads its retry (client/README.md, Backoff) instead of all coming back within the first step.
 */
export const STREAM_DEREGISTRATION_DELAY_SECONDS = 10;

/**
 * The stream's public endpoint: an application load balancer (it carries WebSockets) forwarding to STREAM_PORT,
 * health-checked at /health, with STREAM_IDLE_TIMEOUT_SECONDS. With a domain (`STREAM_DOMAIN` when deploying) it
 * serves wss:// on 443 with a certificate SST issues, and port 80 redirects there; without one, plain ws:// on 80,
 * which a browser page served over https may not open (mixed content).
 */
export function streamLoadBalancer(domain: string | undefined) {
  const health = { "3001/http": { path: "/health", interval: "10 seconds" } } as const;
  const idleTimeoutSeconds = STREAM_IDLE_TIMEOUT_SECONDS;
  if (domain === undefined || domain === "")
    return { rules: [{ listen: "80/http", forward: "3001/http" }], health, idleTimeoutSeconds } as const;
  return {
    domain,
    rules: [
      { listen: "443/https", forward: "3001/http" },
      { listen: "80/http", redirect: "443/https" },
    ],
    health,
    idleTimeoutSeconds,
  } as const;
}

/**
 * The stream's load balancer as SST Service args (infra/sst/services.ts): listeners and health check through
 * `loadBalancer`; the idle timeout (on the load balancer) and the deregistration delay (on the target group), which SST
 * leaves at AWS's defaults, through `transform.loadBalancer` and `transform.target`.
 */
export function streamServiceArgs(domain: string | undefined) {
  const lb = streamLoadBalancer(domain);
  return {
    loadBalancer: {
      ...("domain" in lb ? { domain: lb.domain } : {}),
      rules: lb.rules.map((rule) => ({ ...rule })),
      health: { ...lb.health },
    },
    transform: {
      loadBalancer: { idleTimeout: lb.idleTimeoutSeconds },
      target: { deregistrationDelay: STREAM_DEREGISTRATION_DELAY_SECONDS },
    },
  };
}

/** The WebSocket URL the API hands out with each ticket (STREAM_URL), from the stream service's public URL. */
export function streamUrlFrom(serviceUrl: string): string {
  return `${serviceUrl.replace(/^http/, "ws").replace(/\/+$/, "")}/api/v1/stream`;
}

/** The container's command: what `npm start` runs for this component (platform/components.ts). */
export function containerCommand(name: ContainerName): string[] {
  return ["node", ...nodeArgs(componentNamed(name))];
}

/** What `sst dev` runs locally in place of the container: the component's npm script. */
export function devCommand(name: ContainerName): string {
  return `npm run ${name}`;
}

/**
 * A service's `dev` args for `sst dev`, which deploys no container: it runs the command from the repository's top
 * with the container's environment. A service with a load balancer then has no URL, and SST's Service.url is a
 * placeholder (http://url-unavailable-in-dev.mode) unless `url` says where the local process listens: for the
 * stream, the functions hand it out as STREAM_URL, so a client on this machine must reach it there.
 */
export function devArgs(name: ContainerName): { command: string; directory: string; url?: string } {
  const args = { command: devCommand(name), directory: "." };
  return name === "stream" ? { ...args, url: `http://localhost:${CONTAINER_PLANS.stream.env.STREAM_PORT}` } : args;
}

export type FunctionName = "Auth" | "Trade" | "Account";

/**
 * API Gateway's own settings. CORS is the app's job (CORS_ORIGINS, and its origin check on state-changing
 * requests): API Gateway's handling would answer preflights before the app sees them. With a domain (`API_DOMAIN`
 * when deploying, a Route 53 zone of the account) API Gateway serves it with a certificate SST issues, and the API's
 * URL becomes https://<domain> (deploy-settings.ts appUrlFor): what lets a browser frontend on the same site use
 * its session (infra/README.md, "A browser frontend").
 */
export function apiGatewayArgs(domain: string | undefined): { cors: false; domain?: string } {
  return domain === undefined || domain === "" ? { cors: false } : { cors: false, domain };
}

/** Every function runs the same Hono app (functions/lambda.ts) and serves the routes given to it below. */
export const LAMBDA_HANDLER = "functions/lambda.handler";

/**
 * API Gateway routes (HTTP API, payload v2) → function. `{proxy+}` matches one or more path segments, so a group's
 * bare path needs its own route. `$default` takes every other path, so unknown paths get the app's JSON 404 rather
 * than API Gateway's.
 */
export const API_ROUTES: Readonly<Record<FunctionName, readonly string[]>> = {
  Auth: ["ANY /api/v1/auth", "ANY /api/v1/auth/{proxy+}"],
  Trade: ["ANY /api/v1/trade/{proxy+}"],
  Account: ["ANY /api/v1/account/{proxy+}", "GET /health", "GET /api/v1/openapi.json", "GET /api/v1/docs", "$default"],
};

/**
 * Files each function needs beside its bundle: the API reference page reads Swagger UI's script and stylesheet
 * from the installed package (functions/docs-page.ts), where Node's resolution finds them from the bundle.
 */
export const FUNCTION_COPY_FILES: readonly { from: string; to: string }[] = DOCS_UI_FILES.map((file) => {
  const path = `node_modules/${DOCS_UI_PACKAGE}/${file}`;
  return { from: path, to: path };
});

/**
 * Node.js 22 on Lambda: nodejs20.x was deprecated with Node 20's end of life (30 April 2026), and Lambda blocks
 * updates to functions on it from 30 September 2026 (AWS, Lambda runtimes), so a deploy could no longer change them.
 * nodejs22.x is itself deprecated on 30 April 2027. The image follows (Dockerfile, node:22-slim). SST bundles the
 * functions for ESNext, which Node 22 runs; the tests run the same sources on Node 20 (package.json engines).
 */
export const FUNCTION_RUNTIME = "nodejs22.x";

/**
 * A trade request waits up to ENGINE_TIMEOUT_MS (5 s by default, at most ENGINE_TIMEOUT_MAX_MS deployed: the rest
 * of the request needs time too) for the engine; API Gateway gives up at 30 s.
 */
export const FUNCTION_TIMEOUT_SECONDS = 15;
export const FUNCTION_TIMEOUT = `${FUNCTION_TIMEOUT_SECONDS} seconds` as const;
