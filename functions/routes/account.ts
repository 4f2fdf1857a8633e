/** Balances and assets (API.md), read from the worker's read models. */
import { Hono } from "hono";
import type { ApiDeps, ApiEnv } from "../context.ts";
import { requireSession } from "../middleware.ts";
import { assetsView, balancesView, quotesView } from "../views.ts";

export function accountRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.use(requireSession(deps));

  app.get("/balance/usd", async (c) => {
    const balances = balancesView(await deps.redis.hgetall(deps.keys.balancesKey(c.get("session").userId)));
    return c.json({ asset: "USD", balance: balances.USD });
  });

  app.get("/balance", async (c) => {
    return c.json({ balances: balancesView(await deps.redis.hgetall(deps.keys.balancesKey(c.get("session").userId))) });
  });

  app.get("/assets", async (c) => {
    return c.json({ assets: assetsView(quotesView(await deps.redis.hgetall(deps.keys.quotesKey))) });
  });

  return app;
}
