// The objects the engine holds in bulk keep the shape (V8's hidden class) they are made with. A number that does not
// fit a small integer, stored in a field every object so far held small integers in, would move the field to a
// double and deprecate the shape of every object made before, each then migrated on its next access: after a
// restore (which reads amounts and prices as small integers), the first live open would do that, and the next scan
// of all accounts or trades would take ten times as long or more.
import { setFlagsFromString } from "node:v8";
import { describe, expect, it } from "vitest";
import { makePendingOrder } from "./pending-book.ts";
import { makeTrade, newAccount, type PendingOrderFacts, type TradeFacts } from "./state.ts";
import { newTrailingStop } from "./trailing-stop.ts";
import { TrailSystem } from "./trailing-system.ts";

// V8's own answer to "do these objects share a shape": natives syntax, allowed from here on in this test process.
setFlagsFromString("--allow-natives-syntax");
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- natives syntax parses only in code compiled after the flag
const haveSameShape = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;

/** Not a small integer, and past any time stamp's: what a live amount, price or time may be. */
const BIG = 2 ** 31;

/** The fields of `fields` for which an object made with that field set to BIG has another shape than `restored`. */
function fieldsChangingShape<F, K extends keyof F>(restored: object, facts: F, fields: K[], make: (f: F) => object) {
  return fields.filter((field) => !haveSameShape(restored, make({ ...facts, [field]: BIG })));
}

describe("objects held in bulk keep one shape", () => {
  it("USD amounts past 2^31 micros in one account leave the shape of accounts holding small ones as it is", () => {
    // As a restore makes them: free USD and open margin small integers (100 USD free, 990 USD in open trades).
    const restored = newAccount("restored", 1);
    restored.usd = 100_000_000;
    restored.openMarginMicros = 990_000_000;
    const rich = newAccount("rich", 1);
    rich.usd = 2 ** 31;
    const leveraged = newAccount("leveraged", 1);
    leveraged.openMarginMicros = 2 ** 31;
    expect([haveSameShape(restored, rich), haveSameShape(restored, leveraged)]).toEqual([true, true]);
  });

  const account = newAccount("alice", 1);
  const tradeFacts: TradeFacts = {
    seq: 1,
    assetIndex: 0,
    isLong: true,
    marginMicros: 100_000_000,
    leverage: 10,
    quantitySteps: 5_000,
    openPriceTicks: 200_000,
    stopLossTicks: 0,
    takeProfitTicks: 250_000,
    liquidationTicks: 181_000,
    openedAtMs: 1_700_000_000_000,
  };

  it("an open trade with an amount or price past 2^31 leaves the shape of trades holding small ones as it is", () => {
    const trade = (f: TradeFacts) => makeTrade(account, f);
    const restored = trade(tradeFacts);
    const fields: (keyof TradeFacts)[] = [
      "marginMicros",
      "quantitySteps",
      "openPriceTicks",
      "stopLossTicks",
      "takeProfitTicks",
      "liquidationTicks",
    ];
    expect(fieldsChangingShape(restored, tradeFacts, fields, trade)).toEqual([]);
  });

  it("a pending order with an amount, price or expiry past 2^31 leaves the shape of orders holding small ones", () => {
    const facts: PendingOrderFacts = {
      seq: 2,
      assetIndex: 0,
      isLong: true,
      isStop: false,
      priceTicks: 190_000,
      marginMicros: 100_000_000,
      leverage: 10,
      stopLossTicks: 0,
      takeProfitTicks: 0,
      // A restore of orders of which none expires: all 0; the first live one that does holds a time past 2^31.
      expiresAtMs: 0,
      placedAtMs: 1_700_000_000_000,
    };
    const order = (f: PendingOrderFacts) => makePendingOrder(account, f);
    const restored = order(facts);
    const fields: (keyof PendingOrderFacts)[] = [
      "priceTicks",
      "marginMicros",
      "stopLossTicks",
      "takeProfitTicks",
      "expiresAtMs",
    ];
    expect(fieldsChangingShape(restored, facts, fields, order)).toEqual([]);
  });

  it("a trailing stop or group with a distance or price past 2^31 leaves the shape of ones holding small ones", () => {
    const work = { merges: 0, stopTouches: 0 };
    type StopTerms = { amount: number; activationTicks: number; best: number };
    // Active at `best` in a system of its own, so each makes a group.
    const stop = (s: StopTerms) => {
      const made = newTrailingStop(makeTrade(account, tradeFacts), false, s.amount, s.activationTicks);
      const system = new TrailSystem(true, false, work);
      system.join(made, s.best);
      return { made, system };
    };
    const terms: StopTerms = { amount: 1_000, activationTicks: 0, best: 201_000 };
    const restored = stop(terms).made;
    const group = restored.group!;
    // Taken out, a stop keeps its group's best price (`finalBestTicks`).
    const removed = (s: StopTerms) => {
      const { made, system } = stop(s);
      system.remove(made);
      return made;
    };
    expect([
      fieldsChangingShape(restored, terms, ["amount", "activationTicks"], (s) => stop(s).made),
      fieldsChangingShape(restored, terms, ["best"], removed),
      // The group's best price and the level that follows from it.
      fieldsChangingShape(group, terms, ["best"], (s) => stop(s).made.group!),
    ]).toEqual([[], [], []]);
  });
});
