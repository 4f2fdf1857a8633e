-- Spot market order history, written by the worker from the engine's spot_order answers (order_response). Money,
-- prices and quantities are exact numerics, never floats. id is the engine's order id (e.g. O0-7) and output_id the
-- engine output's deterministic id: a replay re-emits the same output, and a retried request gets its first answer
-- again under a new output id but with the same order; either inserts nothing (ON CONFLICT DO NOTHING).
CREATE TABLE spot_orders (
  id text PRIMARY KEY,
  user_id text NOT NULL,
  asset text NOT NULL,
  side text NOT NULL CHECK (side IN ('buy', 'sell')),
  quantity numeric(30, 10) NOT NULL,
  price numeric(30, 10) NOT NULL,
  total numeric(30, 6) NOT NULL,
  executed_at timestamptz NOT NULL,
  output_id text NOT NULL UNIQUE
);

-- A user's orders newest first, paginated by keyset (executed_at, id) < (cursor): an index scan, no sort, no OFFSET.
CREATE INDEX spot_orders_user_newest ON spot_orders (user_id, executed_at DESC, id DESC);
