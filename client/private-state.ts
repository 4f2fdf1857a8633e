/**
 * A user's private state as a client keeps it: a snapshot (or resync) replaces it, and each event, applied in seq
 * order, moves it on by one. Pure functions on plain data: the stream client holds the current value, and a
 * consumer may replay a log of frames through the same functions.
 *
 * What each event does:
 * - trade_opened, trade_updated → the trade, put by id (a partial close arrives as a trade_updated with what stays)
 * - closed_order with `remainingQuantity` "0" → the trade removed; a partial close's closed_order changes nothing
 * - order_updated → a pending order put by id; any other status (filled, cancelled, …) removes it
 * - balances_changed → the balances replaced
 * The summary comes in its own frames and is kept as the latest one.
 */
import type { AccountSummary, Balances, EventFrame, OrderView, PrivateSnapshot, TradeView } from "./protocol.ts";

export interface PrivateState {
  /** The last event applied (the snapshot's seq before any). */
  readonly seq: number;
  readonly balances: Balances;
  /** Open trades by id. */
  readonly trades: ReadonlyMap<string, TradeView>;
  /** Pending entry orders by id. */
  readonly orders: ReadonlyMap<string, OrderView>;
  readonly summary: AccountSummary;
}

export function stateFromSnapshot(snapshot: PrivateSnapshot): PrivateState {
  return {
    seq: snapshot.seq,
    balances: snapshot.balances,
    trades: new Map(snapshot.trades.map((t) => [t.id, t])),
    orders: new Map(snapshot.orders.map((o) => [o.id, o])),
    summary: snapshot.summary,
  };
}

/** The state after `event`, which must be the next one (seq = state.seq + 1: the caller checks). */
export function applyEvent(state: PrivateState, event: EventFrame): PrivateState {
  const next = { ...state, seq: event.seq };
  switch (event.event) {
    case "trade_opened":
    case "trade_updated":
      return { ...next, trades: withEntry(state.trades, event.trade.id, event.trade) };
    case "closed_order":
      return isZero(event.trade.remainingQuantity)
        ? { ...next, trades: withoutEntry(state.trades, event.trade.id) }
        : next;
    case "order_updated":
      return {
        ...next,
        orders:
          event.order.status === "pending"
            ? withEntry(state.orders, event.order.id, event.order)
            : withoutEntry(state.orders, event.order.id),
      };
    case "balances_changed":
      return { ...next, balances: event.balances };
    default:
      // An event type newer than this client (the server sends every event on, so seqs stay contiguous): its seq
      // is taken, its content left to a later snapshot or to the whole views later events carry.
      return next;
  }
}

/** "0", "0.0", "0.000": the engine writes "0", but a decimal's zero has more spellings. */
function isZero(decimal: string): boolean {
  return /^0+(\.0+)?$/.test(decimal);
}

function withEntry<V>(map: ReadonlyMap<string, V>, id: string, value: V): ReadonlyMap<string, V> {
  const copy = new Map(map);
  copy.set(id, value);
  return copy;
}

function withoutEntry<V>(map: ReadonlyMap<string, V>, id: string): ReadonlyMap<string, V> {
  if (!map.has(id)) return map;
  const copy = new Map(map);
  copy.delete(id);
  return copy;
}
