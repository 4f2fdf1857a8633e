import { describe, expect, it } from "vitest";
import type { TradeView } from "../contract/messages.ts";
import { accountSummary, type StoredAccount } from "./account-summary.ts";
import { unrealizedPnlMicros, type Quote } from "./views.ts";
import { ASSET_BY_SYMBOL } from "../contract/markets.ts";

const at = "2026-12-05T10:00:00.000Z";
function trade(t: Pick<TradeView, "id" | "asset" | "type" | "margin" | "quantity" | "openPrice">): [string, string] {
  const view: TradeView = {
    ...t,
    leverage: 10,
    stopLoss: null,
    takeProfit: null,
    trailingStop: null,
    liquidationPrice: null,
    openedAt: at,
  };
  return [t.id, JSON.stringify(view)];
}
const quote = (bid: string, ask: string): Quote => ({ bid, ask, updatedAt: at, source: "sim" });
function account(usd: string, trades: [string, string][] = [], pendingMargins: string[] = []): StoredAccount {
  return {
    balances: { USD: usd, ETH: "0", BTC: "0", SOL: "0", ADA: "0" },
    openTrades: Object.fromEntries(trades),
    pendingOrders: Object.fromEntries(
      pendingMargins.map((margin, i) => [`P0-${i + 1}`, JSON.stringify({ margin, ocoWith: null })]),
    ),
  };
}

