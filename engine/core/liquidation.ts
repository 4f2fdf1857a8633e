/** The liquidation level of an isolated-margin trade: the one formula, exact and rounded for the user. */
import { divFloor } from "../../contract/money.ts";

const MILLION = 1_000_000;

/**
 * The price at which equity (margin + unrealized PnL) falls to maintenance margin (mmr × notional at that
 * price), in ticks, rounded so the rule holds exactly when it fires; 0 when the price can never reach it.
 *   long:  M + (p − e)·q ≤ mmr·q·p  ⇔  p ≤ (e·q − M) / (q·(1 − mmr))
 *   short: M + (e − p)·q ≤ mmr·q·p  ⇔  p ≥ (M + e·q) / (q·(1 + mmr))
 * with q in USD micros per tick (quantity × k) and mmr in parts per million. Ordinary trades compute it in
 * doubles, exactly, because every intermediate stays below 2^53; larger ones (the scaled numerator passes 2^53
 * beyond ~9,000 USD of notional) take the same formula in bigint.
 */
export function liquidationTicks(
  isLong: boolean,
  marginMicros: number,
  entryTicks: number,
  qMicrosPerTick: number,
  mmrPpm: number,
): number {
  const notional = entryTicks * qMicrosPerTick; // ≤ the per-order notional limit: exact
  if (isLong) {
    const equityAtZero = notional - marginMicros;
    if (equityAtZero <= 0) return 0;
    const num = equityAtZero * MILLION;
    const den = qMicrosPerTick * (MILLION - mmrPpm);
    // A float product ≤ MAX_SAFE_INTEGER is exact; a true product above it rounds to ≥ 2^53 and fails the test.
    if (num <= Number.MAX_SAFE_INTEGER && den <= Number.MAX_SAFE_INTEGER) return divFloor(num, den);
    return Number((BigInt(equityAtZero) * 1_000_000n) / (BigInt(qMicrosPerTick) * BigInt(MILLION - mmrPpm)));
  }
  const num = (marginMicros + notional) * MILLION;
  const den = qMicrosPerTick * (MILLION + mmrPpm);
  if (num <= Number.MAX_SAFE_INTEGER && den <= Number.MAX_SAFE_INTEGER) {
    const q = divFloor(num, den);
    return q * den === num ? q : q + 1;
  }
  const bigNum = BigInt(marginMicros + notional) * 1_000_000n;
  const bigDen = BigInt(qMicrosPerTick) * BigInt(MILLION + mmrPpm);
  return Number((bigNum + bigDen - 1n) / bigDen);
}
