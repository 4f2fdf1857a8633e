// Where a sim feed starts, read from real Redis: per market the newest price_update in the log that the engine would
// accept, past user instructions, undecodable entries, malformed, crossed and off-scale quotes and unknown markets;
// the quotes read model only for a market not in the scanned tail of the log; nothing for a market in neither. Each
// quote from the log tells when its top began, or since when at least.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ASSETS } from "../contract/markets.ts";
import type { PriceUpdate, UserInstruction } from "../contract/messages.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { readLastQuotes } from "./start-quotes.ts";

const redis = new Redis(TEST_REDIS_URL);
const used: Keyspace[] = [];
afterEach(async () => {
  for (const keys of used.splice(0)) await redis.del(keys.input, keys.quotesKey);
});
afterAll(() => redis.disconnect());

function fresh(): Keyspace {
  const keys = keyspace(`test:${randomUUID()}:`);
  used.push(keys);
  return keys;
}

let clockUs = 1_700_000_000_000_000n;
const price = (market: string, bid: string, ask: string): PriceUpdate => ({
  type: "price_update",
  market,
  bid,
  ask,
  exchangeTimeUs: String((clockUs += 1_000n)),
  source: "sim",
});
const instruction: UserInstruction = {
  type: "user_instruction",
  requestId: "r1",
  userId: "u1",
  instruction: { kind: "create_account" },
};

/** Appends in order: the last one is the newest. */
async function append(keys: Keyspace, ...entries: (PriceUpdate | UserInstruction | string[])[]): Promise<void> {
  for (const entry of entries)
    await redis.xadd(keys.input, "*", ...(Array.isArray(entry) ? entry : encodeFields(entry)));
}

/** A quote_updated output as the worker stores it in the quotes read model. */
const view = (asset: string, market: string, bid: string, ask: string) =>
  JSON.stringify({
    id: "1-0:0",
    inputId: "1-0",
    type: "quote_updated",
    asset,
    market,
    bid,
    ask,
    updatedAt: "2026-01-01T00:00:00.000Z",
    source: "sim",
  });

