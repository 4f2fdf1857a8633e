// Pending entry orders and OCO pairs against the rules in docs/trading-rules.md, written naively per order from
// the views the engine answers, over random place_order and place_oco (limit and stop, long and short, with
// stop-loss, take-profit and expiry), cancels and price moves with gaps and wide spreads on ETH (a wide spread can
// fill stop legs on both sides at once). The model says: an order fills when the quote reaches its price (long
// limit: ask ≤ price, long stop: ask ≥ price; short limit: bid ≥ price, short stop: bid ≤ price), at the ask for a
// long and the bid for a short, into a trade with the order's margin and exits; an OCO leg whose partner filled is
// cancelled; when one quote reaches both legs, the first listed goes first, and only if it is rejected may the other
// fill; a cancelled or expired leg frees its partner; expiry happens at or after expiresAtMs, and never before. A fill
// is rejected exactly when an independent sizing gives no quantity (QUANTITY_TOO_SMALL, which margins of 10 USD and
// more never meet) or the trade would open at or beyond its liquidation price (WOULD_LIQUIDATE). Reservations and
// balances (an OCO pair reserves the larger margin) are held by the harness's invariant check after every step.
// Left out: trailing stops (refused on entry orders), other markets, the open-trade and account limits (one user,
// margins far below them) and the outputs besides order updates and opened trades, which the replay from a snapshot
// at a random point compares exactly.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Instruction, OrderView } from "../../contract/messages.ts";
import { formatUnits, parseUnits } from "../../contract/money.ts";
import { ETH, expectSameAfterRestore, given, ofType } from "../testing/spec-support.ts";

const START_TICKS = 200_000; // 2000.00 USD per ETH

function unitsOf(text: string, decimals: number): number {
  const parsed = parseUnits(text, decimals);
  if (!parsed.ok) throw new Error(`${text} is not a number with ${decimals} decimals`);
  return parsed.units;
}
const ticksOf = (price: string) => unitsOf(price, 2);
const priceOf = (ticks: number) => formatUnits(ticks, 2);

interface ModelOrder {
  id: string;
  isLong: boolean;
  isStop: boolean;
  priceTicks: number;
  /** The other leg of its OCO pair while that one is pending. */
  partnerId: string | null;
  /** Legs of one OCO request number in the order they were listed. */
  placedNumber: number;
  expiresAtMs: number | null;
  view: OrderView;
}

const reaches = (o: ModelOrder, bid: number, ask: number) =>
  o.isLong
    ? o.isStop
      ? ask >= o.priceTicks
      : ask <= o.priceTicks
    : o.isStop
      ? bid <= o.priceTicks
      : bid >= o.priceTicks;

/** What filling `order` at this quote gives: "filled" or the rejection's code, sized independently of the engine. */
function expectedFill(order: ModelOrder, bid: number, ask: number): string {
  const fillTicks = BigInt(order.isLong ? ask : bid);
  const marginMicros = BigInt(unitsOf(order.view.margin, 6));
  // a tick × a step is one micro on ETH, so margin × leverage / price is in quantity steps
  const quantitySteps = (marginMicros * BigInt(order.view.leverage)) / fillTicks;
  if (quantitySteps === 0n) return "QUANTITY_TOO_SMALL";
  // The level where margin + PnL = 0.5 % of the notional: long rounded down, short up (the rule holds at it).
  const entryNotional = fillTicks * quantitySteps;
  let liquidationTicks: bigint;
  if (order.isLong) {
    const numerator = (entryNotional - marginMicros) * 1_000_000n;
    liquidationTicks = numerator <= 0n ? 0n : numerator / (quantitySteps * 995_000n);
  } else {
    const numerator = (marginMicros + entryNotional) * 1_000_000n;
    const denominator = quantitySteps * 1_005_000n;
    liquidationTicks = (numerator + denominator - 1n) / denominator;
  }
  const crossed = order.isLong ? BigInt(bid) <= liquidationTicks : BigInt(ask) >= liquidationTicks;
  return liquidationTicks !== 0n && crossed ? "WOULD_LIQUIDATE" : "filled";
}

