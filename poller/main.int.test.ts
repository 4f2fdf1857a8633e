// The poller process as deployed: reads its env, publishes sim prices to the prefixed input stream, and stops
// cleanly (exit 0) on SIGTERM; a bad env stops it at start with a message naming the variable. Its metrics count
// the quotes per market, show the feed's state and source, and what became of the updates: with Redis out of reach,
// none written while the quotes climb. A stop waits for the last writes, 5 s at most, and for nothing else: with
// Redis out of reach or frozen and nothing to write it exits at once; with its last writes sent and never answered
// it exits 1. Killed (`kill -9`) and started again, its sim feed continues every market from the last quote in the
// log instead of jumping to the sim's levels.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { decodeInputFields } from "../contract/stream-fields.ts";
import type { PriceUpdate } from "../contract/messages.ts";
import { appendQuotes, closedPort, FAR_FROM_LEVELS, waitFor } from "./test-support.ts";
import { startSimFeed } from "./sim-feed.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { sample, scrape } from "../platform/testing/metrics.ts";
import { startRedisProxy } from "../platform/testing/redis-proxy.ts";
import { ASSETS } from "../contract/markets.ts";

const REDIS_URL = TEST_REDIS_URL;
const redis = new Redis(REDIS_URL);
const prefix = `test:${randomUUID()}:`;
const restartPrefix = `test:${randomUUID()}:`;
/** A log of its own: a live start drops a first frame that repeats the last top logged (poller/README.md). */
const lostPrefix = `test:${randomUUID()}:`;
const started: ReturnType<typeof spawn>[] = [];
afterAll(async () => {
  // A test that failed before stopping its poller must not leave it publishing.
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await redis.del(keyspace(prefix).input, keyspace(restartPrefix).input, keyspace(lostPrefix).input);
  redis.disconnect();
});

