// The grouped trailing index (trailing-book.ts) against the rule it implements, written naively: every trailing
// stop keeps its own best price (long: highest bid since activation; short: lowest ask) and fires when the price
// reaches best ∓ distance (percent: rounded away from the price). Leverage 1 and moves within ±25 % keep
// liquidation out of the way, and no stop-loss or take-profit is set, so every close here is the trailing stop's.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatUnits } from "../../contract/money.ts";
import { decodeSnapshot, encodeSnapshot } from "../snapshot/codec.ts";
import { stateHash } from "../snapshot/hash.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { ETH, given, ofType, open } from "../testing/spec-support.ts";
import { tradeSeq } from "./state.ts";
import { tradeView } from "./views.ts";

interface ModelStop {
  isLong: boolean;
  /** Ticks, or hundredths of a percent. */
  amount: number;
  byPercent: boolean;
  activation: number;
  best: number | undefined;
}

const level = (s: ModelStop, best: number) =>
  s.byPercent
    ? s.isLong
      ? Math.floor((best * (10_000 - s.amount)) / 10_000)
      : Math.ceil((best * (10_000 + s.amount)) / 10_000)
    : s.isLong
      ? best - s.amount
      : best + s.amount;

type Step =
  | { c: "open"; long: boolean; byPercent: boolean; amount: number; activation: number | null }
  | { c: "tick"; move: number; spread: number }
  | { c: "close"; pick: number }
  | { c: "restore" };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      c: fc.constant("open" as const),
      long: fc.boolean(),
      byPercent: fc.boolean(),
      amount: fc.integer({ min: 1, max: 400 }),
      activation: fc.option(fc.integer({ min: -300, max: 300 })),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      c: fc.constant("tick" as const),
      move: fc.integer({ min: -200, max: 200 }),
      spread: fc.integer({ min: 0, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ c: fc.constant("close" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant("restore" as const) }) },
);

const price = (ticks: number) => formatUnits(ticks, 2);

describe("trailing stops under random prices", () => {
  it("fire exactly when, and where, per-stop best prices say; views and restores agree", () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 150 }), (steps) => {
        let h = given({ users: ["a"] });
        let requests = 0;
        let bid = 200_000;
        let ask = 200_000;
        const model = new Map<string, ModelStop>();
        const check = () => {
          for (const [id, s] of model) {
            const t = h.state.accounts.get("a")!.openTrades.get(tradeSeq(0, id));
            expect(t, `${id} open`).toBeDefined();
            const view = tradeView(h.state, t!).trailingStop!;
            expect(view.activated).toBe(s.best !== undefined);
            if (s.best !== undefined) {
              expect(view.bestPrice).toBe(price(s.best));
              expect(view.level).toBe(price(level(s, s.best)));
            }
          }
        };
        for (const st of steps) {
          if (st.c === "open") {
            const activation = st.activation === null ? null : 200_000 + st.activation * 10;
            const trailingStop = st.byPercent
              ? { percent: (st.amount / 100).toFixed(2) }
              : { distance: price(st.amount * 10) };
            const spec = activation === null ? trailingStop : { ...trailingStop, activationPrice: price(activation) };
            const answer = open(
              h,
              "a",
              {
                side: st.long ? "long" : "short",
                margin: "10",
                leverage: 1,
                trailingStop: spec,
              },
              `p${++requests}`,
            ).answer;
            if (!answer.ok || answer.result.kind !== "open_trade") continue;
            const current = st.long ? bid : ask;
            const reached = activation === null || (st.long ? current >= activation : current <= activation);
            model.set(answer.result.trade.id, {
              isLong: st.long,
              byPercent: st.byPercent,
              amount: st.byPercent ? st.amount : st.amount * 10,
              activation: activation ?? 0,
              best: reached ? current : undefined,
            });
          } else if (st.c === "tick") {
            bid = Math.min(250_000, Math.max(150_000, bid + st.move * 10));
            ask = bid + st.spread;
            const closed = ofType(h.price(ETH, price(bid), price(ask)), "closed_order").map((o) => o.trade);
            const expected: string[] = [];
            for (const [id, s] of model) {
              const p = s.isLong ? bid : ask;
              if (s.best === undefined) continue;
              s.best = s.isLong ? Math.max(s.best, p) : Math.min(s.best, p);
              if (s.isLong ? p <= level(s, s.best) : p >= level(s, s.best)) expected.push(id);
            }
            expect(closed.map((c) => c.id).sort()).toEqual(expected.sort());
            for (const c of closed) {
              expect(c.closeReason).toBe("trailing_stop");
              expect(c.closePrice).toBe(price(model.get(c.id)!.isLong ? bid : ask));
              model.delete(c.id);
            }
            // activation comes after the closes: a stop activated now trails from this quote
            for (const s of model.values()) {
              const p = s.isLong ? bid : ask;
              if (s.best === undefined && (s.isLong ? p >= s.activation : p <= s.activation)) s.best = p;
            }
          } else if (st.c === "close") {
            const ids = [...model.keys()];
            if (ids.length === 0) continue;
            const id = ids[st.pick % ids.length]!;
            expect(h.instruct("a", { kind: "close_trade", tradeId: id }, `p${++requests}`).answer.ok).toBe(true);
            model.delete(id);
          } else {
            const bytes = encodeSnapshot(h.state);
            const restored = decodeSnapshot(bytes);
            expect(stateHash(restored)).toBe(stateHash(h.state));
            expect(encodeSnapshot(restored)).toEqual(bytes);
            h = EngineHarness.resume(restored);
          }
          check();
        }
      }),
      { numRuns: 250 },
    );
  });
});
