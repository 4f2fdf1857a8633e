import { describe, expect, it } from "vitest";
import {
  isPrivateOutput,
  privateOutputSchema,
  type EngineInput,
  type EngineOutput,
  type OrderView,
  type TradeView,
} from "./messages.ts";
import {
  decodeInputFields,
  decodeOutputFields,
  encodeFields,
  outputEntries,
  privateEventOf,
  senderOf,
  stepContinues,
} from "./stream-fields.ts";
import { isoTime } from "../engine/core/step.ts";

const price: EngineInput = {
  type: "price_update",
  market: "ETH_USDC_PERP",
  bid: "4303.93",
  ask: "4304.1",
  exchangeTimeUs: "1700000000000000",
  source: "backpack",
};
const instruction = (i: Extract<EngineInput, { type: "user_instruction" }>["instruction"]): EngineInput => ({
  type: "user_instruction",
  requestId: "req-1",
  userId: "u_1",
  instruction: i,
});

const entry = {
  asset: "ETH",
  side: "long" as const,
  type: "limit" as const,
  price: "1950",
  margin: "100",
  leverage: 10,
  stopLoss: "1900",
};

const inputs: [string, EngineInput][] = [
  ["price_update", price],
  ["create_account", instruction({ kind: "create_account" })],
  ["open_trade (bare)", instruction({ kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 })],
  [
    "open_trade (SL/TP)",
    instruction({
      kind: "open_trade",
      asset: "BTC",
      side: "short",
      margin: "0.5",
      leverage: 3,
      stopLoss: "70000.5",
      takeProfit: "60000",
    }),
  ],
  ["close_trade", instruction({ kind: "close_trade", tradeId: "T0-17" })],
  ["spot_order", instruction({ kind: "spot_order", asset: "SOL", side: "sell", quantity: "1.25" })],
  ["close_trade (partial)", instruction({ kind: "close_trade", tradeId: "T0-17", percent: "25" })],
  [
    "open_trade (trailing)",
    instruction({
      kind: "open_trade",
      asset: "ETH",
      side: "long",
      margin: "100",
      leverage: 5,
      trailingStop: { distance: "25.5", activationPrice: "2100" },
    }),
  ],
  ["place_order", instruction({ kind: "place_order", ...entry, expiresAtMs: 1_700_000_060_000 })],
  [
    "place_oco",
    instruction({ kind: "place_oco", legs: [entry, { ...entry, side: "short", type: "stop", price: "1900" }] }),
  ],
  ["cancel_order", instruction({ kind: "cancel_order", orderId: "O0-3" })],
  [
    "modify_trade",
    instruction({
      kind: "modify_trade",
      tradeId: "T0-1",
      stopLoss: null,
      takeProfit: "2300",
      trailingStop: { percent: "1.5" },
    }),
  ],
];

const trade: TradeView = {
  id: "T0-1",
  asset: "ETH",
  type: "long",
  margin: "100",
  leverage: 10,
  quantity: "0.5",
  openPrice: "2000",
  stopLoss: "1900",
  takeProfit: null,
  trailingStop: null,
  liquidationPrice: "1809.04",
  openedAt: "2023-11-14T22:13:20.000Z",
};
const closed = {
  ...trade,
  closeId: "T0-1",
  lossWaived: null,
  remainingQuantity: "0",
  closePrice: "1900",
  pnl: "-50",
  closeReason: "stop_loss" as const,
  closedAt: "2023-11-14T22:13:21.000Z",
};
const order: OrderView = {
  id: "O0-3",
  asset: "ETH",
  side: "long",
  type: "limit",
  price: "1950",
  margin: "100",
  leverage: 10,
  stopLoss: "1900",
  takeProfit: null,
  trailingStop: null,
  expiresAt: "2023-11-14T22:14:20.000Z",
  ocoWith: null,
  status: "pending",
  placedAt: "2023-11-14T22:13:20.000Z",
  updatedAt: "2023-11-14T22:13:20.000Z",
  fillPrice: null,
  tradeId: null,
  reason: null,
};
const balances = { USD: "9950", ETH: "0", BTC: "0", SOL: "0", ADA: "0" };
const head = { id: "1700000000000-0:1", inputId: "1700000000000-0" };
const response = (answer: Extract<EngineOutput, { type: "order_response" }>["answer"]): EngineOutput => ({
  type: "order_response",
  ...head,
  requestId: "req-1",
  userId: "u_1",
  answer,
});

