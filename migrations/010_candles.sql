-- 1-minute candles of the engine's quotes (quote_updated), written by the worker: one row per asset per minute,
-- prices the BID, open_time the minute's start in UTC (the quote's updatedAt, rounded down). Coarser intervals are
-- merged from these rows when read. Prices are exact numerics, never floats.
--
-- The worker may apply an output twice (a replay) or an older batch after newer ones (a claimed batch), so every
-- column is merged in a way that neither order nor repetition changes: high the greatest, low the least, open the
-- price of the earliest output in the minute and close that of the latest. Which output came first is decided by
-- its id "<ms>-<seq>:<n>" (as text "999-0:1" would sort after "1000-0:1"), stored as one sortable number,
-- ms × 10^30 + seq × 10^10 + n (a Redis stream seq is below 2^64 < 10^20; n below 10^10, the worker checks).
CREATE TABLE candles_1m (
  asset text NOT NULL,
  open_time timestamptz NOT NULL,
  open numeric(30, 10) NOT NULL,
  high numeric(30, 10) NOT NULL,
  low numeric(30, 10) NOT NULL,
  close numeric(30, 10) NOT NULL,
  open_output numeric(50, 0) NOT NULL,
  close_output numeric(50, 0) NOT NULL,
  PRIMARY KEY (asset, open_time),
  CONSTRAINT candles_1m_whole_minute CHECK (extract(epoch FROM open_time) % 60 = 0),
  CONSTRAINT candles_1m_range CHECK (low <= open AND low <= close AND high >= open AND high >= close),
  CONSTRAINT candles_1m_outputs CHECK (open_output <= close_output)
);
-- The primary key is also the index a chart's read scans: one asset's minutes in a time range, in order.