describe("readLastQuotes", () => {
  it("takes each market's newest valid price_update from the log, skipping what the engine would ignore", async () => {
    const keys = fresh();
    const sol = [price("SOL_USDC_PERP", "190", "190.01"), price("SOL_USDC_PERP", "204.4", "204.41")] as const;
    const eth: PriceUpdate = { ...price("ETH_USDC_PERP", "4200.5", "4200.6"), source: "backpack" };
    const btc = price("BTC_USDC_PERP", "61000.1", "61000.3");
    const ada = price("ADA_USDC_PERP", "0.51234", "0.51236");
    await append(
      keys,
      price("ETH_USDC_PERP", "4100", "4100.1"),
      ...sol,
      btc,
      ada,
      instruction,
      eth,
      price("BTC_USDC_PERP", "61000.3", "61000.1"), // crossed
      price("ADA_USDC_PERP", "0.512345", "0.51236"), // beyond ADA's 5 decimals
      price("SOL_USDC_PERP", "0", "204.41"), // no bid
      price("DOGE_USDC_PERP", "0.3", "0.31"), // not our market
      // stamped a minute past the log's time: the engine ignores it (a skewed exchange clock)
      { ...price("ETH_USDC_PERP", "4300.5", "4300.6"), exchangeTimeUs: String((Date.now() + 60_000) * 1000) },
      ["type", "price_update", "body", "{not json"],
      instruction,
    );
    // A read model that disagrees: the log is the engine's truth and wins.
    await redis.hset(keys.quotesKey, "ETH", view("ETH", "ETH_USDC_PERP", "3000", "3000.1"));
    const quotes = await readLastQuotes(redis, keys, ASSETS, { pageSize: 2 });
    expect(Object.fromEntries(quotes)).toEqual({
      ETH_USDC_PERP: { bid: "4200.5", ask: "4200.6", from: "log", source: "backpack", changedAtUs: eth.exchangeTimeUs },
      // The log starts with these tops: they stood at least from their first entries.
      BTC_USDC_PERP: { bid: "61000.1", ask: "61000.3", from: "log", source: "sim", changedAtUs: btc.exchangeTimeUs },
      SOL_USDC_PERP: { bid: "204.4", ask: "204.41", from: "log", source: "sim", changedAtUs: sol[1].exchangeTimeUs },
      ADA_USDC_PERP: { bid: "0.51234", ask: "0.51236", from: "log", source: "sim", changedAtUs: ada.exchangeTimeUs },
    });
  });

  it("tells when each market's last top began: back to a different top or source, else the oldest entry read", async () => {
    const keys = fresh();
    const live = (market: string, bid: string, ask: string): PriceUpdate => ({
      ...price(market, bid, ask),
      source: "backpack",
    });
    const began = { eth: live("ETH_USDC_PERP", "4100", "4100.1"), sol: live("SOL_USDC_PERP", "204.4", "204.41") };
    // The log's first entries: what came before them is not known (the engine trimmed it), so they stand in.
    const first = { ada: live("ADA_USDC_PERP", "0.51234", "0.51236"), btc: live("BTC_USDC_PERP", "61000", "61000.5") };
    const ethLast = live("ETH_USDC_PERP", "4100", "4100.1");
    const adaLast = live("ADA_USDC_PERP", "0.51234", "0.51236");
    await append(
      keys,
      first.ada,
      live("ETH_USDC_PERP", "4000", "4000.1"),
      began.eth, // the quote that began ETH's last top
      first.btc,
      live("ETH_USDC_PERP", "4100", "4100.1"), // heartbeats: the same top, stamped later
      live("ETH_USDC_PERP", "4100.555", "4100.6"), // beyond ETH's decimals: the engine ignores it, so does the scan
      instruction,
      ethLast,
      price("SOL_USDC_PERP", "204.4", "204.41"), // simulated: its time is another clock's
      began.sol, // the same top, live: the live one began here
      live("SOL_USDC_PERP", "204.4", "204.41"),
      adaLast,
    );
    const quotes = await readLastQuotes(redis, keys, ASSETS, { pageSize: 3 });
    expect(Object.fromEntries([...quotes].map(([market, quote]) => [market, quote.changedAtUs]))).toEqual({
      ETH_USDC_PERP: began.eth.exchangeTimeUs,
      SOL_USDC_PERP: began.sol.exchangeTimeUs,
      BTC_USDC_PERP: first.btc.exchangeTimeUs,
      ADA_USDC_PERP: first.ada.exchangeTimeUs,
    });
    // The top's start not in the scanned tail: the oldest entry read with that top stands in.
    const short = await readLastQuotes(redis, keys, ASSETS, { scanEntries: 6, pageSize: 3 });
    expect(Object.fromEntries([...short].map(([market, quote]) => [market, quote.changedAtUs]))).toEqual({
      ETH_USDC_PERP: ethLast.exchangeTimeUs,
      SOL_USDC_PERP: began.sol.exchangeTimeUs,
      ADA_USDC_PERP: adaLast.exchangeTimeUs,
    });
  });

  it("asks the read model for a market not in the scanned tail; a market in neither has no quote", async () => {
    const keys = fresh();
    const sol = price("SOL_USDC_PERP", "204.4", "204.41");
    await append(
      keys,
      price("BTC_USDC_PERP", "62000", "62000.5"), // beyond the scan below: the read model's quote is used
      sol,
      instruction,
      instruction,
    );
    await redis.hset(
      keys.quotesKey,
      "BTC",
      view("BTC", "BTC_USDC_PERP", "61999.5", "62000"),
      "ETH",
      view("ETH", "ETH_USDC_PERP", "4250.25", "4250.3"),
      "SOL",
      view("SOL", "SOL_USDC_PERP", "199.99", "200"),
      "ADA",
      "{not json",
      "DOGE",
      view("DOGE", "DOGE_USDC_PERP", "0.3", "0.31"),
    );
    const quotes = await readLastQuotes(redis, keys, ASSETS, { scanEntries: 3, pageSize: 2 });
    expect(Object.fromEntries(quotes)).toEqual({
      SOL_USDC_PERP: { bid: "204.4", ask: "204.41", from: "log", source: "sim", changedAtUs: sol.exchangeTimeUs },
      BTC_USDC_PERP: { bid: "61999.5", ask: "62000", from: "read_model", source: "sim" },
      ETH_USDC_PERP: { bid: "4250.25", ask: "4250.3", from: "read_model", source: "sim" },
    });
  });

  it("ignores a read model entry that names another market or holds an invalid quote", async () => {
    const keys = fresh();
    await redis.hset(
      keys.quotesKey,
      "ETH",
      view("ETH", "BTC_USDC_PERP", "61000", "61000.5"),
      "BTC",
      view("BTC", "BTC_USDC_PERP", "61000.55", "61001"), // beyond BTC's 1 decimal
      "SOL",
      JSON.stringify({ market: "SOL_USDC_PERP", bid: 204.4, ask: 204.41 }), // numbers, not decimal strings
      "ADA",
      "null",
    );
    expect(await readLastQuotes(redis, keys, ASSETS)).toEqual(new Map());
  });

  it("finds nothing in an empty system", async () => {
    expect(await readLastQuotes(redis, fresh(), ASSETS)).toEqual(new Map());
  });
});
