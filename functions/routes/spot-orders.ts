/**
 * Spot order history (docs/api.md): the user's filled spot market orders from Postgres (`spot_orders`, written by
 * the worker), newest first, paginated exactly like the closed-trade history (same query, same keyset cursor).
 * Mounted under /api/v1/trade.
 */
import type { ApiDeps } from "../context.ts";
import { decodeCursor, encodeCursor } from "../history-cursor.ts";
import { limitRate, requireSession } from "../middleware.ts";
import { apiRouter, createRoute, errorResponses, jsonResponse, route, SIGNED_IN } from "../openapi.ts";
import { historyQuery, responses } from "../schemas.ts";
import { spotOrderRowView, type SpotOrderRow } from "../views.ts";

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
    middleware: [
      requireSession(deps),
      limitRate(deps, "spot-orders", deps.settings.historyRate, (c) => c.get("session").userId),
    ],
    request: { query: historyQuery },
    responses: {
      200: jsonResponse(responses.spotOrders, "One page of spot orders"),
      ...errorResponses(["INVALID_REQUEST", "INVALID_CURSOR", "UNAUTHENTICATED", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, history, async (c, { query: { limit = 50, cursor } }) => {
    const { userId } = c.get("session");
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const { rows } = await deps.db.query<SpotOrderRow>(
      `SELECT id, asset, side, quantity::text, price::text, total::text, executed_at
         FROM spot_orders
        WHERE user_id = $1 ${after === undefined ? "" : "AND (executed_at, id) < ($3::timestamptz, $4)"}
        ORDER BY executed_at DESC, id DESC
        LIMIT $2`,
      after === undefined ? [userId, limit + 1] : [userId, limit + 1, after.at, after.id],
    );
    const page = rows.slice(0, limit).map(spotOrderRowView);
    const last = page.at(-1);
    const nextCursor = rows.length > limit && last !== undefined ? encodeCursor(last.executedAt, last.id) : null;
    return c.json({ orders: page, nextCursor });
  });
  return app;
}
