/**
 * The new trade routes' validation (docs/api.md): a bad field is a 400 that names the field, what was expected and
 * what was received, before anything reaches the engine. On the real API stack (its session needs Redis).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let ann: ReturnType<typeof client>;
let inputsBefore: number;

beforeAll(async () => {
  stack = await startApiStack();
  ann = client(stack.app, (await stack.signIn("ann@example.com")).token);
  inputsBefore = await stack.redis.xlen(stack.keys.input);
});
afterAll(() => stack.close());

/** A cursor as a client could make it by hand: the time and id as given, in the cursor's encoding. */
const position = (at: string, id: string) => Buffer.from(JSON.stringify([at, id])).toString("base64url");

const ORDER = { asset: "ETH", side: "long", type: "limit", price: "1900", margin: "100", leverage: 10 };

/** Refused before the engine: 400, or the status docs/api.md gives a field's own code (INVALID_PRICE: 422). */
async function refused(path: string, body: unknown, code: string, message: string, status = 400) {
  const res = await ann.post(path, body);
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.error).toEqual({ code, message });
}

describe("validation of the order and trade routes", () => {
  it("POST /trade/orders: each bad field is named with what was expected and received", async () => {
    // A missing field is INVALID_REQUEST (docs/api.md's error table); INVALID_AMOUNT is for an amount it refused.
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, price: undefined },
      "INVALID_REQUEST",
      'price: expected a positive decimal such as "10" or "12.5", received nothing.',
    );
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, price: "1900.125" },
      "INVALID_PRICE",
      'price: expected at most 2 decimals (ETH prices are in steps of 0.01), received "1900.125".',
      422,
    );
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, type: "market" },
      "INVALID_REQUEST",
      'type: expected one of "limit", "stop", received "market".',
    );
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, expiresAt: "tomorrow" },
      "INVALID_REQUEST",
      'expiresAt: expected an ISO 8601 time with its offset, such as 2026-12-05T18:00:00Z, received "tomorrow".',
    );
  });

  it("POST /trade/orders: a trailing stop is refused first, whatever its terms, as the engine refuses it", async () => {
    const unsupported = "a trailing stop is not supported on pending orders yet";
    // Terms the schema refuses (neither or both of distance and percent, "abc"), the route would refuse (10.001) or
    // would take: the same refusal, not one the user would fix only to be refused anyway. So is any other value.
    for (const trailingStop of [
      {},
      { distance: "10", percent: "1" },
      { distance: "abc" },
      { distance: true },
      { distance: "10.001" },
      { distance: "10" },
    ]) {
      await refused(
        "/api/v1/trade/orders",
        { ...ORDER, price: "0", trailingStop },
        "INVALID_TRAILING_STOP",
        `trailingStop: expected none, received an object: ${unsupported}.`,
        422,
      );
    }
    for (const [trailingStop, shown] of [
      [5, "5"],
      ["none", '"none"'],
      [[], "an array of 0 items"],
    ] as const) {
      await refused(
        "/api/v1/trade/orders",
        { ...ORDER, trailingStop },
        "INVALID_TRAILING_STOP",
        `trailingStop: expected none, received ${shown}: ${unsupported}.`,
        422,
      );
    }
    // Before any other problem of the request, told after it.
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, asset: undefined, price: "abc", trailingStop: { percent: "0" } },
      "INVALID_TRAILING_STOP",
      `trailingStop: expected none, received an object: ${unsupported}. ` +
        'asset: expected one of "ETH", "BTC", "SOL", "ADA", received nothing. ' +
        'price: expected a positive decimal such as "10" or "12.5", received "abc".',
      422,
    );
  });

  it("POST /trade/orders: a refused price is 422 INVALID_PRICE, a refused exit price 400 INVALID_AMOUNT", async () => {
    const price = (value: unknown, message: string) =>
      refused("/api/v1/trade/orders", { ...ORDER, price: value }, "INVALID_PRICE", message, 422);
    await price("0", 'price: expected an amount above zero, received "0".');
    await price("abc", 'price: expected a positive decimal such as "10" or "12.5", received "abc".');
    await price("-5", 'price: expected a positive decimal such as "10" or "12.5", received "-5".');
    await price(
      "4400.001",
      'price: expected at most 2 decimals (ETH prices are in steps of 0.01), received "4400.001".',
    );
    // BTC's prices have one decimal: the examples above are BTC prices too, and the refusal names BTC's step.
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, asset: "BTC", price: "4303.93" },
      "INVALID_PRICE",
      'price: expected at most 1 decimal (BTC prices are in steps of 0.1), received "4303.93".',
      422,
    );
    await price("99999999", 'price: expected at most 1000000, received "99999999": 8 digits before the decimal point.');
    await price("1000000.01", 'price: expected at most 1000000, received "1000000.01".');
    // A value of the wrong JSON type is INVALID_REQUEST, whatever the field
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, price: true },
      "INVALID_REQUEST",
      "price: expected a string or a number, received true.",
    );
    await refused(
      "/api/v1/trade/orders",
      { ...ORDER, stopLoss: "99999999" },
      "INVALID_AMOUNT",
      'stopLoss: expected at most 1000000, received "99999999": 8 digits before the decimal point.',
    );
  });

  it("POST /trade/orders/oco: a field error names the leg", async () => {
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [ORDER, { ...ORDER, price: "12.345" }] },
      "INVALID_PRICE",
      'legs.1.price: expected at most 2 decimals (ETH prices are in steps of 0.01), received "12.345".',
      422,
    );
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [{ ...ORDER, price: "abc" }, ORDER] },
      "INVALID_PRICE",
      'legs.0.price: expected a positive decimal such as "10" or "12.5", received "abc".',
      422,
    );
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [ORDER, { ...ORDER, asset: "DOGE" }] },
      "UNKNOWN_ASSET",
      'legs.1.asset: expected one of "ETH", "BTC", "SOL", "ADA", received "DOGE".',
    );
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [ORDER] },
      "INVALID_REQUEST",
      "legs: expected an array of exactly two orders, received an array of 1 item.",
    );
    // A missing field of a leg is named by its path, with what the field expects.
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [ORDER, { ...ORDER, price: undefined }] },
      "INVALID_REQUEST",
      'legs.1.price: expected a positive decimal such as "10" or "12.5", received nothing.',
    );
    // A leg's fields are worded as the same fields of a single order.
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [ORDER, { ...ORDER, leverage: "10" }] },
      "INVALID_REQUEST",
      'legs.1.leverage: expected a whole number from 1 to 100, as a JSON number such as 10, received the string "10".',
    );
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [{ ...ORDER, margin: true }, ORDER] },
      "INVALID_REQUEST",
      'legs.0.margin: expected a positive decimal such as "10" or "12.5", received true.',
    );
    await refused(
      "/api/v1/trade/orders/oco",
      { legs: [ORDER, { ...ORDER, trailingStop: { percent: "0" } }] },
      "INVALID_TRAILING_STOP",
      "legs.1.trailingStop: expected none, received an object: a trailing stop is not supported on pending orders yet.",
      422,
    );
    // Either leg's trailing stop before the other leg's checks: the route's (too many decimals) and the schema's.
    for (const [price, trailingStop, after] of [
      ["1900.001", { distance: "5" }, ""],
      ["abc", {}, ' legs.0.price: expected a positive decimal such as "10" or "12.5", received "abc".'],
    ] as const) {
      await refused(
        "/api/v1/trade/orders/oco",
        {
          legs: [
            { ...ORDER, price },
            { ...ORDER, trailingStop },
          ],
        },
        "INVALID_TRAILING_STOP",
        "legs.1.trailingStop: expected none, received an object: a trailing stop is not supported on pending orders " +
          `yet.${after}`,
        422,
      );
    }
    await refused(
      "/api/v1/trade/orders/oco",
      {},
      "INVALID_REQUEST",
      "legs: expected an array of exactly two orders, received nothing.",
    );
  });

  it("POST /trade/orders/oco: the wrong number of legs is told first, whichever leg holds a trailing stop", async () => {
    const withStop = { ...ORDER, trailingStop: { distance: "5" } };
    const count = (n: number) =>
      `legs: expected an array of exactly two orders, received an array of ${n} item${n === 1 ? "" : "s"}.`;
    const told =
      "legs.1.trailingStop: expected none, received an object: a trailing stop is not supported on " +
      "pending orders yet.";
    for (const [legs, message] of [
      [[ORDER, withStop, ORDER], `${count(3)} ${told}`], // zod checks the first two of three legs
      [[ORDER, ORDER, withStop], count(3)],
      [[withStop], count(1)], // and none of one
      [[ORDER, ORDER, ORDER, withStop], count(4)],
    ] as const)
      await refused("/api/v1/trade/orders/oco", { legs }, "INVALID_REQUEST", message);
  });

  it("POST /trade/orders/cancel and /trade/close and /trade/modify: ids and amounts", async () => {
    await refused(
      "/api/v1/trade/orders/cancel",
      { orderId: "O 1" },
      "INVALID_REQUEST",
      'orderId: expected an order id such as P0-42, received "O 1".',
    );
    await refused(
      "/api/v1/trade/close",
      { tradeId: "T0-1", quantity: "0.1", percent: "50" },
      "INVALID_REQUEST",
      'quantity and percent: expected quantity or percent, not both, received quantity "0.1" and percent "50".',
    );
    await refused(
      "/api/v1/trade/close",
      { tradeId: "T0-1", percent: "100.5" },
      "INVALID_AMOUNT",
      'percent: expected a percent from 0.01 to 100, received "100.5".',
    );
    await refused(
      "/api/v1/trade/modify",
      { tradeId: "T0-1", stopLoss: "abc" },
      "INVALID_AMOUNT",
      'stopLoss: expected a positive decimal such as "10" or "12.5", received "abc".',
    );
    await refused(
      "/api/v1/trade/modify",
      { tradeId: "T0-1", trailingStop: {} },
      "INVALID_REQUEST",
      "trailingStop: expected exactly one of distance and percent, received neither.",
    );
  });

  it("GET /trade/orders/history: a cursor that is not a position is 400 INVALID_CURSOR naming it", async () => {
    const res = await ann.get("/api/v1/trade/orders/history?cursor=bm90LWEtY3Vyc29y");
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual({
      code: "INVALID_CURSOR",
      message: 'cursor: expected the nextCursor of a previous page (a time and an id), received "bm90LWEtY3Vyc29y".',
    });
  });

  it("GET /trade/history: a hand-made cursor that decodes to a position is read, as docs/api.md says", async () => {
    const cursor = Buffer.from(JSON.stringify(["2026-12-06T08:47:00.000Z", "T0-1"])).toString("base64url");
    const res = await ann.get(`/api/v1/trade/history?cursor=${cursor}`);
    expect([res.status, res.body]).toEqual([200, { trades: [], nextCursor: null }]);
  });

  it("the three histories: an empty or overlong cursor decodes to no position either: INVALID_CURSOR", async () => {
    for (const path of ["/api/v1/trade/history", "/api/v1/trade/spot-orders", "/api/v1/trade/orders/history"]) {
      const empty = await ann.get(`${path}?cursor=`);
      expect([empty.status, empty.body.error], path).toEqual([
        400,
        { code: "INVALID_CURSOR", message: 'cursor: expected a non-empty string, received "".' },
      ]);
      const long = await ann.get(`${path}?cursor=${"A".repeat(201)}`);
      expect([long.status, long.body.error?.code], path).toEqual([400, "INVALID_CURSOR"]);
    }
  });

  it("the three histories: a cursor whose time Postgres would refuse or read otherwise is 400 INVALID_CURSOR", async () => {
    const times = [
      "2026-02-30T00:00:00.000Z", // Date.parse rolls it over to March 2; Postgres refuses it
      "2025-02-29T00:00:00.000Z",
      "2026-04-31T00:00:00.000Z",
      "0000-01-01T00:00:00.000Z", // Postgres has no year 0
      "0000-12-31T23:59:59.999Z",
      "+010000-01-01T00:00:00.000Z", // toISOString's own form past 9999; Postgres refuses the sign
      "2026-01-01T24:00:00.000Z",
      "2026-12-05T10:00:00Z",
      "2026-12-05T10:00:00.5Z",
      "2026-12-05T10:00:00.123456Z",
      "2026-12-05T10:00Z",
      "2026-12-05T10:00:00.000+00:00",
    ];
    for (const path of ["/api/v1/trade/history", "/api/v1/trade/spot-orders", "/api/v1/trade/orders/history"])
      for (const at of times) {
        const res = await ann.get(`${path}?cursor=${position(at, "T0-1")}`);
        expect([res.status, res.body.error?.code], `${path} ${at}`).toEqual([400, "INVALID_CURSOR"]);
      }
  });

  it("the three histories: an id in another form is refused, one of any engine's shape is a position", async () => {
    for (const path of ["/api/v1/trade/history", "/api/v1/trade/spot-orders", "/api/v1/trade/orders/history"]) {
      for (const id of ["", "T0 1", "T0-1\u0000", "T0-1'", "x".repeat(65)]) {
        const res = await ann.get(`${path}?cursor=${position("2026-12-06T08:47:00.000Z", id)}`);
        expect([res.status, res.body.error?.code], `${path} ${JSON.stringify(id)}`).toEqual([400, "INVALID_CURSOR"]);
      }
      for (const [at, id] of [
        ["0001-01-01T00:00:00.000Z", "T0-1"],
        ["9999-12-31T23:59:59.999Z", "x".repeat(64)],
        ["2024-02-29T23:59:59.999Z", "T0-42.3"],
        ["2026-12-06T08:47:00.000Z", "a._-Z9"],
      ]) {
        const res = await ann.get(`${path}?cursor=${position(at!, id!)}`);
        expect([res.status, res.body.nextCursor], `${path} ${at} ${id}`).toEqual([200, null]);
      }
    }
  });

  it("sent nothing to the engine for any of them", async () => {
    expect(await stack.redis.xlen(stack.keys.input)).toBe(inputsBefore);
  });
});