const outputs: [string, EngineOutput][] = [
  [
    "order_response create_account",
    response({ ok: true, result: { kind: "create_account", granted: true, balances } }),
  ],
  ["order_response open_trade", response({ ok: true, result: { kind: "open_trade", trade, balances } })],
  [
    "order_response close_trade",
    response({ ok: true, result: { kind: "close_trade", trade: closed, remaining: null, balances } }),
  ],
  [
    "order_response close_trade (partial)",
    response({
      ok: true,
      result: {
        kind: "close_trade",
        trade: { ...closed, closeId: "T0-1.1", quantity: "0.2", margin: "40", remainingQuantity: "0.3" },
        remaining: { ...trade, quantity: "0.3", margin: "60" },
        balances,
      },
    }),
  ],
  ["order_response place_order", response({ ok: true, result: { kind: "place_order", order, balances } })],
  [
    "order_response place_oco",
    response({ ok: true, result: { kind: "place_oco", orders: [order, { ...order, id: "O0-4" }], balances } }),
  ],
  [
    "order_response cancel_order",
    response({ ok: true, result: { kind: "cancel_order", order: { ...order, status: "cancelled" }, balances } }),
  ],
  [
    "order_response modify_trade",
    response({
      ok: true,
      result: {
        kind: "modify_trade",
        trade: {
          ...trade,
          trailingStop: {
            distance: null,
            percent: "1.5",
            activationPrice: null,
            activated: true,
            bestPrice: "2010",
            level: "1979.85",
          },
        },
      },
    }),
  ],
  [
    "order_response spot_order",
    response({
      ok: true,
      result: {
        kind: "spot_order",
        order: {
          id: "O0-2",
          asset: "SOL",
          side: "buy",
          quantity: "1.5",
          price: "150.25",
          total: "225.375",
          executedAt: "2023-11-14T22:13:20.000Z",
        },
        balances,
      },
    }),
  ],
  [
    "order_response rejection",
    response({ ok: false, error: { code: "NO_PRICE", message: "There is no price for this market yet." } }),
  ],
  ["closed_order", { type: "closed_order", ...head, userId: "u_1", seq: 7, trade: closed }],
  ["trade_opened", { type: "trade_opened", ...head, userId: "u_1", seq: 1, trade }],
  ["trade_updated", { type: "trade_updated", ...head, userId: "u_1", seq: 2, change: "exits", trade }],
  [
    "order_updated",
    {
      type: "order_updated",
      ...head,
      userId: "u_1",
      seq: 3,
      order: { ...order, status: "filled", tradeId: "T0-9" },
    },
  ],
  ["balances_changed", { type: "balances_changed", ...head, userId: "u_1", seq: 2 ** 40, balances }],
  [
    "quote_updated",
    {
      type: "quote_updated",
      ...head,
      asset: "ETH",
      market: "ETH_USDC_PERP",
      bid: "2000",
      ask: "2000.5",
      updatedAt: "2023-11-14T22:13:20.000Z",
      source: "sim",
    },
  ],
];

describe("encodeFields / decode round trip", () => {
  it.each(inputs)("input %s", (_name, message) => {
    const fields = encodeFields(message);
    expect(fields[0]).toBe("type");
    expect(fields[1]).toBe(message.type);
    expect(fields[2]).toBe("body");
    expect(decodeInputFields(fields)).toEqual({ ok: true, message });
  });

  it.each(outputs)("output %s", (_name, message) => {
    const fields = encodeFields(message);
    expect(fields[1]).toBe(message.type);
    expect(decodeOutputFields(fields)).toEqual({ ok: true, message });
  });

  it("does not accept an output as an input or the reverse", () => {
    expect(decodeInputFields(encodeFields(outputs[0]![1])).ok).toBe(false);
    expect(decodeOutputFields(encodeFields(price)).ok).toBe(false);
  });

  it("finds the fields in any order and without a type field", () => {
    const body = JSON.stringify(price);
    expect(decodeInputFields(["body", body, "type", "price_update"])).toEqual({ ok: true, message: price });
    expect(decodeInputFields(["body", body])).toEqual({ ok: true, message: price });
  });
});

