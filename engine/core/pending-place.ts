/**
 * Placing pending entry orders (`place_order`, `place_oco`) and cancelling them (`cancel_order`).
 *
 * An order is checked as a trade opened at its own price would be (asset, leverage, margin, notional, a quantity
 * of at least one step; long SL < price < TP, short TP < price < SL, a stop-loss not beyond the liquidation level
 * at that price), then against the market: it needs a tradable quote and must not fill on it at once
 * (WOULD_FILL_NOW). Its margin is reserved from free USD (pending-book.ts). Answers are remembered whole
 * (receipts.ts, `remembered`): these instructions are rare next to ticks and opens.
 */
import type { EntryOrder, Instruction } from "../../contract/messages.ts";
import { formatUnits, formatUsd, toUnits } from "../../contract/money.ts";
import type { RejectionCode } from "../../contract/rejections.ts";
import { addPendingOrder, fillsAt, leaveUnfilled, makePendingOrder } from "./pending-book.ts";
import { orderView } from "./pending-view.ts";
import { tradableQuote } from "./quotes.ts";
import { isRefusal, priceRule, refuse, refuseField, remembered, type Outcome } from "./receipts.ts";
import {
  amountsOf,
  assetAt,
  pendingOrderSeq,
  type Account,
  type EngineState,
  type PendingOrderFacts,
} from "./state.ts";
import { emitBalancesChanged, emitOrderUpdated, isoTime, type Step } from "./step.ts";
import { refuseLiquidatable, sizeTrade, wouldLiquidate } from "./opening.ts";
import { readOrder } from "./trading.ts";
import { balancesView } from "./views.ts";

type PlaceOrder = Extract<Instruction, { kind: "place_order" }>;
type PlaceOco = Extract<Instruction, { kind: "place_oco" }>;

/** An entry order checked and read into numbers, before it has a sequence number. */
type Entry = Omit<PendingOrderFacts, "seq">;

export function placeOrder(state: EngineState, step: Step, account: Account, instruction: PlaceOrder): Outcome {
  const entry = readEntry(state, step, instruction);
  if (isRefusal(entry)) return entry;
  const refused = checkAccount(state, account, 1, entry.marginMicros);
  if (refused !== undefined) return refused;
  const order = makePendingOrder(account, { ...entry, seq: state.nextSeq++ });
  account.usd -= order.marginMicros;
  addPendingOrder(state, order);
  const view = orderView(state, order, { status: "pending", atMs: step.nowMs });
  emitOrderUpdated(step, account, view);
  const balances = balancesView(state, amountsOf(account));
  emitBalancesChanged(step, account, balances);
  return remembered({ ok: true, result: { kind: "place_order", order: view, balances } });
}

/**
 * Two orders linked one-cancels-other. Each is checked as by place_order (a refusal names its leg); together they
 * reserve the larger of their margins. The first leg gets the lower sequence number, which decides which fills when
 * one quote would fill both (pending-fill.ts).
 */
export function placeOco(state: EngineState, step: Step, account: Account, instruction: PlaceOco): Outcome {
  // Either leg's trailing stop before any other check of either (readEntry says why).
  if (instruction.legs[0].trailingStop === undefined && instruction.legs[1].trailingStop !== undefined) {
    return inLeg(trailingUnsupported(), 1);
  }
  const first = readEntry(state, step, instruction.legs[0]);
  if (isRefusal(first)) return inLeg(first, 0);
  const second = readEntry(state, step, instruction.legs[1]);
  if (isRefusal(second)) return inLeg(second, 1);
  const reserve = Math.max(first.marginMicros, second.marginMicros);
  const refused = checkAccount(state, account, 2, reserve);
  if (refused !== undefined) return refused;
  const a = makePendingOrder(account, { ...first, seq: state.nextSeq++ });
  const b = makePendingOrder(account, { ...second, seq: state.nextSeq++ });
  a.oco = b;
  b.oco = a;
  account.usd -= reserve;
  addPendingOrder(state, a);
  addPendingOrder(state, b);
  const views = [
    orderView(state, a, { status: "pending", atMs: step.nowMs }),
    orderView(state, b, { status: "pending", atMs: step.nowMs }),
  ] as const;
  for (const view of views) emitOrderUpdated(step, account, view);
  const balances = balancesView(state, amountsOf(account));
  emitBalancesChanged(step, account, balances);
  return remembered({ ok: true, result: { kind: "place_oco", orders: [views[0], views[1]], balances } });
}

/** Cancels one pending order of the user's; an OCO partner stays pending on its own. */
export function cancelOrder(state: EngineState, step: Step, account: Account, id: string): Outcome {
  // Another user's order, or one no longer pending, is indistinguishable from a missing one.
  const order = account.pendingOrders.get(pendingOrderSeq(state.params.shard, id));
  if (order === undefined)
    return refuseField("ORDER_NOT_FOUND", "orderId", "the id of a pending order of this account", JSON.stringify(id));
  const { view, balances } = leaveUnfilled(state, step, order, {
    status: "cancelled",
    atMs: step.nowMs,
    reason: { code: "USER_CANCELLED", message: "Cancelled by the user." },
  });
  return remembered({ ok: true, result: { kind: "cancel_order", order: view, balances } });
}

