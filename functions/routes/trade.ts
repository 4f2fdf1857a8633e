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
import { readOpenTrades } from "../account-reads.ts";
import { admitTrade, readIdempotencyKey } from "../admission.ts";
import type { ApiContext, ApiDeps } from "../context.ts";
import { ApiError, ENGINE_TIMEOUT_WITH_KEY, ENGINE_TIMEOUT_WITHOUT_KEY, SESSION_NOT_VALID } from "../errors.ts";
import { historyPage, outputIdOrder } from "../history-cursor.ts";
import { limitRate, requireSession } from "../middleware.ts";
import {
  JSON_BODY_ERRORS,
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
  tradeHistoryQuery,
  idempotencyKeyHeader,
  modifyTradeRequest,
  responses,
  spotOrderRequest,
} from "../schemas.ts";
import { CLOSED_ORDER_COLUMNS, closedTradeView, openTradesView, type ClosedOrderRow } from "../views.ts";
import {
  checkPercent,
  checkPrecision,
  checkPrice,
  USD_AMOUNTS,
  CLOSE_PERCENT_MAX,
  quantityScale,
  tradeConflict,
  trailingStopTerms,
} from "./trade-terms.ts";

/** What every trade POST can answer besides the engine's own refusals. */
export const POST_ERRORS: readonly ErrorCode[] = [
  ...JSON_BODY_ERRORS,
  "INVALID_IDEMPOTENCY_KEY",
  "UNAUTHENTICATED",
  "ACCOUNT_NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "RATE_LIMITED",
  "UNAVAILABLE",
  "ENGINE_UNAVAILABLE",
  "ENGINE_TIMEOUT",
];
/** Refusals caused by the market rather than the request; the same request may succeed later. */
export const PRICE_REFUSALS: readonly ErrorCode[] = ["NO_PRICE", "STALE_PRICE"];
export const IDEMPOTENT =
  "Send an `Idempotency-Key` to retry safely: the same key and body get the first answer, and the engine acts once.";

