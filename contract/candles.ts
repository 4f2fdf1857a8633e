/**
 * Candles of the engine's quotes: OHLC of the BID (as MT5 charts draw them), in buckets aligned to the UTC epoch.
 * The worker stores 1-minute candles (worker/candles.ts, migrations/010_candles.sql) and their hourly rollup
 * (012_candles_1h.sql); every coarser interval is merged from them (the API in SQL, from the hours for 1h and coarser;
 * the stream process live, from the minutes): open = the first row's open, close = the last row's close, high = the
 * greatest high, low = the least low.
 */
import { ASSET_BY_SYMBOL } from "./markets.ts";
import { decimalsWord, formatUnits, toUnits } from "./money.ts";

/** Every interval a candle is offered at, with its length. Each is a whole number of minutes and divides a day. */
export const CANDLE_INTERVAL_MS = {
  "1m": 60_000,
  "5m": 5 * 60_000,
  "15m": 15 * 60_000,
  "1h": 60 * 60_000,
  "4h": 4 * 60 * 60_000,
  "1d": 24 * 60 * 60_000,
} as const;

export type CandleInterval = keyof typeof CANDLE_INTERVAL_MS;

export const CANDLE_INTERVALS = Object.keys(CANDLE_INTERVAL_MS) as [CandleInterval, ...CandleInterval[]];

/**
 * One candle; prices are decimal strings at the asset's price decimals, formatted as its quotes are. A row stored
 * before those were made coarser keeps its finer prices wherever it is read from the table: in the API's history
 * (functions/candles.ts) and in the stream's candles of a bucket it loaded (stream/candles.ts), the first frame and
 * those merged onto it.
 */
export interface Candle {
  readonly asset: string;
  readonly interval: CandleInterval;
  /** ISO 8601 UTC start of the bucket. */
  readonly openTime: string;
  readonly open: string;
  readonly high: string;
  readonly low: string;
  readonly close: string;
}

/** Start (ms since the epoch) of the bucket of `interval` that holds `ms`. */
export function candleOpenMs(ms: number, interval: CandleInterval): number {
  const length = CANDLE_INTERVAL_MS[interval];
  return Math.floor(ms / length) * length;
}

/**
 * A candle from the numerics Postgres stores them as ("4303.9300000000"), its prices formatted exactly as the
 * asset's quotes are ("4303.93"). Throws for an asset that is not configured or a price off its ticks: only the
 * engine's quotes are ever stored.
 */
export function storedCandle(
  asset: string,
  interval: CandleInterval,
  openTime: string,
  prices: { readonly open: string; readonly high: string; readonly low: string; readonly close: string },
): Candle {
  const decimals = ASSET_BY_SYMBOL.get(asset)?.priceDecimals;
  if (decimals === undefined) throw new Error(`candle of an unknown asset ${asset}`);
  const price = (text: string) => {
    const ticks = toUnits(text, decimals, Number.MAX_SAFE_INTEGER);
    if (ticks < 0) throw new Error(`candle price ${text} of ${asset} is not a price at ${decimalsWord(decimals)}`);
    return formatUnits(ticks, decimals);
  };
  return {
    asset,
    interval,
    openTime,
    open: price(prices.open),
    high: price(prices.high),
    low: price(prices.low),
    close: price(prices.close),
  };
}