const leg = fc.record({
  isLong: fc.boolean(),
  isStop: fc.boolean(),
  // away from the quote, on the side where it does not fill now
  awayTicks: fc.integer({ min: 1, max: 3_000 }),
  leverage: fc.integer({ min: 1, max: 50 }),
  marginUsd: fc.integer({ min: 10, max: 210 }),
  stopLossTicks: fc.option(fc.integer({ min: 1, max: 1_000 }), { freq: 3 }),
  takeProfitTicks: fc.option(fc.integer({ min: 1, max: 1_000 }), { freq: 3 }),
  // whole tenths of a second, like the steps, so that an input often comes exactly at an expiry
  expiresInMs: fc.option(
    fc.integer({ min: 1, max: 200 }).map((tenths) => tenths * 100),
    { freq: 3 },
  ),
});
type Leg = typeof leg extends fc.Arbitrary<infer T> ? T : never;
type EntryTerms = Omit<Extract<Instruction, { kind: "place_order" }>, "kind">;

const step = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("place" as const), leg }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("place_oco" as const), legs: fc.tuple(leg, leg) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), pick: fc.nat() }) },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant("price" as const),
      // one move in ten a gap, one spread in five wide
      moveTicks: fc.oneof(
        { weight: 9, arbitrary: fc.integer({ min: -750, max: 750 }) },
        fc.integer({ min: -4_000, max: 4_000 }),
      ),
      halfSpreadTicks: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 2 }) },
        fc.integer({ min: 0, max: 2_000 }),
      ),
    }),
  },
);

