/**
 * The 1-minute candles of the engine's quotes (contract/candles.ts), written to Postgres with the batch's history
 * (migrations/010_candles.sql: why each column's merge is safe under replay and out-of-order batches).
 *
 * A batch may hold thousands of quotes; they are folded per asset per minute here first, so Postgres gets one row
 * per candle the batch touches, all in one statement. The rows go in (asset, minute) order: the upsert locks them in
 * the order given, and two workers (a batch claimed from a worker still writing it) upserting the same minutes in
 * orders of their own would deadlock. Every candle the batch touched is returned (in that order) as stored after the
 * merge, changed or not: a batch retried after a crash between this write and its fan-out sends its candles out
 * again. Each carries the orders of the outputs its open and close came from (`outputOrder`, in decimal): two
 * workers' rows of one minute may be fanned out in either order, and the stream keeps the later (stream/candles.ts).
 *
 * In the same statement each minute, as stored after its upsert, is merged into its hour in candles_1h
 * (migrations/012_candles_1h.sql), by the same rules: the stored minute carries its open and close outputs, so the
 * hour is the merge of all its minutes whatever order they came in, and merging a minute again changes nothing.
 *
 * A quote that cannot make a candle (an asset not listed here, a bid finer than the asset's price decimals, an
 * unreadable time) is logged as `candle_quote_skipped` and left out: no retry of the batch could chart it, and
 * failing the batch would hold back everything after it. For the same reason a row the upsert returns that cannot be
 * given as prices of its asset (one stored at finer ticks before the asset's priceDecimals was made coarser, within
 * that minute) is logged as `candle_row_skipped` and not fanned out; it stays in Postgres as it is.
 */
import { CANDLE_INTERVAL_MS, candleOpenMs, storedCandle, type Candle } from "../contract/candles.ts";
import { ASSET_BY_SYMBOL, ASSETS } from "../contract/markets.ts";
import type { EngineOutput, OutputOf } from "../contract/messages.ts";
import { formatUnits, toUnits } from "../contract/money.ts";
import type { Logger } from "../platform/log.ts";
import type { Queryable } from "../platform/postgres.ts";
import { sortedBy } from "./key-order.ts";
import { outputIdParts } from "./read-models.ts";

export type CandleView = Candle & {
  readonly interval: "1m";
  readonly openOutput: string;
  readonly closeOutput: string;
};

/** One candle of the batch, prices in ticks; `openOutput` / `closeOutput` order outputs (see outputOrder). */
interface Fold {
  readonly asset: string;
  readonly openMs: number;
  readonly decimals: number;
  open: number;
  openOutput: bigint;
  high: number;
  low: number;
  close: number;
  closeOutput: bigint;
}

export async function writeCandles(
  db: Queryable,
  outputs: readonly EngineOutput[],
  log: Logger,
): Promise<CandleView[]> {
  const { folds, skipped } = foldQuotes(outputs);
  for (const { id, reason } of skipped) log.error("candle_quote_skipped", { id, reason });
  if (folds.length === 0) return [];
  const price = (f: Fold, ticks: number) => formatUnits(ticks, f.decimals);
  const { rows } = await db.query<CandleRow>(
    `WITH minutes AS (
       INSERT INTO candles_1m AS c (asset, open_time, open, high, low, close, open_output, close_output)
       SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[],
                            $6::numeric[], $7::numeric[], $8::numeric[])
       ON CONFLICT (asset, open_time) DO UPDATE SET ${MERGED("c")}
       RETURNING *
     ), hours AS (${MERGE_INTO_HOURS("minutes")})
     SELECT asset, open_time, open::text, high::text, low::text, close::text, open_output::text, close_output::text
       FROM minutes
      ORDER BY asset, open_time`,
    [
      folds.map((f) => f.asset),
      folds.map((f) => new Date(f.openMs).toISOString()),
      folds.map((f) => price(f, f.open)),
      folds.map((f) => price(f, f.high)),
      folds.map((f) => price(f, f.low)),
      folds.map((f) => price(f, f.close)),
      folds.map((f) => String(f.openOutput)),
      folds.map((f) => String(f.closeOutput)),
    ],
  );
  const candles: CandleView[] = [];
  for (const r of rows) {
    const openTime = r.open_time.toISOString();
    let candle: Candle;
    try {
      candle = storedCandle(r.asset, "1m", openTime, r);
    } catch (err) {
      log.warn("candle_row_skipped", { asset: r.asset, openTime, reason: (err as Error).message });
      continue;
    }
    candles.push({ ...candle, interval: "1m", openOutput: r.open_output, closeOutput: r.close_output });
  }
  return candles;
}

interface CandleRow {
  asset: string;
  open_time: Date;
  open: string;
  high: string;
  low: string;
  close: string;
  open_output: string;
  close_output: string;
}

