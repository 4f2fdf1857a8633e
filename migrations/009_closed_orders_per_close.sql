-- One closed_orders row per close of a trade: a partial close is its own row, linked to the trade by `id` (the
-- trade id, no longer unique), keyed by `close_id` (the engine's closeId: the trade id for the close of what
-- remained, `<trade id>.<n>` for a partial close (n unique in the engine)). Existing rows are whole closes: close_id = id.
-- `remaining_quantity` is what stayed open after the close ("0" closes the trade); `loss_waived` the loss beyond
-- the margin that negative balance protection waived; `trailing_stop` the trade's trailing stop as it stood
-- ({"distance", "percent", "activationPrice", "activated", "bestPrice", "level"}), or null.
ALTER TABLE closed_orders ADD COLUMN close_id text;
UPDATE closed_orders SET close_id = id;
ALTER TABLE closed_orders ALTER COLUMN close_id SET NOT NULL;
ALTER TABLE closed_orders DROP CONSTRAINT closed_orders_pkey;
ALTER TABLE closed_orders ADD PRIMARY KEY (close_id);

ALTER TABLE closed_orders
  ADD COLUMN loss_waived numeric(30, 6),
  ADD COLUMN remaining_quantity numeric(30, 10) NOT NULL DEFAULT 0,
  ADD COLUMN trailing_stop jsonb;

ALTER TABLE closed_orders DROP CONSTRAINT closed_orders_close_reason_check;
ALTER TABLE closed_orders ADD CONSTRAINT closed_orders_close_reason_check
  CHECK (close_reason IN ('manual', 'stop_loss', 'take_profit', 'trailing_stop', 'liquidation'));

-- History pages by (closed_at, close_id): a trade's partial closes share its id.
DROP INDEX closed_orders_user_newest;
CREATE INDEX closed_orders_user_newest ON closed_orders (user_id, closed_at DESC, close_id DESC);
-- A trade's closes, for the API's answer to a request on a trade that is already closed.
CREATE INDEX closed_orders_trade ON closed_orders (id);