describe("account summary", () => {
  it("given a long, a short and a pending order: every figure exact, PnL at the bid (long) and ask (short)", () => {
    const stored = account(
      "9650",
      [
        trade({ id: "T0-1", asset: "ETH", type: "long", margin: "100", quantity: "0.4997", openPrice: "2001" }),
        trade({ id: "T0-2", asset: "BTC", type: "short", margin: "200", quantity: "0.00666", openPrice: "60000" }),
      ],
      ["50"],
    );
    const quotes = new Map([
      ["ETH", quote("2100.37", "2100.5")],
      ["BTC", quote("59000", "59010.5")],
    ]);
    expect(accountSummary(stored, quotes)).toEqual({
      balance: "10000", // 9650 free + 100 + 200 in trades + 50 reserved
      marginUsed: "350",
      unrealizedPnl: "56.245259", // (2100.37 − 2001) × 0.4997 = 49.655189; (60000 − 59010.5) × 0.00666 = 6.59007
      equity: "10056.245259",
      freeMargin: "9706.245259",
      marginLevel: "2873.21", // 10056.245259 / 350 × 100 = 2873.2129…
      pricesMissing: [],
    });
  });

  it("caps a trade's loss at its margin, as settlement does", () => {
    // Long 0.5 ETH from 2000 at bid 1900: −50, but only the 10 of margin can be lost.
    const stored = account("0", [
      trade({ id: "T0-3", asset: "ETH", type: "long", margin: "10", quantity: "0.5", openPrice: "2000" }),
    ]);
    expect(accountSummary(stored, new Map([["ETH", quote("1900", "1900.5")]]))).toMatchObject({
      balance: "10",
      unrealizedPnl: "-10",
      equity: "0",
      freeMargin: "-10",
      marginLevel: "0",
    });
  });

  it("counts a trade whose market has no quote at PnL 0 and names its asset", () => {
    const stored = account("100", [
      trade({ id: "T0-4", asset: "SOL", type: "short", margin: "25", quantity: "1.5", openPrice: "150" }),
      trade({ id: "T0-5", asset: "ETH", type: "short", margin: "20", quantity: "0.1", openPrice: "2000" }),
      trade({ id: "T0-6", asset: "ADA", type: "long", margin: "5", quantity: "10", openPrice: "0.5" }),
    ]);
    // Short 0.1 ETH from 2000 at ask 2010.25: −1.025.
    expect(accountSummary(stored, new Map([["ETH", quote("2010", "2010.25")]]))).toEqual({
      balance: "150",
      marginUsed: "50",
      unrealizedPnl: "-1.025",
      equity: "148.975",
      freeMargin: "98.975",
      marginLevel: "297.95", // 148.975 / 50 × 100
      pricesMissing: ["SOL", "ADA"],
    });
  });

  it("has no margin level without margin used: null, and equity is the free USD", () => {
    expect(accountSummary(account("10000"), new Map())).toEqual({
      balance: "10000",
      marginUsed: "0",
      unrealizedPnl: "0",
      equity: "10000",
      freeMargin: "10000",
      marginLevel: null,
      pricesMissing: [],
    });
  });

  it("leaves spot holdings out of balance and equity: the summary is the margin account's, in USD", () => {
    // 1 ETH bought spot for 2000 of a 10000 grant: the summary shows the 8000 USD left, whatever ETH is worth.
    const holder = { ...account("8000"), balances: { USD: "8000", ETH: "1", BTC: "0.5", SOL: "0", ADA: "0" } };
    const quotes = new Map([["ETH", quote("2100", "2100.5")]]);
    expect(accountSummary(holder, quotes)).toMatchObject({ balance: "8000", equity: "8000", freeMargin: "8000" });
  });

  it("rounds the margin level down to 2 decimals, never up", () => {
    // 5 / 3 × 100 = 166.666…: down to 166.66, where nearest would give 166.67.
    expect(accountSummary(account("2", [], ["3"]), new Map()).marginLevel).toBe("166.66");
    // 3.000001 / 3 × 100 = 100.0000333…
    expect(accountSummary(account("0.000001", [], ["3"]), new Map()).marginLevel).toBe("100");
  });

  it("sums past 2^53 micros exactly", () => {
    const margins = Array.from({ length: 10 }, () => "1000000000"); // 10 × 1e9 USD = 1e16 micros
    expect(accountSummary(account("0.000001", [], margins), new Map())).toMatchObject({
      balance: "10000000000.000001",
      marginUsed: "10000000000",
      marginLevel: "100",
    });
  });

  it("given an OCO pair pending: the pair reserves its larger margin, once, as the engine does", () => {
    // Given 10000 USD, an OCO pair of 300 / 200 (the engine reserves 300) and a lone order of 50: 9650 free.
    const pair = {
      "P0-7": JSON.stringify({ margin: "300", ocoWith: "P0-8" }),
      "P0-8": JSON.stringify({ margin: "200", ocoWith: "P0-7" }),
      "P0-9": JSON.stringify({ margin: "50", ocoWith: null }),
    };
    expect(accountSummary({ ...account("9650"), pendingOrders: pair }, new Map())).toEqual({
      balance: "10000",
      marginUsed: "350",
      unrealizedPnl: "0",
      equity: "10000",
      freeMargin: "9650",
      marginLevel: "2857.14", // 10000 / 350 × 100 = 2857.142…
      pricesMissing: [],
    });
    // The same with the larger leg listed second
    const swapped = {
      "P0-7": JSON.stringify({ margin: "200", ocoWith: "P0-8" }),
      "P0-8": JSON.stringify({ margin: "300", ocoWith: "P0-7" }),
    };
    expect(accountSummary({ ...account("9700"), pendingOrders: swapped }, new Map())).toMatchObject({
      balance: "10000",
      marginUsed: "300",
    });
  });

  it("given one leg of an OCO pair gone: the other reserves its own margin", () => {
    // When the 300 leg is cancelled, the 200 leg stays pending alone (ocoWith null) and 100 returns to free USD.
    const alone = { "P0-8": JSON.stringify({ margin: "200", ocoWith: null }) };
    expect(accountSummary({ ...account("9800"), pendingOrders: alone }, new Map())).toMatchObject({
      balance: "10000",
      marginUsed: "200",
    });
    // A leg still naming a partner that is no longer pending counts alone too, never less than its own margin.
    const stale = { "P0-8": JSON.stringify({ margin: "200", ocoWith: "P0-7" }) };
    expect(accountSummary({ ...account("9800"), pendingOrders: stale }, new Map())).toMatchObject({
      marginUsed: "200",
    });
  });

  it("treats a pending order whose ocoWith is not an id or null as a broken read model", () => {
    const stored = { ...account("1"), pendingOrders: { "P0-9": JSON.stringify({ margin: "5", ocoWith: 7 }) } };
    expect(() => accountSummary(stored, new Map())).toThrow("pending order P0-9 ocoWith is not an order id: 7");
  });

  it("treats a pending order without a decimal margin as a broken read model", () => {
    const stored = { ...account("1"), pendingOrders: { "P0-9": JSON.stringify({ margin: 5 }) } };
    expect(() => accountSummary(stored, new Map())).toThrow("pending order P0-9 margin is not a USD amount: 5");
  });
});

describe("unrealized PnL", () => {
  const eth = ASSET_BY_SYMBOL.get("ETH")!;
  const view = (openPrice: string): TradeView =>
    JSON.parse(
      trade({ id: "T0-7", asset: "ETH", type: "long", margin: "100", quantity: "0.5", openPrice })[1],
    ) as TradeView;

  it("is exact at the asset's decimals", () => {
    expect(unrealizedPnlMicros(eth, view("2000.12"), "2001.12")).toBe(500_000n);
  });

  it("throws, naming the figure, rather than compute from a price that does not parse at the asset's decimals", () => {
    expect(() => unrealizedPnlMicros(eth, view("2000.123"), "2001")).toThrow(
      'read model: openPrice of T0-7 is not a ETH figure with 2 decimals: "2000.123"',
    );
    expect(() => unrealizedPnlMicros(eth, view("2000"), "2000.001")).toThrow(/the close price of T0-7/);
    const btc = { ...view("2000.12"), asset: "BTC" };
    expect(() => unrealizedPnlMicros(ASSET_BY_SYMBOL.get("BTC")!, btc, "2001")).toThrow(
      'read model: openPrice of T0-7 is not a BTC figure with 1 decimal: "2000.12"',
    );
  });
});
