/**
 * The stream process (`npm run stream`): WebSocket clients on STREAM_PORT, fed from the fan-out stream the worker
 * writes. Reads its configuration once; stops on SIGINT/SIGTERM, closing every socket with 1001 so clients
 * reconnect (to another replica, deployed) and resume by seq. Any number of replicas may run.
 */
import { keyspace } from "../contract/names.ts";
import { ConfigError, runMain, stopOnSignals } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { connectPostgres } from "../platform/postgres.ts";
import { connectRedis } from "../platform/redis.ts";
import { loadBucketFrom } from "./candles.ts";
import { readStreamConfig } from "./config.ts";
import { streamMetrics } from "./metrics.ts";
import { startStream } from "./stream.ts";

runMain("stream", async () => {
  const env = process.env;
  const config = readStreamConfig(env);
  const metricsConfig = readMetricsConfig(env, "stream");
  const log = createLogger("stream");
  const registry = createRegistry("stream");
  const metrics = streamMetrics(registry);
  const metricsServer = await serveMetrics(registry, metricsConfig, log);
  const stop = stopOnSignals(log);
  const redis = connectRedis(config.redisUrl, log, "stream");
  const reader = connectRedis(config.redisUrl, log, "stream-fanout");
  const db = await connectPostgres(config.databaseUrl, log);
  const stream = await startStream({
    redis,
    reader,
    keys: keyspace(config.prefix),
    log,
    metrics,
    limits: config.limits,
    allowedOrigins: config.allowedOrigins,
    port: config.port,
    host: config.host,
    loadBucket: loadBucketFrom(db),
  }).catch((err: NodeJS.ErrnoException) => {
    throw err.code === "EADDRINUSE" ? new ConfigError(`port ${config.port} is already in use (set STREAM_PORT)`) : err;
  });
  log.info("listening", { port: stream.port, path: "/api/v1/stream" });
  await new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }));
  await stream.close();
  redis.disconnect();
  await db.close();
  await metricsServer?.close();
  log.info("stopped");
});
