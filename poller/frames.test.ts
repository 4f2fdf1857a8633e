// The feed parser on real Backpack frames and on garbage: every frame is a quote, a heartbeat, a control message
// or a counted rejection with a reason; nothing throws, and ids/times keep their exact digits.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ASSETS } from "../contract/markets.ts";
import { MAX_FRAME_CHARS, marketTable, parseFrame, streamsFor, type FrameResult } from "./frames.ts";

const ours = marketTable(ASSETS);
const withSpotSol = marketTable([...ASSETS, { ...ASSETS[2], symbol: "SOLSPOT", market: "SOL_USDC" }]);
const realFrames = readFileSync(new URL("./testdata/backpack-bookticker-real.jsonl", import.meta.url), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "");

/** A well-formed ETH_USDC_PERP frame (the seed's sample shape), with raw JSON overrides for `data` fields. */
function eth(overrides: Record<string, string> = {}, stream = "bookTicker.ETH_USDC_PERP"): string {
  const fields: Record<string, string> = {
    e: '"bookTicker"',
    E: "1736172777506225",
    T: "1736172777497712",
    s: '"ETH_USDC_PERP"',
    a: '"4303.93"',
    A: '"1.2"',
    b: '"4303.90"',
    B: '"0.8"',
    u: "1802083092",
    ...overrides,
  };
  const data = Object.entries(fields)
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `"${k}":${v}`)
    .join(",");
  return `{"stream":"${stream}","data":{${data}}}`;
}

/** markPrice frames shaped as Backpack's docs give them, not recorded (see README.md, Tests). */
const markPriceFrames = readFileSync(new URL("./testdata/backpack-markprice-docs.jsonl", import.meta.url), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "");

/** A well-formed ETH_USDC_PERP markPrice frame, with raw JSON overrides for `data` fields. */
function mark(overrides: Record<string, string> = {}, stream = "markPrice.ETH_USDC_PERP"): string {
  const fields: Record<string, string> = {
    E: "1736172778000318",
    T: "1736172777999871",
    e: '"markPrice"',
    f: '"0.0000125"',
    i: '"3671.84"',
    n: "1736175600000",
    p: '"3672.11"',
    s: '"ETH_USDC_PERP"',
    ...overrides,
  };
  const data = Object.entries(fields)
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `"${k}":${v}`)
    .join(",");
  return `{"data":{${data}},"stream":"${stream}"}`;
}

const rejected = (result: FrameResult) => (result.kind === "rejected" ? result.reason : `not rejected: ${result.kind}`);

describe("parseFrame on real Backpack frames", () => {
  it("has the recorded fixture", () => {
    expect(realFrames).toHaveLength(3);
  });

  it("ignores the spot SOL_USDC frames as an unknown market when only our perp markets are configured", () => {
    for (const frame of realFrames) {
      expect(parseFrame(frame, ours)).toEqual({ kind: "rejected", reason: "unknown_market", detail: "SOL_USDC" });
    }
  });

  it("parses every fixture frame exactly when SOL_USDC is configured", () => {
    const quotes = realFrames.map((frame) => parseFrame(frame, withSpotSol));
    expect(quotes).toEqual([
      {
        kind: "quote",
        quote: {
          market: "SOL_USDC",
          bid: "218.58",
          ask: "218.61",
          exchangeTimeUs: "1736172777497712",
          updateId: "1802083092",
        },
      },
      {
        kind: "quote",
        quote: {
          market: "SOL_USDC",
          bid: "219.38",
          ask: "219.42",
          exchangeTimeUs: "1736189041197902",
          updateId: "1802736850",
        },
      },
      {
        kind: "quote",
        quote: {
          market: "SOL_USDC",
          bid: "207.51",
          ask: "207.52",
          exchangeTimeUs: "1736269138823600",
          updateId: "1804072087",
        },
      },
    ]);
  });

  it("returns canonical prices: trailing zeros trimmed, the same ticks as sent", () => {
    expect(parseFrame(eth(), ours)).toEqual({
      kind: "quote",
      quote: {
        market: "ETH_USDC_PERP",
        bid: "4303.9",
        ask: "4303.93",
        exchangeTimeUs: "1736172777497712",
        updateId: "1802083092",
      },
    });
    expect(parseFrame(eth({ b: '"4303.930"' }), ours)).toMatchObject({
      kind: "quote",
      quote: { bid: "4303.93", ask: "4303.93" },
    });
  });
});

