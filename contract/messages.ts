/**
 * The message contract of the two streams, with runtime validation.
 *
 * engine:input  — `price_update` (poller) and `user_instruction` (functions), interleaved: the log.
 * engine:output — `order_response` (exactly one per instruction), `closed_order`, and the read-model changes
 *                 `trade_opened`, `balances_changed`, `quote_updated`.
 *
 * Amounts are decimal strings. The schemas check shape only (a decimal string, a bounded id); whether an amount
 * fits an asset's precision, an asset exists or a leverage is allowed is the engine's call, answered as a
 * rejection code. Output ids are `<input id>:<n>`, deterministic, so consumers can drop what a replay re-emits.
 */
import { z } from "zod";

const decimal = z
  .string()
  .max(40)
  .regex(/^\d+(\.\d+)?$/, "expected a non-negative decimal string");
/** Printable ASCII without spaces: safe in Redis keys and logs. */
export const requestIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21-\x7e]+$/, "expected printable ASCII without spaces");
export const userIdSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, "expected letters, digits, _ or -");
const symbol = z.string().min(1).max(32);
const isoTime = z.string().max(32);

export const priceUpdateSchema = z.object({
  type: z.literal("price_update"),
  market: symbol,
  bid: decimal,
  ask: decimal,
  /** Exchange time in microseconds, as digits (Backpack's `T`); never trusted as a JS number. */
  exchangeTimeUs: z.string().regex(/^\d{1,20}$/),
  source: z.enum(["backpack", "sim"]),
});

export const instructionSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("create_account") }),
  z.object({
    kind: z.literal("open_trade"),
    asset: symbol,
    side: z.enum(["long", "short"]),
    margin: decimal,
    leverage: z.number(),
    stopLoss: decimal.optional(),
    takeProfit: decimal.optional(),
  }),
  z.object({ kind: z.literal("close_trade"), tradeId: z.string().min(1).max(64) }),
  z.object({ kind: z.literal("spot_order"), asset: symbol, side: z.enum(["buy", "sell"]), quantity: decimal }),
]);

export const userInstructionSchema = z.object({
  type: z.literal("user_instruction"),
  requestId: requestIdSchema,
  userId: userIdSchema,
  instruction: instructionSchema,
});

export const engineInputSchema = z.discriminatedUnion("type", [priceUpdateSchema, userInstructionSchema]);

export type PriceUpdate = z.infer<typeof priceUpdateSchema>;
export type Instruction = z.infer<typeof instructionSchema>;
export type UserInstruction = z.infer<typeof userInstructionSchema>;
export type EngineInput = z.infer<typeof engineInputSchema>;

// ---- outputs -------------------------------------------------------------------------------------------------

export const balancesSchema = z.record(z.string(), decimal);

export const tradeSchema = z.object({
  id: z.string(),
  asset: symbol,
  type: z.enum(["long", "short"]),
  margin: decimal,
  leverage: z.number().int(),
  quantity: decimal,
  openPrice: decimal,
  stopLoss: decimal.nullable(),
  takeProfit: decimal.nullable(),
  liquidationPrice: decimal.nullable(),
  openedAt: isoTime,
});

export const closeReasonSchema = z.enum(["manual", "stop_loss", "take_profit", "liquidation"]);

export const closedTradeSchema = tradeSchema.extend({
  closePrice: decimal,
  /** Exactly what the USD balance changed by beyond the returned margin; never below −margin. */
  pnl: z.string().regex(/^-?\d+(\.\d+)?$/),
  closeReason: closeReasonSchema,
  closedAt: isoTime,
});

export const spotOrderSchema = z.object({
  id: z.string(),
  asset: symbol,
  side: z.enum(["buy", "sell"]),
  quantity: decimal,
  price: decimal,
  total: decimal,
  executedAt: isoTime,
});

export const resultSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("create_account"), granted: z.boolean(), balances: balancesSchema }),
  z.object({ kind: z.literal("open_trade"), trade: tradeSchema, balances: balancesSchema }),
  z.object({ kind: z.literal("close_trade"), trade: closedTradeSchema, balances: balancesSchema }),
  z.object({ kind: z.literal("spot_order"), order: spotOrderSchema, balances: balancesSchema }),
]);

export const answerSchema = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), result: resultSchema }),
  z.object({ ok: z.literal(false), error: z.object({ code: z.string(), message: z.string() }) }),
]);

const outputHead = { id: z.string(), inputId: z.string() };

export const engineOutputSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("order_response"),
    ...outputHead,
    requestId: requestIdSchema,
    userId: userIdSchema,
    answer: answerSchema,
  }),
  z.object({ type: z.literal("closed_order"), ...outputHead, userId: userIdSchema, trade: closedTradeSchema }),
  z.object({ type: z.literal("trade_opened"), ...outputHead, userId: userIdSchema, trade: tradeSchema }),
  z.object({ type: z.literal("balances_changed"), ...outputHead, userId: userIdSchema, balances: balancesSchema }),
  z.object({
    type: z.literal("quote_updated"),
    ...outputHead,
    asset: symbol,
    market: symbol,
    bid: decimal,
    ask: decimal,
    updatedAt: isoTime,
    source: z.enum(["backpack", "sim"]),
  }),
]);

export type Balances = z.infer<typeof balancesSchema>;
export type TradeView = z.infer<typeof tradeSchema>;
export type ClosedTradeView = z.infer<typeof closedTradeSchema>;
export type CloseReason = z.infer<typeof closeReasonSchema>;
export type SpotOrderView = z.infer<typeof spotOrderSchema>;
export type InstructionResult = z.infer<typeof resultSchema>;
export type Answer = z.infer<typeof answerSchema>;
export type EngineOutput = z.infer<typeof engineOutputSchema>;
export type OutputOf<T extends EngineOutput["type"]> = Extract<EngineOutput, { type: T }>;
