/**
 * The benchmarks' workload, shared by bench:engine and bench:recovery: ETH quotes around 4000.00 and open_trade
 * orders (leverage 2–20, stop-loss inside the liquidation level, take-profit 10–50% away) that ticks within ±1%
 * never fire.
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
