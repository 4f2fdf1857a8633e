/**
 * The API contract (docs/api.md) as zod schemas: each route's definition (routes/) names them, its requests are
 * validated with them (validate.ts) and its OpenAPI operation is generated from the very same objects, so the
 * description cannot drift from what is enforced. Responses are documented here and built by the routes.
 *
 * Request objects are strict: an unknown field is a 400, because a misspelt `stoploss` silently ignored would open
 * a trade without the protection its owner asked for. Money may come as a decimal string or a JSON number read by
 * its decimal text (json-body.ts); it leaves validation as a plain decimal string, checked against the asset's
 * precision by the route. Which field failed decides the error code (fieldErrorCode).
 */
import { z } from "@hono/zod-openapi";
import { CANDLE_INTERVALS } from "../contract/candles.ts";
import { ASSETS } from "../contract/markets.ts";
import {
  closedTradeSchema,
  orderSchema,
  tradeSchema,
  trailingStopSchema,
  trailingStopSpecSchema,
} from "../contract/messages.ts";
import { leverageExpected, type RejectionCode } from "../contract/rejections.ts";
import type { ApiErrorCode } from "./errors.ts";
import { decodeCursor, encodeCursor } from "./history-cursor.ts";
import { JsonNumber, MAX_EXPONENT, plainDecimal } from "./json-body.ts";

/** A JSON number in a request body. Shared instance: documented as `number`. */
export const jsonNumber = z
  .custom<JsonNumber>((value) => value instanceof JsonNumber, {
    error: "expected a number",
    params: { wrongType: true },
  })
  .openapi({ type: "number" });

/**
 * Digits, optionally a point and more digits, of any length: too many digits or decimals for the field is the
 * route's check, which names the limit (routes/trade-terms.ts). The body's 16 KiB bound the length.
 */
const DECIMAL = /^(\d+)(?:\.(\d+))?$/;

/**
 * Examples of an amount that every amount field takes, whatever its asset's or USD's decimals (at least 1 each),
 * percents included (a trailing stop's is below 100), and a margin at leverage 1 buys a quantity step of any listed
 * asset (BTC's costs about a dollar): the schema does not know the field's limits, so an example finer, larger or
 * smaller than one of them would be refused by the next check.
 */
export const AMOUNT_EXAMPLES = ["10", "12.5"] as const;
export const AMOUNT_EXPECTED = `a positive decimal such as "${AMOUNT_EXAMPLES[0]}" or "${AMOUNT_EXAMPLES[1]}"`;
/** What validate.ts adds after "received 1e41: " for a number it does not spell out (json-body.ts MAX_EXPONENT). */
const OUT_OF_RANGE = {
  above: `out of range, an exponent over ${MAX_EXPONENT}`,
  below: `out of range, an exponent under -${MAX_EXPONENT}`,
};

export const decimalInput = z
  .union([z.string(), jsonNumber])
  .transform((value, ctx) => {
    const range = typeof value === "string" ? undefined : value.exponentRange();
    if (range !== undefined) {
      ctx.addIssue({ code: "custom", message: `expected ${AMOUNT_EXPECTED}`, params: { note: OUT_OF_RANGE[range] } });
      return z.NEVER;
    }
    const text = typeof value === "string" ? value : value.decimalText();
    const m = text === undefined ? null : DECIMAL.exec(text);
    if (m === null) {
      ctx.addIssue({ code: "custom", message: `expected ${AMOUNT_EXPECTED}` });
      return z.NEVER;
    }
    // One spelling per amount ("0100.50" → "100.5"), so an Idempotency-Key sees the same request as the same body.
    return plainDecimal(m[1]!, m[2] ?? "");
  })
  .openapi({
    type: ["string", "number"],
    description: "A decimal string, or a JSON number read by its decimal text (never through a binary double).",
  });

/**
 * A leverage, sent as a JSON number and read by its value: `10`, `10.0`, `1e1` and `0.{40 zeros}1e42` are the same.
 * Up to 6 digits go to the engine, which refuses one above its maximum with INVALID_LEVERAGE; a longer whole number
 * is refused here with the same code (params.code, validate.ts), so a leverage too large is one mistake whatever its
 * size or spelling, `1e41` and `1{50 zeros}e-41` included: positiveWhole reads them without spelling them out.
 */
export const leverageInput = jsonNumber
  .transform((value, ctx) => {
    const leverage = value.positiveWhole(6);
    if (typeof leverage !== "number") {
      ctx.addIssue({
        code: "custom",
        message: "expected a whole number from 1",
        // Worded as the engine's INVALID_LEVERAGE, at its maximum (DEFAULT_PARAMS.maxLeverage).
        params: leverage === "larger" ? { code: "INVALID_LEVERAGE", expected: leverageExpected(100) } : undefined,
      });
      return z.NEVER;
    }
    return leverage;
  })
  .openapi({ type: "integer", minimum: 1, description: "A whole number; the engine allows 1 to 100." });

