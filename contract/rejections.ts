/**
 * The catalogue of reasons the engine refuses an instruction. Refusals are data: every refused instruction yields
 * an `order_response` with one of these codes and a human message. Codes are stable; messages may improve.
 * INVALID_LEVERAGE, TRADE_NOT_FOUND, ORDER_NOT_FOUND and NOTHING_TO_MODIFY lead with the field, as the API's own
 * checks do (`leverage: expected …, received 500.`; engine/core/receipts.ts, refuseField): their entries here are
 * that form without the value received, and the OpenAPI document shows a whole message (functions/openapi.ts). Every
 * other code's message is its entry here (after `legs.1: ` for an OCO leg), then the details, if any.
 */

export const REJECTIONS = {
  INVALID_INSTRUCTION: "The instruction is malformed.",
  ACCOUNT_NOT_FOUND: "No trading account exists for this user.",
  UNKNOWN_ASSET: "The asset is not traded here.",
  NO_PRICE: "There is no price for this market yet.",
  STALE_PRICE: "The latest price for this market is too old to trade on.",
  INVALID_AMOUNT: "The amount is not a valid positive decimal at this asset's precision.",
  INVALID_LEVERAGE: "leverage: expected a whole number from 1 to the allowed maximum.",
  INVALID_STOP_LOSS: "The stop-loss is not valid for this trade.",
  INVALID_TAKE_PROFIT: "The take-profit is not valid for this trade.",
  INSUFFICIENT_BALANCE: "The balance does not cover this order.",
  QUANTITY_TOO_SMALL: "The order is smaller than one quantity step of the asset.",
  NOTIONAL_TOO_LARGE: "The order is larger than a limit allows.",
  TOO_MANY_OPEN_TRADES: "The account has reached its limit of open trades.",
  WOULD_LIQUIDATE: "The trade would be liquidated as soon as it opened; lower the leverage.",
  TRADE_NOT_FOUND: "tradeId: expected the id of an open trade of this account.",
  INVALID_PRICE: "The order price is not a valid positive price at this asset's precision.",
  WOULD_FILL_NOW:
    "The order would fill at once at the current price: a limit or stop must wait on its side of the market.",
  INVALID_EXPIRY: "expiresAt must be a time after now and within the allowed range.",
  TOO_MANY_PENDING_ORDERS: "The account has reached its limit of pending orders.",
  ORDER_NOT_FOUND: "orderId: expected the id of a pending order of this account.",
  INVALID_TRAILING_STOP: "The trailing stop is not valid for this trade.",
  INVALID_CLOSE_QUANTITY: "The quantity to close is not valid for this trade.",
  REMAINDER_TOO_SMALL: "What would stay open is below the market's minimum quantity.",
  NOTHING_TO_MODIFY:
    "stopLoss, takeProfit and trailingStop: expected at least one that sets, moves or removes an exit.",
} as const;

export type RejectionCode = keyof typeof REJECTIONS;

export interface Rejection {
  readonly code: RejectionCode;
  readonly message: string;
}

export function rejection(code: RejectionCode, detail?: string): Rejection {
  return { code, message: detail === undefined ? REJECTIONS[code] : `${REJECTIONS[code]} ${detail}` };
}

/**
 * What INVALID_LEVERAGE expects, worded once: the engine refuses a leverage above its maximum so (trading.ts), and the
 * API one too long to send to the engine (functions/schemas.ts), both as `leverage: expected …, received 500.`
 */
export function leverageExpected(maxLeverage: number): string {
  return `a whole number from 1 to ${maxLeverage}`;
}

/** Refusals caused by the market rather than the request: a retry with the same request id may act. */
export const TRANSIENT_REJECTIONS: ReadonlySet<RejectionCode> = new Set<RejectionCode>(["NO_PRICE", "STALE_PRICE"]);
