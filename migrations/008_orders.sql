-- Pending entry orders and their life (placed, then filled, cancelled, expired or rejected at fill), written by the
-- worker from the engine's order_updated outputs: one row per order, upserted. An output carries the order's whole
-- view, so the row is replaced by a newer output and never by an older one: last_output_ms / _seq / _n are the
-- output id "<ms>-<seq>:<n>" in comparable parts (as text "999-0:1" would sort after "1000-0:1"), and the upsert
-- applies only when the incoming id is greater. Money and prices are exact numerics, never floats.
CREATE TABLE orders (
  id text PRIMARY KEY,
  user_id text NOT NULL,
  asset text NOT NULL,
  side text NOT NULL CHECK (side IN ('long', 'short')),
  type text NOT NULL CHECK (type IN ('limit', 'stop')),
  price numeric(30, 10) NOT NULL,
  margin numeric(30, 6) NOT NULL,
  leverage int NOT NULL,
  stop_loss numeric(30, 10),
  take_profit numeric(30, 10),
  -- The trailing stop the trade gets on fill: {"distance", "percent", "activationPrice"} as decimal strings or null.
  trailing_stop jsonb,
  expires_at timestamptz,
  oco_with text,
  status text NOT NULL CHECK (status IN ('pending', 'filled', 'cancelled', 'expired', 'rejected')),
  reason_code text,
  reason_message text,
  fill_price numeric(30, 10),
  trade_id text,
  placed_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  last_output_id text NOT NULL,
  last_output_ms bigint NOT NULL,
  last_output_seq bigint NOT NULL,
  last_output_n int NOT NULL
);

-- A user's order history newest placed first, paginated by keyset (placed_at, id) < (cursor). Placement time, not
-- the last change, so an order does not move between pages while a client pages through.
CREATE INDEX orders_user_newest ON orders (user_id, placed_at DESC, id DESC);