const assetSymbols = ASSETS.map((a) => a.symbol) as [string, ...string[]];
export const assetInput = z.enum(assetSymbols);

/**
 * An address mail systems take, after trimming and lower-casing: zod's email pattern (its characters and dots in the
 * local part) with RFC 5321's lengths, a local part of at most 64 characters and domain labels of at most 63, no
 * label starting or ending with `-`, and a top-level label of letters or an IDN's `xn--` form (`example.xn--p1ai`).
 * The local part does not start with `+`: `+tag@example.com` has no inbox before its tag (admission.ts inboxOf).
 * Anything else would be sent to Resend only to be refused or bounce, while the asker heard a link was on its way.
 */
const SIGN_IN_EMAIL = new RegExp(
  "^(?=[^@]{1,64}@)(?!\\+)(?:[a-z0-9_'+\\-]+\\.)*[a-z0-9_'+\\-]*[a-z0-9_+-]" +
    "@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{0,58}[a-z0-9])$",
);

export const signInRequest = z
  .strictObject({
    email: z
      .string()
      .trim()
      .toLowerCase()
      .max(254)
      .pipe(z.email({ pattern: SIGN_IN_EMAIL })),
  })
  .openapi("SignInRequest", { example: { email: "ada@example.com" } });

/**
 * Either of two fields, not both (and, when `required`, not neither): an object that breaks it does not match the
 * contract (400 INVALID_REQUEST), and the answer names both fields and what came for each (validate.ts).
 */
function oneOf(first: string, second: string, required: boolean) {
  const message = required
    ? `expected exactly one of ${first} and ${second}`
    : `expected ${first} or ${second}, not both`;
  return (value: Record<string, unknown>, ctx: z.core.$RefinementCtx) => {
    const count = [first, second].filter((name) => value[name] !== undefined).length;
    if (count === 2 || (required && count === 0))
      ctx.addIssue({ code: "custom", message, params: { oneOf: [first, second] } });
  };
}

/**
 * `schema` or null. Not `schema.nullable()`: on a schema registered as a component, the OpenAPI generator either
 * makes the component itself nullable (so every use of it takes null) or, when the nullable carries metadata,
 * emits `allOf: [{$ref}, {type: ["object", "null"]}]`, which null never passes. A union gives
 * `anyOf: [{$ref}, {type: "null"}]`, as OpenAPI 3.1 spells a nullable reference.
 */
function orNull<S extends z.ZodType>(schema: S) {
  return z.union([schema, z.null()]);
}

/** A trailing stop's terms: exactly one of `distance` and `percent`. */
export const trailingStopInput = z
  .strictObject({
    distance: decimalInput.optional().openapi({ description: "Trail by this price distance (price decimals)." }),
    percent: decimalInput.optional().openapi({
      description: "Trail by this percent of the best price since activation: above 0, below 100, 2 decimals at most.",
    }),
    activationPrice: decimalInput.optional().openapi({
      description: "Start trailing once the bid (long) reaches it or the ask (short) falls to it; absent: at once.",
    }),
  })
  .superRefine(oneOf("distance", "percent", true))
  .openapi("TrailingStopRequest", { example: { distance: "50", activationPrice: "4400" } });

/**
 * An optional field whose view shows "none" as null (a trade's or order's exits, an order's expiry): null is none,
 * as absent is. It leaves validation as absent, so both spellings are the same body to an Idempotency-Key.
 */
function optionalOrNone<S extends z.ZodType>(schema: S) {
  return noneAsAbsent(schema.nullable());
}

/** The same for a schema registered as a component (see orNull). */
function optionalComponentOrNone<S extends z.ZodType>(schema: S) {
  return noneAsAbsent(orNull(schema));
}

function noneAsAbsent<S extends z.ZodType>(nullable: S) {
  return nullable.optional().transform((value) => value ?? undefined);
}

/** A price field that may be null or absent (none). */
function optionalPrice(description: string) {
  return optionalOrNone(decimalInput).openapi({
    type: ["string", "number", "null"],
    description: `${description} null or absent: none.`,
  });
}

export const createTradeRequest = z
  .strictObject({
    asset: assetInput,
    type: z.enum(["long", "short"]),
    margin: decimalInput.openapi({ description: "USD locked as margin, at most 6 decimals." }),
    leverage: leverageInput,
    stopLoss: optionalPrice("Close when the price reaches this level (at the asset's price decimals)."),
    takeProfit: optionalPrice("Close when the price reaches this level."),
    trailingStop: optionalComponentOrNone(trailingStopInput),
  })
  .openapi("CreateTradeRequest", {
    example: { asset: "ETH", type: "long", margin: "100", leverage: 10, stopLoss: "3900", takeProfit: "4600" },
  });

