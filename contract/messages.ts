/**
 * The message contract of the two streams, with runtime validation.
 *
 * engine:input  — `price_update` (poller) and `user_instruction` (functions), interleaved: the log.
 * engine:output — `order_response` (exactly one per instruction), `closed_order`, and the read-model changes
 *                 `trade_opened`, `trade_updated`, `order_updated`, `balances_changed`, `quote_updated`.
 *
 * The private outputs (`PrivateOutput`: a user's `trade_opened`, `trade_updated`, `closed_order`, `order_updated`,
 * `balances_changed`) carry `seq`: 1 for the user's first, +1 for each next one, in output order. The engine assigns
 * it from account state kept in its snapshot, so a replay assigns the same numbers and a gap means a lost event.
 *
 * Amounts are decimal strings. The schemas check shape (a decimal string, a bounded id) and what a consumer relies
 * on to apply an output (an output id's form and bounds, a real UTC time, balances present), so that an output they
 * cannot apply is refused at decode, logged and skipped; whether an amount fits an asset's precision, an asset
 * exists or a leverage is allowed is the engine's call, answered as a rejection code. Output ids are
 * `<input id>:<n>`, deterministic, so consumers can drop what a replay re-emits.
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

/**
 * A UTC time in Date#toISOString's form, as the engine writes every time (engine/core/step.ts `isoTime`):
 * `2026-12-05T18:00:00.000Z`, the fraction of 1 to 3 digits or none, a real day (year 0001 to 9999) and time. The
 * worker stores these in timestamptz columns: Postgres refuses a day that does not exist (22008) and reads words
 * such as "yesterday" as a time, so the form is checked here, where a bad entry is skipped, not retried for ever.
 */
const UTC_TIME = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,3})?Z$/;
const isoTime = z.string().max(32).refine(isUtcTime, "expected a UTC time such as 2026-12-05T18:00:00.000Z");

function isUtcTime(text: string): boolean {
  const m = UTC_TIME.exec(text);
  if (m === null) return false;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map(Number);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  return year >= 1 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59;
}

export const priceUpdateSchema = z.object({
  type: z.literal("price_update"),
  market: symbol,
  bid: decimal,
  ask: decimal,
  /** Exchange time in microseconds, as digits (Backpack's `T`); never trusted as a JS number. */
  exchangeTimeUs: z.string().regex(/^\d{1,20}$/),
  source: z.enum(["backpack", "sim"]),
});

/** A trailing stop: exactly one of `distance` (price) and `percent` (of the best price since activation). */
export const trailingStopSpecSchema = z.object({
  distance: decimal.optional(),
  percent: decimal.optional(),
  /** Not trailing until the bid (long) reaches it, or the ask (short) falls to it; absent: trailing at once. */
  activationPrice: decimal.optional(),
});

/** An entry order's terms, as `place_order` and each leg of `place_oco` carry them. */
const entryOrder = {
  asset: symbol,
  side: z.enum(["long", "short"]),
  /** limit: fills at `price` or better; stop: fills once the market reaches `price`, at the quote that did. */
  type: z.enum(["limit", "stop"]),
  price: decimal,
  margin: decimal,
  leverage: z.number(),
  stopLoss: decimal.optional(),
  takeProfit: decimal.optional(),
  trailingStop: trailingStopSpecSchema.optional(),
  /** Good till this log time (ms since the epoch); absent: good till cancelled. */
  expiresAtMs: z.number().optional(),
};

export const entryOrderSchema = z.object(entryOrder);

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
    trailingStop: trailingStopSpecSchema.optional(),
  }),
  /**
   * Closes the whole trade, or part of it: `quantity` (in the asset's steps as a decimal) or `percent` of the
   * current quantity (rounded down to the step), never both.
   */
  z.object({
    kind: z.literal("close_trade"),
    tradeId: z.string().min(1).max(64),
    quantity: decimal.optional(),
    percent: decimal.optional(),
  }),
  z.object({ kind: z.literal("spot_order"), asset: symbol, side: z.enum(["buy", "sell"]), quantity: decimal }),
  z.object({ kind: z.literal("place_order"), ...entryOrder }),
  /** Two entry orders linked one-cancels-other: when one fills, the other is cancelled in the same step. */
  z.object({ kind: z.literal("place_oco"), legs: z.tuple([entryOrderSchema, entryOrderSchema]) }),
  z.object({ kind: z.literal("cancel_order"), orderId: z.string().min(1).max(64) }),
  /** Each exit: absent leaves it as it is, null removes it, a value sets or moves it. */
  z.object({
    kind: z.literal("modify_trade"),
    tradeId: z.string().min(1).max(64),
    stopLoss: decimal.nullable().optional(),
    takeProfit: decimal.nullable().optional(),
    trailingStop: trailingStopSpecSchema.nullable().optional(),
  }),
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

