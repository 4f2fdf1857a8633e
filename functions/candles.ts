/**
 * Candle history from the worker's candles (migrations/010_candles.sql, 012_candles_1h.sql), at any interval of
 * contract/candles.ts: intervals finer than an hour are merged from the 1-minute rows, 1h and coarser from the hourly
 * rollup, so a 1d candle merges at most 24 rows and a request at most limit × 24. Merged in SQL, in buckets aligned
 * to the UTC epoch (open the first row's open, close the last row's close, high and low the extremes). A bucket is
 * returned only whole: the range is widened or narrowed to bucket edges, never cut through one, so a 1h candle is
 * the same whichever range asked for it. One statement per request (Neon's HTTP path takes one statement per query).
 *
 * Prices are the stored numerics, trailing zeros trimmed: a row stored before its asset's priceDecimals was made
 * coarser keeps the finer price it was quoted at, rather than failing every range that holds it.
 */
import { CANDLE_INTERVAL_MS, candleOpenMs, type CandleInterval } from "../contract/candles.ts";
import { trimDecimal } from "../contract/money.ts";
import { postgresErrorCode } from "../platform/postgres-errors.ts";
import type { Queryable } from "../platform/postgres.ts";

export interface CandleRange {
  readonly asset: string;
  readonly interval: CandleInterval;
  /** Candles opening at or after this time (ms); absent: the last `limit` candles up to `toMs`. */
  readonly fromMs?: number | undefined;
  /** Candles opening at or before this time (ms). */
  readonly toMs: number;
  readonly limit: number;
}

export interface CandlePoint {
  readonly openTime: string;
  readonly open: string;
  readonly high: string;
  readonly low: string;
  readonly close: string;
}

/**
 * The table an interval is merged from: the hourly rollup for whole hours, else the minutes. During a deploy the
 * functions may switch before any container has run the migration that makes candles_1h (docs/operations.md,
 * Deploying): until then readCandles merges those intervals from the minutes, as the release before did.
 */
type Table = "candles_1m" | "candles_1h";
const tableOf = (length: number): Table => (length % CANDLE_INTERVAL_MS["1h"] === 0 ? "candles_1h" : "candles_1m");

/** The start of the bucket that holds `time`, for $2 the interval's length. */
const bucketOf = (time: string) => `date_bin($2::interval, ${time}, TIMESTAMPTZ '1970-01-01 00:00:00Z')`;

/**
 * The rows of `table` in [`start`, `end`), merged per bucket, oldest first, at most $4 buckets. $3 is the end of the
 * bucket `to` falls in; $5 the start of the bucket `from` rounds up to.
 */
const merged = (table: Table, start: string, end: string) => `
  SELECT ${bucketOf("open_time")} AS open_time,
         (array_agg(open ORDER BY open_time))[1]::text AS open,
         max(high)::text AS high,
         min(low)::text AS low,
         (array_agg(close ORDER BY open_time DESC))[1]::text AS close
    FROM ${table}
   WHERE asset = $1 AND open_time >= ${start} AND open_time < ${end}
   GROUP BY 1
   ORDER BY 1
   LIMIT $4::int`;

/**
 * Where the last $4 buckets with a candle before $3 start (without `from`), or where the first $4 from $5 end (with
 * it). Each step is one index probe (the nearest row beyond the bucket found last), so intervals without quotes
 * (a feed that was down) are skipped at no cost, and the rows merged are only those of the candles returned.
 */
const lastBuckets = (table: Table) => `
  WITH RECURSIVE buckets(start, n) AS (
    SELECT (SELECT ${bucketOf("max(open_time)")} FROM ${table} WHERE asset = $1 AND open_time < $3::timestamptz), 1
    UNION ALL
    SELECT (SELECT ${bucketOf("max(open_time)")} FROM ${table} WHERE asset = $1 AND open_time < b.start), b.n + 1
      FROM buckets b
     WHERE b.start IS NOT NULL AND b.n < $4::int
  )
  ${merged(table, "(SELECT min(start) FROM buckets)", "$3::timestamptz")}`;

const firstBuckets = (table: Table) => `
  WITH RECURSIVE buckets(start, n) AS (
    SELECT (SELECT ${bucketOf("min(open_time)")} FROM ${table}
             WHERE asset = $1 AND open_time >= $5::timestamptz AND open_time < $3::timestamptz), 1
    UNION ALL
    SELECT (SELECT ${bucketOf("min(open_time)")} FROM ${table}
             WHERE asset = $1 AND open_time >= b.start + $2::interval AND open_time < $3::timestamptz), b.n + 1
      FROM buckets b
     WHERE b.start IS NOT NULL AND b.n < $4::int
  )
  ${merged(table, "$5::timestamptz", "(SELECT max(start) FROM buckets) + $2::interval")}`;

interface CandleRow {
  open_time: Date;
  open: string;
  high: string;
  low: string;
  close: string;
}

/** SQLSTATE undefined_table. */
const UNDEFINED_TABLE = "42P01";

/** No candle opens before the epoch (log times are Redis stream ids) or after this. */
const LATEST_MS = Date.UTC(9999, 11, 31);

export async function readCandles(db: Queryable, r: CandleRange): Promise<CandlePoint[]> {
  const length = CANDLE_INTERVAL_MS[r.interval];
  // Up to the end of the bucket `to` falls in: a candle opening at or before `to` is whole. Kept within years
  // Postgres and ISO strings both take (year 0 or 10000 are neither's); no candle lies outside them.
  const endMs = Math.min(candleOpenMs(r.toMs, r.interval) + length, LATEST_MS);
  if (endMs <= 0) return [];
  const params: unknown[] = [r.asset, `${length / 1000} seconds`];
  let sql = lastBuckets;
  params.push(new Date(endMs).toISOString(), r.limit);
  if (r.fromMs !== undefined) {
    // From the first bucket that opens at or after `from`: a bucket is never cut.
    const startMs = Math.max(Math.ceil(r.fromMs / length) * length, 0);
    if (startMs >= endMs) return [];
    sql = firstBuckets;
    params.push(new Date(startMs).toISOString());
  }
  const query = (table: Table) => db.query<CandleRow>(sql(table), params);
  const table = tableOf(length);
  const { rows } = await query(table).catch((err: unknown) => {
    // 42P01, undefined_table: the code of node-postgres's error and of Neon's NeonDbError over HTTP alike.
    if (table === "candles_1h" && postgresErrorCode(err) === UNDEFINED_TABLE) return query("candles_1m");
    throw err;
  });
  return rows.map((row) => ({
    openTime: row.open_time.toISOString(),
    open: trimDecimal(row.open),
    high: trimDecimal(row.high),
    low: trimDecimal(row.low),
    close: trimDecimal(row.close),
  }));
}
