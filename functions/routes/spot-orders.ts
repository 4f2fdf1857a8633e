/**
 * Spot order history (docs/api.md): the user's filled spot market orders from Postgres (`spot_orders`, written by
 * the worker), newest first, paginated exactly like the closed-trade history (same query, same keyset cursor).
 * Mounted under /api/v1/trade.
 */
import type { ApiDeps } from "../context.ts";
import { engineIdOrder, historyPage } from "../history-cursor.ts";
import { limitRate, requireSession } from "../middleware.ts";
import { apiRouter, createRoute, errorResponses, jsonResponse, route, SIGNED_IN } from "../openapi.ts";
import { responses, spotOrderHistoryQuery } from "../schemas.ts";
import { spotOrderRowView, type SpotOrderRow } from "../views.ts";

const SPOT_ORDERS = {
  table: "spot_orders",
  columns: "id, asset, side, quantity::text, price::text, total::text, executed_at",
  time: "executed_at",
  id: "id",
  order: engineIdOrder("id"),
};

export function spotOrderRoutes(deps: ApiDeps) {
  const app = apiRouter();
  const history = createRoute({
    method: "get",
    path: "/spot-orders",
    operationId: "listSpotOrders",
    tags: ["Trading"],
    summary: "Your spot market orders, newest first, paginated",
    description: "Pass `nextCursor` back as `cursor` for the next page; it is null on the last page.",
    security: SIGNED_IN,
    // Each page costs a Postgres query: counted per user, on its own budget beside the closed-trade history's.
    middleware: requireSession(deps),
    limit: limitRate(deps, "spot-orders", deps.settings.historyRate, (c) => c.get("session").userId),
    request: { query: spotOrderHistoryQuery },
    responses: {
      200: jsonResponse(responses.spotOrders, "One page of spot orders"),
      ...errorResponses(["INVALID_REQUEST", "INVALID_CURSOR", "UNAUTHENTICATED", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, history, async (c, { query: { limit = 50, cursor } }) => {
    const { page, nextCursor } = await historyPage(
      deps.db,
      SPOT_ORDERS,
      c.get("session").userId,
      limit,
      cursor,
      (r: SpotOrderRow) => spotOrderRowView(r),
      (o) => [o.executedAt, o.id],
    );
    return c.json({ orders: page, nextCursor });
  });
  return app;
}
