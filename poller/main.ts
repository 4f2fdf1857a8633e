/**
 * The poller process: Backpack (or sim) bookTicker changes and per-market heartbeats → `price_update` entries on
 * `engine:input`.
 *
 * Env (read once, validated, fail fast): REDIS_URL, KEY_PREFIX, FEED=auto|backpack|sim, BACKPACK_WS_URL,
 * SIM_WS_URL, POLLER_BOOK_SILENCE_MS (see config.ts); POLLER_METRICS_PORT, METRICS_HOST (platform/metrics.ts).
 * SIGINT/SIGTERM: close the socket, write what is queued (5 s at most, else exit 1), close Redis, exit 0; exit 1
 * when writes in flight during the stop were given up (unanswered, or their connection closed) or refused.
 */
import { ASSETS, validateAssets } from "../contract/markets.ts";
import { keyspace } from "../contract/names.ts";
import { onStopRequest, runMain } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import { createRegistry, readMetricsConfig, serveMetrics } from "../platform/metrics.ts";
import { connectRedis } from "../platform/redis.ts";
import { readPollerConfig } from "./config.ts";
import { watchEngine } from "./engine-watch.ts";
import { PriceFeed } from "./price-feed.ts";
import { pollerMetrics } from "./metrics.ts";
import { connectPublisherRedis, PricePublisher } from "./publisher.ts";
import { readLastQuotes } from "./start-quotes.ts";

const STATS_EVERY_MS = 60_000;
const SHUTDOWN_BUDGET_MS = 5_000;

runMain("poller", async () => {
  const config = readPollerConfig(process.env);
  const metricsConfig = readMetricsConfig(process.env, "poller");
  validateAssets(ASSETS);
  const log = createLogger("poller");
  const registry = createRegistry("poller");
  const metrics = pollerMetrics(
    registry,
    ASSETS,
    () => feed,
    () => publisher,
  );
  const names = keyspace(config.keyPrefix);
  log.info("poller_starting", { feed: config.feed, stream: names.input, markets: ASSETS.map((a) => a.market) });

  // Reads (the sim's start quotes, the engine lease) resend like any command; the publisher's XADDs must not: two
  // connections.
  const redis = connectRedis(config.redisUrl, log, "poller");
  const publisherRedis = connectPublisherRedis(config.redisUrl, log);
  const publisher = new PricePublisher({ redis: publisherRedis, stream: names.input, log });
  const engineWatch = watchEngine({ redis, leaseKey: names.engineLease, stream: names.input, log });
  const feed = new PriceFeed({
    mode: config.feed,
    backpackWsUrl: config.backpackWsUrl,
    simWsUrl: config.simWsUrl,
    bookSilenceMs: config.bookSilenceMs,
    markets: ASSETS,
    log,
    onReconnect: () => metrics.reconnect(),
    // Waits for Redis like every command here: without the last quotes a sim could only start with a price gap.
    lastQuotes: () => readLastQuotes(redis, names, ASSETS),
    onUpdate: (update, kind) => {
      if (kind === "quote") metrics.quote(update.market);
      else metrics.heartbeat(update.market);
      publisher.publish(update);
    },
  });
  const metricsServer = await serveMetrics(registry, metricsConfig, log);

  // Operators see throughput and drops without debug logs; on sim every line says so again.
  const stats = setInterval(() => {
    log.info("poller_stats", {
      source: feed.source,
      feed: feed.counters,
      publisher: publisher.counters,
      queued: publisher.queued,
    });
  }, STATS_EVERY_MS);
  stats.unref();

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) {
      log.warn("poller_forced_exit", { signal });
      process.exit(1);
    }
    stopping = true;
    log.info("poller_stopping", { signal });
    clearInterval(stats);
    engineWatch.stop();
    // A pipeline in flight when the stop starts and never answered is given up after its reply timeout: the flush
    // then resolves with nothing left, yet those writes may be missing from the log, so the stop is not a clean one.
    const before = { lost: publisher.counters.lost, failed: publisher.counters.failed };
    const finish = () => {
      const lost = publisher.counters.lost - before.lost;
      const failed = publisher.counters.failed - before.failed;
      if (lost + failed > 0) {
        log.error("poller_stop_writes_lost", { lost, failed, publisher: publisher.counters });
        process.exit(1);
      }
      log.info("poller_stopped", { publisher: publisher.counters });
      process.exit(0);
    };
    // A Redis that stays down would make the flush wait forever; give up loudly instead of hanging the stop. With
    // nothing left to write, whatever else still waits loses nothing: the stop is a clean one.
    setTimeout(() => {
      const { queued, sending } = publisher;
      if (queued + sending === 0) return finish();
      log.error("poller_stop_timeout", { budgetMs: SHUTDOWN_BUDGET_MS, queued, sending });
      process.exit(1);
    }, SHUTDOWN_BUDGET_MS).unref();
    await feed.stop();
    await publisher.flush();
    // Neither connection has anything left to write now: the feed is stopped and the flush leaves nothing queued or
    // in flight. A QUIT would only wait, behind a read still queued for a Redis out of reach (the sim's start
    // quotes), or for the answer of a Redis that froze, for as long as that lasts: both are dropped instead.
    redis.disconnect();
    publisherRedis.disconnect();
    await metricsServer?.close();
    finish();
  };
  // A second Ctrl-C (not npm's copy of the first) ends it at once, with poller_forced_exit.
  onStopRequest((signal) => void shutdown(signal), { onSecondRequest: (signal) => void shutdown(signal) });

  await feed.start();
  if (!stopping) log.info("poller_running", { source: feed.source });
});
