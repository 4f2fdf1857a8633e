/**
 * The stream process (`npm run stream`): WebSocket clients on STREAM_PORT, fed from the fan-out stream the worker
 * writes. Reads its configuration once; stops on SIGINT/SIGTERM, closing every socket with 1001 so clients
 * reconnect (to another replica, deployed) and resume by seq. Any number of replicas may run. Postgres, read only
 * for candle buckets, is not needed to serve: connected in the background (postgres.ts).
 */
import type { Redis } from "ioredis";
import { keyspace } from "../contract/names.ts";
import { ConfigError, runMain, settledWithin, stopOnSignals } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { connectRedis } from "../platform/redis.ts";
import { loadBucketFrom } from "./candles.ts";
import { readStreamConfig } from "./config.ts";
import { streamMetrics } from "./metrics.ts";
import { connectInBackground } from "./postgres.ts";
import { startStream } from "./stream.ts";

/** How long the start waits for the first try at Postgres before it serves without it. */
const FIRST_TRY_WAIT_MS = 5_000;

runMain("stream", async () => {
  const env = process.env;
  const config = readStreamConfig(env);
  const metricsConfig = readMetricsConfig(env, "stream");
  const log = createLogger("stream");
  const registry = createRegistry("stream");
  const metrics = streamMetrics(registry);
  const metricsServer = await serveMetrics(registry, metricsConfig, log);
  const signals = stopOnSignals(log);
  // Only candle buckets are read from Postgres: the stream serves without it, connecting in the background
  // (postgres.ts). A refused DATABASE_URL stops the stream as a signal would, and is then thrown: exit 2.
  const db = connectInBackground(config.databaseUrl, log);
  const refused = new AbortController();
  let refusal: ConfigError | undefined;
  void db.refused.then((err) => {
    refusal = err;
    refused.abort();
  });
  const stop = AbortSignal.any([signals, refused.signal]);
  // The first try is waited for, briefly: a Postgres that answers refuses at once, so a wrong DATABASE_URL stops the
  // stream before it is ready (npm start then stops, rather than restart it). One that does not answer by then is
  // left to the background tries.
  const firstRefusal = await settledWithin(db.firstTry, FIRST_TRY_WAIT_MS, stop);
  refusal ??= firstRefusal;
  const serve = async () => {
    const redis = connectRedis(config.redisUrl, log, "stream");
    const reader = connectRedis(config.redisUrl, log, "stream-fanout");
    try {
      await serveOn(redis, reader);
    } finally {
      redis.disconnect();
      reader.disconnect();
    }
  };
  const serveOn = async (redis: Redis, reader: Redis) => {
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
      throw err.code === "EADDRINUSE"
        ? new ConfigError(`port ${config.port} is already in use (set STREAM_PORT)`)
        : err;
    });
    log.info("listening", { port: stream.port, path: "/api/v1/stream" });
    await new Promise<void>((resolve) => {
      if (stop.aborted) resolve();
      stop.addEventListener("abort", () => resolve(), { once: true });
    });
    await stream.close();
  };
  try {
    // Refused, or stopped, before it served: nothing to close but the connections.
    if (refusal === undefined && !stop.aborted) await serve();
  } finally {
    await db.close();
    await metricsServer?.close();
  }
  if (refusal !== undefined) throw refusal;
  log.info("stopped");
  // A connect to a Postgres that does not answer may still be under way (postgres.ts): it must not hold the exit.
  process.exit(0);
});
