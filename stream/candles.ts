/**
 * Live candles. The worker fans out each 1-minute candle a batch changed, as stored (worker/candles.ts;
 * docs/architecture.md, "The stream"): those go to the asset's 1m subscribers as they are. A coarser interval's
 * current candle is kept here, only while it has subscribers, merged from the 1m updates onto the bucket's state as
 * it stood when the first subscriber came (`loadBucket`, from the candles table, once however many subscribers come
 * while it loads): open from the bucket's earliest minute, high and low the extremes, close from its latest minute
 * (a late update of an earlier minute leaves the close alone). Prices are decimal strings, compared exactly as ticks
 * (contract/money.ts), never as floats.
 */
import {
  CANDLE_INTERVAL_MS,
  CANDLE_INTERVALS,
  candleOpenMs,
  type Candle,
  type CandleInterval,
} from "../contract/candles.ts";
import { ASSET_BY_SYMBOL } from "../contract/markets.ts";
import { toUnits } from "../contract/money.ts";
import type { Queryable } from "../platform/postgres.ts";
import { readCandles } from "../functions/candles.ts";
import { SharedFrame, type StreamConnection } from "./connection.ts";

/** A coarser bucket as stored so far, with the minutes its open and close came from. */
export interface StoredBucket extends Candle {
  readonly firstMinuteMs: number;
  readonly lastMinuteMs: number;
}

/** The stored candle of `asset` at `interval` whose bucket opens at `openTimeMs`, if any. */
export type LoadBucket = (
  asset: string,
  interval: CandleInterval,
  openTimeMs: number,
) => Promise<StoredBucket | undefined>;

interface Bucket {
  openTimeMs: number;
  open: string;
  high: string;
  low: string;
  close: string;
  /** The minutes the open and close came from. */
  firstMinuteMs: number;
  lastMinuteMs: number;
}

export class CandleFanout {
  private readonly subscribers = new Map<string, Set<StreamConnection>>();
  private readonly buckets = new Map<string, Bucket>();
  /** Loads under way: the bucket each is for. A subscriber arriving meanwhile waits for it rather than query too. */
  private readonly loading = new Map<string, number>();

  constructor(
    private readonly loadBucket: LoadBucket | undefined,
    private readonly onLoadError: (error: unknown) => void,
  ) {}

  subscribe(conn: StreamConnection, asset: string, interval: CandleInterval, nowMs: number): void {
    const key = `${asset} ${interval}`;
    let set = this.subscribers.get(key);
    if (set === undefined) this.subscribers.set(key, (set = new Set()));
    set.add(conn);
    conn.candles.add(key);
    const known = this.buckets.get(key);
    if (this.loadBucket !== undefined && this.loading.get(key) === candleOpenMs(nowMs, interval)) return;
    if (known !== undefined) conn.send(frame(asset, interval, known), nowMs);
    else if (this.loadBucket !== undefined) this.load(asset, interval, nowMs);
  }

  unsubscribe(conn: StreamConnection, asset: string, interval: CandleInterval): void {
    this.drop(conn, `${asset} ${interval}`);
  }

  remove(conn: StreamConnection): void {
    for (const key of conn.candles) this.drop(conn, key);
  }

  /** A 1m candle as stored: to its subscribers, and merged into each coarser current candle being watched. */
  /** A 1m candle as the worker fans it out (contract/candles.ts `Candle`: decimal strings, openTime ISO). */
  publish(row: Candle, nowMs: number): void {
    const minuteMs = Date.parse(row.openTime);
    if (!Number.isFinite(minuteMs)) return;
    for (const interval of CANDLE_INTERVALS) {
      const key = `${row.asset} ${interval}`;
      const subs = this.subscribers.get(key);
      if (subs === undefined || subs.size === 0) continue;
      const bucket = this.merge(key, interval, row, minuteMs);
      if (bucket === undefined) continue;
      const shared = new SharedFrame(Buffer.from(JSON.stringify(frame(row.asset, interval, bucket))));
      for (const conn of subs) conn.sendShared(shared, "candle", nowMs);
    }
  }

  private merge(key: string, interval: CandleInterval, row: Candle, minuteMs: number): Bucket | undefined {
    const openTimeMs = candleOpenMs(minuteMs, interval);
    const bucket = this.buckets.get(key);
    if (bucket === undefined || bucket.openTimeMs < openTimeMs) {
      const fresh = { openTimeMs, ...prices(row), firstMinuteMs: minuteMs, lastMinuteMs: minuteMs };
      this.buckets.set(key, fresh);
      return fresh;
    }
    if (bucket.openTimeMs > openTimeMs) return undefined; // an update of a bucket already past
    if (comparePrice(row.asset, row.high, bucket.high) > 0) bucket.high = row.high;
    if (comparePrice(row.asset, row.low, bucket.low) < 0) bucket.low = row.low;
    if (minuteMs <= bucket.firstMinuteMs) {
      bucket.open = row.open;
      bucket.firstMinuteMs = minuteMs;
    }
    if (minuteMs >= bucket.lastMinuteMs) {
      bucket.close = row.close;
      bucket.lastMinuteMs = minuteMs;
    }
    return bucket;
  }

