-- Hourly candles, a rollup of candles_1m the worker keeps: one row per asset per UTC hour, the same columns merged by
-- the same rules as the minutes (010_candles.sql: high the greatest, low the least, open and close those of the
-- earliest and latest output, by open_output / close_output), so neither the order nor the repetition of its merges
-- changes a row. The API reads intervals of 1h and coarser from here: a 1d candle merges 24 rows, not 1,440.
--
-- The worker merges each minute it upserts, as stored after that upsert, into its hour in the same statement
-- (worker/candles.ts). Rows written before this table existed are merged below, from the minutes as they stand when
-- this migration runs. A worker of the release before may write minutes after that, without their hours, and of any
-- age: a deploy migrates from the engine while the old worker may still run, and that worker writes its Postgres
-- backlog, oldest first, beside the new minutes. So the first worker to start with this code merges every minute
-- again (candles_1h_merge_owed, below); the worker is stopped before the new one starts, so none of the old release
-- writes after that. Minutes that an old worker brought back by a rollback writes are merged at a later start only
-- if they lie after their asset's latest hour or within 6 hours (docs/operations.md, Deploying).
CREATE TABLE candles_1h (
  asset text NOT NULL,
  open_time timestamptz NOT NULL,
  open numeric(30, 10) NOT NULL,
  high numeric(30, 10) NOT NULL,
  low numeric(30, 10) NOT NULL,
  close numeric(30, 10) NOT NULL,
  open_output numeric(50, 0) NOT NULL,
  close_output numeric(50, 0) NOT NULL,
  PRIMARY KEY (asset, open_time),
  CONSTRAINT candles_1h_whole_hour CHECK (extract(epoch FROM open_time) % 3600 = 0),
  CONSTRAINT candles_1h_range CHECK (low <= open AND low <= close AND high >= open AND high >= close),
  CONSTRAINT candles_1h_outputs CHECK (open_output <= close_output)
);

INSERT INTO candles_1h (asset, open_time, open, high, low, close, open_output, close_output)
SELECT asset,
       date_bin('1 hour', open_time, TIMESTAMPTZ '1970-01-01 00:00:00Z'),
       (array_agg(open ORDER BY open_output))[1],
       max(high),
       min(low),
       (array_agg(close ORDER BY close_output DESC))[1],
       min(open_output),
       max(close_output)
  FROM candles_1m
 GROUP BY 1, 2;

-- One row while a merge of every minute into its hour is owed: the worker does it at start, in chunks, and deletes
-- the row once all are merged (worker/candles.ts, mergeHoursAtStart); a start that fails halfway leaves it owed.
-- An operator may insert the row again to have the next start merge everything once more.
CREATE TABLE candles_1h_merge_owed (
  owed boolean PRIMARY KEY DEFAULT true CHECK (owed)
);
INSERT INTO candles_1h_merge_owed DEFAULT VALUES;