/** A trailing stop as it stands: its terms, whether it is trailing yet, and its current level. */
export const trailingStopSchema = z.object({
  distance: decimal.nullable(),
  percent: decimal.nullable(),
  activationPrice: decimal.nullable(),
  activated: z.boolean(),
  /**
   * Best price since activation (long: highest bid, short: lowest ask); null until activated. As of this output:
   * it moves between outputs without one (engine/core/views.ts).
   */
  bestPrice: decimal.nullable(),
  /** The price it fires at, from bestPrice; null until activated. As of this output, like bestPrice. */
  level: decimal.nullable(),
});

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
  trailingStop: trailingStopSchema.nullable(),
  liquidationPrice: decimal.nullable(),
  openedAt: isoTime,
});

export const closeReasonSchema = z.enum(["manual", "stop_loss", "take_profit", "trailing_stop", "liquidation"]);

/**
 * One close of a trade: of all of it, or of part (a partial close). `quantity` and `margin` are the part closed;
 * the trade's other fields are as they stood before this close.
 */
export const closedTradeSchema = tradeSchema.extend({
  /**
   * Unique per close: the trade id for the close of what remained; `<trade id>.<n>` for a partial close, n the
   * shard's next sequence number then (unique and increasing, not consecutive per trade).
   */
  closeId: z.string(),
  closePrice: decimal,
  /** Exactly what the USD balance changed by beyond the returned margin; never below −margin. */
  pnl: z.string().regex(/^-?\d+(\.\d+)?$/),
  /** The part of the loss at closePrice beyond the margin, which negative balance protection waived; else null. */
  lossWaived: decimal.nullable(),
  /** What stays open after this close; "0" when the trade is closed. */
  remainingQuantity: decimal,
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

export const orderStatusSchema = z.enum(["pending", "filled", "cancelled", "expired", "rejected"]);

/** A pending entry order and its life: placed (pending), then filled, cancelled, expired or rejected at fill. */
export const orderSchema = z.object({
  id: z.string(),
  asset: symbol,
  side: z.enum(["long", "short"]),
  type: z.enum(["limit", "stop"]),
  price: decimal,
  /** Reserved from free USD while pending; returned on cancel, expiry or rejection, locked in the trade on fill. */
  margin: decimal,
  leverage: z.number().int(),
  stopLoss: decimal.nullable(),
  takeProfit: decimal.nullable(),
  trailingStop: trailingStopSpecSchema.nullable(),
  expiresAt: isoTime.nullable(),
  /** The other leg of its one-cancels-other pair; null when not linked. */
  ocoWith: z.string().nullable(),
  status: orderStatusSchema,
  placedAt: isoTime,
  /**
   * When the status last changed: the placement for a pending order, also after its OCO leg left and `ocoWith`
   * turned null (when that happened is its order_updated's time: the stream event's `time`).
   */
  updatedAt: isoTime,
  /** Filled: the quote it filled at and the trade it opened. */
  fillPrice: decimal.nullable(),
  tradeId: z.string().nullable(),
  /** Why it left the book when not filled by the market: cancelled by the user or by its OCO leg, or the refusal at fill. */
  reason: z.object({ code: z.string(), message: z.string() }).nullable(),
});

export const resultSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("create_account"), granted: z.boolean(), balances: balancesSchema }),
  z.object({ kind: z.literal("open_trade"), trade: tradeSchema, balances: balancesSchema }),
  z.object({
    kind: z.literal("close_trade"),
    trade: closedTradeSchema,
    /** After a partial close, the trade as it stays open; null when it is closed. */
    remaining: tradeSchema.nullable(),
    balances: balancesSchema,
  }),
  z.object({ kind: z.literal("spot_order"), order: spotOrderSchema, balances: balancesSchema }),
  z.object({ kind: z.literal("place_order"), order: orderSchema, balances: balancesSchema }),
  z.object({ kind: z.literal("place_oco"), orders: z.tuple([orderSchema, orderSchema]), balances: balancesSchema }),
  z.object({ kind: z.literal("cancel_order"), order: orderSchema, balances: balancesSchema }),
  z.object({ kind: z.literal("modify_trade"), trade: tradeSchema }),
]);