describe("decoding refuses bad entries with a reason, never throwing", () => {
  const withBody = (body: unknown) => ["type", "user_instruction", "body", JSON.stringify(body)];
  const open = { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 };
  const valid = { type: "user_instruction", requestId: "req-1", userId: "u_1", instruction: open };

  it("a missing body", () => {
    expect(decodeInputFields(["type", "price_update"])).toEqual({ ok: false, reason: "entry has no body field" });
    expect(decodeInputFields([])).toEqual({ ok: false, reason: "entry has no body field" });
    // a dangling key with no value is not a body
    expect(decodeInputFields(["type", "price_update", "body"])).toEqual({
      ok: false,
      reason: "entry has no body field",
    });
  });

  it("a body that is not JSON", () => {
    for (const body of ["", "{", "{'a':1}", "undefined", "NaN"]) {
      expect(decodeInputFields(["type", "price_update", "body", body])).toEqual({
        ok: false,
        reason: "body is not valid JSON",
      });
    }
  });

  it("a type field that does not match the body", () => {
    const fields = ["type", "user_instruction", "body", JSON.stringify(price)];
    expect(decodeInputFields(fields)).toEqual({ ok: false, reason: "type field does not match body" });
  });

  it("an unknown message type", () => {
    const r = decodeInputFields(["type", "nonsense", "body", JSON.stringify({ ...price, type: "nonsense" })]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/^invalid message: type/);
  });

  it("JSON that is not an object", () => {
    for (const body of ["null", "[]", "1", '"price_update"', "true"]) {
      const r = decodeInputFields(["type", "price_update", "body", body]);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(/^invalid message: /);
    }
  });

  it("the valid base message decodes (so the cases below fail on their one field)", () => {
    expect(decodeInputFields(withBody(valid)).ok).toBe(true);
  });

  it.each([
    ["a negative margin", { ...valid, instruction: { ...open, margin: "-100" } }, "instruction.margin"],
    ["an exponent margin", { ...valid, instruction: { ...open, margin: "1e3" } }, "instruction.margin"],
    ["a numeric margin", { ...valid, instruction: { ...open, margin: 100 } }, "instruction.margin"],
    ["a leverage as a string", { ...valid, instruction: { ...open, leverage: "10" } }, "instruction.leverage"],
    ["a negative stop-loss", { ...valid, instruction: { ...open, stopLoss: "-1" } }, "instruction.stopLoss"],
    ["an unknown side", { ...valid, instruction: { ...open, side: "up" } }, "instruction.side"],
    ["an unknown instruction kind", { ...valid, instruction: { kind: "withdraw" } }, "instruction.kind"],
    ["a user id with a space", { ...valid, userId: "u 1" }, "userId"],
    ["an empty user id", { ...valid, userId: "" }, "userId"],
    ["a request id of 129 characters", { ...valid, requestId: "r".repeat(129) }, "requestId"],
    ["a request id with a space", { ...valid, requestId: "a b" }, "requestId"],
  ])("%s", (_name, body, path) => {
    const r = decodeInputFields(withBody(body));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(new RegExp(`^invalid message: ${path.replace(".", "\\.")}\\b`));
  });

  it("a request id of exactly 128 characters is fine", () => {
    expect(decodeInputFields(withBody({ ...valid, requestId: "r".repeat(128) })).ok).toBe(true);
  });

  it.each([
    ["an exponent bid", { ...price, bid: "4e3" }, "bid"],
    ["a negative ask", { ...price, ask: "-4304" }, "ask"],
    ["a numeric exchange time", { ...price, exchangeTimeUs: 1700000000000000 }, "exchangeTimeUs"],
    ["an unknown source", { ...price, source: "binance" }, "source"],
  ])("a price update with %s", (_name, body, path) => {
    const r = decodeInputFields(["type", "price_update", "body", JSON.stringify(body)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(new RegExp(`^invalid message: ${path}: `));
  });

  it("an output with a float leverage in its trade", () => {
    const bad = { type: "trade_opened", ...head, userId: "u_1", seq: 1, trade: { ...trade, leverage: 1.5 } };
    const r = decodeOutputFields(["type", "trade_opened", "body", JSON.stringify(bad)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/^invalid message: trade\.leverage: /);
  });

  it.each([
    ["no seq", undefined],
    ["a seq of 0", 0],
    ["a fractional seq", 1.5],
    ["a seq beyond 2^53", 2 ** 53],
    ["a seq as a string", "1"],
  ])("a private output with %s", (_name, seq) => {
    const bad = { type: "balances_changed", ...head, userId: "u_1", seq, balances };
    const r = decodeOutputFields(["type", "balances_changed", "body", JSON.stringify(bad)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/^invalid message: seq: /);
  });
});

describe("decodeOutputFields: what the worker relies on", () => {
  const quote = (fields: object) => ({
    type: "quote_updated",
    ...head,
    asset: "ETH",
    market: "ETH_USDC_PERP",
    bid: "1",
    ask: "2",
    updatedAt: "2026-12-05T18:00:00.000Z",
    source: "sim",
    ...fields,
  });
  const decode = (body: object) => decodeOutputFields(["body", JSON.stringify(body)]);

  it.each([
    ["the engine's form", "2026-12-05T18:00:00.123Z"],
    ["without a fraction", "2026-12-05T18:00:00Z"],
    ["a shorter fraction", "2026-12-05T18:00:00.5Z"],
    ["a leap day", "2024-02-29T23:59:59.999Z"],
    ["the first year", "0001-01-01T00:00:00.000Z"],
    ["the last year", "9999-12-31T23:59:59.999Z"],
  ])("takes a time in %s", (_name, updatedAt) => {
    expect(decode(quote({ updatedAt })).ok).toBe(true);
  });

  it("takes every time the engine writes", () => {
    for (let ms = 0; ms < 253_402_300_800_000; ms += 9_876_543_210_987)
      expect(decode(quote({ updatedAt: isoTime(ms) })).ok).toBe(true);
  });

  it.each([
    ["a word", "yesterday"],
    ["an offset", "2026-12-05T19:00:00.000+01:00"],
    ["no seconds", "2026-12-05T18:00Z"],
    ["a lowercase z", "2026-12-05T18:00:00.000z"],
    ["a space for T", "2026-12-05 18:00:00.000Z"],
    ["microseconds", "2026-12-05T18:00:00.000001Z"],
    ["a day past its month", "2026-02-29T00:00:00.000Z"],
    ["hour 24", "2026-12-05T24:00:00.000Z"],
    ["a leap second", "2026-12-31T23:59:60.000Z"],
    ["year 0", "0000-01-01T00:00:00.000Z"],
    ["an extended year", "+010000-01-01T00:00:00.000Z"],
  ])("refuses a time with %s, naming the field", (_name, updatedAt) => {
    expect(decode(quote({ updatedAt }))).toEqual({
      ok: false,
      reason: "invalid message: updatedAt: expected a UTC time such as 2026-12-05T18:00:00.000Z",
    });
  });

  it("takes output ids up to each part's bound", () => {
    expect(decode(quote({ id: "999999999999999-999999999999999:999999999" })).ok).toBe(true);
    expect(decode(quote({ id: "0-0:0" })).ok).toBe(true);
  });

  it.each([
    ["no n", "1700000000000-0"],
    ["no seq", "1700000000000:0"],
    ["a word", "bad"],
    ["ms of 16 digits", "1000000000000000-0:0"],
    ["seq of 16 digits", "1700000000000-1000000000000000:0"],
    ["n of 10 digits", "1700000000000-0:2147483648"],
    ["a sign", "1700000000000-0:-1"],
  ])("refuses an output id with %s", (_name, id) => {
    const r = decode(quote({ id }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/^invalid message: id: expected <ms>-<seq>:<n>/);
  });

  it("refuses a balances_changed without balances, and takes answers whose balances are empty", () => {
    const empty = { type: "balances_changed", ...head, userId: "u_1", seq: 1, balances: {} };
    expect(decode(empty)).toEqual({
      ok: false,
      reason: "invalid message: balances: expected at least one asset's balance",
    });
    expect(decode(response({ ok: true, result: { kind: "create_account", granted: false, balances: {} } })).ok).toBe(
      true,
    );
  });
});

describe("privateEventOf", () => {
  const fields = (body: object, type = "balances_changed") => ["type", type, "body", JSON.stringify(body)];
  it("names the user and seq of an entry that says it is a private output's", () => {
    expect(privateEventOf(fields({ userId: "u_1", seq: 7, balances: {} }))).toEqual({
      private: true,
      userId: "u_1",
      seq: 7,
    });
    expect(privateEventOf(["body", JSON.stringify({ type: "trade_opened", userId: "u_1", seq: 2 })])).toMatchObject({
      seq: 2,
    });
  });
  it.each([
    ["no seq", { userId: "u_1" }],
    ["a seq of 0", { userId: "u_1", seq: 0 }],
    ["a seq as a string", { userId: "u_1", seq: "7" }],
    ["a user id with a space", { userId: "u 1", seq: 7 }],
  ])("says private, and names no one, with %s", (_name, body) => {
    expect(privateEventOf(fields(body))).toEqual({ private: true });
  });
  it("says not private for another type, an unknown one, or no body", () => {
    expect(privateEventOf(fields({ userId: "u_1", seq: 7 }, "order_response"))).toEqual({ private: false });
    expect(privateEventOf(fields({ userId: "u_1", seq: 7 }, "toString"))).toEqual({ private: false });
    expect(privateEventOf(["type", "balances_changed"])).toEqual({ private: true });
    expect(privateEventOf(["body", "{"])).toEqual({ private: false });
  });
});

describe("isPrivateOutput", () => {
  it("is true exactly for the outputs that carry a user's seq", () => {
    const privateOnes = outputs.filter(([, o]) => isPrivateOutput(o)).map(([, o]) => o);
    expect(new Set(privateOnes.map((o) => o.type))).toEqual(
      new Set(["closed_order", "trade_opened", "trade_updated", "order_updated", "balances_changed"]),
    );
    for (const o of privateOnes) expect(privateOutputSchema.parse(o)).toEqual(o);
    for (const [, o] of outputs) expect(isPrivateOutput(o)).toBe("seq" in o);
  });
});

describe("outputEntries", () => {
  const balances = (userId: string, inputId: string, n: number, seq: number): EngineOutput => ({
    type: "balances_changed",
    id: `${inputId}:${n}`,
    inputId,
    userId,
    seq,
    balances: { USD: "1" },
  });

  it("marks `more` on an event its step (input) follows with another event for the same user, and on no other", () => {
    // One price input closes two users' trades (each: its close, then its balances); a later input pays bea again
    const outputs = [
      balances("ann", "5-0", 0, 1),
      balances("bea", "5-0", 1, 1),
      balances("ann", "5-0", 2, 2),
      balances("bea", "5-0", 3, 2),
      balances("bea", "6-0", 0, 3),
    ];
    const entries = outputEntries(outputs);
    expect(entries.map(stepContinues)).toEqual([true, true, false, false, false]);
    expect(entries[0]).toEqual([...encodeFields(outputs[0]!), "more", "1"]);
    expect(entries[2]).toEqual(encodeFields(outputs[2]!));
    expect(entries.map((fields) => decodeOutputFields(fields))).toEqual(
      outputs.map((message) => ({ ok: true, message })),
    );
  });

  it("leaves quotes and answers unmarked, and does not let them hide a user's next event", () => {
    const quote: EngineOutput = {
      type: "quote_updated",
      id: "7-0:0",
      inputId: "7-0",
      asset: "ETH",
      market: "ETH_USDC_PERP",
      bid: "1",
      ask: "1",
      updatedAt: "2026-12-06T00:00:00.007Z",
      source: "sim",
    };
    const entries = outputEntries([balances("ann", "7-0", 1, 1), quote, balances("ann", "7-0", 2, 2)]);
    expect(entries.map(stepContinues)).toEqual([true, false, false]);
  });

  it("stepContinues reads only a `more` field that is 1", () => {
    expect(stepContinues(["type", "x", "body", "{}"])).toBe(false);
    expect(stepContinues(["type", "x", "body", "{}", "more", "0"])).toBe(false);
    expect(stepContinues(["type", "x", "body", "more", "more", "1"])).toBe(true);
  });
});

describe("senderOf", () => {
  it("names the user and request of a malformed instruction, so it can be answered", () => {
    const body = JSON.stringify({
      type: "user_instruction",
      userId: "alice",
      requestId: "r-1",
      instruction: { kind: "teleport" },
    });
    expect(decodeInputFields(["type", "user_instruction", "body", body]).ok).toBe(false);
    expect(senderOf(["type", "user_instruction", "body", body])).toEqual({ userId: "alice", requestId: "r-1" });
  });

  it("names nobody when the body is not JSON, not an object, or the ids are invalid", () => {
    expect(senderOf(["type", "x", "body", "{nope"])).toBeUndefined();
    expect(senderOf(["type", "x", "body", "[1,2]"])).toBeUndefined();
    expect(senderOf(["type", "x"])).toBeUndefined();
    expect(senderOf(["type", "x", "body", JSON.stringify({ userId: "has space", requestId: "r" })])).toBeUndefined();
    expect(
      senderOf(["type", "x", "body", JSON.stringify({ userId: "alice", requestId: "x".repeat(129) })]),
    ).toBeUndefined();
  });
});
