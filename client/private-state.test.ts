import { describe, expect, it } from "vitest";
import { applyEvent, stateFromSnapshot } from "./private-state.ts";
import type { EventFrame, OrderView, PrivateSnapshot, TradeView } from "./protocol.ts";

const trade = (id: string, quantity = "1"): TradeView => ({
  id,
  asset: "SOL",
  type: "short",
  margin: "30",
  leverage: 5,
  quantity,
  openPrice: "150",
  stopLoss: null,
  takeProfit: null,
  trailingStop: null,
  liquidationPrice: null,
  openedAt: "2026-12-05T10:00:00.000Z",
});
const order = (id: string, status: OrderView["status"]): OrderView => ({
  id,
  asset: "SOL",
  side: "long",
  type: "stop",
  price: "160",
  margin: "10",
  leverage: 2,
  stopLoss: null,
  takeProfit: null,
  trailingStop: null,
  expiresAt: null,
  ocoWith: null,
  status,
  placedAt: "2026-12-05T10:00:00.000Z",
  updatedAt: "2026-12-05T10:00:00.000Z",
  fillPrice: null,
  tradeId: null,
  reason: null,
});
const snapshot: PrivateSnapshot = {
  seq: 3,
  balances: { USD: "100" },
  trades: [trade("T0-1"), trade("T0-2")],
  orders: [order("P0-1", "pending")],
  summary: {
    balance: "140",
    equity: "140",
    marginUsed: "40",
    freeMargin: "100",
    marginLevel: "350",
    unrealizedPnl: "0",
    pricesMissing: [],
  },
};
let seq = 3;
const next = (body: Record<string, unknown>) =>
  ({ type: "event", seq: ++seq, time: "2026-12-05T10:01:00.000Z", ...body }) as EventFrame;

describe("the private state", () => {
  it("given a snapshot, each event moves it on by one and leaves the snapshot as it was", () => {
    const start = stateFromSnapshot(snapshot);
    expect([start.seq, [...start.trades.keys()], [...start.orders.keys()]]).toEqual([3, ["T0-1", "T0-2"], ["P0-1"]]);

    const events = [
      next({ event: "trade_updated", change: "partial_close", trade: trade("T0-1", "0.5") }),
      next({ event: "closed_order", trade: { ...trade("T0-1", "0.5"), remainingQuantity: "0.5" } }),
      next({ event: "closed_order", trade: { ...trade("T0-2"), remainingQuantity: "0" } }),
      next({ event: "order_updated", order: order("P0-1", "filled") }),
      next({ event: "trade_opened", trade: trade("T0-3") }),
      next({ event: "order_updated", order: order("P0-2", "pending") }),
      next({ event: "balances_changed", balances: { USD: "90", SOL: "1" } }),
    ];
    const end = events.reduce(applyEvent, start);

    expect(end.seq).toBe(10);
    expect([...end.trades.values()]).toEqual([trade("T0-1", "0.5"), trade("T0-3")]);
    expect([...end.orders.values()]).toEqual([order("P0-2", "pending")]);
    expect(end.balances).toEqual({ USD: "90", SOL: "1" });
    expect(end.summary).toBe(snapshot.summary);
    expect([...start.trades.keys()]).toEqual(["T0-1", "T0-2"]); // the earlier state is untouched
  });

  it("an event type newer than the client moves the seq on and changes nothing else", () => {
    const start = stateFromSnapshot(snapshot);
    const after = applyEvent(start, {
      type: "event",
      seq: 4,
      time: "2026-12-05T10:01:00.000Z",
      event: "margin_called",
    } as unknown as EventFrame);
    expect(after).toEqual({ ...start, seq: 4 });
  });
});