/** Trade ids are the engine's `T<shard>-<n>`; anything else cannot name a trade. */
const tradeIdInput = z
  .string()
  .max(32)
  .regex(/^T\d{1,6}-\d{1,16}$/, "expected a trade id such as T0-42");

export const closeTradeRequest = z
  .strictObject({
    tradeId: tradeIdInput,
    quantity: decimalInput.optional().openapi({ description: "Close this much of the trade (quantity decimals)." }),
    percent: decimalInput
      .optional()
      .openapi({ description: "Close this percent (above 0, at most 100) of the quantity, rounded down to the step." }),
  })
  .superRefine(oneOf("quantity", "percent", false))
  .openapi("CloseTradeRequest", {
    description: "Without `quantity` or `percent`, closes the whole trade; both: 400 INVALID_REQUEST.",
    example: { tradeId: "T0-42", percent: "50" },
  });

/** Each exit: absent leaves it as it is, null removes it, a value sets or moves it. */
export const modifyTradeRequest = z
  .strictObject({
    tradeId: tradeIdInput,
    stopLoss: decimalInput
      .nullable()
      .optional()
      .openapi({ type: ["string", "number", "null"], description: "New stop-loss; null removes it." }),
    takeProfit: decimalInput
      .nullable()
      .optional()
      .openapi({ type: ["string", "number", "null"], description: "New take-profit; null removes it." }),
    trailingStop: orNull(trailingStopInput).optional(),
  })
  .openapi("ModifyTradeRequest", { example: { tradeId: "T0-42", stopLoss: "4250", takeProfit: null } });

/**
 * RFC 3339's date-time (what the OpenAPI document declares), in either case, plus ISO 8601's time without seconds
 * (`T18:00Z`), which RFC 3339 leaves out but this API has always taken. Any number of fractional digits: clients
 * send 6 (Python's isoformat) or 9 (Java's Instant, Go's RFC3339Nano); past the millisecond they are dropped.
 */
const ISO_TIME = /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?(?:[Zz]|([+-])(\d\d):(\d\d))$/;

/**
 * `text` as ms since the epoch (truncated to the ms), NaN unless it is an ISO_TIME naming a real day and time:
 * Date.parse alone rolls a day or hour past its end over (February 30 is read as March 2), moving the time the
 * caller meant. What Date.parse is given is rebuilt in the one form ECMAScript requires it to read (uppercase,
 * seconds, 3 fractional digits), not left to its implementation-defined fallbacks.
 */
function parseIsoTime(text: string): number {
  const m = ISO_TIME.exec(text);
  if (m === null) return Number.NaN;
  const [, y, mo, d, h, mi, s = "00", fraction = "", sign, oh = "00", om = "00"] = m;
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = [y, mo, d, h, mi, s, oh, om].map(Number);
  const leap = year! % 4 === 0 && (year! % 100 !== 0 || year! % 400 === 0);
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month! - 1] ?? 0;
  const real =
    month! >= 1 && month! <= 12 && day! >= 1 && day! <= daysInMonth && hour! <= 23 && minute! <= 59 && second! <= 59;
  if (!real || offsetHours! > 23 || offsetMinutes! > 59) return Number.NaN;
  const ms = fraction.slice(0, 3).padEnd(3, "0");
  return Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}${sign === undefined ? "Z" : `${sign}${oh}:${om}`}`);
}

/** What a time in a request may look like (docs/api.md, Conventions), for the fields' descriptions. */
const TIME_FORMS = "RFC 3339, `T` and `Z` in either case, seconds optional; digits past the millisecond are dropped.";

/** An ISO 8601 time with its offset, converted to ms since the epoch (the engine's log time). */
export const isoTimeInput = z
  .string()
  .max(40)
  .transform((text, ctx) => {
    const ms = parseIsoTime(text);
    if (Number.isNaN(ms)) {
      // A "+01:00" sent unencoded in a query string arrives as " 01:00" (a "+" there means a space).
      const plusAsSpace = / \d\d:?\d\d$/.test(text);
      ctx.addIssue({
        code: "custom",
        message: `expected an ISO 8601 time with its offset, such as 2026-12-05T18:00:00Z${plusAsSpace ? ' (in a query string, send its "+" as %2B: a "+" there is a space)' : ""}`,
      });
      return z.NEVER;
    }
    return ms;
  })
  .openapi({ type: "string", format: "date-time", example: "2026-12-05T18:00:00Z" });

/** Why an entry order's trailing stop is refused, in its answer and its OpenAPI description. */
const TRAILING_UNSUPPORTED = "a trailing stop is not supported on pending orders yet";

/**
 * An entry order's trailing stop: not supported yet (the engine refuses one on a pending order before anything
 * else), so any value but null or absent is 422 INVALID_TRAILING_STOP, whatever it holds (`{}`, `{"distance":
 * "abc"}`, `5`), told before any other problem of the request, the other leg's included (params.first,
 * validate.ts): told about its terms or another field first, a user would fix them only to be refused anyway. An
 * OCO request with other than two legs is told its number of legs first (validate.ts markedFirst).
 * Documented as null, the one value taken. It leaves validation as absent.
 */
const entryTrailingStop = z
  .unknown()
  .superRefine((value, ctx) => {
    if (value === null || value === undefined) return;
    const params = { code: "INVALID_TRAILING_STOP", first: true, note: TRAILING_UNSUPPORTED };
    ctx.addIssue({ code: "custom", message: "expected none", params });
  })
  .transform((): undefined => undefined)
  .optional()
  .openapi({
    type: "null",
    description:
      `Not supported yet: null or absent. Any other value, whatever its terms, is refused 422 ` +
      `INVALID_TRAILING_STOP before any other check of the request (${TRAILING_UNSUPPORTED}), but for an OCO ` +
      `request's number of legs: other than two is a 400 first.`,
  });

