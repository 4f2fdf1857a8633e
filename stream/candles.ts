/**
 * Live candles. The worker fans out each 1-minute candle a batch changed, as stored (worker/candles.ts;
 * docs/architecture.md, "The stream"). Each candle series (asset and interval, 1m included) is kept here while it has
 * subscribers: the current bucket's candle, merged from the 1m rows (open from the bucket's earliest minute, high and
 * low the extremes, close from its latest minute; a late update of an earlier minute leaves the close alone). Within
 * a minute, open and close go by the output they came from, as the table's row does (migrations/010_candles.sql):
 * two workers fan out their rows of one minute in either order, and the older must not move the close back. Prices
 * are decimal strings, compared exactly, never as floats. A bucket loaded from the table may hold prices finer than
 * its asset's priceDecimals (minutes stored before those were made coarser): loaded as stored, as the API serves them.
 *
 * A candle is sent only whole, with every stored minute of its bucket in it. A series starts listening when its
 * first subscriber comes, and loads the bucket that moment falls in (`loadBucket`, from the candles table, once
 * however many subscribers come while it loads). Until the load answers nothing is sent: the rows that come
 * meanwhile are merged, not sent, and rows of earlier buckets are dropped (a row alone is not the bucket). A failed
 * load (one whose answer cannot be merged too) is tried again after each of `retryDelaysMs`, then after the last one
 * again and again (with none, it is given up: the bucket is never sent, and a later subscriber starts a load again).
 * A row of a later bucket starts that bucket whole at once, whether the load answered or not: the series was
 * listening before the bucket began, so every row of it comes live, each with its whole minute so far.
 * (A minute stored before the series listened is in a later bucket only when the quotes' clock is ahead of this
 * process's; its next quote brings it again.)
 *
 * A socket whose send buffer is backed up gets only the latest frame of each series once it drains, and every
 * bucket's final state (candle-delivery.ts).
 */
import {
  CANDLE_INTERVALS,
  CANDLE_INTERVAL_MS,
  candleOpenMs,
  type Candle,
  type CandleInterval,
} from "../contract/candles.ts";
import { ASSET_BY_SYMBOL } from "../contract/markets.ts";
import { decimalsWord, toUnits, trimDecimal } from "../contract/money.ts";
import type { Queryable } from "../platform/postgres.ts";
import { CandleDelivery } from "./candle-delivery.ts";
import { monotonicMs } from "./clock.ts";
import { SharedFrame, type StreamConnection } from "./connection.ts";

/**
 * A 1m candle as the worker fans it out (worker/candles.ts `CandleView`): as stored, with the orders of the outputs
 * its open and close came from (worker/candles.ts `outputOrder`, in decimal). A worker from before those fields
 * sends none (one deploy's rolling restart); its rows are ordered by minute alone, as before: within its minute,
 * the row that comes last wins.
 */
export type MinuteRow = Candle & { readonly openOutput?: string; readonly closeOutput?: string };

/** A bucket as stored so far, with the minutes and the orders of the outputs its open and close came from. */
export interface StoredBucket extends Candle {
  readonly firstMinuteMs: number;
  readonly lastMinuteMs: number;
  readonly openOutput: string;
  readonly closeOutput: string;
}

/** The stored candle of `asset` at `interval` whose bucket opens at `openTimeMs`, if any. */
export type LoadBucket = (
  asset: string,
  interval: CandleInterval,
  openTimeMs: number,
) => Promise<StoredBucket | undefined>;

/** The waits before each retry of a failed load, the last one repeated while the bucket lasts. */
export const LOAD_RETRY_DELAYS_MS: readonly number[] = [1_000, 5_000, 20_000, 60_000];

/** A bucket's candle so far, with the minutes and the orders of the outputs its open and close came from. */
interface Prices {
  open: string;
  high: string;
  low: string;
  close: string;
  firstMinuteMs: number;
  lastMinuteMs: number;
  /** Undefined from a worker that sends none (`MinuteRow`). */
  openOutput: bigint | undefined;
  closeOutput: bigint | undefined;
}

