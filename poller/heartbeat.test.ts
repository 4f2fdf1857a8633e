// Heartbeats: the exchange's evidence of life re-publishes a market's unchanged top of book with the exchange's
// newer time, at most once per 0.9 s of exchange time per market, never before a first quote, after a reconnect
// only once the new connection has shown the book, only while the book has shown itself within the limit, and not
// while the book has refused a later frame since.
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

  it("after a restart, re-publishes the log's last top once the new connection has shown the book", () => {
    const hb = new Heartbeats();
    hb.loggedBefore("ETH_USDC_PERP", { bid: "4300", ask: "4300.5", sinceUs: "1000000" });
    expect(hb.evidence("ETH_USDC_PERP", "1800000", true)).toBeUndefined(); // within 0.9 s of the top's time
    expect(hb.evidence("ETH_USDC_PERP", "5000000", false)).toEqual(eth("4300", "5000000"));
    const fresh = new Heartbeats();
    fresh.loggedBefore("ETH_USDC_PERP", { bid: "4300", ask: "4300.5", sinceUs: "1000000" });
    expect(fresh.evidence("ETH_USDC_PERP", "5000000", false)).toBeUndefined(); // a markPrice frame alone
    fresh.published(eth("4301", "5100000")); // a changed top wins over the log's
    fresh.loggedBefore("ETH_USDC_PERP", { bid: "4300", ask: "4300.5", sinceUs: "1000000" });
    expect(fresh.evidence("ETH_USDC_PERP", "6000000", false)).toEqual(eth("4301", "6000000"));
  });

  it("vouches only for a book that has shown itself within the limit: a mark price alone cannot keep it fresh", () => {
    const hb = new Heartbeats(); // 15 s
    hb.published(eth("4300", "1000000")); // the book's last frame: 1 s
    expect(hb.evidence("ETH_USDC_PERP", "15000000", false)).toEqual(eth("4300", "15000000"));
    expect(hb.evidence("ETH_USDC_PERP", "16000000", false)).toEqual(eth("4300", "16000000")); // exactly 15 s
    expect(hb.evidence("ETH_USDC_PERP", "16500000", false)).toBeUndefined(); // not due anyway
    expect(hb.evidence("ETH_USDC_PERP", "17000000", false)).toBe("book_silent");
    expect(hb.evidence("ETH_USDC_PERP", "18000000", false)).toBe("book_silent");
    // A book frame with an unchanged top shows the book again; the heartbeats go on from it.
    expect(hb.evidence("ETH_USDC_PERP", "18100000", true)).toEqual(eth("4300", "18100000"));
    expect(hb.evidence("ETH_USDC_PERP", "33100000", false)).toEqual(eth("4300", "33100000"));
    expect(hb.evidence("ETH_USDC_PERP", "34000000", false)).toBe("book_silent");
    hb.published(eth("4301", "34500000")); // so does a changed one
    expect(hb.evidence("ETH_USDC_PERP", "35500000", false)).toEqual(eth("4301", "35500000"));
  });

  it("counts a book the connection has not shown as silent from the connection's first word of its market", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000"));
    hb.newConnection();
    expect(hb.evidence("ETH_USDC_PERP", "5000000", false)).toBeUndefined(); // the first word of ETH on it
    expect(hb.evidence("ETH_USDC_PERP", "20000000", false)).toBeUndefined(); // 15 s later: not vouched for, not yet silent
    expect(hb.evidence("ETH_USDC_PERP", "21000000", false)).toBe("book_silent");
    // A market whose book has not shown itself at all yet, likewise.
    expect(hb.evidence("BTC_USDC_PERP", "5000000", false)).toBeUndefined();
    expect(hb.evidence("BTC_USDC_PERP", "20000001", false)).toBe("book_silent");
    expect(hb.evidence("BTC_USDC_PERP", "20500000", false)).toBe("book_silent"); // no heartbeat to space out
    expect(hb.evidence("ETH_USDC_PERP", "21500000", true)).toEqual(eth("4300", "21500000"));
  });

  it("stops vouching for a book that refused a later frame, until a book frame is accepted again", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000"));
    expect(hb.evidence("ETH_USDC_PERP", "2000000", false)).toEqual(eth("4300", "2000000"));
    hb.bookRefused("ETH_USDC_PERP"); // the exchange's top moved to one that could not be taken
    expect(hb.evidence("ETH_USDC_PERP", "2500000", false)).toBeUndefined(); // not due anyway
    expect(hb.evidence("ETH_USDC_PERP", "3000000", false)).toBe("book_refused");
    expect(hb.evidence("ETH_USDC_PERP", "4000000", false)).toBe("book_refused");
    expect(hb.evidence("BTC_USDC_PERP", "4000000", true)).toBeUndefined(); // other markets are not concerned
    // An accepted book frame with the top unchanged: the heartbeats go on from it.
    expect(hb.evidence("ETH_USDC_PERP", "4100000", true)).toEqual(eth("4300", "4100000"));
    hb.bookRefused("ETH_USDC_PERP");
    expect(hb.evidence("ETH_USDC_PERP", "5000000", false)).toBe("book_refused");
    hb.published(eth("4301", "5500000")); // so does a changed one
    expect(hb.evidence("ETH_USDC_PERP", "6400000", false)).toEqual(eth("4301", "6400000"));
    // A silent book is told as such first: the silence is what the operator must see.
    hb.bookRefused("ETH_USDC_PERP");
    expect(hb.evidence("ETH_USDC_PERP", "21000000", false)).toBe("book_silent");
  });

  it("takes its limit from the caller, and refuses one that is not a whole number of milliseconds", () => {
    const hb = new Heartbeats(2_000);
    hb.published(eth("4300", "1000000"));
    expect(hb.evidence("ETH_USDC_PERP", "3000000", false)).toEqual(eth("4300", "3000000"));
    expect(hb.evidence("ETH_USDC_PERP", "4000000", false)).toBe("book_silent");
    expect(() => new Heartbeats(1.5)).toThrow("bookSilenceMs must be a whole number of milliseconds ≥ 0, got 1.5");
    expect(() => new Heartbeats(-1)).toThrow(/bookSilenceMs.*got -1/);
  });

  it("keeps markets apart", () => {
    const hb = new Heartbeats();
    hb.published(eth("4300", "1000000"));
    expect(hb.evidence("BTC_USDC_PERP", "9000000", true)).toBeUndefined();
    expect(hb.evidence("ETH_USDC_PERP", "9000000", false)).toEqual(eth("4300", "9000000"));
  });
});