describe("pending orders under random prices", () => {
  it("fill, reject, cancel and expire as the rules say; restores change nothing", () => {
    // Guards the generator: what the runs exercised, so the property cannot pass vacuously.
    const seen = new Set<string>();
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 40, maxLength: 100 }),
        fc.nat(),
        fc.array(fc.constantFrom(100, 300, 1_000, 2_000), { minLength: 1 }),
        (steps, cutSeed, gapsMs) => {
          const h = given({ params: { maxOpenTradesPerUser: 500 } });
          const firstRandomEntry = h.log.length;
          let bid = START_TICKS;
          let ask = START_TICKS;
          let placed = 0;
          const book = new Map<string, ModelOrder>();
          const leave = (id: string) => {
            const order = book.get(id)!;
            book.delete(id);
            const partner = order.partnerId === null ? undefined : book.get(order.partnerId);
            if (partner !== undefined) partner.partnerId = null;
          };
          const terms = (l: Leg): EntryTerms => {
            const quote = l.isLong ? ask : bid;
            const above = l.isLong === l.isStop;
            const price = above ? quote + l.awayTicks : quote - l.awayTicks;
            const beyond = (towardsProfit: boolean, ticks: number) =>
              priceOf(l.isLong === towardsProfit ? price + ticks : price - ticks);
            return {
              asset: "ETH",
              side: l.isLong ? "long" : "short",
              type: l.isStop ? "stop" : "limit",
              price: priceOf(price),
              margin: String(l.marginUsd),
              leverage: l.leverage,
              ...(l.stopLossTicks === null ? {} : { stopLoss: beyond(false, l.stopLossTicks) }),
              ...(l.takeProfitTicks === null ? {} : { takeProfit: beyond(true, l.takeProfitTicks) }),
              ...(l.expiresInMs === null ? {} : { expiresAtMs: h.nowMs + l.expiresInMs }),
            };
          };
          const track = (view: OrderView) =>
            book.set(view.id, {
              id: view.id,
              isLong: view.side === "long",
              isStop: view.type === "stop",
              priceTicks: ticksOf(view.price),
              partnerId: view.ocoWith,
              placedNumber: placed++,
              expiresAtMs: view.expiresAt === null ? null : Date.parse(view.expiresAt),
              view,
            });
          // any input expires what is due; nothing else expires
          const expectExpiries = (outputs: Parameters<typeof ofType>[0]) => {
            const expired = ofType(outputs, "order_updated").filter((u) => u.order.status === "expired");
            const due = [...book.values()].filter((o) => o.expiresAtMs !== null && o.expiresAtMs <= h.nowMs);
            expect(expired.map((u) => u.order.id).sort()).toEqual(due.map((o) => o.id).sort());
            for (const o of due) leave(o.id);
            if (due.length > 0) seen.add("expired");
          };
          steps.forEach((s, i) => {
            h.advance(gapsMs[i % gapsMs.length]!);
            if (s.kind === "place") {
              const { answer, outputs } = h.instruct("alice", { kind: "place_order", ...terms(s.leg) });
              expectExpiries(outputs);
              if (answer.ok && answer.result.kind === "place_order") track(answer.result.order);
            } else if (s.kind === "place_oco") {
              const legs: [EntryTerms, EntryTerms] = [terms(s.legs[0]), terms(s.legs[1])];
              const { answer, outputs } = h.instruct("alice", { kind: "place_oco", legs });
              expectExpiries(outputs);
              if (answer.ok && answer.result.kind === "place_oco") answer.result.orders.forEach(track);
            } else if (s.kind === "cancel") {
              const live = [...book.values()].filter((o) => o.expiresAtMs === null || o.expiresAtMs > h.nowMs);
              if (live.length === 0) return;
              const order = live[s.pick % live.length]!;
              const { answer, outputs } = h.instruct("alice", { kind: "cancel_order", orderId: order.id });
              expectExpiries(outputs);
              expect(answer.ok).toBe(true);
              const partnerId = order.partnerId;
              leave(order.id);
              if (partnerId !== null) {
                seen.add("leg cancelled");
                const partner = ofType(outputs, "order_updated").find((u) => u.order.id === partnerId);
                expect([partnerId, partner?.order.status, partner?.order.ocoWith]).toEqual([
                  partnerId,
                  "pending",
                  null,
                ]);
              }
            } else {
              const mid = Math.max(10_000, (bid + ask) / 2 + s.moveTicks);
              bid = mid - s.halfSpreadTicks;
              ask = mid + s.halfSpreadTicks;
              const outputs = h.price(ETH, priceOf(bid), priceOf(ask));
              expectExpiries(outputs);
              const context = `bid ${priceOf(bid)} ask ${priceOf(ask)}`;
              // what the model expects of each order, in placing order so the first listed leg goes first
              const expected = new Map<string, string>();
              for (const order of [...book.values()].sort((a, b) => a.placedNumber - b.placedNumber)) {
                if (expected.has(order.id) || !reaches(order, bid, ask)) continue;
                const outcome = expectedFill(order, bid, ask);
                expected.set(order.id, outcome);
                // a partner already rejected on this quote has left
                const partnerId = order.partnerId;
                if (outcome === "filled" && partnerId !== null && !expected.has(partnerId))
                  expected.set(partnerId, "OCO_CANCELLED");
              }
              // a leg whose partner left stays pending, freed: its update shows no partner
              for (const u of ofType(outputs, "order_updated"))
                if (u.order.status === "pending") expect([u.order.id, u.order.ocoWith]).toEqual([u.order.id, null]);
              const updates = ofType(outputs, "order_updated").filter(
                (u) => u.order.status !== "expired" && u.order.status !== "pending",
              );
              const outcomeOf = (u: (typeof updates)[number]) =>
                u.order.status === "filled" ? "filled" : u.order.reason?.code;
              expect([context, Object.fromEntries(updates.map((u) => [u.order.id, outcomeOf(u)]))]).toEqual([
                context,
                Object.fromEntries(expected),
              ]);
              const opened = ofType(outputs, "trade_opened");
              for (const u of updates) {
                const order = book.get(u.order.id)!;
                seen.add(outcomeOf(u) ?? "no reason");
                if (u.order.status === "filled") {
                  const fillPrice = priceOf(order.isLong ? ask : bid);
                  const trade = opened.find((t) => t.trade.id === u.order.tradeId)?.trade;
                  expect([u.order.id, u.order.fillPrice, trade?.openPrice, trade?.type]).toEqual([
                    u.order.id,
                    fillPrice,
                    fillPrice,
                    order.view.side,
                  ]);
                  expect([trade?.margin, trade?.stopLoss, trade?.takeProfit]).toEqual([
                    order.view.margin,
                    order.view.stopLoss,
                    order.view.takeProfit,
                  ]);
                  if (order.partnerId !== null && reaches(book.get(order.partnerId)!, bid, ask))
                    seen.add("both legs reached");
                }
              }
              expect(opened.length).toBe(updates.filter((u) => u.order.status === "filled").length);
              for (const u of updates) if (book.has(u.order.id)) leave(u.order.id);
            }
          });
          const randomEntries = h.log.length - firstRandomEntry;
          expectSameAfterRestore(h, firstRandomEntry + (cutSeed % (randomEntries + 1)));
        },
      ),
      { numRuns: 30 },
    );
    expect([...seen].sort()).toEqual([
      "OCO_CANCELLED",
      "WOULD_LIQUIDATE",
      "both legs reached",
      "expired",
      "filled",
      "leg cancelled",
    ]);
  });
});
