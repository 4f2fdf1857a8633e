// A trade's exits (stop-loss, take-profit, trailing stop, liquidation) against the rules in docs/trading-rules.md,
// written naively per trade from the views the engine answers, over random opens (leverage 1 to 60, any mix of
// exits), partial closes, modifies and price moves with gaps and wide spreads on ETH. On each price update the model
// predicts which trades close, why (the level the price reached first; ties: stop-loss, then trailing stop, then
// liquidation; take-profit only when none of those is reached), at what price (long at the bid, short at the ask),
// with what pnl and lossWaived (loss capped at the margin), and in what order (long exits, long trailing stops, long
// take-profits, then shorts; each by level, then age). Every liquidation price answered is checked against the
// maintenance rule in exact integers: it holds at the level and not one tick nearer the price. Every trailing stop
// shown (answers and trailing_activated updates) has the model's best price (highest bid or lowest ask since
// activation, which comes after the closes) and level (percent: rounded away from the price).
// Left out: the order of an update on which a percent trailing stop fires (percent levels that round to one tick
// fire in their own documented order); the account limit on profit (one user with margins far below it); other
// markets; and the outputs the model does not read, which the replay from a snapshot at a random point compares
// exactly.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { TradeView } from "../../contract/messages.ts";
import { formatUnits, parseUnits } from "../../contract/money.ts";
import { ETH, expectSameAfterRestore, given, ofType } from "../testing/spec-support.ts";

const MAINTENANCE_PPM = 5_000n; // the default maintenanceMarginPpm: 0.5 %
const START_TICKS = 200_000; // 2000.00 USD per ETH

/** Units of a decimal string (prices: 2 decimals, quantities: 4, USD: 6), sign included. */
function unitsOf(text: string, decimals: number): number {
  const negative = text.startsWith("-");
  const parsed = parseUnits(negative ? text.slice(1) : text, decimals);
  if (!parsed.ok) throw new Error(`${text} is not a number with ${decimals} decimals`);
  return negative ? -parsed.units : parsed.units;
}
const ticksOf = (price: string) => unitsOf(price, 2);
const ticksOrNull = (price: string | null) => (price === null ? null : ticksOf(price));
const priceOf = (ticks: number) => formatUnits(ticks, 2);
const ageOf = (tradeId: string) => Number(tradeId.slice(tradeId.indexOf("-") + 1));

interface ModelTrailingStop {
  byPercent: boolean;
  /** Ticks, or hundredths of a percent. */
  amount: number;
  activationTicks: number | null;
  /** Highest bid (long) or lowest ask (short) since activation; undefined until activated. */
  bestTicks: number | undefined;
}

interface ModelTrade {
  id: string;
  isLong: boolean;
  stopLossTicks: number | null;
  takeProfitTicks: number | null;
  liquidationTicks: number | null;
  trailingStop: ModelTrailingStop | null;
}

function trailingLevel(isLong: boolean, stop: ModelTrailingStop, best: number): number {
  if (!stop.byPercent) return isLong ? best - stop.amount : best + stop.amount;
  // rounded away from the price: never tighter than asked
  return isLong
    ? Math.floor((best * (10_000 - stop.amount)) / 10_000)
    : Math.ceil((best * (10_000 + stop.amount)) / 10_000);
}

/** Whether the maintenance rule (margin + PnL ≤ 0.5 % of the notional) holds for `trade` at `ticks`, exactly. */
function maintenanceRuleHolds(trade: TradeView, ticks: bigint): boolean {
  const marginMicros = BigInt(unitsOf(trade.margin, 6));
  const quantitySteps = BigInt(unitsOf(trade.quantity, 4)); // a tick × a step is one micro on ETH
  const entryTicks = BigInt(ticksOf(trade.openPrice));
  const move = trade.type === "long" ? ticks - entryTicks : entryTicks - ticks;
  const equityMicros = marginMicros + move * quantitySteps;
  return 1_000_000n * equityMicros <= MAINTENANCE_PPM * ticks * quantitySteps;
}

function expectExactLiquidationPrice(trade: TradeView): void {
  const isLong = trade.type === "long";
  if (trade.liquidationPrice === null) {
    // only a long can have none: one whose rule does not hold even at the lowest price
    expect([trade.id, isLong && !maintenanceRuleHolds(trade, 1n)]).toEqual([trade.id, true]);
    return;
  }
  const level = BigInt(ticksOf(trade.liquidationPrice));
  const nearer = isLong ? level + 1n : level - 1n;
  expect([trade.id, maintenanceRuleHolds(trade, level), maintenanceRuleHolds(trade, nearer)]).toEqual([
    trade.id,
    true,
    false,
  ]);
}