/** An entry order's terms, as `POST /trade/orders` and each leg of `POST /trade/orders/oco` take them. */
export const entryOrderRequest = z
  .strictObject({
    asset: assetInput,
    side: z.enum(["long", "short"]),
    type: z.enum(["limit", "stop"]).openapi({
      description: "limit: fills at `price` or better; stop: fills once the market reaches `price`, at that quote.",
    }),
    price: decimalInput.openapi({ description: "The entry price (price decimals)." }),
    margin: decimalInput.openapi({
      description: "USD reserved now and locked in the trade on fill, at most 6 decimals.",
    }),
    leverage: leverageInput,
    stopLoss: optionalPrice("The trade's stop-loss on fill."),
    takeProfit: optionalPrice("The trade's take-profit on fill."),
    trailingStop: entryTrailingStop,
    expiresAt: optionalOrNone(isoTimeInput).openapi({
      type: ["string", "null"],
      format: "date-time",
      description: `Good till this time; null or absent: good till cancelled. ${TIME_FORMS}`,
    }),
  })
  .openapi("EntryOrderRequest", {
    example: {
      asset: "ETH",
      side: "long",
      type: "limit",
      price: "4200",
      margin: "100",
      leverage: 10,
      stopLoss: "4100",
    },
  });

/**
 * A pair, as the document says it: in OpenAPI 3.1 (JSON Schema 2020-12) a tuple's `prefixItems` alone takes arrays
 * of any length, whereas zod refuses all but two items.
 */
function exactlyTwo<S extends z.ZodType>(tuple: S) {
  return tuple.openapi({ minItems: 2, maxItems: 2 });
}

export const ocoRequest = z
  .strictObject({
    legs: exactlyTwo(
      z.tuple([entryOrderRequest, entryOrderRequest], { error: "expected an array of exactly two orders" }),
    ),
  })
  .openapi("OcoRequest", {
    example: {
      legs: [
        { asset: "ETH", side: "long", type: "stop", price: "4400", margin: "100", leverage: 10 },
        { asset: "ETH", side: "short", type: "stop", price: "4200", margin: "100", leverage: 10 },
      ],
    },
  });

/** Entry order ids are the engine's `P<shard>-<n>`; anything else cannot name one. */
export const cancelOrderRequest = z
  .strictObject({
    orderId: z
      .string()
      .max(32)
      .regex(/^P\d{1,6}-\d{1,16}$/, "expected an order id such as P0-42"),
  })
  .openapi("CancelOrderRequest", { example: { orderId: "P0-42" } });

/** No fields: the body may be left out or be `{}`; anything in it is an unknown field (validate.ts). */
export const streamTicketRequest = z
  .strictObject({})
  .openapi("StreamTicketRequest", { description: "No fields: send no body, or `{}`.", example: {} });

export const spotOrderRequest = z
  .strictObject({
    asset: assetInput,
    side: z.enum(["buy", "sell"]),
    quantity: decimalInput.openapi({ description: "Amount of the asset, at most its quantity decimals." }),
  })
  .openapi("SpotOrderRequest", { example: { asset: "ETH", side: "buy", quantity: "0.5" } });

