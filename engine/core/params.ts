/**
 * Engine parameters: fixed for the life of a state and saved in every snapshot, so a replay runs under the
 * exact rules the original run did. The runner builds them once from validated config.
 */
import { ASSETS, validateAssets, type AssetConfig } from "../../contract/markets.ts";
import { MAX_UNITS, MICROS_PER_USD } from "../../contract/money.ts";

export interface EngineParams {
  /** Which engine shard this state belongs to; part of every trade and order id. */
  readonly shard: number;
  readonly assets: readonly AssetConfig[];
  readonly initialBalanceMicros: number;
  readonly maxLeverage: number;
  /** Maintenance margin as parts per million of notional: a trade is liquidated when its equity falls to it. */
  readonly maintenanceMarginPpm: number;
  /** Orders are refused with STALE_PRICE when the market's last quote is older than this (by log time). */
  readonly staleQuoteMs: number;
  /** Largest notional (margin × leverage, or a spot total) of a single order. */
  readonly maxNotionalMicros: number;
  readonly maxOpenTradesPerUser: number;
  /** Pending entry orders per user (each leg of an OCO pair counts). */
  readonly maxPendingOrdersPerUser: number;
  /** Furthest a pending order's expiry may lie after its placement, in log time. */
  readonly maxOrderExpiryMs: number;
  /** How long a request id's first answer is remembered, by log time, and at most how many are kept. */
  readonly idempotencyWindowMs: number;
  readonly idempotencyMaxEntries: number;
  /** Per user, so one user's traffic never evicts another's requests. */
  readonly idempotencyMaxPerUser: number;
}

export const DEFAULT_PARAMS: EngineParams = {
  shard: 0,
  assets: ASSETS,
  initialBalanceMicros: 10_000 * MICROS_PER_USD,
  maxLeverage: 100,
  maintenanceMarginPpm: 5_000,
  staleQuoteMs: 30_000,
  maxNotionalMicros: 10_000_000 * MICROS_PER_USD,
  maxOpenTradesPerUser: 500,
  maxPendingOrdersPerUser: 200,
  maxOrderExpiryMs: 90 * 24 * 3600 * 1000,
  idempotencyWindowMs: 24 * 60 * 60 * 1000,
  idempotencyMaxEntries: 1_000_000,
  idempotencyMaxPerUser: 10_000,
};

/** Defaults plus overrides; only known keys, so nothing else (a URL, a secret) can ride into snapshots. */
export function makeParams(overrides: Partial<EngineParams> = {}): EngineParams {
  const p = { ...DEFAULT_PARAMS };
  for (const key of Object.keys(DEFAULT_PARAMS) as (keyof EngineParams)[]) {
    if (overrides[key] !== undefined) Object.assign(p, { [key]: overrides[key] });
  }
  validateParams(p);
  return p;
}

/** Throws unless `p` has exactly the known keys, each in range (also checks params read from a snapshot). */
export function validateParams(p: EngineParams): void {
  const unknown = Object.keys(p).filter((k) => !(k in DEFAULT_PARAMS));
  if (unknown.length > 0) throw new Error(`unknown engine parameter(s): ${unknown.join(", ")}`);
  validateAssets(p.assets);
  const whole = (name: keyof EngineParams, min: number, max: number) => {
    const v = p[name];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new Error(
        `engine parameter ${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`,
      );
    }
  };
  whole("shard", 0, 1023);
  whole("initialBalanceMicros", 0, MAX_UNITS);
  whole("maxLeverage", 1, 1000);
  whole("maintenanceMarginPpm", 0, 999_999);
  whole("staleQuoteMs", 1, 7 * 24 * 3600 * 1000);
  whole("maxNotionalMicros", 1, MAX_UNITS / 100);
  whole("maxOpenTradesPerUser", 1, 100_000);
  whole("maxPendingOrdersPerUser", 0, 100_000);
  whole("maxOrderExpiryMs", 1, 366 * 24 * 3600 * 1000);
  whole("idempotencyWindowMs", 0, 30 * 24 * 3600 * 1000);
  whole("idempotencyMaxEntries", 0, 10_000_000);
  whole("idempotencyMaxPerUser", 0, 10_000_000);
  if (p.maintenanceMarginPpm * p.maxLeverage >= 1_000_000) {
    throw new Error(
      "maintenanceMarginPpm × maxLeverage must stay below 100%: a max-leverage trade would open liquidated",
    );
  }
}
