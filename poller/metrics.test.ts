// The poller's metrics as an operator reads them: the help next to poller_heartbeats_total names every reason a
// market's heartbeats stop, by the log event feed-client.ts writes for it, so a stopped counter leads to its cause;
// and what became of the updates handed to the publisher shows apart from what the feed queued.
import { readFileSync } from "node:fs";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ASSETS } from "../contract/markets.ts";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import { pollerMetrics, type PublisherView } from "./metrics.ts";
import type { PublisherCounters } from "./publisher.ts";

const connected = () => ({ state: "connected", source: "backpack" }) as const;
const idle: PublisherView = { counters: { written: 0, failed: 0, shed: 0, lost: 0 }, queued: 0, lastWrittenAtMs: 0 };

describe("pollerMetrics", () => {
  it("says a market's heartbeats stop when it halts, when its book is silent and when its book refused a frame", async () => {
    const registry = new Registry();
    pollerMetrics(registry, ASSETS, connected, () => idle);
    const help = (await registry.metrics()).split("\n").find((l) => l.startsWith("# HELP poller_heartbeats_total "));
    expect(help).toContain("halted at the exchange");
    const feedClient = readFileSync(new URL("./feed-client.ts", import.meta.url), "utf8");
    for (const event of ["feed_book_silent", "feed_book_refused"]) {
      expect(feedClient).toContain(`"${event}"`); // the event the help points to is one the poller logs
      expect(help).toContain(event);
    }
  });

  it("counts the publisher's entries by outcome, its queue and its last write, as they are at each scrape", async () => {
    const registry = new Registry();
    const counters: PublisherCounters = { written: 0, failed: 0, shed: 0, lost: 0 };
    let publisher: PublisherView = { counters, queued: 0, lastWrittenAtMs: undefined };
    const metrics = pollerMetrics(registry, ASSETS, connected, () => publisher);
    const scrape = async () => {
      const samples = parseSamples(await registry.metrics());
      const outcome = (name: string) => sample(samples, "poller_entries_total", { outcome: name });
      return {
        written: outcome("written"),
        failed: outcome("failed"),
        shed: outcome("shed"),
        lost: outcome("lost"),
        queue: sample(samples, "poller_publish_queue_entries"),
        lastWritten: sample(samples, "poller_last_written_timestamp_seconds"),
      };
    };
    // Every outcome shows from 0, and no write yet reads as the epoch: an alert on its age fires.
    expect(await scrape()).toEqual({ written: 0, failed: 0, shed: 0, lost: 0, queue: 0, lastWritten: 0 });

    // Redis out of reach: the feed's counters climb, nothing is written, the queue grows and sheds.
    metrics.quote("ETH_USDC_PERP");
    publisher = { counters: { ...counters, shed: 3 }, queued: 10_000, lastWrittenAtMs: undefined };
    expect(await scrape()).toEqual({ written: 0, failed: 0, shed: 3, lost: 0, queue: 10_000, lastWritten: 0 });

    publisher = {
      counters: { written: 7, failed: 1, shed: 3, lost: 2 },
      queued: 0,
      lastWrittenAtMs: 1_796_000_000_500,
    };
    expect(await scrape()).toEqual({ written: 7, failed: 1, shed: 3, lost: 2, queue: 0, lastWritten: 1_796_000_000.5 });
    expect(await scrape()).toMatchObject({ written: 7, lost: 2 }); // a scrape without news adds nothing
  });
});