interface Series {
  readonly asset: string;
  readonly interval: CandleInterval;
  readonly subscribers: Set<StreamConnection>;
  /** The bucket loading or held: rows of earlier buckets are dropped. */
  openTimeMs: number;
  /** Its candle as merged so far; undefined while no minute of it is known. */
  candle: Prices | undefined;
  /** Every stored minute of the bucket is in `candle` (loaded, or come live since): only then is it sent. */
  whole: boolean;
  /** The load under way or waiting for its retry; undefined once whole, or given up (no retries). */
  load: { readonly id: number; timer: NodeJS.Timeout | undefined } | undefined;
}

export class CandleFanout {
  private readonly series = new Map<string, Series>();
  private loads = 0;
  private readonly delivery: CandleDelivery;

  /**
   * Without `loadBucket` (tests), a series is whole from the first row it sees. `thinBytes`: a socket with this many
   * bytes waiting gets its frames held back, latest wins (quotes.ts thinBytesOf; by default never).
   */
  constructor(
    private readonly loadBucket: LoadBucket | undefined,
    private readonly onLoadError: (error: unknown) => void,
    private readonly retryDelaysMs: readonly number[] = LOAD_RETRY_DELAYS_MS,
    thinBytes = Number.POSITIVE_INFINITY,
  ) {
    this.delivery = new CandleDelivery(thinBytes);
  }

  /**
   * `wallMs`: the wall clock's time, which bucket is under way; `nowMs`: the monotonic clock's, for the frame sent
   * (clock.ts), as in every method here that sends.
   */
  subscribe(conn: StreamConnection, asset: string, interval: CandleInterval, wallMs: number, nowMs: number): void {
    const key = `${asset} ${interval}`;
    let series = this.series.get(key);
    if (series === undefined) {
      const whole = this.loadBucket === undefined;
      const openTimeMs = whole ? -Infinity : candleOpenMs(wallMs, interval);
      series = { asset, interval, subscribers: new Set(), openTimeMs, candle: undefined, whole, load: undefined };
      this.series.set(key, series);
    }
    series.subscribers.add(conn);
    conn.candles.add(key);
    if (series.whole) {
      // A bucket that has ended (a quiet market: no row since) is not sent, as a series started now would load the
      // bucket now falls in and send nothing until its first minute: one first frame, whoever else holds the series.
      const ended = this.loadBucket !== undefined && series.openTimeMs < candleOpenMs(wallMs, interval);
      // Through the delivery, like every frame: it replaces one held back for this socket (a second subscribe).
      if (series.candle !== undefined && !ended)
        this.delivery.send(conn, key, series.openTimeMs, sharedFrame(series), nowMs);
      return;
    }
    if (series.load !== undefined) return; // sent with everyone's once it answers
    // The first subscriber, or the first since a load gave up: from the bucket now falls in.
    const openTimeMs = candleOpenMs(wallMs, interval);
    if (openTimeMs > series.openTimeMs) [series.openTimeMs, series.candle] = [openTimeMs, undefined];
    this.load(series, 0);
  }

  unsubscribe(conn: StreamConnection, asset: string, interval: CandleInterval): void {
    this.drop(conn, `${asset} ${interval}`);
  }

  remove(conn: StreamConnection): void {
    for (const key of conn.candles) this.drop(conn, key);
    this.delivery.forget(conn);
  }

  /** The scheduler tick: frames held back for sockets that have drained since. */
  tick(nowMs: number): void {
    this.delivery.tick(nowMs);
  }