/**
 * Not strict, and any token text of any length: an unknown, used or mangled token is the same 401 INVALID_TOKEN
 * (docs/api.md), and checkSignInToken refuses any but a token's own shape before a query.
 */
export const verifyQuery = z.object({
  token: z.string().min(1).openapi({
    description: "The token from the emailed link.",
    example: "q3Jx0v1cR1yH2b9W8mRkq8o0u1f5m3qv7bXy2lKzA4c",
  }),
});

/**
 * The query of a history route. Each gets its own cursor example, a position among that history's rows (a closed
 * trade's, an order's, a spot order's id): "Try it out" with another history's cursor names none of the user's
 * rows and silently resumes before its millisecond.
 */
function historyQuery(cursorExample: { at: string; id: string }) {
  return z.strictObject({
    limit: z
      .string()
      .regex(/^\d{1,3}$/)
      .transform(Number)
      .pipe(z.number().int().min(1).max(100))
      .optional()
      .openapi({ description: "Rows per page, 1 to 100 (default 50).", example: "20" }),
    // Decoded here, not in the route: a cursor that names no position is refused with the query, before the
    // request counts against the history's rate limit.
    cursor: z
      .string()
      .min(1)
      .max(200)
      .transform((text, ctx) => {
        const position = decodeCursor(text);
        if (position === undefined) {
          ctx.addIssue({ code: "custom", message: "expected the nextCursor of a previous page (a time and an id)" });
          return z.NEVER;
        }
        return position;
      })
      .optional()
      .openapi({
        type: "string",
        minLength: 1,
        maxLength: 200,
        description: "`nextCursor` of this history's previous page (the last row's time and id).",
        example: encodeCursor(cursorExample.at, cursorExample.id),
      }),
  });
}

/** GET /trade/history: a position among closes, by `closedAt` and `closeId`. */
export const tradeHistoryQuery = historyQuery({ at: "2026-12-05T11:00:00.000Z", id: "T0-42" });
/** GET /trade/orders/history: among entry orders, by `placedAt` and `id`. */
export const orderHistoryQuery = historyQuery({ at: "2026-12-05T10:00:00.000Z", id: "P0-7" });
/** GET /trade/spot-orders: among spot orders, by `executedAt` and `id`. */
export const spotOrderHistoryQuery = historyQuery({ at: "2026-12-05T10:00:00.000Z", id: "O0-7" });

/** Most candles one request returns. */
export const MAX_CANDLES = 1000;
const CANDLE_LIMIT = `a whole number from 1 to ${MAX_CANDLES}`;

/** `from` and `to` bound the candles' open times (docs/api.md, market data); both are optional. */
/** How far ahead of this server's clock a candles `from` may be without `to`. */
const CANDLES_CLOCK_SKEW_MS = 60_000;

export const candlesQuery = z
  .strictObject({
    asset: assetInput,
    interval: z.enum(CANDLE_INTERVALS).openapi({ description: "The candle length.", example: "1m" }),
    from: isoTimeInput.optional().openapi({ description: `Candles opening at or after this time. ${TIME_FORMS}` }),
    to: isoTimeInput
      .optional()
      .openapi({ description: `Candles opening at or before this time; absent: now. ${TIME_FORMS}` }),
    limit: z
      .string()
      .transform((text, ctx) => {
        const n = /^\d{1,4}$/.test(text) ? Number(text) : 0;
        if (n < 1 || n > MAX_CANDLES) {
          ctx.addIssue({ code: "custom", message: `expected ${CANDLE_LIMIT}`, params: { expected: CANDLE_LIMIT } });
          return z.NEVER;
        }
        return n;
      })
      .optional()
      .openapi({
        type: "string",
        description: `Most candles returned, 1 to ${MAX_CANDLES} (default 500).`,
        example: "100",
      }),
  })
  .superRefine((q, ctx) => {
    // Without `to`, the route reads up to now: a `from` after that is as much after `to` as one after a given `to`,
    // but for a client clock a little ahead of ours (asking from "now" by its clock), which just gets no candle.
    const to = q.to ?? Date.now() + CANDLES_CLOCK_SKEW_MS;
    if (q.from !== undefined && q.from > to) {
      const bound = new Date(to).toISOString();
      // The time shown is the bound itself, never now: read as now, it would look like our clock ran a minute ahead.
      const expected =
        q.to === undefined ? `a time no later than ${bound} (a minute after now)` : `a time not after to (${bound})`;
      ctx.addIssue({ code: "custom", path: ["from"], message: `expected ${expected}`, params: { expected } });
    }
  });

/** Idempotency-Key: 1–128 printable ASCII characters without spaces (docs/api.md). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

/**
 * The Idempotency-Key header of the trade POSTs. Checked by admission.ts with this same pattern (a failure is 400
 * INVALID_IDEMPOTENCY_KEY), where the rest of the key's handling lives.
 */