/** Expects a view's trailing stop to show the model's best price and level (both as of the view's output). */
function expectTrailingView(trade: TradeView, model: ModelTrade): void {
  const stop = model.trailingStop;
  const best = stop?.bestTicks;
  const shown = trade.trailingStop;
  expect([trade.id, shown?.activated, shown?.bestPrice, shown?.level]).toEqual([
    trade.id,
    stop === null ? undefined : best !== undefined,
    stop === null ? undefined : best === undefined ? null : priceOf(best),
    stop === null ? undefined : best === undefined ? null : priceOf(trailingLevel(model.isLong, stop, best)),
  ]);
}

/** The model of an answered trade; `trailingStop` carries over a stop the answer did not change. */
function modelOf(trade: TradeView, trailingStop?: ModelTrailingStop | null): ModelTrade {
  expectExactLiquidationPrice(trade);
  const model = modelFromView(trade, trailingStop);
  expectTrailingView(trade, model);
  return model;
}

function modelFromView(trade: TradeView, trailingStop: ModelTrailingStop | null | undefined): ModelTrade {
  const terms = trade.trailingStop;
  return {
    id: trade.id,
    isLong: trade.type === "long",
    stopLossTicks: ticksOrNull(trade.stopLoss),
    takeProfitTicks: ticksOrNull(trade.takeProfit),
    liquidationTicks: ticksOrNull(trade.liquidationPrice),
    trailingStop:
      trailingStop !== undefined
        ? trailingStop
        : terms === null
          ? null
          : {
              byPercent: terms.percent !== null,
              amount: terms.percent !== null ? unitsOf(terms.percent, 2) : ticksOf(terms.distance!),
              activationTicks: ticksOrNull(terms.activationPrice),
              bestTicks: terms.activated ? ticksOf(terms.bestPrice!) : undefined,
            },
  };
}

type Reason = "stop_loss" | "trailing_stop" | "liquidation" | "take_profit";
interface ExpectedClose {
  trade: ModelTrade;
  reason: Reason;
  levelTicks: number;
}

/** What one quote closes, in the engine's firing order, or nothing for trades it leaves open. */
function expectedCloses(trades: Iterable<ModelTrade>, bid: number, ask: number): ExpectedClose[] {
  const closes: ExpectedClose[] = [];
  for (const trade of trades) {
    const quote = trade.isLong ? bid : ask;
    // stop-loss, trailing stop and liquidation are all reached by a move against the trade
    const reached = (level: number | null) => level !== null && (trade.isLong ? quote <= level : quote >= level);
    const stop = trade.trailingStop;
    const trailing = stop?.bestTicks === undefined ? null : trailingLevel(trade.isLong, stop, stop.bestTicks);
    // A long's level of 0 never fires: no bid is 0. Candidates in tie order.
    const candidates: [Reason, number | null][] = [
      ["stop_loss", trade.stopLossTicks],
      ["trailing_stop", trailing === 0 ? null : trailing],
      ["liquidation", trade.liquidationTicks],
    ];
    let first: ExpectedClose | undefined;
    for (const [reason, level] of candidates) {
      if (!reached(level)) continue;
      const reachedEarlier =
        first === undefined || (trade.isLong ? level! > first.levelTicks : level! < first.levelTicks);
      if (reachedEarlier) first = { trade, reason, levelTicks: level! };
    }
    const takeProfit = trade.takeProfitTicks;
    const takeProfitReached = takeProfit !== null && (trade.isLong ? quote >= takeProfit : quote <= takeProfit);
    if (first === undefined && takeProfitReached)
      first = { trade, reason: "take_profit", levelTicks: trade.takeProfitTicks! };
    if (first !== undefined) closes.push(first);
  }
  const kindRank = (c: ExpectedClose) =>
    (c.trade.isLong ? 0 : 3) + (c.reason === "trailing_stop" ? 1 : c.reason === "take_profit" ? 2 : 0);
  // each heap puts the level the price reaches first on top: long exits highest first, long take-profits lowest
  const levelRank = (c: ExpectedClose) => {
    const highestFirst = c.trade.isLong !== (c.reason === "take_profit");
    return highestFirst ? -c.levelTicks : c.levelTicks;
  };
  return closes.sort(
    (a, b) => kindRank(a) - kindRank(b) || levelRank(a) - levelRank(b) || ageOf(a.trade.id) - ageOf(b.trade.id),
  );
}

