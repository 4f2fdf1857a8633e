/**
 * The poller's Prometheus metrics: quotes and heartbeats per market (one bound counter per configured market, so an
 * update costs no label lookup), reconnects, and, read at scrape time, the feed's state and source and what became
 * of the updates handed to the publisher. The feed's counters say what was queued; only the publisher's say what
 * reached Redis, and with Redis out of reach the first go on climbing while nothing lands.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { AssetConfig } from "../contract/markets.ts";
import { FEED_STATES, type FeedState } from "./feed-client.ts";
import type { PriceSource, PublisherCounters } from "./publisher.ts";

export interface PollerMetrics {
  /** A quote accepted from the feed for `market` (one of the configured markets). */
  quote(market: string): void;
  /** A heartbeat (the unchanged top of book at a newer exchange time) queued for `market`. */
  heartbeat(market: string): void;
  reconnect(): void;
}

/** What the metrics read of the publisher at each scrape. */
export interface PublisherView {
  readonly counters: Readonly<PublisherCounters>;
  readonly queued: number;
  readonly lastWrittenAtMs: number | undefined;
}

const SOURCES: readonly PriceSource[] = ["backpack", "sim"];
const OUTCOMES: readonly (keyof PublisherCounters)[] = ["written", "failed", "shed", "lost"];

export function pollerMetrics(
  registry: Registry,
  markets: readonly AssetConfig[],
  feed: () => { readonly state: FeedState; readonly source: PriceSource | undefined },
  publisher: () => PublisherView,
): PollerMetrics {
  const registers = [registry];
  const quotes = new Counter({
    name: "poller_quotes_total",
    help: "Quotes accepted from the feed (new, in order) and queued for engine:input, by market.",
    labelNames: ["market"] as const,
    registers,
  });
  const byMarket = new Map(markets.map((m) => [m.market, quotes.labels(m.market)]));
  for (const counter of byMarket.values()) counter.inc(0); // every market shows, from 0
  const heartbeats = new Counter({
    name: "poller_heartbeats_total",
    help: "Heartbeats queued for engine:input, by market: the unchanged top of book at the exchange's newer time. A market whose heartbeats stop while others go on has halted at the exchange, or its book has been silent (feed_book_silent) or refused a later frame (feed_book_refused).",
    labelNames: ["market"] as const,
    registers,
  });
  const beatsByMarket = new Map(markets.map((m) => [m.market, heartbeats.labels(m.market)]));
  for (const counter of beatsByMarket.values()) counter.inc(0);
  const reconnects = new Counter({
    name: "poller_feed_reconnects_total",
    help: "Reconnects scheduled after the feed's socket closed or could not be opened.",
    registers,
  });
  new Gauge({
    name: "poller_feed_state",
    help: `1 for the state the feed's connection is in (${FEED_STATES.join(", ")}), 0 for the others.`,
    labelNames: ["state"] as const,
    registers,
    collect() {
      const now = feed().state;
      for (const state of FEED_STATES) this.set({ state }, state === now ? 1 : 0);
    },
  });
  new Gauge({
    name: "poller_feed_source",
    help: "1 for the price source in use: backpack (live market data) or sim (simulated prices); both 0 before one is chosen.",
    labelNames: ["source"] as const,
    registers,
    collect() {
      const now = feed().source;
      for (const source of SOURCES) this.set({ source }, source === now ? 1 : 0);
    },
  });
  // A counter cannot be set: each scrape adds what the publisher's totals grew by since the last one.
  const reported: PublisherCounters = { written: 0, failed: 0, shed: 0, lost: 0 };
  new Counter({
    name: "poller_entries_total",
    help: "Price updates by what became of them: written (Redis accepted the XADD), failed (Redis refused it: out of memory, wrong key type), shed (the oldest dropped from the queue while Redis was out of reach), lost (its pipeline's reply was lost with the connection or not given within 5 s: written in full, in part or not at all, never sent again). Queued updates are in poller_publish_queue_entries.",
    labelNames: ["outcome"] as const,
    registers,
    collect() {
      const { counters } = publisher();
      for (const outcome of OUTCOMES) {
        this.inc({ outcome }, Math.max(0, counters[outcome] - reported[outcome]));
        reported[outcome] = Math.max(reported[outcome], counters[outcome]);
      }
    },
  });
  new Gauge({
    name: "poller_publish_queue_entries",
    help: "Price updates waiting for Redis (not counting a pipeline in flight); it grows while Redis is out of reach, up to 10,000, then the oldest are shed.",
    registers,
    collect() {
      this.set(publisher().queued);
    },
  });
  new Gauge({
    name: "poller_last_written_timestamp_seconds",
    help: "When Redis last accepted a price update (Unix time), 0 before the first: watch that it moves, as orders on a market are refused STALE_PRICE 5 s after its last price update.",
    registers,
    collect() {
      this.set((publisher().lastWrittenAtMs ?? 0) / 1000);
    },
  });
  return {
    quote: (market) => byMarket.get(market)?.inc(),
    heartbeat: (market) => beatsByMarket.get(market)?.inc(),
    reconnect: () => reconnects.inc(),
  };
}