export function tradeRoutes(deps: ApiDeps) {
  const app = apiRouter();
  // Each route checks the session itself, so a wrong method or path answers 405/404 whoever asks. The POSTs check
  // revocation in their admission script (see act), or on the way out when refused before it; the GETs here.
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
      `or bid (short). Optional stop-loss, take-profit and trailing stop close it automatically. ${IDEMPOTENT}`,
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
        "INVALID_TRAILING_STOP",
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
    checkPrecision("margin", body.margin, USD_AMOUNTS);
    if (body.stopLoss !== undefined) checkPrice("stopLoss", body.stopLoss, asset, "INVALID_AMOUNT");
    if (body.takeProfit !== undefined) checkPrice("takeProfit", body.takeProfit, asset, "INVALID_AMOUNT");
    const { stopLoss, takeProfit } = body;
    const trailingStop =
      body.trailingStop === undefined ? undefined : trailingStopTerms("trailingStop", body.asset, body.trailingStop);
    const result = await act(deps, c, "create", body, {
      kind: "open_trade",
      asset: body.asset,
      side: body.type,
      margin: body.margin,
      leverage: body.leverage,
      ...(stopLoss !== undefined && { stopLoss }),
      ...(takeProfit !== undefined && { takeProfit }),
      ...(trailingStop !== undefined && { trailingStop }),
    });
    return c.json({ trade: result.trade }, 201);
  });

  const close = createRoute({
    method: "post",
    path: "/close",
    operationId: "closeTrade",
    tags: ["Trading"],
    summary: "Close one of your open trades, or part of it",
    description:
      "Closes at the current bid (long) or ask (short) and settles margin plus PnL to USD: all of the trade, or " +
      "`quantity` of it, or `percent` of it (rounded down to the quantity step); each close is its own row in the " +
      "history, and `remaining` is what stays open after a partial close. A trade of yours that is already closed " +
      "answers 409 TRADE_CLOSED with its close; 503 UNAVAILABLE while the history that says so is still being " +
      `written after a database outage. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(closeTradeRequest) },
    responses: {
      200: jsonResponse(responses.closedTrade, "The close, and what stays open"),
      ...errorResponses([
        ...POST_ERRORS,
        "TRADE_NOT_FOUND",
        "INVALID_AMOUNT",
        "INVALID_CLOSE_QUANTITY",
        "REMAINDER_TOO_SMALL",
        ...PRICE_REFUSALS,
      ]),
      409: jsonResponse(responses.tradeClosed, "TRADE_CLOSED (with its close), or IDEMPOTENCY_CONFLICT"),
    },
  });
  route(app, close, async (c, { body }) => {
    const { tradeId, quantity, percent } = body;
    if (percent !== undefined) checkPercent("percent", percent, "INVALID_AMOUNT", CLOSE_PERCENT_MAX);
    if (quantity !== undefined) {
      // The trade's asset sets the quantity decimals; an unknown trade gets no check here and the engine's answer.
      const asset = await openTradeAsset(deps, c, tradeId);
      if (asset !== undefined) checkPrecision("quantity", quantity, quantityScale(ASSET_BY_SYMBOL.get(asset)!));
    }
    const result = await actOnTrade(deps, c, "close", body, tradeId, {
      kind: "close_trade",
      tradeId,
      ...(quantity !== undefined && { quantity }),
      ...(percent !== undefined && { percent }),
    });
    return c.json({ trade: result.trade, remaining: result.remaining }, 200);
  });

  const modify = createRoute({
    method: "post",
    path: "/modify",
    operationId: "modifyTrade",
    tags: ["Trading"],
    summary: "Set, move or remove an open trade's exits",
    description:
      "`stopLoss`, `takeProfit` and `trailingStop`: absent leaves that exit as it is, null removes it, a value sets " +
      "or moves it, validated against the current quote as when opening. A trade of yours that is already closed " +
      "answers 409 TRADE_CLOSED with its close; 503 UNAVAILABLE while the history that says so is still being " +
      `written after a database outage. ${IDEMPOTENT}`,
    security: SIGNED_IN,
    middleware: signedInPost,
    request: { headers: idempotencyKeyHeader, body: jsonBody(modifyTradeRequest) },
    responses: {
      200: jsonResponse(responses.trade, "The trade with its new exits"),
      ...errorResponses([
        ...POST_ERRORS,
        "TRADE_NOT_FOUND",
        "INVALID_AMOUNT",
        "INVALID_STOP_LOSS",
        "INVALID_TAKE_PROFIT",
        "INVALID_TRAILING_STOP",
        "NOTHING_TO_MODIFY",
        ...PRICE_REFUSALS,
      ]),
      409: jsonResponse(responses.tradeClosed, "TRADE_CLOSED (with its close), or IDEMPOTENCY_CONFLICT"),
    },
  });
  route(app, modify, async (c, { body }) => {
    const { tradeId, stopLoss, takeProfit, trailingStop } = body;
    // The trade's asset sets the price decimals; an unknown trade gets no check here and the engine's 404.
    const asset = await openTradeAsset(deps, c, tradeId);
    if (asset !== undefined) {
      const config = ASSET_BY_SYMBOL.get(asset)!;
      if (typeof stopLoss === "string") checkPrice("stopLoss", stopLoss, config, "INVALID_AMOUNT");
      if (typeof takeProfit === "string") checkPrice("takeProfit", takeProfit, config, "INVALID_AMOUNT");
    }
    const trailing =
      trailingStop === undefined || trailingStop === null || asset === undefined
        ? trailingStop
        : trailingStopTerms("trailingStop", asset, trailingStop);
    const result = await actOnTrade(deps, c, "modify", body, tradeId, {
      kind: "modify_trade",
      tradeId,
      ...(stopLoss !== undefined && { stopLoss }),
      ...(takeProfit !== undefined && { takeProfit }),
      ...(trailing !== undefined && { trailingStop: trailing }),
    });
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
    checkPrecision("quantity", body.quantity, quantityScale(ASSET_BY_SYMBOL.get(body.asset)!));
    const result = await act(deps, c, "order", body, {
      kind: "spot_order",
      asset: body.asset,
      side: body.side,
      quantity: body.quantity,
    });
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
    const { quotes, openTrades } = await readOpenTrades(deps, userId);
    return c.json({ trades: openTradesView(openTrades, quotes) });
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
    middleware: signedIn,
    limit: limitRate(deps, "history", deps.settings.historyRate, (c) => c.get("session").userId),
    request: { query: tradeHistoryQuery },
    responses: {
      200: jsonResponse(responses.history, "One page of closed trades"),
      ...errorResponses(["INVALID_REQUEST", "INVALID_CURSOR", "UNAUTHENTICATED", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, history, async (c, { query: { limit = 50, cursor } }) => {
    // Closes by the output that made them: a close id says which trade, not when (a partial close's id is
    // `<trade id>.<n>`, the last close's the trade id alone).
    const table = {
      table: "closed_orders",
      columns: CLOSED_ORDER_COLUMNS,
      time: "closed_at",
      id: "close_id",
      order: outputIdOrder("output_id"),
    };
    const { page, nextCursor } = await historyPage(
      deps.db,
      table,
      c.get("session").userId,
      limit,
      cursor,
      (r: ClosedOrderRow) => closedTradeView(r),
      (t) => [t.closedAt, t.closeId],
    );
    return c.json({ trades: page, nextCursor });
  });

  return app;
}

export type Instruction = Parameters<ApiDeps["engine"]["send"]>[2];
/** The result of an instruction of kind K. */
type ResultOf<K extends Instruction["kind"]> = Extract<InstructionResult, { kind: K }>;

/**
 * Admits the request, has the engine act, and returns its result; a refusal becomes its API error. The engine's
 * request id comes from the Idempotency-Key alone, so once the API has forgotten a key (admission.ts) a reuse on
 * another endpoint reaches the engine, which replays the key's first answer: a result of another kind, answered
 * 409 IDEMPOTENCY_CONFLICT with nothing done. A first answer that was a refusal carries no kind, so it comes back as
 * that refusal (docs/api.md says so).
 */
export async function act<I extends Instruction>(
  deps: ApiDeps,
  c: ApiContext,
  endpoint: string,
  body: unknown,
  instruction: I,
): Promise<ResultOf<I["kind"]>> {
  const session = c.get("session");
  const key = readIdempotencyKey(c.req.header("idempotency-key"));
  const admitted = { userId: session.userId, revokedKey: deps.sessions.revokedKey(session) };
  const { tradeRate, idempotencyKeys } = deps.settings;
  // From here the admission script answers for the session's revocation, whatever it answers (requireSession).
  c.set("revocationChecked", true);
  const requestId = await admitTrade(
    deps.redis,
    deps.keys,
    admitted,
    tradeRate,
    key,
    { name: endpoint, path: c.req.path },
    body,
    idempotencyKeys,
  );
  const { userId } = session;
  const timeLeft = deps.timeLeftMs;
  let answer: Answer;
  try {
    answer = await deps.engine.send(userId, requestId, instruction, timeLeft && (() => timeLeft(c)));
  } catch (err) {
    // Whether a retry is safe depends on the key: say which retry is (a keyless one would act twice).
    if (err instanceof ApiError && err.code === "ENGINE_TIMEOUT")
      throw new ApiError("ENGINE_TIMEOUT", key === undefined ? ENGINE_TIMEOUT_WITHOUT_KEY : ENGINE_TIMEOUT_WITH_KEY);
    throw err;
  }
  const result = resultOf(answer);
  if (result.kind !== instruction.kind) throw usedForAnother(result.kind);
  return result as ResultOf<I["kind"]>;
}

/** `act` on a trade: a refusal because the trade is closed becomes 409 TRADE_CLOSED with its close. */
async function actOnTrade<I extends Instruction>(
  deps: ApiDeps,
  c: ApiContext,
  endpoint: string,
  body: unknown,
  tradeId: string,
  instruction: I,
): Promise<ResultOf<I["kind"]>> {
  try {
    return await act(deps, c, endpoint, body, instruction);
  } catch (err) {
    if (!(err instanceof ApiError && err.code === "TRADE_NOT_FOUND")) throw err;
    throw await tradeConflict(deps, c.get("session").userId, tradeId, err);
  }
}

/** KEYS[1] the session's revocation, KEYS[2] the open trades; ARGV[1] the trade id: -1 when revoked, else HGET. */
const OPEN_TRADE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
return redis.call('HGET', KEYS[2], ARGV[1])`;

/**
 * The asset of one of the session's user's open trades, from the read model; undefined when it is not open there.
 * A signed-out session is 401 here, before anything the answer could tell about the account (the admission script
 * checks again).
 */
async function openTradeAsset(deps: ApiDeps, c: ApiContext, tradeId: string): Promise<string | undefined> {
  const session = c.get("session");
  const keys = [deps.sessions.revokedKey(session), deps.keys.openTradesKey(session.userId)];
  const json = await deps.redis.eval(OPEN_TRADE, keys, [tradeId]);
  if (json === -1) throw new ApiError("UNAUTHENTICATED", SESSION_NOT_VALID);
  return typeof json === "string" ? (JSON.parse(json) as { asset: string }).asset : undefined;
}

/** What an instruction of each kind is, for a key whose first use the engine answered with that kind. */
const FIRST_USE: Record<InstructionResult["kind"], string> = {
  create_account: "opening an account",
  open_trade: "opening a trade",
  close_trade: "closing a trade",
  modify_trade: "changing a trade's exits",
  spot_order: "a spot order",
  place_order: "placing an entry order",
  place_oco: "placing an OCO pair",
  cancel_order: "cancelling an order",
};

function usedForAnother(firstKind: InstructionResult["kind"]): ApiError {
  return new ApiError(
    "IDEMPOTENCY_CONFLICT",
    `This Idempotency-Key was already used for another request (${FIRST_USE[firstKind]}); ` +
      "use a new key for each action.",
  );
}

function resultOf(answer: Answer): InstructionResult {
  if (answer.ok) return answer.result;
  throw new ApiError(answer.error.code as ConstructorParameters<typeof ApiError>[0], answer.error.message);
}