function checkAccount(state: EngineState, account: Account, orders: number, reserve: number): Outcome | undefined {
  const max = state.params.maxPendingOrdersPerUser;
  const n = account.pendingOrders.size;
  if (n + orders > max) {
    const pair = orders === 1 ? "" : `, and a pair adds ${orders}`;
    return refuse("TOO_MANY_PENDING_ORDERS", `The limit is ${max}; ${n} ${n === 1 ? "is" : "are"} pending${pair}.`);
  }
  if (reserve > account.usd) {
    return refuse(
      "INSUFFICIENT_BALANCE",
      `It reserves ${formatUsd(reserve)} USD of margin; ${formatUsd(account.usd)} USD is free.`,
    );
  }
  return undefined;
}

/** Checks an entry order: its terms at its own price, its expiry, then against the current quote. */
function readEntry(state: EngineState, step: Step, e: EntryOrder): Entry | Outcome {
  // Trailing stops on pending orders are refused here, and only here, until an order can carry the terms to its
  // fill. First, whatever the terms or the rest of the order: a user told what is wrong with them would fix them only
  // to be refused anyway.
  if (e.trailingStop !== undefined) return trailingUnsupported();
  const order = readOrder(state, e);
  if (isRefusal(order)) return order;
  const asset = assetAt(state, order.assetIndex);
  const d = asset.priceDecimals;
  const priceTicks = toUnits(e.price, d, asset.maxPriceTicks);
  if (priceTicks <= 0) {
    return refuse("INVALID_PRICE", `Use ${priceRule(asset)}; received ${e.price}.`);
  }
  const expiresAtMs = e.expiresAtMs ?? 0;
  if (e.expiresAtMs !== undefined) {
    const latest = step.nowMs + state.params.maxOrderExpiryMs;
    if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs <= step.nowMs || expiresAtMs > latest) {
      return refuse(
        "INVALID_EXPIRY",
        `Allowed: after ${isoTime(step.nowMs)}, up to ${isoTime(latest)}; received ${asTime(expiresAtMs)}.`,
      );
    }
  }
  const size = sizeTrade(state, order, priceTicks);
  if (isRefusal(size)) return size;
  const price = (ticks: number) => formatUnits(ticks, d);
  const { isLong, stopLossTicks: sl, takeProfitTicks: tp } = order;
  const liquidation = size.liquidationTicks;
  if (sl !== 0 && (isLong ? sl >= priceTicks : sl <= priceTicks)) {
    return refuse(
      "INVALID_STOP_LOSS",
      `A ${isLong ? "long's stop-loss must be below" : "short's stop-loss must be above"} the order price ` +
        `${price(priceTicks)}; stopLoss ${price(sl)} is not.`,
    );
  }
  if (tp !== 0 && (isLong ? tp <= priceTicks : tp >= priceTicks)) {
    return refuse(
      "INVALID_TAKE_PROFIT",
      `A ${isLong ? "long's take-profit must be above" : "short's take-profit must be below"} the order price ` +
        `${price(priceTicks)}; takeProfit ${price(tp)} is not.`,
    );
  }
  if (wouldLiquidate(isLong, priceTicks, priceTicks, liquidation))
    return refuseLiquidatable(asset, order, priceTicks, liquidation);
  if (sl !== 0 && liquidation !== 0 && (isLong ? sl < liquidation : sl > liquidation)) {
    return refuse(
      "INVALID_STOP_LOSS",
      `stopLoss ${price(sl)} is ${isLong ? "below" : "above"} the liquidation price ${price(liquidation)} of a ` +
        `trade opened at the order price ${price(priceTicks)}, so it could never fire.`,
    );
  }
  const quote = tradableQuote(state, step, order.assetIndex);
  if (isRefusal(quote)) return quote;
  const entry: Entry = {
    assetIndex: order.assetIndex,
    isLong,
    isStop: e.type === "stop",
    priceTicks,
    marginMicros: order.marginMicros,
    leverage: order.leverage,
    stopLossTicks: sl,
    takeProfitTicks: tp,
    expiresAtMs,
    placedAtMs: step.nowMs,
  };
  if (fillsAt(entry, quote.bidTicks, quote.askTicks)) {
    const watched = isLong ? `ask ${price(quote.askTicks)}` : `bid ${price(quote.bidTicks)}`;
    return refuse(
      "WOULD_FILL_NOW",
      `A ${e.side} ${e.type} at ${price(priceTicks)} would fill at the current ${watched}.`,
    );
  }
  return entry;
}

/**
 * A leg's refusal, its message naming the leg as the API names a field in it (`legs.0`, `legs.1`: the index in the
 * request's `legs` array), so a client reads one notation for the API's checks and the engine's.
 */
const trailingUnsupported = () =>
  refuse("INVALID_TRAILING_STOP", "A trailing stop is not supported on pending orders yet.");

const FIELD_FIRST = /^[a-zA-Z][\w.]*: expected /;

function inLeg(outcome: Outcome, leg: 0 | 1): Outcome {
  const { receipt } = outcome;
  if (receipt.kind !== "rejected") return outcome;
  const code: RejectionCode = receipt.code;
  // A refusal naming its field ("leverage: expected …") names it within the leg, as the API does (legs.1.leverage).
  const message = FIELD_FIRST.test(receipt.message)
    ? `legs.${leg}.${receipt.message}`
    : `legs.${leg}: ${receipt.message}`;
  return { receipt: { kind: "rejected", code, message }, answer: { ok: false, error: { code, message } } };
}

/** A time as ISO 8601 when it is one (years up to 9999), else the number as received. */
function asTime(ms: number): string {
  return Number.isSafeInteger(ms) && ms >= 0 && ms <= 253_402_300_799_999 ? isoTime(ms) : String(ms);
}
