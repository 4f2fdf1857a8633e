/**
 * The benchmarks' workload, shared by bench:engine, bench:recovery and bench:failover: ETH quotes around 4000.00, open_trade
 * orders (leverage 2–20, stop-loss inside the liquidation level, take-profit 10–50% away), pending entry orders
 * 5–30% from the price and trailing stops 3–10% behind it, none of which ticks within ±1% ever fire.
 */
import type { EngineInput, Instruction } from "../../contract/messages.ts";

export const MARKET = "ETH_USDC_PERP";
export const BASE_TICKS = 400_000; // 4000.00

export const price = (ticks: number) => `${Math.floor(ticks / 100)}.${String(ticks % 100).padStart(2, "0")}`;

/** A quote stamped by the exchange at `atMs` (ms): the engine judges a market fresh by that time, not by arrival. */
export const tick = (bidTicks: number, atMs: number): EngineInput => ({
  type: "price_update",
  market: MARKET,
  bid: price(bidTicks),
  ask: price(bidTicks + 10),
  exchangeTimeUs: `${atMs}000`,
  source: "sim",
});

export function openOrder(rand: () => number): Instruction {
  const long = rand() < 0.5;
  const leverage = 2 + Math.floor(rand() * 19);
  // A stop-loss must lie inside the liquidation level (~1/leverage away): place it 30–80% of that distance out.
  const sl = 1 + ((0.3 + 0.5 * rand()) / leverage) * (long ? -1 : 1);
  const tp = 1 + (0.1 + 0.4 * rand()) * (long ? 1 : -1);
  return {
    kind: "open_trade",
    asset: "ETH",
    side: long ? "long" : "short",
    margin: String(10 + Math.floor(rand() * 90)),
    leverage,
    stopLoss: price(Math.round(BASE_TICKS * sl)),
    takeProfit: price(Math.round(BASE_TICKS * tp)),
  };
}

export const instruction = (requestId: string, userId: string, instr: Instruction): EngineInput => ({
  type: "user_instruction",
  requestId,
  userId,
  instruction: instr,
});

/** A limit or stop entry 5–30% away on the side where it waits (long limit / short stop below, the others above). */
export function pendingOrder(rand: () => number): Instruction {
  const long = rand() < 0.5;
  const limit = rand() < 0.5;
  const below = long === limit;
  const away = 0.05 + 0.25 * rand();
  return {
    kind: "place_order",
    asset: "ETH",
    side: long ? "long" : "short",
    type: limit ? "limit" : "stop",
    price: price(Math.round(BASE_TICKS * (below ? 1 - away : 1 + away))),
    margin: String(10 + Math.floor(rand() * 90)),
    leverage: 2 + Math.floor(rand() * 9),
  };
}

/**
 * A trailing stop 3–10% behind the best price (more than the 2% the ticks span), by distance or percent; a fifth
 * wait for an activation price 5% beyond the price, which ticks within ±1% never reach.
 */
export function trailingStop(
  rand: () => number,
  long: boolean,
): { distance?: string; percent?: string; activationPrice?: string } {
  const pct = 3 + Math.floor(rand() * 8);
  const spec = rand() < 0.5 ? { percent: String(pct) } : { distance: price(Math.round((BASE_TICKS * pct) / 100)) };
  return rand() < 0.2 ? { ...spec, activationPrice: price(Math.round(BASE_TICKS * (long ? 1.05 : 0.95))) } : spec;
}

/**
 * The log that builds the 1M-open state of bench:recovery and bench:failover: `users` accounts (`user<n>`), then
 * `tradesPerUser` rounds of one open order per user, a price every 1000 entries so log time moves.
 */
export function* openTradesLog(users: number, tradesPerUser: number, rand: () => number): Generator<EngineInput> {
  let n = 0;
  yield tick(BASE_TICKS, Date.now());
  for (let u = 0; u < users; u++) {
    if (++n % 1000 === 0) yield tick(BASE_TICKS, Date.now());
    yield instruction(`a${u}`, `user${u}`, { kind: "create_account" });
  }
  for (let r = 0; r < tradesPerUser; r++) {
    for (let u = 0; u < users; u++) {
      if (++n % 1000 === 0) yield tick(BASE_TICKS, Date.now());
      yield instruction(`o${n}`, `user${u}`, openOrder(rand));
    }
  }
  yield tick(BASE_TICKS, Date.now());
}