  /** Loads the bucket `nowMs` falls in, then sends it (merged with what came live meanwhile) to every subscriber. */
  private load(asset: string, interval: CandleInterval, nowMs: number): void {
    const key = `${asset} ${interval}`;
    const openTimeMs = candleOpenMs(nowMs, interval);
    this.loading.set(key, openTimeMs);
    const done = () => {
      if (this.loading.get(key) === openTimeMs) this.loading.delete(key);
      // Subscribers that came during the load were sent nothing yet: everyone gets the bucket as it stands.
      const bucket = this.buckets.get(key);
      const subs = this.subscribers.get(key);
      if (bucket === undefined || subs === undefined) return;
      const shared = new SharedFrame(Buffer.from(JSON.stringify(frame(asset, interval, bucket))));
      for (const conn of subs) conn.sendShared(shared, "candle", Date.now());
    };
    this.loadBucket!(asset, interval, openTimeMs).then(
      (stored) => {
        if (stored !== undefined && this.subscribers.get(key)?.size) this.mergeStored(key, openTimeMs, stored);
        done();
      },
      (error: unknown) => {
        this.onLoadError(error);
        done();
      },
    );
  }

  /**
   * The stored bucket merged with what came live while it loaded: open from the earlier minute, close from the later
   * (the live one on a tie: the stored row may predate that update), extremes of both.
   */
  private mergeStored(key: string, openTimeMs: number, stored: StoredBucket): void {
    const live = this.buckets.get(key);
    if (live !== undefined && live.openTimeMs > openTimeMs) return;
    const { firstMinuteMs, lastMinuteMs } = stored;
    this.buckets.set(
      key,
      live === undefined || live.openTimeMs < openTimeMs
        ? { openTimeMs, ...prices(stored), firstMinuteMs, lastMinuteMs }
        : {
            openTimeMs,
            open: live.firstMinuteMs <= firstMinuteMs ? live.open : stored.open,
            firstMinuteMs: Math.min(live.firstMinuteMs, firstMinuteMs),
            high: comparePrice(stored.asset, stored.high, live.high) > 0 ? stored.high : live.high,
            low: comparePrice(stored.asset, stored.low, live.low) < 0 ? stored.low : live.low,
            close: live.lastMinuteMs >= lastMinuteMs ? live.close : stored.close,
            lastMinuteMs: Math.max(live.lastMinuteMs, lastMinuteMs),
          },
    );
  }

  private drop(conn: StreamConnection, key: string): void {
    conn.candles.delete(key);
    const set = this.subscribers.get(key);
    set?.delete(conn);
    if (set?.size === 0) {
      this.subscribers.delete(key);
      this.buckets.delete(key); // loaded afresh for the next subscriber: nobody kept it current meanwhile
    }
  }
}

function prices(c: Candle) {
  return { open: c.open, high: c.high, low: c.low, close: c.close };
}

function frame(asset: string, interval: CandleInterval, b: Bucket) {
  const { open, high, low, close } = b;
  return {
    type: "candle" as const,
    asset,
    interval,
    openTime: new Date(b.openTimeMs).toISOString(),
    open,
    high,
    low,
    close,
  };
}

/**
 * Orders two prices of `asset` by value, as whole ticks at its price decimals (contract/money.ts owns the parsing): a
 * candle's prices are the engine's quotes, never off the asset's ticks.
 */
export function comparePrice(asset: string, a: string, b: string): number {
  const decimals = ASSET_BY_SYMBOL.get(asset)?.priceDecimals;
  if (decimals === undefined) throw new Error(`candle of an unknown asset ${asset}`);
  const ticks = (text: string) => {
    const units = toUnits(text, decimals, Number.MAX_SAFE_INTEGER);
    if (units < 0) throw new Error(`candle price ${text} of ${asset} is not a price at ${decimals} decimals`);
    return units;
  };
  return Math.sign(ticks(a) - ticks(b));
}

/**
 * `LoadBucket` over the candles table: the bucket as the API's candle history would show it (functions/candles.ts),
 * and the minutes it spans, so a late update of an earlier minute cannot move its close back (or its open forward).
 * The span is read after the candle: rows are only ever added or updated, so its last minute is never older than
 * the one the close came from.
 */
export function loadBucketFrom(db: Queryable): LoadBucket {
  return async (asset, interval, openTimeMs) => {
    const [point] = await readCandles(db, { asset, interval, fromMs: openTimeMs, toMs: openTimeMs, limit: 1 });
    if (point === undefined || Date.parse(point.openTime) !== openTimeMs) return undefined;
    const { rows } = await db.query<{ first: Date; last: Date }>(MINUTES_SPANNED, [
      asset,
      new Date(openTimeMs).toISOString(),
      new Date(openTimeMs + CANDLE_INTERVAL_MS[interval]).toISOString(),
    ]);
    const span = rows[0];
    return {
      asset,
      interval,
      ...point,
      firstMinuteMs: span?.first.getTime() ?? openTimeMs,
      lastMinuteMs: span?.last.getTime() ?? openTimeMs,
    };
  };
}

/** The first and last minute stored of asset $1 in [$2, $3): two probes of the (asset, open_time) key. */
const MINUTES_SPANNED = `
  SELECT min(open_time) AS first, max(open_time) AS last
    FROM candles_1m
   WHERE asset = $1 AND open_time >= $2::timestamptz AND open_time < $3::timestamptz`;