export const idempotencyKeyHeader = z.object({
  "Idempotency-Key": z
    .string()
    .regex(IDEMPOTENCY_KEY_PATTERN)
    .optional()
    .openapi({
      description:
        "1–128 printable ASCII characters without spaces, unique per intended action (a UUID). Same key and body: " +
        "the first answer again, acted on once, also after a 504 ENGINE_TIMEOUT, while the engine remembers the " +
        "request: 24 h, within the user's last 10,000 trade requests (with or without a key; refusals count). " +
        "Past either, and after a NO_PRICE or STALE_PRICE refusal (not remembered), the same key acts again. Same " +
        "key, other body or endpoint: 409 IDEMPOTENCY_CONFLICT while the API remembers the key (24 h from its first " +
        "use, within the user's last 10,000 keys). A request refused for its input before the engine sees it does " +
        "not use the key: a 400, or a 422 the API answers itself (every INVALID_PRICE; INVALID_TRAILING_STOP on an " +
        "entry order, or for terms not positive at their precision or over their range; INVALID_LEVERAGE of " +
        "1,000,000 or more). Without a key every request is a new action, its retry after a 504 included.",
      example: "3f6c1a52-8d0e-4b7a-9c1e-2a4b6d8f0e12",
    }),
});

/** Which error code a refused value of a field gets (validate.ts); any other failure is INVALID_REQUEST. */
const FIELD_ERRORS: ReadonlyMap<string, ApiErrorCode | RejectionCode> = new Map<string, ApiErrorCode | RejectionCode>([
  ["margin", "INVALID_AMOUNT"],
  ["quantity", "INVALID_AMOUNT"],
  ["percent", "INVALID_AMOUNT"], // a part of a trade to close; a trailing stop's is INVALID_TRAILING_STOP
  ["stopLoss", "INVALID_AMOUNT"],
  ["takeProfit", "INVALID_AMOUNT"],
  ["price", "INVALID_PRICE"],
  ["asset", "UNKNOWN_ASSET"],
  ["cursor", "INVALID_CURSOR"],
]);

/**
 * The code for a value refused at `path`: a trailing stop's terms are INVALID_TRAILING_STOP (docs/api.md), any
 * other field is its own (FIELD_ERRORS), by its name wherever it is nested (`legs.1.asset` is an asset).
 */
export function fieldErrorCode(path: readonly PropertyKey[]): ApiErrorCode | RejectionCode | undefined {
  const names = path.filter((key): key is string => typeof key === "string");
  if (names.slice(0, -1).includes("trailingStop")) return "INVALID_TRAILING_STOP";
  return FIELD_ERRORS.get(names.at(-1) ?? "");
}

// ---- responses (documented; the routes build them from engine answers and read models) -----------------------

const decimal = z.string().regex(/^-?\d+(\.\d+)?$/);
const TRADE_EXAMPLE = {
  id: "T0-42",
  asset: "ETH",
  type: "long",
  margin: "100",
  leverage: 10,
  quantity: "0.2325",
  openPrice: "4300.5",
  stopLoss: "3900",
  takeProfit: "4600",
  trailingStop: null,
  liquidationPrice: "3913.46",
  openedAt: "2026-12-05T10:00:00.000Z",
} as const;
const CLOSED_TRADE_EXAMPLE = {
  ...TRADE_EXAMPLE,
  closeId: "T0-42",
  closePrice: "4350",
  pnl: "11.50875",
  lossWaived: null,
  remainingQuantity: "0",
  closeReason: "manual",
  closedAt: "2026-12-05T11:00:00.000Z",
} as const;
const ORDER_EXAMPLE = {
  id: "P0-7",
  asset: "ETH",
  side: "long",
  type: "limit",
  price: "4200",
  margin: "100",
  leverage: 10,
  stopLoss: "4100",
  takeProfit: null,
  trailingStop: null,
  expiresAt: null,
  ocoWith: null,
  status: "pending",
  placedAt: "2026-12-05T10:00:00.000Z",
  updatedAt: "2026-12-05T10:00:00.000Z",
  fillPrice: null,
  tradeId: null,
  reason: null,
} as const;
const BALANCES_EXAMPLE = { USD: "9900", ETH: "0", BTC: "0", SOL: "0", ADA: "0" };

export const userView = z
  .object({ id: z.string(), email: z.string() })
  .openapi("User", { example: { id: "5b0e7c1e-3f4a-4c2b-9d8e-1a2b3c4d5e6f", email: "ada@example.com" } });
