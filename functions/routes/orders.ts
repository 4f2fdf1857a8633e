/**
 * Pending entry orders (docs/api.md): place one, place a one-cancels-other pair, cancel one, list the pending ones
 * (the worker's read model) and page through every order's life (Postgres). The POSTs go through the same
 * admission and engine round trip as the other trade POSTs (trade.ts `act`); `expiresAt` arrives as an ISO 8601
 * time and leaves as the engine's `expiresAtMs` (log time).
 */
import type { ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";
import { engineIdOrder, historyPage } from "../history-cursor.ts";
import { limitRate, requireSession } from "../middleware.ts";
import { apiRouter, createRoute, errorResponses, jsonBody, jsonResponse, route, SIGNED_IN } from "../openapi.ts";
import {
  cancelOrderRequest,
  entryOrderRequest,
  orderHistoryQuery,
  idempotencyKeyHeader,
  ocoRequest,
  responses,
} from "../schemas.ts";
import { ORDER_COLUMNS, orderView, pendingOrdersView, type OrderRow } from "../views.ts";
import { entryOrderTerms, orderConflict } from "./trade-terms.ts";
import { act, IDEMPOTENT, POST_ERRORS, PRICE_REFUSALS } from "./trade.ts";

/** What placing an entry order can be refused for, besides the POST errors. */
const PLACE_REFUSALS = [
  "INVALID_AMOUNT",
  "UNKNOWN_ASSET",
  "INVALID_PRICE",
  "WOULD_FILL_NOW",
  "INVALID_EXPIRY",
  "INVALID_LEVERAGE",
  "INVALID_STOP_LOSS",
  "INVALID_TAKE_PROFIT",
  "INVALID_TRAILING_STOP",
  "INSUFFICIENT_BALANCE",
  "QUANTITY_TOO_SMALL",
  "NOTIONAL_TOO_LARGE",
  "TOO_MANY_PENDING_ORDERS",
  ...PRICE_REFUSALS,
] as const;

const ORDER_LIFE =
  "The margin is reserved from free USD while the order waits, returned on cancel or expiry and locked in the " +
  "trade on fill. A limit fills at its price or better; a stop once the market reaches its price, at that quote.";

/** Mounted under /api/v1/trade beside trade.ts's routes. */
export function orderRoutes(deps: ApiDeps) {
  const app = apiRouter();
  const signedInPost = requireSession(deps, { revocation: "in-admission" });
  const signedIn = requireSession(deps);

  const place = createRoute({
    method: "post",
    path: "/orders",
    operationId: "placeOrder",
    tags: ["Orders"],
    summary: "Place a pending entry order (limit or stop)",
    description: `${ORDER_LIFE} Optional exits become the trade's on fill. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(entryOrderRequest) },
    responses: {
      201: jsonResponse(responses.placedOrder, "The pending order and the balances after the reservation"),
      ...errorResponses([...POST_ERRORS, ...PLACE_REFUSALS]),
    },
  });
  route(app, place, async (c, { body }) => {
    const result = await act(deps, c, "orders", body, { kind: "place_order", ...entryOrderTerms("", body) });
    return c.json({ order: result.order, balances: result.balances }, 201);
  });

  const oco = createRoute({
    method: "post",
    path: "/orders/oco",
    operationId: "placeOcoOrders",
    tags: ["Orders"],
    summary: "Place two entry orders linked one-cancels-other",
    description:
      "Both legs are placed together (or neither is); when one fills, the other is cancelled in the same step. " +
      `${ORDER_LIFE} ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(ocoRequest) },
    responses: {
      201: jsonResponse(responses.placedOco, "Both pending orders and the balances after the reservations"),
      ...errorResponses([...POST_ERRORS, ...PLACE_REFUSALS]),
    },
  });
  route(app, oco, async (c, { body }) => {
    const [first, second] = body.legs;
    const result = await act(deps, c, "oco", body, {
      kind: "place_oco",
      legs: [entryOrderTerms("legs.0.", first), entryOrderTerms("legs.1.", second)],
    });
    return c.json({ orders: result.orders, balances: result.balances }, 201);
  });

  const cancel = createRoute({
    method: "post",
    path: "/orders/cancel",
    operationId: "cancelOrder",
    tags: ["Orders"],
    summary: "Cancel one of your pending orders",
    description:
      "Returns its reserved margin (and cancels its OCO leg's link). An order of yours that already left the book " +
      "(filled, cancelled, expired) answers 409 ORDER_NOT_PENDING with its current state; 503 UNAVAILABLE while " +
      `the history that says so is still being written after a database outage. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(cancelOrderRequest) },
    responses: {
      200: jsonResponse(responses.cancelledOrder, "The cancelled order and the balances after the release"),
      ...errorResponses([...POST_ERRORS, "ORDER_NOT_FOUND"]),
      409: jsonResponse(responses.orderNotPending, "ORDER_NOT_PENDING (with the order), or IDEMPOTENCY_CONFLICT"),
    },
  });
  route(app, cancel, async (c, { body }) => {
    let result;
    try {
      result = await act(deps, c, "cancel", body, { kind: "cancel_order", orderId: body.orderId });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "ORDER_NOT_FOUND")) throw err;
      throw await orderConflict(deps, c.get("session").userId, body.orderId, err);
    }
    return c.json({ order: result.order, balances: result.balances }, 200);
  });

  const pending = createRoute({
    method: "get",
    path: "/orders",
    operationId: "listPendingOrders",
    tags: ["Orders"],
    summary: "Your pending orders",
    description: "Oldest placed first.",
    security: SIGNED_IN,
    middleware: signedIn,
    responses: {
      200: jsonResponse(responses.pendingOrders, "Your pending orders"),
      ...errorResponses(["UNAUTHENTICATED", "UNAVAILABLE"]),
    },
  });
  route(app, pending, async (c) => {
    const stored = await deps.redis.hgetall(deps.keys.pendingOrdersKey(c.get("session").userId));
    return c.json({ orders: pendingOrdersView(stored) });
  });

  const history = createRoute({
    method: "get",
    path: "/orders/history",
    operationId: "listOrderHistory",
    tags: ["Orders"],
    summary: "Every order you placed and how it ended, newest placed first, paginated",
    description: "Pass `nextCursor` back as `cursor` for the next page; it is null on the last page.",
    security: SIGNED_IN,
    middleware: signedIn,
    limit: limitRate(deps, "history", deps.settings.historyRate, (c) => c.get("session").userId),
    request: { query: orderHistoryQuery },
    responses: {
      200: jsonResponse(responses.orderHistory, "One page of orders"),
      ...errorResponses(["INVALID_REQUEST", "INVALID_CURSOR", "UNAUTHENTICATED", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, history, async (c, { query: { limit = 50, cursor } }) => {
    const table = { table: "orders", columns: ORDER_COLUMNS, time: "placed_at", id: "id", order: engineIdOrder("id") };
    const { page, nextCursor } = await historyPage(
      deps.db,
      table,
      c.get("session").userId,
      limit,
      cursor,
      (r: OrderRow) => orderView(r),
      (o) => [o.placedAt, o.id],
    );
    return c.json({ orders: page, nextCursor });
  });

  return app;
}
