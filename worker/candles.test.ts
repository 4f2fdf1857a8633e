// Folding a batch's quotes into candles, without a database: the rows' order, and the quotes that make no candle.
import { describe, expect, it } from "vitest";
import type { EngineOutput, OutputOf } from "../contract/messages.ts";
import type { Queryable } from "../platform/postgres.ts";
import { createLogger } from "../platform/log.ts";
import { foldQuotes, writeCandles } from "./candles.ts";

const T0 = Date.UTC(2027, 0, 15, 8, 0);

function quote(asset: string, ms: number, bid: string, n = 0): OutputOf<"quote_updated"> {
  return {
    id: `${ms}-0:${n}`,
    inputId: `${ms}-0`,
    type: "quote_updated",
    asset,
    market: `${asset}_USDC_PERP`,
    bid,
    ask: "999999",
    updatedAt: new Date(ms).toISOString(),
    source: "sim",
  };
}

describe("foldQuotes", () => {
  it("gives the candles in (asset, minute) order, whatever order the batch met them in", () => {
    // Two workers upserting the same candles in orders of their own would lock them in those orders: a deadlock.
    const batch = [
      quote("SOL", T0 + 60_000, "150"),
      quote("ETH", T0 + 1_000, "2000"),
      quote("SOL", T0 + 1_000, "149"),
      quote("BTC", T0 + 1_000, "60000"),
      quote("ADA", T0 + 1_000, "0.5"),
    ];
    const order = (outputs: EngineOutput[]) => foldQuotes(outputs).folds.map((f) => [f.asset, f.openMs - T0]);
    const expected = [
      ["ADA", 0],
      ["BTC", 0],
      ["ETH", 0],
      ["SOL", 0],
      ["SOL", 60_000],
    ];
    expect(order(batch)).toEqual(expected);
    expect(order([...batch].reverse())).toEqual(expected);
  });

  it("leaves out, with the reason, a quote of an asset not listed, a bid finer than its decimals, or no time", () => {
    const { folds, skipped } = foldQuotes([
      quote("ETH", T0, "2000"),
      quote("DOGE", T0, "0.1", 1),
      quote("ETH", T0 + 1_000, "2000.125", 2), // ETH prices have 2 decimals
      { ...quote("ETH", T0 + 2_000, "2001", 3), updatedAt: "yesterday" },
      quote("ETH", T0 + 3_000, "2002", 4),
    ]);
    expect(folds.map((f) => [f.asset, f.open, f.close])).toEqual([["ETH", 2000_00, 2002_00]]);
    expect(skipped).toEqual([
      { id: `${T0}-0:1`, reason: "asset DOGE is not listed" },
      { id: `${T0 + 1_000}-0:2`, reason: "bid 2000.125 is not a price of the asset (priceDecimals 2)" },
      { id: `${T0 + 2_000}-0:3`, reason: "updatedAt yesterday is not a time" },
    ]);
  });
});

describe("writeCandles", () => {
  it("logs each quote it leaves out as an error naming its output id, and writes the rest", async () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const statements: unknown[][] = [];
    const db: Queryable = {
      query: (_text, params) => {
        statements.push(params ?? []);
        return Promise.resolve({ rows: [], rowCount: 0 });
      },
    };
    await writeCandles(db, [quote("DOGE", T0, "0.1"), quote("ETH", T0, "2000", 1)], log);
    expect(statements.map((params) => params[0])).toEqual([["ETH"]]);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "error",
        event: "candle_quote_skipped",
        id: `${T0}-0:0`,
        reason: "asset DOGE is not listed",
      }),
    );
  });
});
