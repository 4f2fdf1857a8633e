/**
 * The tradable assets and their markets: the one place for symbols, decimals and limits.
 *
 * Every asset trades against USD (USDC 1:1) on its Backpack perpetual market. Prices are integers of
 * `10^-priceDecimals` USD ("ticks"); quantities are integers of `10^-quantityDecimals` of the asset ("steps").
 * `priceDecimals + quantityDecimals` must not exceed USD_DECIMALS, so that price × quantity is a whole number
 * of USD micros: notional values, PnL and spot totals are then exact and need no rounding at all.
 */
import { USD_DECIMALS } from "./money.ts";

export interface AssetConfig {
  /** Asset symbol as the API shows it. */
  readonly symbol: string;
  readonly name: string;
  /** Backpack market whose bookTicker prices this asset. */
  readonly market: string;
  readonly priceDecimals: number;
  readonly quantityDecimals: number;
  /** Highest price accepted from the feed, in ticks; guards every later product against overflow. */
  readonly maxPriceTicks: number;
  /**
   * The market's minimum quantity, in steps: a partial close may not leave less than this open. One step for
   * every asset here: Backpack's market filters give SOL_USDC_PERP minQuantity = stepSize = 0.01; the others'
   * minimums are taken to equal their step likewise.
   */
  readonly minQuantitySteps: number;
}

export const ACCOUNT_CURRENCY = "USD";

export const ASSETS = [
  {
    symbol: "ETH",
    name: "Ethereum",
    market: "ETH_USDC_PERP",
    priceDecimals: 2,
    quantityDecimals: 4,
    maxPriceTicks: 1_000_000_00,
    minQuantitySteps: 1,
  },
  {
    symbol: "BTC",
    name: "Bitcoin",
    market: "BTC_USDC_PERP",
    priceDecimals: 1,
    quantityDecimals: 5,
    maxPriceTicks: 10_000_000_0,
    minQuantitySteps: 1,
  },
  {
    symbol: "SOL",
    name: "Solana",
    market: "SOL_USDC_PERP",
    priceDecimals: 2,
    quantityDecimals: 2,
    maxPriceTicks: 100_000_00,
    minQuantitySteps: 1,
  },
  {
    symbol: "ADA",
    name: "Cardano",
    market: "ADA_USDC_PERP",
    priceDecimals: 5,
    quantityDecimals: 1,
    maxPriceTicks: 1_000_00000,
    minQuantitySteps: 1,
  },
] as const satisfies readonly AssetConfig[];

/** A listed asset's symbol: "ETH", "BTC", … (the stream client types its subscriptions with it). */
export type AssetSymbol = (typeof ASSETS)[number]["symbol"];

export const ASSET_BY_SYMBOL: ReadonlyMap<string, AssetConfig> = new Map(ASSETS.map((a) => [a.symbol, a]));

/** Throws when a configuration would make money arithmetic inexact; called once at startup and by the engine. */
export function validateAssets(assets: readonly AssetConfig[]): void {
  if (assets.length === 0) throw new Error("at least one asset must be configured");
  const seen = new Set<string>();
  for (const a of assets) {
    if (seen.has(a.symbol) || seen.has(a.market)) throw new Error(`duplicate asset or market: ${a.symbol}/${a.market}`);
    seen.add(a.symbol).add(a.market);
    if (!/^[A-Z][A-Z0-9]{0,15}$/.test(a.symbol) || a.symbol === ACCOUNT_CURRENCY)
      throw new Error(`bad asset symbol: ${a.symbol}`);
    for (const d of [a.priceDecimals, a.quantityDecimals]) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`${a.symbol}: decimals must be whole numbers ≥ 0`);
    }
    if (a.priceDecimals + a.quantityDecimals > USD_DECIMALS) {
      throw new Error(
        `${a.symbol}: priceDecimals + quantityDecimals must be ≤ ${USD_DECIMALS} so price × quantity is exact in USD micros`,
      );
    }
    if (!Number.isSafeInteger(a.maxPriceTicks) || a.maxPriceTicks <= 0)
      throw new Error(`${a.symbol}: bad maxPriceTicks`);
    if (!Number.isSafeInteger(a.minQuantitySteps) || a.minQuantitySteps < 1)
      throw new Error(
        `${a.symbol}: minQuantitySteps must be a whole number ≥ 1, got ${JSON.stringify(a.minQuantitySteps)}`,
      );
  }
}

/** USD micros per (1 price tick × 1 quantity step) of this asset: a whole number by construction. */
export function microsPerTickStep(asset: AssetConfig): number {
  return 10 ** (USD_DECIMALS - asset.priceDecimals - asset.quantityDecimals);
}
