/**
 * What the trade and order routes share beyond admission: the precision checks of an order's or trade's terms
 * (so "too many decimals" is a 400 naming the field, before the engine sees it), and the 409 answers that show a
 * request's target as it now stands when the engine refused because it has moved on (an order filled before its
 * cancel arrived, a trade closed before its modify or close), or a 503 while the history that tells is still owed.
 */
import { ASSET_BY_SYMBOL, type AssetConfig } from "../../contract/markets.ts";
import type { TrailingStopSpec } from "../../contract/messages.ts";
import { decimalsWord, formatUnits, MAX_UNITS, parseUnits, USD_DECIMALS } from "../../contract/money.ts";
import type { RejectionCode } from "../../contract/rejections.ts";
import type { ApiDeps } from "../context.ts";
import { ApiError, type ApiErrorCode } from "../errors.ts";
import { FieldRefusal } from "../validate.ts";
import {
  CLOSED_ORDER_COLUMNS,
  closedTradeView,
  ORDER_COLUMNS,
  orderView,
  type ClosedOrderRow,
  type OrderRow,
} from "../views.ts";

/** Percents (trailing distance, part of a trade to close) are at most this precise: hundredths of a percent. */
const PERCENT_DECIMALS = 2;

/** An amount field's decimals and what its amounts are, in the plural, for the answer: "ADA quantities". */
export interface AmountScale {
  readonly decimals: number;
  readonly unit: string;
}

export const USD_AMOUNTS: AmountScale = { decimals: USD_DECIMALS, unit: "USD amounts" };

export const priceScale = (asset: AssetConfig): AmountScale => ({
  decimals: asset.priceDecimals,
  unit: `${asset.symbol} prices`,
});

export const quantityScale = (asset: AssetConfig): AmountScale => ({
  decimals: asset.quantityDecimals,
  unit: `${asset.symbol} quantities`,
});

/** How a refused amount is answered: its code (INVALID_AMOUNT unless the field has its own) and its largest value. */
export interface AmountRule {
  readonly code?: ApiErrorCode | RejectionCode;
  readonly max?: number;
}

/**
 * An amount as validation leaves it (schemas.ts: digits, maybe a point and digits, no leading or trailing zeros)
 * against its field's decimals and largest value. The answer names what is wrong: too many decimals (with the
 * asset's step, as one request's fields differ in precision), zero, or over the limit, giving the limit and, when
 * the amount has more digits before the point than the limit, how many.
 */
export function checkPrecision(field: string, text: string, scale: AmountScale, rule: AmountRule = {}): void {
  const { code = "INVALID_AMOUNT", max = MAX_UNITS } = rule;
  const { decimals, unit } = scale;
  const [whole = "", fraction = ""] = text.split(".");
  // Decimals first: parseUnits calls any text over 40 characters out of range, a long fraction too.
  if (fraction.length > decimals) {
    const expected = `at most ${decimalsWord(decimals)} (${unit} are in steps of ${formatUnits(1, decimals)})`;
    throw new FieldRefusal(code, field, expected, text);
  }
  const parsed = parseUnits(text, decimals, max);
  if (parsed.ok && parsed.units > 0) return;
  if (parsed.ok) throw new FieldRefusal(code, field, "an amount above zero", text);
  const limit = formatUnits(max, decimals);
  const limitDigits = limit.split(".")[0]!.length;
  const digits = whole.length > limitDigits ? `${whole.length} digits before the decimal point` : undefined;
  throw new FieldRefusal(code, field, `at most ${limit}`, text, digits);
}

/**
 * A price of the asset: positive, at its price decimals, at most its maximum price (the engine refuses above it).
 * An exit's price that is not one is INVALID_AMOUNT, an entry order's price INVALID_PRICE (docs/api.md).
 */
export function checkPrice(field: string, text: string, asset: AssetConfig, code: "INVALID_AMOUNT" | "INVALID_PRICE") {
  checkPrecision(field, text, priceScale(asset), { code, max: asset.maxPriceTicks });
}

/** A percent above 0 and at most `maxHundredths` / 100, with at most two decimals. */
export function checkPercent(field: string, text: string, code: ApiErrorCode | RejectionCode, maxHundredths: number) {
  const fraction = text.split(".")[1] ?? "";
  if (fraction.length > PERCENT_DECIMALS)
    throw new FieldRefusal(code, field, `at most ${PERCENT_DECIMALS} decimals`, text);
  const parsed = parseUnits(text, PERCENT_DECIMALS, maxHundredths);
  if (parsed.ok && parsed.units > 0) return;
  throw new FieldRefusal(code, field, `a percent from 0.01 to ${formatUnits(maxHundredths, PERCENT_DECIMALS)}`, text);
}

/** A part of a trade to close: up to all of it. */
export const CLOSE_PERCENT_MAX = 100_00;
/** A trailing stop's distance as a percent: below 100 (at 100 % a long's level would be a price of 0). */
export const TRAILING_PERCENT_MAX = 99_99;

interface TrailingInput {
  readonly distance?: string | undefined;
  readonly percent?: string | undefined;
  readonly activationPrice?: string | undefined;
}

/**
 * The request's trailing stop as the contract carries it, its terms checked as the engine checks them: a distance
 * and an activation price positive at the asset's price decimals, a percent above 0 and below 100. Every refusal
 * is INVALID_TRAILING_STOP (422), the engine's code for the same terms.
 */
