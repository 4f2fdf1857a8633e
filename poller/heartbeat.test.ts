import { describe, expect, it } from "vitest";
import type { PriceUpdate } from "../contract/messages.ts";
import { QuoteHeartbeat } from "./heartbeat.ts";

const quote = (market: string, bid: string): PriceUpdate => ({
  type: "price_update",
  market,
  bid,
  ask: bid,
  exchangeTimeUs: "1",
  source: "backpack",
});

describe("QuoteHeartbeat", () => {
  it("re-publishes only the markets quiet for everyMs, and only while the feed is live", () => {
    const published: PriceUpdate[] = [];
    let live = true;
    const hb = new QuoteHeartbeat({ everyMs: 5_000, live: () => live, publish: (u) => published.push(u) });
    hb.seen(quote("ETH_USDC_PERP", "4300"), 0);
    hb.seen(quote("ADA_USDC_PERP", "0.9"), 0);
    hb.tick(4_999);
    expect(published).toEqual([]);
    hb.seen(quote("ETH_USDC_PERP", "4301"), 4_000); // ETH moved: it is not quiet
    hb.tick(5_000);
    expect(published).toEqual([quote("ADA_USDC_PERP", "0.9")]);
    hb.tick(9_000);
    expect(published.map((u) => u.bid)).toEqual(["0.9", "4301"]); // ETH quiet since 4,000
    live = false;
    hb.tick(60_000);
    expect(published).toHaveLength(2); // a dead feed lets quotes go stale
    live = true;
    hb.tick(60_000);
    expect(published.map((u) => u.bid)).toEqual(["0.9", "4301", "4301", "0.9"]); // markets in first-seen order
    expect(hb.republished).toBe(4);
  });
});
