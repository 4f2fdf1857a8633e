// The rest of a partly closed trade against the maintenance rule it is liquidated by, over random trades (every
// market, both sides, leverage 2 to 100, a few dozen steps) and random sequences of partial closes: at the rest's
// liquidation level the rule holds for what stays open (margin + PnL ≤ 0.5 % of the notional there, exactly, so
// also within the maintenance margin rounded up to the micro), one tick before it does not, and the engine, restored
// from a snapshot of that state, liquidates the rest at that level and not a tick before.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ASSETS, microsPerTickStep } from "../../contract/markets.ts";
import { formatUnits } from "../../contract/money.ts";
import { decodeSnapshot, encodeSnapshot } from "../snapshot/codec.ts";
import { stateHash } from "../snapshot/hash.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { ofType, resultOf } from "../testing/spec-support.ts";
import { tradeSeq, type Trade } from "./state.ts";

const MILLION = 1_000_000n;

/** Whether the maintenance rule holds for `t` at `p` ticks: equity ≤ mmr × notional, in exact integers. */
function ruleHolds(t: Trade, k: number, mmrPpm: number, p: number): boolean {
  const qk = BigInt(t.quantitySteps * k);
  const move = t.isLong ? BigInt(p - t.openPriceTicks) : BigInt(t.openPriceTicks - p);
  const equity = BigInt(t.marginMicros) + move * qk;
  return equity * MILLION <= BigInt(mmrPpm) * qk * BigInt(p);
}

const trades = fc.record({
  asset: fc.constantFrom(...ASSETS),
  isLong: fc.boolean(),
  priceTicks: fc.integer({ min: 1_000, max: 2_000_000 }),
  spread: fc.integer({ min: 0, max: 2 }),
  leverage: fc.integer({ min: 2, max: 100 }),
  steps: fc.integer({ min: 2, max: 60 }),
  marginPick: fc.nat(),
  closes: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
});

describe("the rest of a partly closed trade", () => {
  it("is liquidated exactly where the maintenance rule holds for it, and not a tick before", () => {
    fc.assert(
      fc.property(trades, ({ asset, isLong, priceTicks: e, spread, leverage, steps, marginPick, closes }) => {
        const h = new EngineHarness();
        resultOf(h.createAccount("alice").answer, "create_account");
        const k = microsPerTickStep(asset);
        const mmr = h.state.params.maintenanceMarginPpm;
        const price = (ticks: number) => formatUnits(ticks, asset.priceDecimals);
        // A long fills at the ask, a short at the bid: both at e.
        h.price(asset.market, price(isLong ? e - spread : e), price(isLong ? e : e + spread));
        // A margin that buys exactly `steps` at e: ⌈steps·e·k/L⌉ up to ⌈(steps+1)·e·k/L⌉ − 1 micros.
        const least = Math.ceil((steps * e * k) / leverage);
        const margin = least + (marginPick % (Math.ceil(((steps + 1) * e * k) / leverage) - least));
        const opened = h.instruct("alice", {
          kind: "open_trade",
          asset: asset.symbol,
          side: isLong ? "long" : "short",
          margin: formatUnits(margin, 6),
          leverage,
        });
        const id = resultOf(opened.answer, "open_trade").trade.id;
        const trade = h.state.accounts.get("alice")!.openTrades.get(tradeSeq(0, id))!;
        expect(trade.quantitySteps).toBe(steps);

        for (const pick of closes) {
          if (trade.quantitySteps < 2) break;
          const before = trade.liquidationTicks;
          const c = 1 + (pick % (trade.quantitySteps - 1));
          const { answer } = h.instruct("alice", {
            kind: "close_trade",
            tradeId: id,
            quantity: formatUnits(c, asset.quantityDecimals),
          });
          const rest = resultOf(answer, "close_trade").remaining!;
          // The level never moves towards the price, and the answer shows the one the engine holds.
          if (isLong) expect(trade.liquidationTicks).toBeLessThanOrEqual(before);
          else expect(trade.liquidationTicks).toBeGreaterThanOrEqual(before);
          expect(rest.liquidationPrice).toBe(trade.liquidationTicks === 0 ? null : price(trade.liquidationTicks));
        }

        const level = trade.liquidationTicks;
        expect(level).toBeGreaterThan(0); // leverage ≥ 2: a long's level is above 0
        expect(ruleHolds(trade, k, mmr, level)).toBe(true);
        expect(ruleHolds(trade, k, mmr, isLong ? level + 1 : level - 1)).toBe(false);

        // A restored engine holds the same state and liquidates the rest at the level, not a tick before.
        const restored = decodeSnapshot(encodeSnapshot(h.state));
        expect(stateHash(restored)).toBe(stateHash(h.state));
        const r = EngineHarness.resume(restored);
        const closedBy = (bid: number, ask: number) =>
          ofType(r.price(asset.market, price(bid), price(ask)), "closed_order").map((o) => o.trade);
        if (isLong) {
          expect(closedBy(level + 1, level + 1 + spread)).toEqual([]);
          expect(closedBy(level, level + spread)).toMatchObject([{ id, closeReason: "liquidation" }]);
        } else {
          expect(closedBy(level - 1 - spread, level - 1)).toEqual([]);
          expect(closedBy(level - spread, level)).toMatchObject([{ id, closeReason: "liquidation" }]);
        }
      }),
      { numRuns: 500 },
    );
  });
});