/**
 * The SET of an upsert into a candles table aliased `t` (a row already there): each column merged with EXCLUDED by
 * the rules of migrations/010_candles.sql, so neither order nor repetition changes the result.
 */
const MERGED = (t: string) => `
  open = CASE WHEN EXCLUDED.open_output < ${t}.open_output THEN EXCLUDED.open ELSE ${t}.open END,
  open_output = least(${t}.open_output, EXCLUDED.open_output),
  high = greatest(${t}.high, EXCLUDED.high),
  low = least(${t}.low, EXCLUDED.low),
  close = CASE WHEN EXCLUDED.close_output > ${t}.close_output THEN EXCLUDED.close ELSE ${t}.close END,
  close_output = greatest(${t}.close_output, EXCLUDED.close_output)`;

/**
 * Merges the 1m rows of `minutes` (a table or CTE with candles_1m's columns) into their hours in candles_1h
 * (migrations/012_candles_1h.sql) by the same rules: first per hour among themselves (an upsert may change a row only
 * once), then into the stored hour. The hours go in (asset, hour) order, as the minutes do: the same lock order in
 * every writer.
 */
const MERGE_INTO_HOURS = (minutes: string) => `
  INSERT INTO candles_1h AS h (asset, open_time, open, high, low, close, open_output, close_output)
  SELECT asset, date_bin('1 hour', open_time, TIMESTAMPTZ '1970-01-01 00:00:00Z'),
         (array_agg(open ORDER BY open_output))[1], max(high), min(low),
         (array_agg(close ORDER BY close_output DESC))[1], min(open_output), max(close_output)
    FROM ${minutes}
   GROUP BY 1, 2
   ORDER BY 1, 2
  ON CONFLICT (asset, open_time) DO UPDATE SET ${MERGED("h")}`;

/**
 * Merges minutes into their hours again at the worker's start, after migrating (worker/main.ts): every minute, once,
 * when that is owed (a row in candles_1h_merge_owed, which migrations/012_candles_1h.sql writes: the first start of a
 * worker that keeps the hours), else the recent ones (mergeRecentHours). Returns the hours written.
 *
 * A worker of the release before candles_1h writes minutes without their hours, and after the migration ran it may
 * write ones of any age: its Postgres backlog goes beside the new minutes, oldest first, hours behind them. The
 * worker is deployed stop-then-start (docs/operations.md, Deploying), so once this one has started no old worker
 * writes: merging every minute then leaves none behind.
 */
export async function mergeHoursAtStart(db: Queryable, nowMs: number, log: Logger): Promise<number> {
  const { rowCount } = await db.query("SELECT 1 FROM candles_1h_merge_owed");
  return (rowCount ?? 0) === 0 ? mergeRecentHours(db, nowMs, log) : mergeAllHours(db, log);
}

/**
 * The minutes of one asset a statement of mergeAllHours merges at most: a week's, 10,080 rows (one per minute), about
 * 15 ms on a local Postgres, far below the worker's query timeout (worker/main.ts) however long the history.
 */
export const MERGE_CHUNK_MS = 7 * 24 * 60 * 60_000;

/** The minutes of asset $1 in [$2, $3). */
const CHUNK = `(SELECT * FROM candles_1m
                 WHERE asset = $1 AND open_time >= $2::timestamptz AND open_time < $3::timestamptz) AS chunk`;

/**
 * Merges every stored minute into its hour, per asset and per MERGE_CHUNK_MS of time (epoch-aligned, so whole
 * hours), each chunk its own statement; then deletes the owed row. Every merge is idempotent: a start that fails or is
 * killed halfway leaves the row, and the next start merges everything again.
 */
async function mergeAllHours(db: Queryable, log: Logger): Promise<number> {
  const startedAt = performance.now();
  // Each asset in the minutes (one index probe per asset) and the span of its minutes.
  const { rows: spans } = await db.query<{ asset: string; first: Date; last: Date }>(
    `WITH RECURSIVE assets(asset) AS (
       SELECT min(asset) FROM candles_1m
       UNION ALL
       SELECT (SELECT min(asset) FROM candles_1m WHERE asset > a.asset) FROM assets a WHERE a.asset IS NOT NULL
     )
     SELECT asset,
            (SELECT min(open_time) FROM candles_1m m WHERE m.asset = a.asset) AS first,
            (SELECT max(open_time) FROM candles_1m m WHERE m.asset = a.asset) AS last
       FROM assets a
      WHERE asset IS NOT NULL
      ORDER BY asset`,
  );
  let hours = 0;
  let chunks = 0;
  for (const { asset, first, last } of spans) {
    const start = Math.floor(first.getTime() / MERGE_CHUNK_MS) * MERGE_CHUNK_MS;
    for (let from = start; from <= last.getTime(); from += MERGE_CHUNK_MS) {
      const range = [new Date(from).toISOString(), new Date(from + MERGE_CHUNK_MS).toISOString()];
      const { rowCount } = await db.query(MERGE_INTO_HOURS(CHUNK), [asset, ...range]);
      hours += rowCount ?? 0;
      chunks++;
    }
  }
  await db.query("DELETE FROM candles_1h_merge_owed");
  log.info("candle_hours_merged", { hours, full: true, chunks, ms: Math.round(performance.now() - startedAt) });
  return hours;
}