  /**
   * A 1m candle as the worker fans it out. Throws, before it changes anything, for an output order unreadable or,
   * when a series of its asset is held, a price that is not one of the asset's: the worker fans out only prices at
   * the asset's ticks (worker/candles.ts), so such a row is malformed, and held, a text that is no number would make
   * every later merge of its bucket throw, the load's among them.
   */
  publish(row: MinuteRow, nowMs: number): void {
    const minuteMs = Date.parse(row.openTime);
    if (!Number.isFinite(minuteMs)) return;
    if (CANDLE_INTERVALS.some((interval) => this.series.has(`${row.asset} ${interval}`)))
      for (const price of Object.values(prices(row))) priceTicks(row.asset, price);
    const minute: Prices = {
      ...prices(row),
      firstMinuteMs: minuteMs,
      lastMinuteMs: minuteMs,
      openOutput: outputOrder(row, row.openOutput),
      closeOutput: outputOrder(row, row.closeOutput),
    };
    for (const interval of CANDLE_INTERVALS) {
      const series = this.series.get(`${row.asset} ${interval}`);
      if (series === undefined) continue;
      const openTimeMs = candleOpenMs(minuteMs, interval);
      if (openTimeMs < series.openTimeMs) continue; // a bucket before the one loading or held
      let changed = true;
      if (openTimeMs > series.openTimeMs) {
        // A later bucket: whole from its first row on (see the top of this file), and the load moot.
        [series.openTimeMs, series.candle, series.whole] = [openTimeMs, { ...minute }, true];
        this.stopLoad(series);
      } else if (series.candle === undefined) series.candle = { ...minute };
      else changed = merge(row.asset, series.candle, minute);
      if (changed && series.whole) this.send(series, nowMs);
    }
  }

  /**
   * The fan-out reader may have missed rows (trimmed while it could not read, or read too slowly): no series can
   * count on having heard every row of its bucket, so each loads it again, and sends nothing until that answers.
   * What it held is kept as live minutes, merged onto what the load finds.
   */
  recheck(wallMs: number): void {
    if (this.loadBucket === undefined) return;
    for (const series of this.series.values()) {
      this.stopLoad(series);
      const openTimeMs = candleOpenMs(wallMs, series.interval);
      if (openTimeMs > series.openTimeMs) [series.openTimeMs, series.candle] = [openTimeMs, undefined];
      series.whole = false;
      this.load(series, 0);
    }
  }

  /**
   * Loads the series' bucket, then sends it (merged with what came live meanwhile) to every subscriber. An answer
   * that cannot be merged (a price or output order unreadable) counts as a failed load, logged and tried again,
   * rather than a rejection nobody handles, which would stop the process.
   */
  private load(series: Series, retries: number): void {
    const load = { id: ++this.loads, timer: undefined as NodeJS.Timeout | undefined };
    series.load = load;
    const current = () => series.load === load; // else whole from a later bucket, or dropped, meanwhile
    const retry = () => {
      // Then every last delay for as long as the bucket lasts (a later bucket's row ends it): giving up would leave
      // its subscribers, those a recheck made wait included, without a candle until the next bucket.
      const delayMs = this.retryDelaysMs[Math.min(retries, this.retryDelaysMs.length - 1)];
      if (delayMs === undefined) {
        series.load = undefined; // no retries (tests): this bucket is never sent
        return;
      }
      load.timer = setTimeout(() => {
        if (current()) this.load(series, retries + 1);
      }, delayMs);
      load.timer.unref();
    };
    this.loadBucket!(series.asset, series.interval, series.openTimeMs).then(
      (stored) => {
        if (!current()) return;
        try {
          this.loaded(series, stored);
        } catch (error) {
          this.onLoadError(error);
          if (current()) retry(); // else it threw sending, the bucket whole
        }
      },
      (error: unknown) => {
        if (!current()) return;
        this.onLoadError(error);
        retry();
      },
    );
  }

  /** The load's answer: the bucket whole, sent. Changes nothing until the merge succeeded. */
  private loaded(series: Series, stored: StoredBucket | undefined): void {
    let candle = series.candle;
    if (stored !== undefined) {
      // The live minutes onto the stored ones, so that a tie the outputs cannot settle (a row without them) keeps
      // the live one: the stored row may predate it.
      candle = {
        ...prices(stored),
        firstMinuteMs: stored.firstMinuteMs,
        lastMinuteMs: stored.lastMinuteMs,
        openOutput: outputOrder(stored, stored.openOutput),
        closeOutput: outputOrder(stored, stored.closeOutput),
      };
      if (series.candle !== undefined) merge(series.asset, candle, series.candle);
    }
    [series.load, series.whole, series.candle] = [undefined, true, candle];
    if (candle !== undefined) this.send(series, monotonicMs());
  }