const offset = fc.integer({ min: 1, max: 3_000 });
const step = fc.oneof(
  {
    weight: 7,
    arbitrary: fc.record({
      kind: fc.constant("open" as const),
      isLong: fc.boolean(),
      leverage: fc.integer({ min: 1, max: 60 }),
      stopLossOffset: fc.option(offset, { freq: 2 }),
      takeProfitOffset: fc.option(offset, { freq: 2 }),
      trailingStop: fc.option(
        fc.record({
          byPercent: fc.boolean(),
          amount: fc.integer({ min: 1, max: 2_000 }),
          activationOffset: fc.option(fc.integer({ min: -2_000, max: 2_000 })),
        }),
        { freq: 2 },
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("close_part" as const),
      pick: fc.nat(),
      percent: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 99 }) }, fc.constant(100)),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("modify" as const),
      pick: fc.nat(),
      exit: fc.constantFrom("stopLoss" as const, "takeProfit" as const, "trailingStop" as const),
      remove: fc.boolean(),
      offset,
      activationOffset: fc.option(fc.integer({ min: -2_000, max: 2_000 })),
    }),
  },
  {
    weight: 9,
    arbitrary: fc.record({
      kind: fc.constant("price" as const),
      // small moves that stop on levels to the tick, larger ones, and one in ten a gap
      moveTicks: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: -20, max: 20 }) },
        { weight: 5, arbitrary: fc.integer({ min: -1_000, max: 1_000 }) },
        fc.integer({ min: -8_000, max: 8_000 }),
      ),
      // one spread in six wide
      halfSpreadTicks: fc.oneof(
        { weight: 5, arbitrary: fc.integer({ min: 0, max: 2 }) },
        fc.integer({ min: 0, max: 1_500 }),
      ),
    }),
  },
);