/** How far back a worker's start re-merges minutes into their hours at least (mergeRecentHours). */
export const REMERGE_HOURS = 6;

/**
 * Merges again into candles_1h every stored minute of each listed asset from its latest hour there, or from
 * REMERGE_HOURS before `nowMs` if that is earlier: the recent minutes a worker of the release before candles_1h wrote
 * without their hours after a rollback are in them again. Idempotent, like every merge. Returns the hours written.
 */
export async function mergeRecentHours(db: Queryable, nowMs: number, log: Logger): Promise<number> {
  const startedAt = performance.now();
  const hour = CANDLE_INTERVAL_MS["1h"];
  const since = new Date(candleOpenMs(nowMs, "1h") - REMERGE_HOURS * hour).toISOString();
  const { rowCount } = await db.query(
    `WITH starts AS (
       SELECT a.asset, least($2::timestamptz, (SELECT max(open_time) FROM candles_1h WHERE asset = a.asset)) AS start
         FROM unnest($1::text[]) AS a(asset)
     ), minutes AS (
       SELECT m.* FROM starts s JOIN candles_1m m ON m.asset = s.asset AND m.open_time >= s.start
     )
     ${MERGE_INTO_HOURS("minutes")}`,
    [ASSETS.map((a) => a.symbol), since],
  );
  const hours = rowCount ?? 0;
  log.info("candle_hours_merged", { hours, full: false, since, ms: Math.round(performance.now() - startedAt) });
  return hours;
}

/** A quote that makes no candle, and why. */
export interface SkippedQuote {
  readonly id: string;
  readonly reason: string;
}

/**
 * The batch's quotes merged per asset per minute (by the quote's `updatedAt`), by the same rules as the upsert, in
 * (asset, minute) order; and the quotes that make no candle.
 */
export function foldQuotes(outputs: readonly EngineOutput[]): { folds: Fold[]; skipped: SkippedQuote[] } {
  const folds = new Map<string, Fold>();
  const skipped: SkippedQuote[] = [];
  for (const o of outputs) {
    if (o.type !== "quote_updated") continue;
    const facts = quoteFacts(o);
    if (typeof facts === "string") {
      skipped.push({ id: o.id, reason: facts });
      continue;
    }
    const { bid, order, decimals, openMs } = facts;
    const key = `${o.asset} ${openMs}`;
    const fold = folds.get(key);
    if (fold === undefined) {
      const prices = { open: bid, high: bid, low: bid, close: bid };
      folds.set(key, { asset: o.asset, openMs, decimals, ...prices, openOutput: order, closeOutput: order });
      continue;
    }
    if (order < fold.openOutput) [fold.open, fold.openOutput] = [bid, order];
    if (order > fold.closeOutput) [fold.close, fold.closeOutput] = [bid, order];
    fold.high = Math.max(fold.high, bid);
    fold.low = Math.min(fold.low, bid);
  }
  return { folds: sortedBy([...folds.values()], (f) => [f.asset, f.openMs]), skipped };
}

/** What a candle needs of a quote, or why it cannot have it. */
function quoteFacts(o: OutputOf<"quote_updated">) {
  const decimals = ASSET_BY_SYMBOL.get(o.asset)?.priceDecimals;
  if (decimals === undefined) return `asset ${o.asset} is not listed`;
  const bid = toUnits(o.bid, decimals, Number.MAX_SAFE_INTEGER);
  if (bid < 0) return `bid ${o.bid} is not a price of the asset (priceDecimals ${decimals})`;
  const at = Date.parse(o.updatedAt);
  if (Number.isNaN(at)) return `updatedAt ${o.updatedAt} is not a time`;
  const order = outputOrder(o.id);
  if (order === undefined) return "its output id is beyond the candles' ordering";
  return { bid, order, decimals, openMs: candleOpenMs(at, "1m") };
}

const N_LIMIT = 10n ** 10n;

/**
 * An output id "<ms>-<seq>:<n>" as one number that sorts as the ids do: ms × 10^30 + seq × 10^10 + n; undefined
 * when seq or n is too big for that.
 */
export function outputOrder(id: string): bigint | undefined {
  const [ms, seq, n] = outputIdParts(id).map(BigInt) as [bigint, bigint, bigint];
  if (n >= N_LIMIT || seq >= 10n ** 20n) return undefined;
  return ms * 10n ** 30n + seq * N_LIMIT + n;
}
