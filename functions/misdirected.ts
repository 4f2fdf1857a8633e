/**
 * Requests sent to the wrong one of look-alike endpoints, told where they belong. `/trade/order` (a spot order) and
 * `/trade/orders` (an entry order) differ by one letter, and `type` and `side` change meaning between the trade
 * endpoints (docs/api.md, Endpoints): a body refused by one that another takes gets, after the refusal, the
 * endpoint that takes it (`A spot order? That body fits POST /api/v1/trade/order.`). An id of one kind sent where
 * another is expected (a spot order's `O0-14` to cancel) is told what it is the id of (validate.ts adds it to the
 * field's refusal).
 */
import type { z } from "zod";
import {
  cancelOrderRequest,
  closeTradeRequest,
  createTradeRequest,
  entryOrderRequest,
  modifyTradeRequest,
  ocoRequest,
  spotOrderRequest,
} from "./schemas.ts";

interface Endpoint {
  readonly body: z.ZodType;
  /** POST path, for the answer. */
  readonly path: string;
  /** What a body of it is, as a question: "A spot order?". */
  readonly asked: string;
  /** Endpoints whose refused bodies are never sent here, where the same name means something else. */
  readonly notFrom?: readonly z.ZodType[];
}

/**
 * The trade POSTs, each with the body it takes. A refused body that fits several is pointed at none: a bare
 * `{"tradeId"}` fits both a close and a modify, and nothing in it says the whole trade was meant to be closed. Nor is
 * a modify's pointed at a close (`notFrom`).
 */
export const LOOK_ALIKE_ENDPOINTS: readonly Endpoint[] = [
  { body: createTradeRequest, path: "/api/v1/trade/create", asked: "A trade at the market price" },
  { body: spotOrderRequest, path: "/api/v1/trade/order", asked: "A spot order" },
  { body: entryOrderRequest, path: "/api/v1/trade/orders", asked: "A limit or stop order" },
  { body: ocoRequest, path: "/api/v1/trade/orders/oco", asked: "An OCO pair" },
  // A modify's `percent` belongs in its trailingStop: the close it would fit closes that much of the trade for good.
  { body: closeTradeRequest, path: "/api/v1/trade/close", asked: "A close", notFrom: [modifyTradeRequest] },
  { body: modifyTradeRequest, path: "/api/v1/trade/modify", asked: "A change of a trade's exits" },
  { body: cancelOrderRequest, path: "/api/v1/trade/orders/cancel", asked: "A cancel of an entry order" },
];

/**
 * The endpoint `body`, refused by `schema`, fits instead, as a sentence for the answer; undefined when `schema` is
 * not one of the look-alikes, or not exactly one other takes the body. Only a refused body is tried, so an accepted
 * one costs nothing.
 */
export function misdirectedBodyHint(schema: z.ZodType, body: unknown): string | undefined {
  if (!LOOK_ALIKE_ENDPOINTS.some((endpoint) => endpoint.body === schema)) return undefined;
  const fits = LOOK_ALIKE_ENDPOINTS.filter(
    (other) => other.body !== schema && !other.notFrom?.includes(schema) && other.body.safeParse(body).success,
  );
  if (fits.length !== 1) return undefined;
  return `${fits[0]!.asked}? That body fits POST ${fits[0]!.path}.`;
}

/** An id the engine gives (schemas.ts checks each field's own kind): its letter says the kind. */
const ENGINE_ID = /^[TPO]\d{1,6}-\d{1,16}$/;

/** What an id is when sent in a field that takes another kind: by the field, then the id's letter. */
const OTHER_KIND: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  orderId: {
    T: "a trade's id: a trade is closed with POST /api/v1/trade/close, its exits changed with /api/v1/trade/modify",
    O: "a spot order's id: spot orders fill at once and cannot be cancelled",
  },
  tradeId: {
    P:
      "an entry order's id: it has no exits to change or close until it fills and opens a trade, and POST " +
      "/api/v1/trade/orders/cancel cancels it",
    O: "a spot order's id: spot orders fill at once and open no trade",
  },
};

/**
 * What is wrong with a value refused at `field` (a path ending in `tradeId` or `orderId`) when it is an id of another
 * kind, for `received "O0-14": a spot order's id: …`; undefined for anything else.
 */
export function misdirectedIdNote(field: string, value: unknown): string | undefined {
  if (typeof value !== "string" || !ENGINE_ID.test(value)) return undefined;
  return OTHER_KIND[field.slice(field.lastIndexOf(".") + 1)]?.[value[0]!];
}
