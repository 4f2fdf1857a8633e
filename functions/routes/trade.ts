/**
 * Trading (API.md): open and close leveraged trades, spot market orders, open trades with live PnL, and the
 * closed-trade history. The three POSTs have the engine act (engine-client.ts) after admission (rate limit and
 * Idempotency-Key, admission.ts); the GETs read the read models and Postgres, never the log.
 *
 * Amounts are checked against the asset's precision here so that "too many decimals" is a 400 naming the field; the
 * engine checks everything again (it trusts nothing on its input stream) and refuses with its own codes (422).
 */
import { Hono } from "hono";
import { ASSET_BY_SYMBOL } from "../../contract/markets.ts";
import type { Answer, InstructionResult } from "../../contract/messages.ts";
import { parseUnits, USD_DECIMALS } from "../../contract/money.ts";
import { admitTrade, readIdempotencyKey } from "../admission.ts";
import type { ApiContext, ApiDeps, ApiEnv } from "../context.ts";
import { ApiError } from "../errors.ts";
import { requireSession } from "../middleware.ts";
import { closeTradeRequest, createTradeRequest, historyQuery, spotOrderRequest } from "../schemas.ts";
import { invalidField, readJson, readQuery } from "../validate.ts";
import { closedTradeView, openTradesView, quotesView, type ClosedOrderRow } from "../views.ts";

export function tradeRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  // The POSTs check revocation in their admission script (see act); the GETs here.
  app.on("POST", "*", requireSession(deps, { revocation: "in-admission" }));
  app.on("GET", "*", requireSession(deps));

  app.post("/create", async (c) => {
    const body = await readJson(c, createTradeRequest);
    const asset = ASSET_BY_SYMBOL.get(body.asset)!;
    checkPrecision("margin", body.margin, USD_DECIMALS);
    if (body.stopLoss !== undefined) checkPrecision("stopLoss", body.stopLoss, asset.priceDecimals);
    if (body.takeProfit !== undefined) checkPrecision("takeProfit", body.takeProfit, asset.priceDecimals);
    const { stopLoss, takeProfit } = body;
    const result = await act(deps, c, "create", body, {
      kind: "open_trade",
      asset: body.asset,
      side: body.type,
      margin: body.margin,
      leverage: body.leverage,
      ...(stopLoss !== undefined && { stopLoss }),
      ...(takeProfit !== undefined && { takeProfit }),
    });
    if (result.kind !== "open_trade") throw new Error(`unexpected result ${result.kind}`);
    return c.json({ trade: result.trade }, 201);
  });

  app.post("/close", async (c) => {
    const body = await readJson(c, closeTradeRequest);
    const result = await act(deps, c, "close", body, { kind: "close_trade", tradeId: body.tradeId });
    if (result.kind !== "close_trade") throw new Error(`unexpected result ${result.kind}`);
    return c.json({ trade: result.trade }, 200);
  });

  app.post("/order", async (c) => {
    const body = await readJson(c, spotOrderRequest);
    checkPrecision("quantity", body.quantity, ASSET_BY_SYMBOL.get(body.asset)!.quantityDecimals);
    const result = await act(deps, c, "order", body, {
      kind: "spot_order",
      asset: body.asset,
      side: body.side,
      quantity: body.quantity,
    });
    if (result.kind !== "spot_order") throw new Error(`unexpected result ${result.kind}`);
    return c.json({ order: result.order, balances: result.balances }, 201);
  });

  app.get("/open", async (c) => {
    const { userId } = c.get("session");
    const [trades, quotes] = await Promise.all([
      deps.redis.hgetall(deps.keys.openTradesKey(userId)),
      deps.redis.hgetall(deps.keys.quotesKey),
    ]);
    return c.json({ trades: openTradesView(trades, quotesView(quotes)) });
  });

  app.get("/history", async (c) => {
    const { userId } = c.get("session");
    const { limit = 50, cursor } = readQuery(c, historyQuery);
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const { rows } = await deps.db.query<ClosedOrderRow>(
      `SELECT id, asset, type, margin::text, leverage, quantity::text, open_price::text, close_price::text, stop_loss::text,
              take_profit::text, liquidation_price::text, pnl::text, close_reason, opened_at, closed_at
         FROM closed_orders
        WHERE user_id = $1 ${after === undefined ? "" : "AND (closed_at, id) < ($3::timestamptz, $4)"}
        ORDER BY closed_at DESC, id DESC
        LIMIT $2`,
      after === undefined ? [userId, limit + 1] : [userId, limit + 1, after.closedAt, after.id],
    );
    const page = rows.slice(0, limit).map(closedTradeView);
    const last = page.at(-1);
    const nextCursor = rows.length > limit && last !== undefined ? encodeCursor(last.closedAt, last.id) : null;
    return c.json({ trades: page, nextCursor });
  });

  return app;
}

type Instruction = Parameters<ApiDeps["engine"]["send"]>[2];

/** Admits the request, has the engine act, and returns its result; a refusal becomes its API error. */
async function act(
  deps: ApiDeps,
  c: ApiContext,
  endpoint: string,
  body: unknown,
  instruction: Instruction,
): Promise<InstructionResult> {
  const session = c.get("session");
  const key = readIdempotencyKey(c.req.header("idempotency-key"));
  const admitted = { userId: session.userId, revokedKey: deps.sessions.revokedKey(session) };
  const requestId = await admitTrade(deps.redis, deps.keys, admitted, deps.settings.tradeRate, key, endpoint, body);
  const { userId } = session;
  return resultOf(await deps.engine.send(userId, requestId, instruction));
}

function resultOf(answer: Answer): InstructionResult {
  if (answer.ok) return answer.result;
  throw new ApiError(answer.error.code as ConstructorParameters<typeof ApiError>[0], answer.error.message);
}

function checkPrecision(field: string, text: string, decimals: number): void {
  const parsed = parseUnits(text, decimals);
  if (parsed.ok && parsed.units > 0) return;
  const expected =
    !parsed.ok && parsed.reason === "TOO_MANY_DECIMALS"
      ? `at most ${decimals} decimals`
      : !parsed.ok
        ? "a smaller amount"
        : "an amount above zero";
  throw invalidField("INVALID_AMOUNT", field, expected, text);
}

function encodeCursor(closedAt: string, id: string): string {
  return Buffer.from(JSON.stringify([closedAt, id])).toString("base64url");
}

function decodeCursor(cursor: string): { closedAt: string; id: string } {
  try {
    const value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown;
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === "string" &&
      typeof value[1] === "string" &&
      !Number.isNaN(Date.parse(value[0])) &&
      /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(value[0]) &&
      /^[A-Za-z0-9_-]{1,64}$/.test(value[1])
    ) {
      return { closedAt: value[0], id: value[1] };
    }
  } catch {
    // falls through: not a cursor this API issued
  }
  throw new ApiError("INVALID_CURSOR");
}
