// The client's own copies of the server's shapes (views.ts) against the server's: the type checks below fail to
// compile (npm test type-checks before it runs the tests) when a field is added, removed, renamed or retyped on
// either side; the tests check the lists' order, which types cannot.
import { describe, expect, it } from "vitest";
import type * as server from "../contract/messages.ts";
import {
  CANDLE_INTERVALS as SERVER_INTERVALS,
  type Candle as ServerCandle,
  type CandleInterval as ServerCandleInterval,
} from "../contract/candles.ts";
import { ASSETS, type AssetSymbol as ServerAssetSymbol } from "../contract/markets.ts";
import type { AccountSummary as ServerAccountSummary } from "../functions/account-summary.ts";
import * as client from "./views.ts";

/** Each assignable to the other, with the same keys (an optional key one side lacks is caught too). */
type Same<A, B> = [A] extends [B]
  ? [B] extends [A]
    ? [keyof A] extends [keyof B]
      ? [keyof B] extends [keyof A]
        ? true
        : false
      : false
    : false
  : false;
type NonNull<T> = Exclude<T, null>;
const checks: true[] = [
  true satisfies Same<client.Balances, server.Balances>,
  true satisfies Same<client.TradeView, server.TradeView>,
  true satisfies Same<NonNull<client.TradeView["trailingStop"]>, NonNull<server.TradeView["trailingStop"]>>,
  true satisfies Same<client.ClosedTradeView, server.ClosedTradeView>,
  true satisfies Same<client.OrderView, server.OrderView>,
  true satisfies Same<NonNull<client.OrderView["trailingStop"]>, NonNull<server.OrderView["trailingStop"]>>,
  true satisfies Same<NonNull<client.OrderView["reason"]>, NonNull<server.OrderView["reason"]>>,
  true satisfies Same<client.AccountSummary, ServerAccountSummary>,
  true satisfies Same<client.Candle, ServerCandle>,
  true satisfies Same<client.CandleInterval, ServerCandleInterval>,
  true satisfies Same<client.AssetSymbol, ServerAssetSymbol>,
];

describe("the client's copies of the server's shapes", () => {
  it("compile as the same types (see above)", () => {
    expect(checks.every((c) => c)).toBe(true);
  });

  it("list the assets and candle intervals in the server's order", () => {
    expect(client.ASSET_SYMBOLS).toEqual(ASSETS.map((a) => a.symbol));
    expect(client.CANDLE_INTERVALS).toEqual(SERVER_INTERVALS);
  });
});