export const balancesView = z
  .object(Object.fromEntries(["USD", ...assetSymbols].map((s) => [s, decimal])))
  .openapi("Balances", {
    description: "Free amount of each currency and asset; USD locked as margin is not in it.",
    example: BALANCES_EXAMPLE,
  });
// The engine's own schemas (contract/messages.ts), rebuilt from their shapes with this module's z, which carries
// the OpenAPI metadata methods whatever the order in which modules were loaded.
const trailingStopView = z.object(trailingStopSchema.shape).openapi("TrailingStop", {
  description:
    "A trade's trailing stop. `bestPrice` (long: highest bid, short: lowest ask since activation) and `level` (the " +
    "price it fires at) are null until activated, then as of the trade's last output (its opening or fill, the " +
    "stop's activation, a modify, a partial close), not as of now: the engine's level follows the price with no " +
    "output. A live level is computed from the quotes (docs/trading-rules.md, Trailing stops).",
});
const tradeShape = { ...tradeSchema.shape, trailingStop: orNull(trailingStopView) };
const tradeView = z.object(tradeShape).openapi("Trade", { example: TRADE_EXAMPLE });
export const closedTradeView = z
  .object({ ...closedTradeSchema.shape, trailingStop: orNull(trailingStopView) })
  .openapi("ClosedTrade", { example: CLOSED_TRADE_EXAMPLE });
export const orderView = z
  .object({ ...orderSchema.shape, trailingStop: z.object(trailingStopSpecSchema.shape).nullable() })
  .openapi("Order", { example: ORDER_EXAMPLE });
export const openTradeView = z
  .object({
    ...tradeShape,
    currentPrice: decimal.nullable(),
    unrealizedPnl: decimal.nullable(),
  })
  .openapi("OpenTrade", {
    description: "An open trade with the price it would close at now (null while there is no quote) and its PnL.",
    example: { ...TRADE_EXAMPLE, currentPrice: "4350", unrealizedPnl: "11.50875" },
  });
export const spotOrderView = z
  .object({
    id: z.string(),
    asset: z.string(),
    side: z.enum(["buy", "sell"]),
    quantity: decimal,
    price: decimal,
    total: decimal,
    executedAt: z.string(),
  })
  .openapi("SpotOrder", {
    example: {
      id: "O0-7",
      asset: "ETH",
      side: "buy",
      quantity: "0.5",
      price: "4301",
      total: "2150.5",
      executedAt: "2026-12-05T10:00:00.000Z",
    },
  });
export const assetView = z
  .object({
    symbol: z.string(),
    name: z.string(),
    market: z.string(),
    priceDecimals: z.number().int(),
    quantityDecimals: z.number().int(),
    bid: decimal.nullable(),
    ask: decimal.nullable(),
    updatedAt: z.string().nullable(),
    source: z.enum(["backpack", "sim"]).nullable(),
  })
  .openapi("Asset", {
    example: {
      symbol: "ETH",
      name: "Ethereum",
      market: "ETH_USDC_PERP",
      priceDecimals: 2,
      quantityDecimals: 4,
      bid: "4300.5",
      ask: "4301",
      updatedAt: "2026-12-05T10:00:00.000Z",
      source: "backpack",
    },
  });
export const accountSummaryView = z
  .object({
    balance: decimal.openapi({
      description:
        "Free USD + margin in open trades + margin reserved by pending orders. Spot holdings are not in it (nor in " +
        "equity): they are in GET /api/v1/account/balance.",
    }),
    equity: decimal.openapi({ description: "Balance + unrealized PnL." }),
    marginUsed: decimal.openapi({
      description:
        "Margin in open trades + margin reserved by pending orders (an OCO pair reserves its larger margin, once).",
    }),
    freeMargin: decimal.openapi({ description: "Equity − margin used." }),
    marginLevel: decimal.nullable().openapi({
      description: "Equity / margin used × 100, a percentage rounded down to 2 decimals; null without margin used.",
    }),
    unrealizedPnl: decimal.openapi({
      description: "Open trades' PnL at the bid (long) or ask (short), each loss capped at the trade's margin.",
    }),
    pricesMissing: z.array(z.string()).openapi({
      description: "Assets of open trades whose market has no quote yet; those trades count at PnL 0.",
    }),
  })
  .openapi("AccountSummary", {
    example: {
      balance: "10000",
      equity: "10056.245259",
      marginUsed: "350",
      freeMargin: "9706.245259",
      marginLevel: "2873.21",
      unrealizedPnl: "56.245259",
      pricesMissing: [],
    },
  });