export function trailingStopTerms(field: string, asset: string, t: TrailingInput): TrailingStopSpec {
  const config = ASSET_BY_SYMBOL.get(asset)!;
  const prices = priceScale(config);
  const rule: AmountRule = { code: "INVALID_TRAILING_STOP", max: config.maxPriceTicks };
  if (t.distance !== undefined) checkPrecision(`${field}.distance`, t.distance, prices, rule);
  if (t.percent !== undefined)
    checkPercent(`${field}.percent`, t.percent, "INVALID_TRAILING_STOP", TRAILING_PERCENT_MAX);
  if (t.activationPrice !== undefined) checkPrecision(`${field}.activationPrice`, t.activationPrice, prices, rule);
  return {
    ...(t.distance !== undefined && { distance: t.distance }),
    ...(t.percent !== undefined && { percent: t.percent }),
    ...(t.activationPrice !== undefined && { activationPrice: t.activationPrice }),
  };
}

/** An entry order's terms from a request, checked, as the contract's place_order (or an OCO leg) carries them. */
export interface EntryOrderInput {
  readonly asset: string;
  readonly side: "long" | "short";
  readonly type: "limit" | "stop";
  readonly price: string;
  readonly margin: string;
  readonly leverage: number;
  readonly stopLoss?: string | undefined;
  readonly takeProfit?: string | undefined;
  readonly expiresAt?: number | undefined;
}

/**
 * An entry order's terms, checked against its asset's precision and range. It has no trailing stop: validation
 * refuses one on an entry order before anything else (schemas.ts), as the engine does.
 */
export function entryOrderTerms(field: string, o: EntryOrderInput) {
  const asset = ASSET_BY_SYMBOL.get(o.asset)!;
  checkPrice(`${field}price`, o.price, asset, "INVALID_PRICE");
  checkPrecision(`${field}margin`, o.margin, USD_AMOUNTS);
  if (o.stopLoss !== undefined) checkPrice(`${field}stopLoss`, o.stopLoss, asset, "INVALID_AMOUNT");
  if (o.takeProfit !== undefined) checkPrice(`${field}takeProfit`, o.takeProfit, asset, "INVALID_AMOUNT");
  const { stopLoss, takeProfit, expiresAt } = o;
  return {
    asset: o.asset,
    side: o.side,
    type: o.type,
    price: o.price,
    margin: o.margin,
    leverage: o.leverage,
    ...(stopLoss !== undefined && { stopLoss }),
    ...(takeProfit !== undefined && { takeProfit }),
    ...(expiresAt !== undefined && { expiresAtMs: expiresAt }),
  };
}

/**
 * KEYS[1] the Postgres backlog (worker/postgres-backlog.ts): 1 while the workers owe history rows that Postgres did
 * not take during an outage, else 0.
 */
const HISTORY_OWED = `return redis.call('EXISTS', KEYS[1])`;

/**
 * Whether a refusal's target may have moved on in rows not written yet. A worker writes an output's Postgres rows
 * before it releases any later answer, except while Postgres is down: then it answers at once and owes the rows in
 * the backlog until it writes them, so an order's fill or a trade's close may be missing from Postgres, or an order
 * still pending there, though it came before the refusal in the log. Asked before the row is looked up: a backlog
 * found empty then is written up to the refusal, whereas one asked after could have been emptied, the row written,
 * between the two looks. A batch handled without Postgres is owed before its answers go out (worker/worker.ts), so
 * the refusal's own batch is owed, or written, by the time the user has the refusal.
 */
async function historyOwed(deps: ApiDeps): Promise<boolean> {
  return Number(await deps.redis.eval(HISTORY_OWED, [deps.keys.postgresBacklog], [])) === 1;
}

/** 503 UNAVAILABLE with its Retry-After: the history that says what became of `target` is still being written. */
function historyNotWritten(target: string) {
  const message =
    `${target}, and the history that says what became of it is still being written after a database outage; ` +
    "try again after Retry-After seconds.";
  return new ApiError("UNAVAILABLE", message);
}

/**
 * The engine refused with ORDER_NOT_FOUND: when the order is this user's and no longer pending, a 409 with its
 * current state; while its rows may be owed (historyOwed) and are not there, 503 UNAVAILABLE, never the refusal's
 * 404, which says the order was never the user's.
 */
export async function orderConflict(deps: ApiDeps, userId: string, orderId: string, refusal: ApiError) {
  const owed = await historyOwed(deps);
  const { rows } = await deps.db.query<OrderRow>(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = $1 AND user_id = $2`, [
    orderId,
    userId,
  ]);
  const row = rows[0];
  if (row === undefined || row.status === "pending")
    return owed ? historyNotWritten(`Order ${orderId} is not pending`) : refusal;
  const message = `Order ${orderId} is no longer pending: it is ${row.status}.`;
  return new ApiError("ORDER_NOT_PENDING", message, {}, { order: orderView(row) });
}

/**
 * The engine refused with TRADE_NOT_FOUND: when the trade is this user's and closed, a 409 with its close; while its
 * rows may be owed (historyOwed) and its close is not there, 503 UNAVAILABLE, as for an order.
 */
export async function tradeConflict(deps: ApiDeps, userId: string, tradeId: string, refusal: ApiError) {
  const owed = await historyOwed(deps);
  const { rows } = await deps.db.query<ClosedOrderRow>(
    `SELECT ${CLOSED_ORDER_COLUMNS} FROM closed_orders WHERE id = $1 AND user_id = $2 AND remaining_quantity = 0`,
    [tradeId, userId],
  );
  const row = rows[0];
  if (row === undefined) return owed ? historyNotWritten(`Trade ${tradeId} is not open`) : refusal;
  const trade = closedTradeView(row);
  const message = `Trade ${tradeId} is already closed (${trade.closeReason} at ${trade.closePrice}).`;
  return new ApiError("TRADE_CLOSED", message, {}, { trade });
}
