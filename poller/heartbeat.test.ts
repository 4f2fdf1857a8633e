// Heartbeats: the exchange's evidence of life re-publishes a market's unchanged top of book with the exchange's
// newer time, at most once per 0.9 s of exchange time per market, never before a first quote, and after a
// reconnect only once the new connection has shown the book.
import { describe, expect, it } from "vitest";
import { Heartbeats } from "./heartbeat.ts";

const eth = (bid: string, exchangeTimeUs: string) => ({
  market: "ETH_USDC_PERP",
  bid,
  ask: "4300.5",
  exchangeTimeUs,
});

describe("Heartbeats", () => {
  it("sends nothing for a market with no published quote yet", () => {
    const hb = new Heartbeats();
    expect(hb.evidence("ETH_USDC_PERP", "5000000", true)).toBeUndefined();
  });

  it("stamps the last top of book with the evidence's time once 0.9 s of exchange time has passed", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000")); // 1.0 s
    expect(hb.evidence("ETH_USDC_PERP", "1899999", false)).toBeUndefined(); // 0.899999 s later
    expect(hb.evidence("ETH_USDC_PERP", "1900000", false)).toEqual(eth("4300", "1900000")); // 0.9 s later
    expect(hb.evidence("ETH_USDC_PERP", "2500000", false)).toBeUndefined(); // 0.6 s after that heartbeat
    expect(hb.evidence("ETH_USDC_PERP", "2800000", true)).toEqual(eth("4300", "2800000"));
    hb.published(eth("4301", "3000000")); // the book moved: the next heartbeat carries its prices
    expect(hb.evidence("ETH_USDC_PERP", "3899999", false)).toBeUndefined();
    expect(hb.evidence("ETH_USDC_PERP", "3900000", false)).toEqual(eth("4301", "3900000"));
  });

  it("a quote stamped earlier than the last heartbeat does not move the rate limit back", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000"));
    expect(hb.evidence("ETH_USDC_PERP", "2000000", false)).toEqual(eth("4300", "2000000"));
    hb.published(eth("4301", "1950000")); // the book's engine time, a little behind the mark price's event time
    expect(hb.evidence("ETH_USDC_PERP", "2899999", false)).toBeUndefined();
    expect(hb.evidence("ETH_USDC_PERP", "2900000", false)).toEqual(eth("4301", "2900000"));
  });

  it("after a reconnect, waits until the new connection has shown the book", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000"));
    hb.newConnection();
    expect(hb.evidence("ETH_USDC_PERP", "5000000", false)).toBeUndefined(); // a markPrice frame alone
    expect(hb.evidence("ETH_USDC_PERP", "5100000", true)).toEqual(eth("4300", "5100000")); // an unchanged book frame
    expect(hb.evidence("ETH_USDC_PERP", "6000000", false)).toEqual(eth("4300", "6000000"));
    hb.newConnection();
    hb.published(eth("4299", "6500000")); // a changed book shows it too
    expect(hb.evidence("ETH_USDC_PERP", "7400000", false)).toEqual(eth("4299", "7400000"));
  });

  it("keeps markets apart", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000"));
    expect(hb.evidence("BTC_USDC_PERP", "9000000", true)).toBeUndefined();
    expect(hb.evidence("ETH_USDC_PERP", "9000000", false)).toEqual(eth("4300", "9000000"));
  });
});