  private stopLoad(series: Series): void {
    clearTimeout(series.load?.timer);
    series.load = undefined;
  }

  private send(series: Series, nowMs: number): void {
    const shared = sharedFrame(series);
    const key = `${series.asset} ${series.interval}`;
    for (const conn of series.subscribers) this.delivery.send(conn, key, series.openTimeMs, shared, nowMs);
  }

  private drop(conn: StreamConnection, key: string): void {
    conn.candles.delete(key);
    this.delivery.forget(conn, key);
    const series = this.series.get(key);
    if (series === undefined) return;
    series.subscribers.delete(conn);
    if (series.subscribers.size > 0) return;
    // Loaded afresh for the next subscriber: nobody kept it current meanwhile.
    this.stopLoad(series);
    this.series.delete(key);
  }
}

/**
 * Merges `minute` (a 1m row, or the live minutes of a bucket) into `candle`: extremes, open from the earlier output
 * and close from the later (`precedes`). Rows of one minute are snapshots of its row in Postgres, each taken after
 * the one before, so merged in any order they give the latest. Whether a price a frame shows changed.
 */
function merge(asset: string, candle: Prices, minute: Prices): boolean {
  const before = `${candle.open} ${candle.high} ${candle.low} ${candle.close}`;
  if (comparePrice(asset, minute.high, candle.high) > 0) candle.high = minute.high;
  if (comparePrice(asset, minute.low, candle.low) < 0) candle.low = minute.low;
  if (precedes(minute.firstMinuteMs, minute.openOutput, candle.firstMinuteMs, candle.openOutput))
    [candle.open, candle.firstMinuteMs, candle.openOutput] = [minute.open, minute.firstMinuteMs, minute.openOutput];
  if (precedes(candle.lastMinuteMs, candle.closeOutput, minute.lastMinuteMs, minute.closeOutput))
    [candle.close, candle.lastMinuteMs, candle.closeOutput] = [minute.close, minute.lastMinuteMs, minute.closeOutput];
  return `${candle.open} ${candle.high} ${candle.low} ${candle.close}` !== before;
}

/**
 * Whether the output at (`aMs`, `a`) comes before the one at (`bMs`, `b`): by minute, then by output order. Without
 * an order (`MinuteRow`), the same minute counts as before either way, so the row merged in wins.
 */
function precedes(aMs: number, a: bigint | undefined, bMs: number, b: bigint | undefined): boolean {
  if (aMs !== bMs) return aMs < bMs;
  return a === undefined || b === undefined || a < b;
}

/** An output order (worker/candles.ts `outputOrder`) from its decimal text; absent: undefined. */
function outputOrder(candle: Candle, text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  if (typeof text !== "string" || !/^\d{1,50}$/.test(text))
    throw new Error(`candle of ${candle.asset} at ${candle.openTime}: output order ${String(text)} unreadable`);
  return BigInt(text);
}

function prices(c: Candle) {
  return { open: c.open, high: c.high, low: c.low, close: c.close };
}

/** The series' candle as it stands, serialised once for every subscriber. */
function sharedFrame(series: Series): SharedFrame {
  return new SharedFrame(Buffer.from(JSON.stringify(frame(series, series.candle!))));
}

function frame(series: Series, candle: Prices) {
  const { open, high, low, close } = candle;
  return {
    type: "candle" as const,
    asset: series.asset,
    interval: series.interval,
    openTime: new Date(series.openTimeMs).toISOString(),
    open,
    high,
    low,
    close,
  };
}

/**
 * Orders two prices of `asset` by value, exactly, whatever their numbers of decimals: a loaded bucket may hold a
 * price stored before the asset's priceDecimals was made coarser, merged with live rows at its ticks now. Throws for
 * an unknown asset or a text that is not a non-negative decimal.
 */
