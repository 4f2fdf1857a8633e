/**
 * The API contract (shared/API.md) as zod schemas: requests are validated with them and the OpenAPI document
 * (openapi.ts) is generated from the very same objects, so the description cannot drift from what is enforced.
 *
 * Request objects are strict: an unknown field is a 400, because a misspelt `stoploss` silently ignored would open
 * a trade without the protection its owner asked for. Money may come as a decimal string or a JSON number read by
 * its decimal text (json-body.ts); it leaves validation as a plain decimal string, checked against the asset's
 * precision by the route. Which field failed decides the error code (FIELD_ERRORS).
 */
import { z } from "zod";
import { ASSETS } from "../contract/markets.ts";
import { closedTradeSchema, tradeSchema } from "../contract/messages.ts";
import type { ApiErrorCode } from "./errors.ts";
import { JsonNumber } from "./json-body.ts";

/** A JSON number in a request body. Shared instance: openapi.ts documents it as `number`. */
export const jsonNumber = z.instanceof(JsonNumber);

const DECIMAL = /^\d{1,20}(\.\d{1,18})?$/;

export const decimalInput = z.union([z.string(), jsonNumber]).transform((value, ctx) => {
  const text = typeof value === "string" ? value : value.decimalText();
  if (text === undefined || !DECIMAL.test(text)) {
    ctx.addIssue({ code: "custom", message: 'expected a non-negative decimal such as "100" or "4303.93"' });
    return z.NEVER;
  }
  // One spelling per amount ("0100.50" → "100.5"), so an Idempotency-Key sees the same request as the same body.
  return text
    .replace(/^0+(?=\d)/, "")
    .replace(/(\.\d*?)0+$/, "$1")
    .replace(/\.$/, "");
});

export const wholeNumberInput = jsonNumber.transform((value, ctx) => {
  if (!/^[1-9]\d{0,5}$/.test(value.text)) {
    ctx.addIssue({ code: "custom", message: "expected a whole number from 1" });
    return z.NEVER;
  }
  return Number(value.text);
});

const assetSymbols = ASSETS.map((a) => a.symbol) as [string, ...string[]];
export const assetInput = z.enum(assetSymbols);

export const signInRequest = z.strictObject({ email: z.string().trim().toLowerCase().max(254).pipe(z.email()) });

export const createTradeRequest = z.strictObject({
  asset: assetInput,
  type: z.enum(["long", "short"]),
  margin: decimalInput,
  leverage: wholeNumberInput,
  stopLoss: decimalInput.optional(),
  takeProfit: decimalInput.optional(),
});

/** Trade ids are the engine's `T<shard>-<n>`; anything else cannot name a trade. */
export const closeTradeRequest = z.strictObject({
  tradeId: z
    .string()
    .max(32)
    .regex(/^T\d{1,6}-\d{1,16}$/, "expected a trade id such as T0-42"),
});

export const spotOrderRequest = z.strictObject({
  asset: assetInput,
  side: z.enum(["buy", "sell"]),
  quantity: decimalInput,
});

/** Not strict, and any token text: an unknown, used or mangled token is the same 401 INVALID_TOKEN (API.md). */
export const verifyQuery = z.object({ token: z.string().min(1).max(4096) });

export const historyQuery = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,3}$/)
    .transform(Number)
    .pipe(z.number().int().min(1).max(100))
    .optional(),
  cursor: z.string().min(1).max(200).optional(),
});

/** Which error code a failed field gets; any other failure is INVALID_REQUEST. */
export const FIELD_ERRORS: Readonly<Record<string, ApiErrorCode>> = {
  margin: "INVALID_AMOUNT",
  quantity: "INVALID_AMOUNT",
  stopLoss: "INVALID_AMOUNT",
  takeProfit: "INVALID_AMOUNT",
  asset: "UNKNOWN_ASSET",
};

// ---- responses (documented; the routes build them from engine answers and read models) -----------------------

const decimal = z.string().regex(/^-?\d+(\.\d+)?$/);
export const userView = z.object({ id: z.string(), email: z.string() });
export const balancesView = z.object(Object.fromEntries(["USD", ...assetSymbols].map((s) => [s, decimal])));
export const openTradeView = tradeSchema.extend({
  currentPrice: decimal.nullable(),
  unrealizedPnl: decimal.nullable(),
});
export const spotOrderView = z.object({
  id: z.string(),
  asset: z.string(),
  side: z.enum(["buy", "sell"]),
  quantity: decimal,
  price: decimal,
  total: decimal,
  executedAt: z.string(),
});
export const assetView = z.object({
  symbol: z.string(),
  name: z.string(),
  market: z.string(),
  priceDecimals: z.number().int(),
  quantityDecimals: z.number().int(),
  bid: decimal.nullable(),
  ask: decimal.nullable(),
  updatedAt: z.string().nullable(),
  source: z.enum(["backpack", "sim"]).nullable(),
});
export const errorView = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export const responses = {
  message: z.object({ message: z.string() }),
  user: z.object({ user: userView }),
  trade: z.object({ trade: tradeSchema }),
  closedTrade: z.object({ trade: closedTradeSchema }),
  order: z.object({ order: spotOrderView, balances: balancesView }),
  openTrades: z.object({ trades: z.array(openTradeView) }),
  history: z.object({ trades: z.array(closedTradeSchema), nextCursor: z.string().nullable() }),
  usdBalance: z.object({ asset: z.literal("USD"), balance: decimal }),
  balances: z.object({ balances: balancesView }),
  assets: z.object({ assets: z.array(assetView) }),
  health: z.object({
    status: z.enum(["ok", "unavailable"]),
    redis: z.boolean(),
    postgres: z.boolean(),
    engine: z.boolean(),
  }),
};