describe("exits under random trades and prices", () => {
  it("close the trades, at the prices, for the reasons and in the order the rules say; restores change nothing", () => {
    // Guards the generator: what the runs exercised, so the property cannot pass vacuously.
    const seen = new Set<string>();
    fc.assert(
      fc.property(fc.array(step, { minLength: 40, maxLength: 120 }), fc.nat(), (steps, cutSeed) => {
        const h = given({ params: { maxOpenTradesPerUser: 500 } });
        const firstRandomEntry = h.log.length;
        let mid = START_TICKS;
        let halfSpread = 0;
        const trades = new Map<string, ModelTrade>();
        const pick = (n: number) => [...trades.values()][n % trades.size]!;
        // exits at an offset beyond the quote on the side each must be
        const beyond = (isLong: boolean, towardsProfit: boolean, ticks: number) =>
          priceOf(isLong === towardsProfit ? mid + halfSpread + ticks : mid - halfSpread - ticks);
        const trailingTerms = (byPercent: boolean, amount: number, activationOffset: number | null) => ({
          // percents of 0.01 to 2.99, distances of 0.01 to 20 USD
          ...(byPercent ? { percent: formatUnits(amount % 300 || 1, 2) } : { distance: priceOf(amount) }),
          ...(activationOffset === null ? {} : { activationPrice: priceOf(mid + activationOffset) }),
        });
        for (const s of steps) {
          h.advance(100);
          if (s.kind === "open") {
            const answer = h.instruct("alice", {
              kind: "open_trade",
              asset: "ETH",
              side: s.isLong ? "long" : "short",
              margin: "100",
              leverage: s.leverage,
              ...(s.stopLossOffset === null ? {} : { stopLoss: beyond(s.isLong, false, s.stopLossOffset) }),
              ...(s.takeProfitOffset === null ? {} : { takeProfit: beyond(s.isLong, true, s.takeProfitOffset) }),
              ...(s.trailingStop === null
                ? {}
                : {
                    trailingStop: trailingTerms(
                      s.trailingStop.byPercent,
                      s.trailingStop.amount,
                      s.trailingStop.activationOffset,
                    ),
                  }),
            }).answer;
            if (answer.ok && answer.result.kind === "open_trade")
              trades.set(answer.result.trade.id, modelOf(answer.result.trade));
          } else if (s.kind === "close_part" && trades.size > 0) {
            const trade = pick(s.pick);
            const percent = String(s.percent);
            const answer = h.instruct("alice", { kind: "close_trade", tradeId: trade.id, percent }).answer;
            if (!answer.ok || answer.result.kind !== "close_trade") continue;
            const rest = answer.result.remaining;
            seen.add(rest === null ? "closed in full" : "partly closed");
            if (rest === null) trades.delete(trade.id);
            // the rest keeps its trailing stop and best price, which its view must show
            else trades.set(trade.id, modelOf(rest, trade.trailingStop));
          } else if (s.kind === "modify" && trades.size > 0) {
            const trade = pick(s.pick);
            const value = s.remove
              ? null
              : s.exit === "trailingStop"
                ? trailingTerms(s.offset % 2 === 0, s.offset, s.activationOffset)
                : beyond(trade.isLong, s.exit === "takeProfit", s.offset);
            const answer = h.instruct("alice", { kind: "modify_trade", tradeId: trade.id, [s.exit]: value }).answer;
            if (!answer.ok || answer.result.kind !== "modify_trade") continue;
            seen.add(`modified ${s.exit}`);
            trades.set(trade.id, modelOf(answer.result.trade));
          } else if (s.kind === "price") {
            mid = Math.max(10_000, mid + s.moveTicks);
            halfSpread = s.halfSpreadTicks;
            const bid = mid - halfSpread;
            const ask = mid + halfSpread;
            for (const { isLong, trailingStop: stop } of trades.values())
              if (stop?.bestTicks !== undefined)
                stop.bestTicks = isLong ? Math.max(stop.bestTicks, bid) : Math.min(stop.bestTicks, ask);
            const expected = expectedCloses(trades.values(), bid, ask);
            const outputs = h.price(ETH, priceOf(bid), priceOf(ask));
            const closed = ofType(outputs, "closed_order").map((c) => c.trade);
            const context = `bid ${priceOf(bid)} ask ${priceOf(ask)}`;
            const byId = (closes: { id: string; reason: string; price: string }[]) =>
              closes.map((c) => `${c.id} ${c.reason} at ${c.price}`).sort();
            expect([
              context,
              byId(closed.map((c) => ({ id: c.id, reason: c.closeReason, price: c.closePrice }))),
            ]).toEqual([
              context,
              byId(
                expected.map((c) => ({
                  id: c.trade.id,
                  reason: c.reason,
                  price: priceOf(c.trade.isLong ? bid : ask),
                })),
              ),
            ]);
            const percentTrailingFired = expected.some(
              (c) => c.reason === "trailing_stop" && c.trade.trailingStop!.byPercent,
            );
            if (!percentTrailingFired && closed.length > 1) seen.add("several closes ordered");
            if (!percentTrailingFired)
              expect([context, closed.map((c) => c.id)]).toEqual([context, expected.map((c) => c.trade.id)]);
            for (const c of closed) {
              const marginMicros = unitsOf(c.margin, 6);
              const sign = c.type === "long" ? 1 : -1;
              const pnlAtPrice = sign * (ticksOf(c.closePrice) - ticksOf(c.openPrice)) * unitsOf(c.quantity, 4);
              expect([c.id, unitsOf(c.pnl, 6), c.lossWaived === null ? 0 : unitsOf(c.lossWaived, 6)]).toEqual([
                c.id,
                Math.max(-marginMicros, pnlAtPrice),
                Math.max(0, -pnlAtPrice - marginMicros),
              ]);
              trades.delete(c.id);
              seen.add(c.closeReason);
              if (c.lossWaived !== null) seen.add("loss waived");
            }
            // activation comes after the closes: a stop activated now trails from this quote
            const activated: string[] = [];
            for (const { id, isLong, trailingStop: stop } of trades.values()) {
              if (stop === null || stop.bestTicks !== undefined) continue;
              const quote = isLong ? bid : ask;
              if (
                stop.activationTicks === null ||
                (isLong ? quote >= stop.activationTicks : quote <= stop.activationTicks)
              ) {
                stop.bestTicks = quote;
                activated.push(id);
              }
            }
            const updates = ofType(outputs, "trade_updated").filter((u) => u.change === "trailing_activated");
            expect([context, updates.map((u) => u.trade.id).sort()]).toEqual([context, activated.sort()]);
            for (const u of updates) expectTrailingView(u.trade, trades.get(u.trade.id)!);
          }
        }
        const randomEntries = h.log.length - firstRandomEntry;
        expectSameAfterRestore(h, firstRandomEntry + (cutSeed % (randomEntries + 1)));
      }),
      { numRuns: 30 },
    );
    expect([...seen].sort()).toEqual([
      "closed in full",
      "liquidation",
      "loss waived",
      "modified stopLoss",
      "modified takeProfit",
      "modified trailingStop",
      "partly closed",
      "several closes ordered",
      "stop_loss",
      "take_profit",
      "trailing_stop",
    ]);
  });
});
