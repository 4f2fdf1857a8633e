/**
 * The 1-minute candles of the engine's quotes (contract/candles.ts), written to Postgres with the batch's history
 * (migrations/010_candles.sql: why each column's merge is safe under replay and out-of-order batches).
 *
 * A batch may hold thousands of quotes; they are folded per asset per minute here first, so Postgres gets one row
 * per candle the batch touches, all in one statement. Every candle the batch touched is returned as stored after
 * the merge, changed or not: a batch retried after a crash between this write and its fan-out sends its candles
 * out again. Each carries the orders of the outputs its open and close came from (`outputOrder`, in decimal): two
 * workers' rows of one minute may be fanned out in either order, and the stream keeps the later (stream/candles.ts).
 */
import { candleOpenMs, storedCandle, type Candle } from "../contract/candles.ts";
import { ASSET_BY_SYMBOL } from "../contract/markets.ts";
import type { EngineOutput, OutputOf } from "../contract/messages.ts";
import { formatUnits, toUnits } from "../contract/money.ts";
import type { Queryable } from "../platform/postgres.ts";
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

export async function writeCandles(db: Queryable, outputs: readonly EngineOutput[]): Promise<CandleView[]> {
  const folds = foldQuotes(outputs);
  if (folds.length === 0) return [];
  const price = (f: Fold, ticks: number) => formatUnits(ticks, f.decimals);
  const { rows } = await db.query<CandleRow>(
    `INSERT INTO candles_1m AS c (asset, open_time, open, high, low, close, open_output, close_output)
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[],
                          $6::numeric[], $7::numeric[], $8::numeric[])
     ON CONFLICT (asset, open_time) DO UPDATE SET
       open = CASE WHEN EXCLUDED.open_output < c.open_output THEN EXCLUDED.open ELSE c.open END,
       open_output = least(c.open_output, EXCLUDED.open_output),
       high = greatest(c.high, EXCLUDED.high),
       low = least(c.low, EXCLUDED.low),
       close = CASE WHEN EXCLUDED.close_output > c.close_output THEN EXCLUDED.close ELSE c.close END,
       close_output = greatest(c.close_output, EXCLUDED.close_output)
     RETURNING asset, open_time, open::text, high::text, low::text, close::text, open_output::text,
               close_output::text`,
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
  return rows.map((r) => ({
    ...storedCandle(r.asset, "1m", r.open_time.toISOString(), r),
    interval: "1m",
    openOutput: r.open_output,
    closeOutput: r.close_output,
  }));
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

/** The batch's quotes merged per asset per minute (by the quote's `updatedAt`), by the same rules as the upsert. */
export function foldQuotes(outputs: readonly EngineOutput[]): Fold[] {
  const folds = new Map<string, Fold>();
  for (const o of outputs) {
    if (o.type !== "quote_updated") continue;
    const { bid, order, decimals, openMs } = quoteFacts(o);
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
  return [...folds.values()];
}

function quoteFacts(o: OutputOf<"quote_updated">) {
  const decimals = ASSET_BY_SYMBOL.get(o.asset)?.priceDecimals;
  if (decimals === undefined) throw new Error(`quote ${o.id} of an unknown asset ${o.asset}`);
  const bid = toUnits(o.bid, decimals, Number.MAX_SAFE_INTEGER);
  const at = Date.parse(o.updatedAt);
  if (bid < 0 || Number.isNaN(at))
    throw new Error(`quote ${o.id}: bid ${o.bid} or updatedAt ${o.updatedAt} unreadable`);
  return { bid, order: outputOrder(o.id), decimals, openMs: candleOpenMs(at, "1m") };
}

const N_LIMIT = 10n ** 10n;

/** An output id "<ms>-<seq>:<n>" as one number that sorts as the ids do: ms × 10^30 + seq × 10^10 + n. */
export function outputOrder(id: string): bigint {
  const [ms, seq, n] = outputIdParts(id).map(BigInt) as [bigint, bigint, bigint];
  if (n >= N_LIMIT || seq >= 10n ** 20n) throw new Error(`output id ${id} is beyond the candles' ordering`);
  return ms * 10n ** 30n + seq * N_LIMIT + n;
}
