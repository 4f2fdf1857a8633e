/**
 * Trading (docs/api.md): open and close leveraged trades, spot market orders, open trades with live PnL, and the
 * closed-trade history. The three POSTs have the engine act (engine-client.ts) after admission (rate limit and
 * Idempotency-Key, admission.ts); the GETs read the read models and Postgres, never the log.
 *
 * Amounts are checked against the asset's precision here so that "too many decimals" is a 400 naming the field; the
 * engine checks everything again (it trusts nothing on its input stream) and refuses with its own codes (422).
 */
import { ASSET_BY_SYMBOL } from "../../contract/markets.ts";
import type { Answer, InstructionResult } from "../../contract/messages.ts";
import { parseUnits, USD_DECIMALS } from "../../contract/money.ts";
import { admitTrade, readIdempotencyKey } from "../admission.ts";
import type { ApiContext, ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";
import { decodeCursor, encodeCursor } from "../history-cursor.ts";
import { limitRate, requireSession } from "../middleware.ts";
import {
  apiRouter,
  createRoute,
  errorResponses,
  jsonBody,
  jsonResponse,
  route,
  SIGNED_IN,
  type ErrorCode,
} from "../openapi.ts";
import {
  closeTradeRequest,
  createTradeRequest,
  historyQuery,
  idempotencyKeyHeader,
  responses,
  spotOrderRequest,
} from "../schemas.ts";
import { invalidField } from "../validate.ts";
import { closedTradeView, openTradesView, quotesView, type ClosedOrderRow } from "../views.ts";

/** What every trade POST can answer besides the engine's own refusals. */
const POST_ERRORS: readonly ErrorCode[] = [
  "MALFORMED_JSON",
  "INVALID_REQUEST",
  "INVALID_IDEMPOTENCY_KEY",
  "UNAUTHENTICATED",
  "FORBIDDEN_ORIGIN",
  "ACCOUNT_NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "PAYLOAD_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "INCOMPLETE_BODY",
  "RATE_LIMITED",
  "UNAVAILABLE",
  "ENGINE_UNAVAILABLE",
  "ENGINE_TIMEOUT",
];
/** Refusals caused by the market rather than the request; the same request may succeed later. */
const PRICE_REFUSALS: readonly ErrorCode[] = ["NO_PRICE", "STALE_PRICE"];
const IDEMPOTENT =
  "Send an `Idempotency-Key` to retry safely: the same key and body get the first answer, and the engine acts once.";

export function tradeRoutes(deps: ApiDeps) {
  const app = apiRouter();
  // Each route checks the session itself, so a wrong method or path answers 405/404 whoever asks. The POSTs check
  // revocation in their admission script (see act); the GETs here.
  const signedInPost = requireSession(deps, { revocation: "in-admission" });
  const signedIn = requireSession(deps);

  const create = createRoute({
    method: "post",
    path: "/create",
    operationId: "openTrade",
    tags: ["Trading"],
    summary: "Open a leveraged trade",
    description:
      "Locks `margin` USD and opens a long or short of `margin × leverage` notional at the current ask (long) " +
      `or bid (short). Optional stop-loss and take-profit close it automatically. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(createTradeRequest) },
    responses: {
      201: jsonResponse(responses.trade, "The opened trade"),
      ...errorResponses([
        ...POST_ERRORS,
        "INVALID_AMOUNT",
        "UNKNOWN_ASSET",
        "INVALID_LEVERAGE",
        "INVALID_STOP_LOSS",
        "INVALID_TAKE_PROFIT",
        "INSUFFICIENT_BALANCE",
        "QUANTITY_TOO_SMALL",
        "NOTIONAL_TOO_LARGE",
        "TOO_MANY_OPEN_TRADES",
        "WOULD_LIQUIDATE",
        ...PRICE_REFUSALS,
      ]),
    },
  });
  route(app, create, async (c, { body }) => {
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

  const close = createRoute({
    method: "post",
    path: "/close",
    operationId: "closeTrade",
    tags: ["Trading"],
    summary: "Close one of your open trades",
    description: `Closes at the current bid (long) or ask (short) and settles margin plus PnL to USD. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(closeTradeRequest) },
    responses: {
      200: jsonResponse(responses.closedTrade, "The closed trade"),
      ...errorResponses([...POST_ERRORS, "TRADE_NOT_FOUND", ...PRICE_REFUSALS]),
    },
  });
  route(app, close, async (c, { body }) => {
    const result = await act(deps, c, "close", body, { kind: "close_trade", tradeId: body.tradeId });
    if (result.kind !== "close_trade") throw new Error(`unexpected result ${result.kind}`);
    return c.json({ trade: result.trade }, 200);
  });

  const order = createRoute({
    method: "post",
    path: "/order",
    operationId: "placeSpotOrder",
    tags: ["Trading"],
    summary: "Spot market order",
    description: `Buys at the ask or sells at the bid, paying or receiving USD at once. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(spotOrderRequest) },
    responses: {
      201: jsonResponse(responses.order, "The filled order and the balances after it"),
      ...errorResponses([
        ...POST_ERRORS,
        "INVALID_AMOUNT",
        "UNKNOWN_ASSET",
        "INSUFFICIENT_BALANCE",
        "NOTIONAL_TOO_LARGE",
        ...PRICE_REFUSALS,
      ]),
    },
  });
  route(app, order, async (c, { body }) => {
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

  const open = createRoute({
    method: "get",
    path: "/open",
    operationId: "listOpenTrades",
    tags: ["Trading"],
    summary: "Your open trades with live PnL",
    description: "Oldest first. PnL is exact, at the price each trade would close at now.",
    security: SIGNED_IN,
    middleware: signedIn,
    responses: {
      200: jsonResponse(responses.openTrades, "Your open trades"),
      ...errorResponses(["UNAUTHENTICATED", "UNAVAILABLE"]),
    },
  });
  route(app, open, async (c) => {
    const { userId } = c.get("session");
    const [trades, quotes] = await Promise.all([
      deps.redis.hgetall(deps.keys.openTradesKey(userId)),
      deps.redis.hgetall(deps.keys.quotesKey),
    ]);
    return c.json({ trades: openTradesView(trades, quotesView(quotes)) });
  });

  const history = createRoute({
    method: "get",
    path: "/history",
    operationId: "listClosedTrades",
    tags: ["Trading"],
    summary: "Your closed trades, newest first, paginated",
    description: "Pass `nextCursor` back as `cursor` for the next page; it is null on the last page.",
    security: SIGNED_IN,
    // Each page costs a Postgres query: counted per user, once the session is known.
    middleware: [signedIn, limitRate(deps, "history", deps.settings.historyRate, (c) => c.get("session").userId)],
    request: { query: historyQuery },
    responses: {
      200: jsonResponse(responses.history, "One page of closed trades"),
      ...errorResponses(["INVALID_REQUEST", "INVALID_CURSOR", "UNAUTHENTICATED", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, history, async (c, { query: { limit = 50, cursor } }) => {
    const { userId } = c.get("session");
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const { rows } = await deps.db.query<ClosedOrderRow>(
      `SELECT id, asset, type, margin::text, leverage, quantity::text, open_price::text, close_price::text, stop_loss::text,
              take_profit::text, liquidation_price::text, pnl::text, close_reason, opened_at, closed_at
         FROM closed_orders
        WHERE user_id = $1 ${after === undefined ? "" : "AND (closed_at, id) < ($3::timestamptz, $4)"}
        ORDER BY closed_at DESC, id DESC
        LIMIT $2`,
      after === undefined ? [userId, limit + 1] : [userId, limit + 1, after.at, after.id],
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
  const { tradeRate, idempotencyKeys } = deps.settings;
  const requestId = await admitTrade(deps.redis, deps.keys, admitted, tradeRate, key, endpoint, body, idempotencyKeys);
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
