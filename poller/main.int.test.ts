// The poller process as deployed: reads its env, publishes sim prices to the prefixed input stream, and stops
// cleanly (exit 0) on SIGTERM; a bad env stops it at start with a message naming the variable. Its metrics count
// the quotes per market and show the feed's state and source.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { decodeInputFields } from "../contract/stream-fields.ts";
import { waitFor } from "./test-support.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { sample, scrape } from "../platform/testing/metrics.ts";
import { ASSETS } from "../contract/markets.ts";

const REDIS_URL = TEST_REDIS_URL;
const redis = new Redis(REDIS_URL);
const prefix = `test:${randomUUID()}:`;
const started: ReturnType<typeof spawn>[] = [];
afterAll(async () => {
  // A test that failed before stopping its poller must not leave it publishing.
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await redis.del(keyspace(prefix).input);
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
  return { child, exited, output: () => ({ stdout, stderr }) };
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
    const listening = poller
      .output()
      .stdout.split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { event?: string; port?: number })
      .find((entry) => entry.event === "metrics_listening");
    expect(listening?.port).toBeGreaterThan(0);
    const metrics = await scrape(listening!.port!);
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