function startPoller(env: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", "poller/main.ts"], {
    cwd: new URL("..", import.meta.url).pathname,
    env: { ...process.env, REDIS_URL, POLLER_METRICS_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  /** Its JSON log lines so far. */
  const logLines = () =>
    stdout
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { child, exited, output: () => ({ stdout, stderr }), logLines };
}

/** The port a started poller serves its metrics on, once it has logged it. */
function metricsPort(poller: ReturnType<typeof startPoller>): number | undefined {
  return poller.logLines().find((entry) => entry.event === "metrics_listening")?.port as number | undefined;
}

/**
 * A poller reading `sim` as its live feed and writing through `proxy`, once it serves its metrics; `entries(outcome)`
 * reads its `poller_entries_total` for that outcome.
 */
async function startProxiedPoller(sim: { url: string }, proxy: { port: number }, keyPrefix: string) {
  const poller = startPoller({
    FEED: "backpack",
    BACKPACK_WS_URL: sim.url,
    REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
    KEY_PREFIX: keyPrefix,
  });
  const port = await waitFor("the metrics port", () => metricsPort(poller), 15_000);
  const entries = async (outcome: string) => sample(await scrape(port), "poller_entries_total", { outcome });
  return { poller, port, entries };
}

describe("poller/main.ts", () => {
  it("publishes simulated prices and exits 0 on SIGTERM after a clean stop", async () => {
    const poller = startPoller({ FEED: "sim", KEY_PREFIX: prefix });
    const stream = keyspace(prefix).input;
    const entries = await waitFor(
      "price entries from the process",
      async () => {
        const raw = await redis.xrange(stream, "-", "+");
        return raw.length >= 4 ? raw : undefined;
      },
      15_000,
    );
    for (const [, fields] of entries)
      expect(decodeInputFields(fields)).toMatchObject({ ok: true, message: { type: "price_update", source: "sim" } });
    const port = poller.logLines().find((entry) => entry.event === "metrics_listening")?.port;
    expect(port).toBeGreaterThan(0);
    const metrics = await scrape(port as number);
    for (const asset of ASSETS) {
      expect(sample(metrics, "poller_quotes_total", { market: asset.market })).toBeGreaterThanOrEqual(1);
      // Shown from 0 (a walking market rarely needs a heartbeat).
      expect(sample(metrics, "poller_heartbeats_total", { market: asset.market })).toBeGreaterThanOrEqual(0);
    }
    expect(sample(metrics, "poller_feed_source", { source: "sim" })).toBe(1);
    expect(sample(metrics, "poller_feed_source", { source: "backpack" })).toBe(0);
    expect(sample(metrics, "poller_feed_state", { state: "connected" })).toBe(1);
    expect(sample(metrics, "poller_feed_reconnects_total")).toBe(0);
    expect(sample(metrics, "poller_process_cpu_seconds_total")).toBeGreaterThan(0);
    // The entries seen in Redis are counted written once their replies are in.
    const written = await waitFor("the written entries counted", async () => {
      const now = await scrape(port as number);
      return sample(now, "poller_entries_total", { outcome: "written" }) >= entries.length ? now : undefined;
    });
    expect(sample(written, "poller_last_written_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
    for (const outcome of ["failed", "shed", "lost"])
      expect(sample(written, "poller_entries_total", { outcome })).toBe(0);
    poller.child.kill("SIGTERM");
    expect(await poller.exited).toBe(0);
    const events = poller
      .output()
      .stdout.trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { event: string }).event);
    expect(events).toContain("feed_simulated");
    expect(events).toContain("feed_subscribed");
    expect(events.slice(-1)).toEqual(["poller_stopped"]);
  });

  it("shows in its metrics that nothing reaches a Redis it cannot reach, while the feed's quotes climb", async () => {
    const sim = await startSimFeed({ intervalMs: 20 });
    try {
      const poller = startPoller({
        FEED: "backpack",
        BACKPACK_WS_URL: sim.url,
        REDIS_URL: `redis://127.0.0.1:${await closedPort()}`,
        KEY_PREFIX: prefix,
      });
      const port = await waitFor("the metrics port", () => metricsPort(poller), 15_000);
      const metrics = await waitFor(
        "updates queued for Redis",
        async () => {
          const now = await scrape(port);
          return sample(now, "poller_publish_queue_entries") >= 20 ? now : undefined;
        },
        15_000,
      );
      const quotes = ASSETS.map((a) => sample(metrics, "poller_quotes_total", { market: a.market }));
      expect(quotes.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(20);
      expect(sample(metrics, "poller_feed_state", { state: "connected" })).toBe(1);
      for (const outcome of ["written", "failed", "shed", "lost"])
        expect(sample(metrics, "poller_entries_total", { outcome })).toBe(0);
      expect(sample(metrics, "poller_last_written_timestamp_seconds")).toBe(0);
      // Those updates are still to write: the stop gives up on them after its budget, and says so.
      poller.child.kill("SIGTERM");
      expect(await poller.exited).toBe(1);
      const timeout = poller.logLines().find((entry) => entry.event === "poller_stop_timeout");
      expect(timeout).toMatchObject({ level: "error", budgetMs: 5_000 });
      expect(timeout?.queued).toBeGreaterThanOrEqual(20);
    } finally {
      await sim.stop();
    }
  });

  it("stops at once and exits 0 when Redis was never reachable and nothing is left to write (FEED=sim)", async () => {
    const poller = startPoller({
      FEED: "sim",
      KEY_PREFIX: prefix,
      REDIS_URL: `redis://127.0.0.1:${await closedPort()}`,
    });
    // The sim's start is waiting for the last quotes, a read queued for a Redis out of reach.
    await waitFor("the metrics port", () => metricsPort(poller), 15_000);
    await waitFor("the failed connection", () => poller.logLines().some((entry) => entry.event === "redis_error"));
    const stoppingAt = Date.now();
    poller.child.kill("SIGTERM");
    expect(await poller.exited).toBe(0);
    expect(Date.now() - stoppingAt).toBeLessThan(2_500);
    const events = poller.logLines().map((entry) => entry.event);
    expect(events).not.toContain("poller_stop_timeout");
    expect(events.slice(-1)).toEqual(["poller_stopped"]);
  });

  it("stops at once and exits 0 when Redis froze after the last write and nothing is left to write", async () => {
    const proxy = await startRedisProxy(REDIS_URL);
    const sim = await startSimFeed({ intervalMs: 20 });
    try {
      const { poller, port, entries } = await startProxiedPoller(sim, proxy, prefix);
      await waitFor("written entries", async () => (await entries("written")) >= 4, 15_000);
      // The feed goes quiet and the last updates are written: both connections are ready and idle, nothing is left.
      await sim.stop();
      await waitFor("the disconnected feed", () =>
        poller.logLines().some((entry) => entry.event === "feed_disconnected"),
      );
      await waitFor("every update handed to the publisher written, none queued or in flight", async () => {
        const now = await scrape(port);
        const handed = ASSETS.reduce(
          (sum, { market }) =>
            sum + sample(now, "poller_quotes_total", { market }) + sample(now, "poller_heartbeats_total", { market }),
          0,
        );
        return handed > 0 && sample(now, "poller_entries_total", { outcome: "written" }) === handed;
      });
      // Redis (or the way to it) stops answering, its connections stay open: a QUIT would wait for ever.
      proxy.freeze();
      const stoppingAt = Date.now();
      poller.child.kill("SIGTERM");
      expect(await poller.exited).toBe(0);
      expect(Date.now() - stoppingAt).toBeLessThan(2_500);
      const events = poller.logLines().map((entry) => entry.event);
      expect(events).not.toContain("poller_stop_timeout");
      expect(events.slice(-1)).toEqual(["poller_stopped"]);
    } finally {
      await sim.stop();
      await proxy.close();
    }
  });

  it("exits 1 with poller_stop_writes_lost when the stop's last writes, in flight, are never answered", async () => {
    const proxy = await startRedisProxy(REDIS_URL);
    // No walk and no heartbeats: after the snapshot, the only update is the one the test sets.
    const sim = await startSimFeed({ intervalMs: 60_000, heartbeatMs: 60_000 });
    try {
      const { poller, entries } = await startProxiedPoller(sim, proxy, lostPrefix);
      await waitFor("the snapshot written", async () => (await entries("written")) >= ASSETS.length, 15_000);
      // Redis stops answering on the pipeline of that one update: it is in flight, and nothing is queued after it.
      const frozen = proxy.freezeOn("xadd");
      sim.setQuote("BTC_USDC_PERP", "97000", "97000.5");
      await frozen;
      await sim.stop();
      // The stop starts well after the send, so the 5 s reply timeout gives up halfway through the stop's own 5 s
      // budget: a test process paused for a moment on a loaded machine still sees the reply timeout first.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      poller.child.kill("SIGTERM");
      expect(await poller.exited).toBe(1);
      const events = poller.logLines().map((entry) => entry.event);
      expect(events).toContain("publisher_reply_lost");
      expect(events).not.toContain("poller_stopped");
      expect(events).not.toContain("poller_stop_timeout");
      const lost = poller.logLines().find((entry) => entry.event === "poller_stop_writes_lost");
      expect(lost).toMatchObject({ level: "error", lost: 1, failed: 0 });
    } finally {
      await sim.stop();
      await proxy.close();
    }
  });

  it("exits 0 with poller_stopped when writes were lost only before the stop", async () => {
    const proxy = await startRedisProxy(REDIS_URL);
    const sim = await startSimFeed({ intervalMs: 20 });
    try {
      const { poller, entries } = await startProxiedPoller(sim, proxy, prefix);
      await waitFor("the snapshot written", async () => (await entries("written")) >= ASSETS.length, 15_000);
      // A blip long before the stop: one pipeline's reply dropped with its connection, counted lost.
      await proxy.dropReplyTo("xadd");
      await waitFor("a write given up", async () => (await entries("lost")) >= 1, 15_000);
      const writtenSince = await entries("written");
      await waitFor("writes going on", async () => (await entries("written")) > writtenSince + 10, 15_000);
      poller.child.kill("SIGTERM");
      expect(await poller.exited).toBe(0);
      expect(poller.logLines().map((entry) => entry.event)).not.toContain("poller_stop_writes_lost");
      expect(poller.logLines().at(-1)?.event).toBe("poller_stopped");
    } finally {
      await sim.stop();
      await proxy.close();
    }
  });

  it("continues every market from the last quote in the log when restarted after kill -9 (FEED=sim)", async () => {
    const stream = keyspace(restartPrefix).input;
    await appendQuotes(redis, stream, FAR_FROM_LEVELS, "sim");
    /** The price_updates after entry `afterId`, once every market has at least `perMarket`. */
    const published = (afterId: string, perMarket: number) =>
      waitFor(
        `${perMarket} entries of every market after ${afterId}`,
        async () => {
          const list = (await redis.xrange(stream, `(${afterId}`, "+")).map(([id, fields]) => {
            const decoded = decodeInputFields(fields);
            if (!decoded.ok || decoded.message.type !== "price_update") throw new Error(`entry ${id} is no price`);
            return decoded.message;
          });
          const enough = ASSETS.every((a) => list.filter((u) => u.market === a.market).length >= perMarket);
          return enough ? list : undefined;
        },
        15_000,
      );
    const firstOf = (list: PriceUpdate[], market: string) => list.find((u) => u.market === market);
    const lastId = async () => (await redis.xrevrange(stream, "+", "-", "COUNT", 1))[0]![0];

    const seededTo = await lastId();
    const first = startPoller({ FEED: "sim", KEY_PREFIX: restartPrefix });
    const walked = await published(seededTo, 3);
    for (const [market, quote] of Object.entries(FAR_FROM_LEVELS)) expect(firstOf(walked, market)).toMatchObject(quote);
    first.child.kill("SIGKILL");
    await first.exited;

    // Where the walk had got to when the process died: what the engine holds.
    const before = (await redis.xrange(stream, "-", "+")).map(([, fields]) => decodeInputFields(fields));
    const lastQuote = (market: string) =>
      before
        .flatMap((d) => (d.ok && d.message.type === "price_update" && d.message.market === market ? [d.message] : []))
        .at(-1)!;
    const diedAt = await lastId();
    const second = startPoller({ FEED: "sim", KEY_PREFIX: restartPrefix });
    const resumed = await published(diedAt, 1);
    for (const { market } of ASSETS) {
      const { bid, ask } = lastQuote(market);
      expect(firstOf(resumed, market)).toMatchObject({ bid, ask });
    }
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(second.logLines().find((entry) => entry.event === "sim_feed_started")?.atLevels).toEqual([]);
  });

  it("refuses a bad POLLER_METRICS_PORT at start, naming the variable", async () => {
    const poller = startPoller({ FEED: "sim", KEY_PREFIX: prefix, POLLER_METRICS_PORT: "metrics" });
    expect(await poller.exited).toBe(2);
    expect(poller.output().stderr).toContain("POLLER_METRICS_PORT must be a port number from 0 to 65535");
  });

  it("refuses a bad FEED at start, naming the variable", async () => {
    const poller = startPoller({ FEED: "live", KEY_PREFIX: prefix });
    expect(await poller.exited).toBe(2);
    expect(poller.output().stderr).toContain('FEED must be one of auto, backpack, sim, got "live"');
  });
});
