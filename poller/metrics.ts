/**
 * The poller's Prometheus metrics: quotes and heartbeats per market (one bound counter per configured market, so an
 * update costs no label lookup), reconnects, and, read at scrape time, the feed's state and source.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { AssetConfig } from "../contract/markets.ts";
import { FEED_STATES, type FeedState } from "./feed-client.ts";
import type { PriceSource } from "./publisher.ts";

export interface PollerMetrics {
  /** A quote accepted from the feed for `market` (one of the configured markets). */
  quote(market: string): void;
  /** A heartbeat (the unchanged top of book at a newer exchange time) queued for `market`. */
  heartbeat(market: string): void;
  reconnect(): void;
}

const SOURCES: readonly PriceSource[] = ["backpack", "sim"];

export function pollerMetrics(
  registry: Registry,
  markets: readonly AssetConfig[],
  feed: () => { readonly state: FeedState; readonly source: PriceSource | undefined },
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
  return {
    quote: (market) => byMarket.get(market)?.inc(),
    heartbeat: (market) => beatsByMarket.get(market)?.inc(),
    reconnect: () => reconnects.inc(),
  };
}
