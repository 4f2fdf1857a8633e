/**
 * The API under Node (`npm run api`): the same app the Lambda entry serves, on `PORT`. Runs the migrations (once,
 * under a lock) so a local stack needs nothing else, and keeps a generated JWT secret in the data folder when
 * JWT_SECRET is not set, so sessions survive restarts. Serves Prometheus metrics on its own port, API_METRICS_PORT
 * (functions/metrics.ts), never on PORT.
 */
import { serve } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { ConfigError, runMain, stopOnSignals, text } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { migrate } from "../platform/migrate.ts";
import { connectPostgres } from "../platform/postgres.ts";
import { createApp } from "./app.ts";
import { keptJwtSecret } from "./auth/kept-secret.ts";
import { buildApiDeps, connectApiRedis, nodeServerOptions, readApiConfig, readHttpTimeouts } from "./config.ts";
import { apiMetrics } from "./metrics.ts";
import { connectFunctionsPostgres } from "./postgres.ts";

runMain("api", async () => {
  const env = process.env;
  const config = readApiConfig(env);
  const listen = {
    port: config.port,
    hostname: text(env, "HOST", "127.0.0.1"),
    ...nodeServerOptions(readHttpTimeouts(env)),
  };
  const metricsConfig = readMetricsConfig(env, "api");
  const log = createLogger("api");
  const stop = stopOnSignals(log);
  const jwtSecret = config.jwtSecret ?? (await keptJwtSecret(text(env, "DATA_DIR", ".data"), log));
  const redis = connectApiRedis(config);
  // Migrations are a container's job, on its driver (platform/postgres.ts); the requests use the functions' own.
  const migrations = await connectPostgres(config.databaseUrl, log, { maxConnections: 1 });
  try {
    await migrate(migrations, log);
  } finally {
    await migrations.close();
  }
  const db = await connectFunctionsPostgres(config.databaseUrl, log);
  const deps = buildApiDeps({
    config,
    jwtSecret,
    redis,
    db,
    log,
    clientIp: (c) => getConnInfo(c).remote.address ?? "unknown",
  });
  const registry = createRegistry("api");
  const metrics = apiMetrics(registry);
  const metricsServer = await serveMetrics(registry, metricsConfig, log);
  const app = createApp({ ...deps, engine: metrics.timedEngine(deps.engine), requestMetrics: metrics.requests });
  const server = serve({ fetch: app.fetch, ...listen }, (info) => {
    log.info("listening", {
      port: info.port,
      api: config.settings.appUrl,
      docs: `${config.settings.appUrl}/api/v1/docs`,
      devMailbox: deps.devMailbox === undefined ? null : `${config.settings.appUrl}/api/v1/dev/mailbox`,
    });
  });
  // A port in use is a configuration problem, not a crash to restart from: one clear line and exit 2.
  const listenFailed = new Promise<never>((_, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      reject(err.code === "EADDRINUSE" ? new ConfigError(`port ${config.port} is already in use (set PORT)`) : err);
    });
  });
  await Promise.race([
    new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true })),
    listenFailed,
  ]);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await Promise.all([redis.close(), db.close(), metricsServer?.close()]);
  log.info("stopped");
});