export const quoteView = z
  .object({
    asset: z.string(),
    market: z.string(),
    bid: decimal,
    ask: decimal,
    updatedAt: z.string(),
    source: z.enum(["backpack", "sim"]),
  })
  .openapi("Quote", {
    description: "A market's latest quote: the prices the engine trades on.",
    example: {
      asset: "ETH",
      market: "ETH_USDC_PERP",
      bid: "4300.5",
      ask: "4301",
      updatedAt: "2026-12-05T10:00:00.000Z",
      source: "backpack",
    },
  });
export const candleView = z
  .object({
    openTime: z.string().openapi({ description: "Start of the candle's interval, UTC." }),
    open: decimal,
    high: decimal,
    low: decimal,
    close: decimal,
  })
  .openapi("Candle", {
    description: "Open, high, low and close of the bid over one interval.",
    example: { openTime: "2026-12-05T10:00:00.000Z", open: "4300.5", high: "4312", low: "4298.25", close: "4310" },
  });
export const errorView = z.object({ error: z.object({ code: z.string(), message: z.string() }) }).openapi("Error", {
  description: "Every error: a stable `code` to branch on and a `message` for people.",
  example: { error: { code: "INSUFFICIENT_BALANCE", message: "The balance does not cover this order." } },
});

export const responses = {
  message: z.object({ message: z.string() }).openapi("Message"),
  user: z.object({ user: userView }),
  trade: z.object({ trade: tradeView }),
  closedTrade: z.object({
    trade: closedTradeView,
    remaining: orNull(tradeView).openapi({ description: "After a partial close, what stays open; else null." }),
  }),
  placedOrder: z.object({ order: orderView, balances: balancesView }),
  placedOco: z.object({ orders: exactlyTwo(z.tuple([orderView, orderView])), balances: balancesView }),
  cancelledOrder: z.object({ order: orderView, balances: balancesView }),
  pendingOrders: z.object({ orders: z.array(orderView) }),
  orderHistory: z.object({ orders: z.array(orderView), nextCursor: z.string().nullable() }),
  orderNotPending: errorView
    .extend({ order: orderView.optional().openapi({ description: "With ORDER_NOT_PENDING." }) })
    .openapi("OrderNotPending", {
      description: "A cancel of your order that already left the book: its current state.",
      example: {
        error: { code: "ORDER_NOT_PENDING", message: "Order P0-7 is no longer pending: it is filled." },
        order: { ...ORDER_EXAMPLE, status: "filled", fillPrice: "4199.5", tradeId: "T0-43" },
      },
    }),
  tradeClosed: errorView
    .extend({ trade: closedTradeView.optional().openapi({ description: "With TRADE_CLOSED." }) })
    .openapi("TradeClosed", {
      description: "A close or modify of your trade that is already closed: its close.",
      example: {
        error: { code: "TRADE_CLOSED", message: "Trade T0-42 is already closed (manual at 4350)." },
        trade: CLOSED_TRADE_EXAMPLE,
      },
    }),
  order: z.object({ order: spotOrderView, balances: balancesView }),
  openTrades: z.object({ trades: z.array(openTradeView) }),
  history: z.object({ trades: z.array(closedTradeView), nextCursor: z.string().nullable() }),
  spotOrders: z.object({ orders: z.array(spotOrderView), nextCursor: z.string().nullable() }),
  usdBalance: z.object({ asset: z.literal("USD"), balance: decimal }),
  balances: z.object({ balances: balancesView }),
  assets: z.object({ assets: z.array(assetView) }),
  accountSummary: z.object({ summary: accountSummaryView }),
  quotes: z.object({ quotes: z.array(quoteView) }),
  candles: z.object({ asset: z.string(), interval: z.enum(CANDLE_INTERVALS), candles: z.array(candleView) }),
  streamTicket: z
    .object({
      ticket: z.string().openapi({ description: "Single use: open the socket with `?ticket=` within 30 s." }),
      url: z.string().openapi({ description: "The stream's WebSocket URL (STREAM_URL)." }),
      expiresAt: z.string().openapi({ format: "date-time", description: "When the ticket stops working." }),
    })
    .openapi("StreamTicket", {
      example: {
        ticket: "q3F0c2Vj2ZJ6mS1W7oQmB8yX4nTQ0v5bqz9u1kGdLhE",
        url: "ws://localhost:3001/api/v1/stream",
        expiresAt: "2026-12-05T10:00:30.000Z",
      },
    }),
  health: z.object({
    status: z.enum(["ok", "unavailable"]),
    redis: z.boolean(),
    postgres: z.boolean(),
    engine: z.boolean(),
  }),
  mailbox: z.object({
    emails: z.array(
      z.object({
        to: z.string(),
        subject: z.string(),
        text: z.string(),
        html: z.string(),
        link: z.string(),
        sentAt: z.string(),
      }),
    ),
  }),
};
