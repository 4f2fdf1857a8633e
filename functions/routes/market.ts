/**
 * Public market data (docs/api.md), no sign-in: the latest quote of each market (the worker's quotes read model,
 * what `GET /account/assets` shows) and candle history (Postgres, functions/candles.ts). Candles cost a Postgres
 * query, so they are counted per client IP; the quotes are one Redis read, which a counter would only double.
 */
import { ASSETS } from "../../contract/markets.ts";
import { signInIpSubject } from "../admission.ts";
import { readCandles } from "../candles.ts";
import type { ApiDeps } from "../context.ts";
import { limitRate } from "../middleware.ts";
import { apiRouter, createRoute, errorResponses, jsonResponse, PUBLIC, route } from "../openapi.ts";
import { candlesQuery, responses } from "../schemas.ts";
import { quotesView } from "../views.ts";

/** Candles returned when the request names no `limit`. */
export const DEFAULT_CANDLES = 500;

export function marketRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const quotes = createRoute({
    method: "get",
    path: "/quotes",
    operationId: "listQuotes",
    tags: ["Market"],
    summary: "The latest quote of every market that has one",
    description:
      "The prices the engine trades on, as the worker last applied them; a market without a quote yet is left out. " +
      "`updatedAt` is when the market's latest update reached the engine.",
    security: PUBLIC,
    responses: {
      200: jsonResponse(responses.quotes, "One quote per market that has one, in the assets' order"),
      ...errorResponses(["UNAVAILABLE"]),
    },
  });
  route(app, quotes, async (c) => {
    const latest = quotesView(await deps.redis.hgetall(deps.keys.quotesKey));
    const listed = ASSETS.flatMap((a) => {
      const q = latest.get(a.symbol);
      return q === undefined ? [] : [{ asset: a.symbol, market: a.market, ...q }];
    });
    return c.json({ quotes: listed });
  });

  const candles = createRoute({
    method: "get",
    path: "/candles",
    operationId: "listCandles",
    tags: ["Market"],
    summary: "Candles of a market's bid, oldest first",
    description:
      "OHLC of the bid per interval, in buckets aligned to UTC (a day starts at 00:00Z); 5m and 15m are merged " +
      "from the 1-minute candles, 4h and 1d from the hourly ones. With `from`: the first `limit` candles opening in [`from`, `to`]; " +
      "without: the last `limit` up to `to` (default now). Intervals without a quote have no candle.",
    security: PUBLIC,
    limit: limitRate(deps, "candles", deps.settings.candlesRate, (c) => signInIpSubject(deps.clientIp(c))),
    request: { query: candlesQuery },
    responses: {
      200: jsonResponse(responses.candles, "The candles, oldest first"),
      ...errorResponses(["INVALID_REQUEST", "UNKNOWN_ASSET", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, candles, async (c, { query }) => {
    const { asset, interval, from, to = Date.now(), limit = DEFAULT_CANDLES } = query;
    const list = await readCandles(deps.db, { asset, interval, fromMs: from, toMs: to, limit });
    return c.json({ asset, interval, candles: list });
  });

  return app;
}