export const answerSchema = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), result: resultSchema }),
  z.object({ ok: z.literal(false), error: z.object({ code: z.string(), message: z.string() }) }),
]);

/**
 * `<ms>-<seq>:<n>`: the input's stream id and the output's place in its step. Each part is bounded by what its
 * consumers hold: ms and seq exactly as JS numbers and Lua's (the read models' watermarks compare them there) and in
 * the orders table's bigint columns, n in its int column (`last_output_n`); all three within the candles' ordering
 * (worker/candles.ts outputOrder).
 */
export const outputIdSchema = z
  .string()
  .regex(/^\d{1,15}-\d{1,15}:\d{1,9}$/, "expected <ms>-<seq>:<n>, ms and seq of at most 15 digits, n of at most 9");
const outputHead = { id: outputIdSchema, inputId: z.string() };
/** A private output's head: its user and that user's event sequence number (see the module comment). */
const privateHead = { ...outputHead, userId: userIdSchema, seq: z.number().int().min(1) };

export const closedOrderOutputSchema = z.object({
  type: z.literal("closed_order"),
  ...privateHead,
  trade: closedTradeSchema,
});
export const tradeOpenedOutputSchema = z.object({
  type: z.literal("trade_opened"),
  ...privateHead,
  trade: tradeSchema,
});
/** An open trade changed without closing: exits set, moved or removed, a trailing stop activated, or a partial close. */
export const tradeUpdatedOutputSchema = z.object({
  type: z.literal("trade_updated"),
  ...privateHead,
  change: z.enum(["exits", "trailing_activated", "partial_close"]),
  trade: tradeSchema,
});
/** An entry order was placed or left the book (filled, cancelled, expired, rejected at fill): its whole view. */
export const orderUpdatedOutputSchema = z.object({
  type: z.literal("order_updated"),
  ...privateHead,
  order: orderSchema,
});
/** Every asset's balance, never none: the read model is replaced by what it carries (worker/read-models.ts). */
export const balancesChangedOutputSchema = z.object({
  type: z.literal("balances_changed"),
  ...privateHead,
  balances: balancesSchema.refine((b) => Object.keys(b).length > 0, "expected at least one asset's balance"),
});

const privateOutputSchemas = [
  closedOrderOutputSchema,
  tradeOpenedOutputSchema,
  tradeUpdatedOutputSchema,
  orderUpdatedOutputSchema,
  balancesChangedOutputSchema,
] as const;

/** The outputs that carry a user's `seq`. */
export const privateOutputSchema = z.discriminatedUnion("type", [...privateOutputSchemas]);

export const engineOutputSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("order_response"),
    ...outputHead,
    requestId: requestIdSchema,
    userId: userIdSchema,
    answer: answerSchema,
  }),
  ...privateOutputSchemas,
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
export type OrderView = z.infer<typeof orderSchema>;
export type OrderStatus = z.infer<typeof orderStatusSchema>;
export type TrailingStopSpec = z.infer<typeof trailingStopSpecSchema>;
export type TrailingStopView = z.infer<typeof trailingStopSchema>;
export type EntryOrder = z.infer<typeof entryOrderSchema>;
export type InstructionResult = z.infer<typeof resultSchema>;
export type Answer = z.infer<typeof answerSchema>;
export type EngineOutput = z.infer<typeof engineOutputSchema>;
export type OutputOf<T extends EngineOutput["type"]> = Extract<EngineOutput, { type: T }>;
export type PrivateOutput = z.infer<typeof privateOutputSchema>;

/** Which output types are private: a new output type must be placed on one side or the other. */
const IS_PRIVATE: Readonly<Record<EngineOutput["type"], boolean>> = {
  order_response: false,
  quote_updated: false,
  closed_order: true,
  trade_opened: true,
  trade_updated: true,
  order_updated: true,
  balances_changed: true,
};

export function isPrivateOutput(output: EngineOutput): output is PrivateOutput {
  return IS_PRIVATE[output.type];
}

/** Whether `type` names a private output type (an entry that failed to decode still says what it meant to be). */
export function isPrivateOutputType(type: unknown): boolean {
  return typeof type === "string" && Object.hasOwn(IS_PRIVATE, type) && IS_PRIVATE[type as EngineOutput["type"]];
}
