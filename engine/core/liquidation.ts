/** The liquidation level of an isolated-margin trade: the one formula, exact (bigint) and rounded for the user. */

/**
 * The price at which equity (margin + unrealized PnL) falls to maintenance margin (mmr × notional at that
 * price), in ticks, rounded so the rule holds exactly when it fires; 0 when the price can never reach it.
 *   long:  M + (p − e)·q ≤ mmr·q·p  ⇔  p ≤ (e·q − M) / (q·(1 − mmr))
 *   short: M + (e − p)·q ≤ mmr·q·p  ⇔  p ≥ (M + e·q) / (q·(1 + mmr))
 * with q in USD micros per tick (quantity × k). Intermediate products exceed 2^53, hence bigint.
 */
export function liquidationTicks(isLong: boolean, marginMicros: number, entryTicks: number, qMicrosPerTick: number, mmrPpm: number): number {
  const M = BigInt(marginMicros);
  const eq = BigInt(entryTicks) * BigInt(qMicrosPerTick);
  const million = 1_000_000n;
  if (isLong) {
    const num = million * (eq - M);
    if (num <= 0n) return 0;
    return Number(num / (BigInt(qMicrosPerTick) * (million - BigInt(mmrPpm))));
  }
  const num = million * (M + eq);
  const den = BigInt(qMicrosPerTick) * (million + BigInt(mmrPpm));
  return Number((num + den - 1n) / den);
}