export function comparePrice(asset: string, a: string, b: string): number {
  if (!ASSET_BY_SYMBOL.has(asset)) throw new Error(`candle of an unknown asset ${asset}`);
  const [aWhole, aFraction] = decimalParts(asset, a);
  const [bWhole, bFraction] = decimalParts(asset, b);
  if (aWhole.length !== bWhole.length) return Math.sign(aWhole.length - bWhole.length);
  if (aWhole !== bWhole) return aWhole < bWhole ? -1 : 1;
  const digits = Math.max(aFraction.length, bFraction.length);
  const [x, y] = [aFraction.padEnd(digits, "0"), bFraction.padEnd(digits, "0")];
  return x === y ? 0 : x < y ? -1 : 1;
}

/** A decimal's whole digits without leading zeros and its fraction digits: equal lengths compare as text. */
function decimalParts(asset: string, text: string): [string, string] {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (match === null) throw new Error(`candle price ${text} of ${asset} is not a decimal`);
  return [match[1]!.replace(/^0+(?=\d)/, ""), match[2] ?? ""];
}

/**
 * A candle price of `asset` as whole ticks; throws for an unknown asset or a text that is not one of its prices: a
 * live row is the worker's, which fans out only prices at the asset's ticks.
 */
function priceTicks(asset: string, text: string): number {
  const decimals = ASSET_BY_SYMBOL.get(asset)?.priceDecimals;
  if (decimals === undefined) throw new Error(`candle of an unknown asset ${asset}`);
  const units = toUnits(text, decimals, Number.MAX_SAFE_INTEGER);
  if (units < 0) throw new Error(`candle price ${text} of ${asset} is not a price at ${decimalsWord(decimals)}`);
  return units;
}

/**
 * `LoadBucket` over the candles table, in one statement (so one snapshot): the bucket merged as the API's candle
 * history merges it (functions/candles.ts), with the minutes and the output orders its open and close came from, so
 * that a late update of an earlier minute, or a stale row, cannot move its close back (or its open forward). From
 * the minutes at every interval, not the hourly rollup: one bucket is at most 1,440 rows (1d), and the live merge
 * needs the bucket's first and last minute, which an hour row does not keep.
 */
export function loadBucketFrom(db: Queryable): LoadBucket {
  return async (asset, interval, openTimeMs) => {
    const { rows } = await db.query<BucketRow>(BUCKET, [
      asset,
      new Date(openTimeMs).toISOString(),
      new Date(openTimeMs + CANDLE_INTERVAL_MS[interval]).toISOString(),
    ]);
    const row = rows[0];
    if (row === undefined || row.first === null) return undefined;
    if (!ASSET_BY_SYMBOL.has(asset)) throw new Error(`candle of an unknown asset ${asset}`);
    return {
      asset,
      interval,
      openTime: new Date(openTimeMs).toISOString(),
      open: trimDecimal(row.open),
      high: trimDecimal(row.high),
      low: trimDecimal(row.low),
      close: trimDecimal(row.close),
      firstMinuteMs: row.first.getTime(),
      lastMinuteMs: row.last.getTime(),
      openOutput: row.open_output,
      closeOutput: row.close_output,
    };
  };
}

interface BucketRow {
  open: string;
  high: string;
  low: string;
  close: string;
  first: Date | null;
  last: Date;
  open_output: string;
  close_output: string;
}

/** The minutes of asset $1 in [$2, $3) merged: no row (all null) when there are none. */
const BUCKET = `
  SELECT (array_agg(open ORDER BY open_time))[1]::text AS open,
         max(high)::text AS high,
         min(low)::text AS low,
         (array_agg(close ORDER BY open_time DESC))[1]::text AS close,
         min(open_time) AS first,
         max(open_time) AS last,
         (array_agg(open_output ORDER BY open_time))[1]::text AS open_output,
         (array_agg(close_output ORDER BY open_time DESC))[1]::text AS close_output
    FROM candles_1m
   WHERE asset = $1 AND open_time >= $2::timestamptz AND open_time < $3::timestamptz`;
