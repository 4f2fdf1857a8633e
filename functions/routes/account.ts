/** Balances, the account summary and assets (docs/api.md), read from the worker's read models. */
import { readAccount } from "../account-reads.ts";
import { accountSummary } from "../account-summary.ts";
import type { ApiDeps } from "../context.ts";
import { requireSession } from "../middleware.ts";
import { apiRouter, createRoute, errorResponses, jsonResponse, route, SIGNED_IN } from "../openapi.ts";
import { responses } from "../schemas.ts";
import { assetsView, balancesView, quotesView } from "../views.ts";

export function accountRoutes(deps: ApiDeps) {
  const app = apiRouter();
  // On each route, not the group: a wrong method or path answers 405/404 whoever asks.
  const signedIn = requireSession(deps);
  const errors = errorResponses(["UNAUTHENTICATED", "UNAVAILABLE"]);

  const usd = createRoute({
    method: "get",
    path: "/balance/usd",
    operationId: "getUsdBalance",
    tags: ["Account"],
    summary: "USD not locked as margin",
    security: SIGNED_IN,
    middleware: signedIn,
    responses: {
      200: {
        description: "The free USD balance",
        content: {
          "application/json": { schema: responses.usdBalance, example: { asset: "USD", balance: "9900" } },
        },
      },
      ...errors,
    },
  });
  route(app, usd, async (c) => {
    const balances = balancesView(await deps.redis.hgetall(deps.keys.balancesKey(c.get("session").userId)));
    return c.json({ asset: "USD", balance: balances.USD });
  });

  const all = createRoute({
    method: "get",
    path: "/balance",
    operationId: "getBalances",
    tags: ["Account"],
    summary: "All balances",
    description: "USD and every asset, zero included.",
    security: SIGNED_IN,
    middleware: signedIn,
    responses: { 200: jsonResponse(responses.balances, "Every balance"), ...errors },
  });
  route(app, all, async (c) => {
    return c.json({ balances: balancesView(await deps.redis.hgetall(deps.keys.balancesKey(c.get("session").userId))) });
  });

  const summary = createRoute({
    method: "get",
    path: "/summary",
    operationId: "getAccountSummary",
    tags: ["Account"],
    summary: "Balance, equity, margin and unrealized PnL",
    description:
      "Exact decimal strings, computed from your balances, open trades, pending orders and the latest quotes. " +
      "A trade whose market has no quote yet counts at PnL 0 and its asset is listed in `pricesMissing`.",
    security: SIGNED_IN,
    middleware: signedIn,
    responses: { 200: jsonResponse(responses.accountSummary, "The account's figures"), ...errors },
  });
  route(app, summary, async (c) => {
    const { userId } = c.get("session");
    const { quotes, account } = await readAccount(deps, userId);
    return c.json({ summary: accountSummary(account, quotes) });
  });

  const assets = createRoute({
    method: "get",
    path: "/assets",
    operationId: "listAssets",
    tags: ["Account"],
    summary: "Tradable assets with decimals and the latest quote",
    description: "Quote fields are null until the first price of a market has arrived.",
    security: SIGNED_IN,
    middleware: signedIn,
    responses: { 200: jsonResponse(responses.assets, "Every tradable asset"), ...errors },
  });
  route(app, assets, async (c) => {
    return c.json({ assets: assetsView(quotesView(await deps.redis.hgetall(deps.keys.quotesKey))) });
  });

  return app;
}
