/**
 * A body sent to the wrong one of the look-alike trade endpoints is told which one takes it, and an id of another
 * kind is told what it is the id of: the answers as validate.ts reads a body, in a bare Hono app (no network).
 */
import { Hono } from "hono";
import type { z } from "zod";
import { describe, expect, it } from "vitest";
import { ApiError } from "./errors.ts";
import { parseJsonBody } from "./json-body.ts";
import { LOOK_ALIKE_ENDPOINTS } from "./misdirected.ts";
import {
  cancelOrderRequest,
  closeTradeRequest,
  createTradeRequest,
  entryOrderRequest,
  modifyTradeRequest,
  ocoRequest,
  spotOrderRequest,
} from "./schemas.ts";
import { apiDocument, dereferenced } from "./testing/document.ts";
import { readJson } from "./validate.ts";

/** The code and message `schema` refuses `body` with, as a route reading it answers. */
async function refusal(schema: z.ZodType, body: unknown): Promise<{ code: string; message: string }> {
  const app = new Hono();
  app.post("/", async (c) => {
    try {
      await readJson(c, schema);
      return c.json({ code: "ACCEPTED", message: "" });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return c.json({ code: err.code, message: err.message });
    }
  });
  const res = await app.request("/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { code: string; message: string };
}

const ENTRY = { asset: "ETH", side: "long", type: "limit", price: "4200", margin: "100", leverage: 10 };
const SPOT = { asset: "ETH", side: "buy", quantity: "0.1" };
const TRADE = { asset: "ETH", type: "long", margin: "100", leverage: 10 };

describe("a body sent to a look-alike endpoint", () => {
  it("an entry order sent to the spot order endpoint is told POST /trade/orders", async () => {
    expect(await refusal(spotOrderRequest, ENTRY)).toEqual({
      code: "INVALID_REQUEST",
      message:
        'Unknown fields "type", "price", "margin" and "leverage"; this request takes asset, side and quantity. ' +
        'side: expected one of "buy", "sell", received "long". quantity: expected a positive decimal such as "10" ' +
        'or "12.5", received nothing. A limit or stop order? That body fits POST /api/v1/trade/orders.',
    });
  });

  it("a spot order sent to the entry order endpoint is told POST /trade/order", async () => {
    const { message } = await refusal(entryOrderRequest, SPOT);
    expect(message).toMatch(/^Unknown field "quantity"; this request takes asset, side, type, price, margin, /);
    expect(message).toMatch(/ \(\d more problems\.\) A spot order\? That body fits POST \/api\/v1\/trade\/order\.$/);
  });

  it("a trade's body (type long) sent to the entry order endpoint is told POST /trade/create, and back", async () => {
    expect((await refusal(entryOrderRequest, TRADE)).message).toMatch(
      / A trade at the market price\? That body fits POST \/api\/v1\/trade\/create\.$/,
    );
    expect((await refusal(createTradeRequest, ENTRY)).message).toMatch(
      / A limit or stop order\? That body fits POST \/api\/v1\/trade\/orders\.$/,
    );
  });

  it("one order and an OCO pair are told each other's endpoint", async () => {
    expect((await refusal(ocoRequest, ENTRY)).message).toMatch(
      / A limit or stop order\? That body fits POST \/api\/v1\/trade\/orders\.$/,
    );
    expect((await refusal(entryOrderRequest, { legs: [ENTRY, { ...ENTRY, price: "4100" }] })).message).toMatch(
      / An OCO pair\? That body fits POST \/api\/v1\/trade\/orders\/oco\.$/,
    );
  });

  it("a close is told a modify's endpoint, never the other way; a cancel sent to close is told its own", async () => {
    expect(await refusal(closeTradeRequest, { tradeId: "T0-1", stopLoss: "4000" })).toEqual({
      code: "INVALID_REQUEST",
      message:
        'Unknown field "stopLoss"; this request takes tradeId, quantity and percent. ' +
        "A change of a trade's exits? That body fits POST /api/v1/trade/modify.",
    });
    // A modify's flat percent meant a trailing stop's far more likely than a close, which cannot be undone.
    expect((await refusal(modifyTradeRequest, { tradeId: "T0-1", percent: "50" })).message).toBe(
      'Unknown field "percent"; this request takes tradeId, stopLoss, takeProfit and trailingStop.',
    );
    expect((await refusal(closeTradeRequest, { orderId: "P0-1" })).message).toMatch(
      / A cancel of an entry order\? That body fits POST \/api\/v1\/trade\/orders\/cancel\.$/,
    );
  });

  it("a bare trade id, which a close and a modify both take, is pointed at neither", async () => {
    // A close would close the whole trade, and the body does not say that is what was meant.
    expect(await refusal(cancelOrderRequest, { tradeId: "T0-1" })).toEqual({
      code: "INVALID_REQUEST",
      message:
        'Unknown field "tradeId"; this request takes orderId. orderId: expected an order id such as P0-42, ' +
        "received nothing.",
    });
    for (const schema of [createTradeRequest, spotOrderRequest, entryOrderRequest, ocoRequest])
      expect((await refusal(schema, { tradeId: "T0-1" })).message).not.toMatch(/fits POST/);
  });

  it("a body no other endpoint takes is told only its problems", async () => {
    expect(await refusal(createTradeRequest, { ...TRADE, stoploss: "3900" })).toEqual({
      code: "INVALID_REQUEST",
      message:
        'Unknown field "stoploss"; this request takes asset, type, margin, leverage, stopLoss, takeProfit and ' +
        "trailingStop.",
    });
    expect((await refusal(spotOrderRequest, { ...SPOT, side: "long" })).message).toBe(
      'side: expected one of "buy", "sell", received "long".',
    );
  });

  it("names only endpoints that take the body they are named for, as the API document has them", () => {
    const doc = dereferenced(apiDocument("http://localhost:3000"));
    const paths = doc.paths as Record<string, { post?: { requestBody?: { content: Record<string, unknown> } } }>;
    for (const endpoint of LOOK_ALIKE_ENDPOINTS) {
      const content = paths[endpoint.path]?.post?.requestBody?.content["application/json"];
      const example = (content as { schema?: { example?: unknown } } | undefined)?.schema?.example;
      expect(example, endpoint.path).toBeDefined();
      // As the API reads a body: numbers as JsonNumber (json-body.ts).
      expect(endpoint.body.safeParse(parseJsonBody(JSON.stringify(example))).success, endpoint.path).toBe(true);
    }
  });
});

describe("an id of another kind", () => {
  it("a spot order's id sent to cancel is told that spot orders fill at once and cannot be cancelled", async () => {
    expect(await refusal(cancelOrderRequest, { orderId: "O0-14" })).toEqual({
      code: "INVALID_REQUEST",
      message:
        'orderId: expected an order id such as P0-42, received "O0-14": a spot order\'s id: spot orders fill at ' +
        "once and cannot be cancelled.",
    });
  });

  it("a trade's id sent to cancel, and an entry order's or a spot order's sent to close, are told what they are", async () => {
    expect((await refusal(cancelOrderRequest, { orderId: "T0-3" })).message).toBe(
      'orderId: expected an order id such as P0-42, received "T0-3": a trade\'s id: a trade is closed with ' +
        "POST /api/v1/trade/close, its exits changed with /api/v1/trade/modify.",
    );
    expect((await refusal(closeTradeRequest, { tradeId: "P0-7" })).message).toBe(
      'tradeId: expected a trade id such as T0-42, received "P0-7": an entry order\'s id: it has no exits to ' +
        "change or close until it fills and opens a trade, and POST /api/v1/trade/orders/cancel cancels it.",
    );
    expect((await refusal(modifyTradeRequest, { tradeId: "O0-14", stopLoss: "1" })).message).toBe(
      'tradeId: expected a trade id such as T0-42, received "O0-14": a spot order\'s id: spot orders fill at once ' +
        "and open no trade.",
    );
    // Anything else is told as before.
    expect((await refusal(cancelOrderRequest, { orderId: "X0-14" })).message).toBe(
      'orderId: expected an order id such as P0-42, received "X0-14".',
    );
  });
});