describe("parseFrame on markPrice frames (the per-market heartbeat)", () => {
  it("subscribes each market's book ticker and mark price", () => {
    expect(streamsFor(ASSETS.slice(0, 2))).toEqual([
      "bookTicker.ETH_USDC_PERP",
      "markPrice.ETH_USDC_PERP",
      "bookTicker.BTC_USDC_PERP",
      "markPrice.BTC_USDC_PERP",
    ]);
  });

  it("reads each fixture frame as the exchange's word that the market is live at its event time E", () => {
    expect(markPriceFrames.map((frame) => parseFrame(frame, ours))).toEqual([
      { kind: "heartbeat", heartbeat: { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172778000318" } },
      { kind: "heartbeat", heartbeat: { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172779000402" } },
      { kind: "heartbeat", heartbeat: { market: "SOL_USDC_PERP", exchangeTimeUs: "1736172778000355" } },
    ]);
  });

  it("keeps E's exact digits, given as a string or a number above 2^53", () => {
    expect(parseFrame(mark({ E: '"1736172778000319"' }), ours)).toEqual({
      kind: "heartbeat",
      heartbeat: { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172778000319" },
    });
    expect(parseFrame(mark({ E: "9007199254740993" }), ours)).toMatchObject({
      heartbeat: { exchangeTimeUs: "9007199254740993" },
    });
  });

  it("needs only s and E: the mark, index and funding fields may be absent", () => {
    expect(parseFrame(mark({ p: "", f: "", i: "", n: "", T: "" }), ours)).toMatchObject({ kind: "heartbeat" });
  });

  it.each([
    ["event time missing", mark({ E: "" }), "missing_field"],
    ["event time fractional", mark({ E: "1736172778000318.5" }), "invalid_field"],
    ["event time of 21 digits", mark({ E: "1".repeat(21) }), "invalid_field"],
    ["event time with letters", mark({ E: '"17361727780003x8"' }), "invalid_field"],
    ["symbol missing", mark({ s: "" }), "missing_field"],
    ["unknown market", mark({ s: '"DOGE_USDC_PERP"' }, "markPrice.DOGE_USDC_PERP"), "unknown_market"],
    ["stream of another market", mark({}, "markPrice.BTC_USDC_PERP"), "stream_mismatch"],
    ["a markPrice event on the bookTicker stream", mark({}, "bookTicker.ETH_USDC_PERP"), "stream_mismatch"],
    ["a bookTicker event on the markPrice stream", eth({}, "markPrice.ETH_USDC_PERP"), "stream_mismatch"],
    ["another event", mark({ e: '"ticker"' }, "ticker.ETH_USDC_PERP"), "wrong_event"],
  ])("refuses %s", (_name, frame, reason) => {
    expect(rejected(parseFrame(frame, ours))).toBe(reason);
  });
});

describe("parseFrame keeps ids and times as exact digits", () => {
  it("keeps a 25-digit string id", () => {
    expect(parseFrame(eth({ u: '"1234567890123456789012345"' }), ours)).toMatchObject({
      quote: { updateId: "1234567890123456789012345" },
    });
  });

  it("keeps a numeric id above 2^53 digit for digit (JSON.parse would round it)", () => {
    const big = "9007199254740993"; // 2^53 + 1
    expect(String(JSON.parse(big))).not.toBe(big);
    expect(parseFrame(eth({ u: big }), ours)).toMatchObject({ quote: { updateId: big } });
    expect(parseFrame(eth({ u: "123456789012345678901234" }), ours)).toMatchObject({
      quote: { updateId: "123456789012345678901234" },
    });
  });

  it("takes T as the exchange time, as a string or a number", () => {
    expect(parseFrame(eth({ T: '"1736172777497713"' }), ours)).toMatchObject({
      quote: { exchangeTimeUs: "1736172777497713" },
    });
  });
});

describe("parseFrame refuses garbage with a reason", () => {
  const cases: [string, string, string][] = [
    ["not JSON", "hello", "malformed_json"],
    ["empty", "", "malformed_json"],
    ["truncated", eth().slice(0, -3), "malformed_json"],
    ["trailing garbage", `${eth()}x`, "malformed_json"],
    ["trailing comma", eth().replace("}}", ",}}"), "malformed_json"],
    ["an array", "[1,2]", "not_an_object"],
    ["a number", "42", "not_an_object"],
    ["null", "null", "not_an_object"],
    ["data missing", '{"stream":"bookTicker.ETH_USDC_PERP"}', "missing_field"],
    ["data a string", '{"stream":"bookTicker.ETH_USDC_PERP","data":"x"}', "invalid_field"],
    ["stream a number", eth().replace('"bookTicker.ETH_USDC_PERP"', "7"), "invalid_field"],
    ["event missing", eth({ e: "" }), "missing_field"],
    ["another event", eth({ e: '"depth"' }), "wrong_event"],
    ["symbol missing", eth({ s: "" }), "missing_field"],
    ["symbol a number", eth({ s: "5" }), "invalid_field"],
    ["unknown symbol", eth({ s: '"DOGE_USDC_PERP"' }, "bookTicker.DOGE_USDC_PERP"), "unknown_market"],
    ["stream of another market", eth({}, "bookTicker.BTC_USDC_PERP"), "stream_mismatch"],
    ["ask missing", eth({ a: "" }), "missing_field"],
    ["bid as a number", eth({ b: "4303.90" }), "invalid_price"],
    ["ask in exponent form", eth({ a: '"4.30393e3"' }), "invalid_price"],
    ["negative bid", eth({ b: '"-4303.90"' }), "invalid_price"],
    ["plus sign", eth({ b: '"+4303.90"' }), "invalid_price"],
    ["leading space", eth({ b: '" 4303.90"' }), "invalid_price"],
    ["dangling point", eth({ b: '"4303."' }), "invalid_price"],
    ["no whole part", eth({ b: '".5"' }), "invalid_price"],
    ["too many decimals", eth({ a: '"4303.931"' }), "invalid_price"],
    ["zero bid", eth({ b: '"0"' }), "invalid_price"],
    ["above the market's limit", eth({ a: '"1000000.01"' }), "invalid_price"],
    ["crossed book", eth({ b: '"4304.00"' }), "crossed_quote"],
    ["id missing", eth({ u: "" }), "missing_field"],
    ["negative id", eth({ u: "-5" }), "invalid_field"],
    ["fractional id", eth({ u: "1.5" }), "invalid_field"],
    ["exponent id", eth({ u: "1e5" }), "invalid_field"],
    ["id with letters", eth({ u: '"12a"' }), "invalid_field"],
    ["id of 41 digits", eth({ u: `"${"9".repeat(41)}"` }), "invalid_field"],
    ["time missing", eth({ T: "" }), "missing_field"],
    ["time of 21 digits", eth({ T: "1".repeat(21) }), "invalid_field"],
    ["time as a float", eth({ T: "1736172777497712.5" }), "invalid_field"],
    ["oversized", `{"pad":"${"x".repeat(MAX_FRAME_CHARS)}"}`, "oversized"],
    ["deeply nested", `${"[".repeat(100)}${"]".repeat(100)}`, "malformed_json"],
  ];

  it.each(cases)("%s", (_name, frame, reason) => {
    expect(rejected(parseFrame(frame, ours))).toBe(reason);
  });

  it("accepts a locked book (bid = ask)", () => {
    expect(parseFrame(eth({ b: '"4303.93"' }), ours).kind).toBe("quote");
  });

  it("says which field and why in the detail", () => {
    expect(parseFrame(eth({ a: '"4303.931"' }), ours)).toEqual({
      kind: "rejected",
      reason: "invalid_price",
      detail: 'a: "4303.931" has more than 2 decimals',
      book: { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172777497712" },
    });
  });

  it("words a single decimal in the singular (BTC prices)", () => {
    const btc = eth({ s: '"BTC_USDC_PERP"', a: '"97543.25"', b: '"97543.1"' }, "bookTicker.BTC_USDC_PERP");
    expect(parseFrame(btc, ours)).toMatchObject({
      kind: "rejected",
      reason: "invalid_price",
      detail: 'a: "97543.25" has more than 1 decimal',
    });
  });

  it("gives a book frame refused for its prices its market and time, when its time is good", () => {
    const book = { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172777497712" };
    expect(parseFrame(eth({ b: '"4304.00"' }), ours)).toMatchObject({ reason: "crossed_quote", book });
    expect(parseFrame(eth({ b: '"0"' }), ours)).toMatchObject({ reason: "invalid_price", book });
    expect(parseFrame(eth({ b: '"0"', T: '"1736172777497712"' }), ours)).toMatchObject({ book });
    expect(parseFrame(eth({ b: '"0"', T: "1.5" }), ours)).not.toHaveProperty("book");
    expect(parseFrame(eth({ b: '"0"', T: "" }), ours)).not.toHaveProperty("book");
    expect(parseFrame(eth({ T: "" }), ours)).not.toHaveProperty("book");
  });

  it("gives a book frame with good prices but an unreadable or absent id its market and time: its top moved", () => {
    const book = { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172777497712" };
    expect(parseFrame(eth({ u: "-5" }), ours)).toMatchObject({ reason: "invalid_field", detail: /^u:/, book });
    expect(parseFrame(eth({ u: '"6x"' }), ours)).toMatchObject({ reason: "invalid_field", book });
    expect(parseFrame(eth({ u: `"${"9".repeat(41)}"` }), ours)).toMatchObject({ reason: "invalid_field", book });
    expect(parseFrame(eth({ u: "" }), ours)).toMatchObject({ reason: "missing_field", detail: "u", book });
    // Without a good time it says nothing of when the top moved.
    expect(parseFrame(eth({ u: "-5", T: "" }), ours)).not.toHaveProperty("book");
    expect(parseFrame(eth({ u: "-5", T: "1.5" }), ours)).not.toHaveProperty("book");
  });

  it("tells a book frame with a side absent like one with that side empty: its market and time go with it", () => {
    const book = { market: "ETH_USDC_PERP", exchangeTimeUs: "1736172777497712" };
    expect(parseFrame(eth({ b: '""' }), ours)).toMatchObject({ reason: "invalid_price", book });
    expect(parseFrame(eth({ b: "" }), ours)).toEqual({ kind: "rejected", reason: "missing_field", detail: "b", book });
    expect(parseFrame(eth({ a: "" }), ours)).toEqual({ kind: "rejected", reason: "missing_field", detail: "a", book });
    expect(parseFrame(eth({ a: "", b: "" }), ours)).toMatchObject({ reason: "missing_field", book });
    // Without a good time it says nothing of when the top moved; another market's frame is not this market's word.
    expect(parseFrame(eth({ b: "", T: "" }), ours)).not.toHaveProperty("book");
    expect(parseFrame(eth({ b: "", T: '"soon"' }), ours)).not.toHaveProperty("book");
    expect(parseFrame(eth({ b: "" }, "bookTicker.BTC_USDC_PERP"), ours)).not.toHaveProperty("book");
    const other = eth({ b: "", s: '"DOGE_USDC_PERP"' }, "bookTicker.DOGE_USDC_PERP");
    expect(parseFrame(other, ours)).toMatchObject({ reason: "unknown_market" });
    expect(parseFrame(other, ours)).not.toHaveProperty("book");
  });
});

describe("parseFrame on control messages", () => {
  it("treats subscription answers as control, not garbage", () => {
    expect(parseFrame('{"id":1,"result":null}', ours)).toEqual({ kind: "control", error: undefined });
  });

  it("surfaces an error answer so it can be logged", () => {
    expect(parseFrame('{"id":null,"error":{"code":4006,"message":"Invalid stream"}}', ours)).toEqual({
      kind: "control",
      error: '{"code":"4006","message":"Invalid stream"}',
    });
  });
});
