-- Closed-trade history, written by the worker from the engine's closed_order outputs. Money and prices are exact
-- numerics, never floats. id is the engine's trade id (e.g. T0-42) and output_id the engine output's deterministic
-- id, so a replay that re-emits an output inserts nothing (ON CONFLICT DO NOTHING). user_id is text because the
-- engine's user ids are opaque strings.
CREATE TABLE closed_orders (
  id text PRIMARY KEY,
  user_id text NOT NULL,
  asset text NOT NULL,
  type text NOT NULL CHECK (type IN ('long', 'short')),
  margin numeric(30, 6) NOT NULL,
  leverage int NOT NULL,
  quantity numeric(30, 10) NOT NULL,
  open_price numeric(30, 10) NOT NULL,
  close_price numeric(30, 10) NOT NULL,
  stop_loss numeric(30, 10),
  take_profit numeric(30, 10),
  liquidation_price numeric(30, 10),
  pnl numeric(30, 6) NOT NULL,
  close_reason text NOT NULL CHECK (close_reason IN ('manual', 'stop_loss', 'take_profit', 'liquidation')),
  opened_at timestamptz NOT NULL,
  closed_at timestamptz NOT NULL,
  output_id text NOT NULL UNIQUE
);

-- A user's history newest first, paginated by keyset (closed_at, id) < (cursor): an index scan, no sort, no OFFSET.
CREATE INDEX closed_orders_user_newest ON closed_orders (user_id, closed_at DESC, id DESC);
