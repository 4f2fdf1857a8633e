/**
 * How the trade routes read what a request says and refuse what it gets wrong (docs/api.md): null as "none" for the
 * optional fields whose views show null, and the codes and messages of refusals. On the real API stack with the real
 * engine and worker.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SESSION_NOT_VALID } from "../errors.ts";
import { AMOUNT_EXAMPLES } from "../schemas.ts";
import { client } from "../testing/http.ts";
import { startApiStack, type ApiStack } from "../testing/api-stack.ts";

let stack: ApiStack;
let cal: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack();
  cal = client(stack.app, (await stack.signIn("cal@example.com")).token);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
});
afterAll(() => stack.close());

const TRADE = { asset: "ETH", type: "long", margin: "10", leverage: 2 };
const ORDER = { asset: "ETH", side: "long", type: "limit", price: "1900", margin: "10", leverage: 2 };

describe("null is none where the view shows none as null", () => {
  it("POST /trade/create takes null exits, and null is the same request as absent to an Idempotency-Key", async () => {
    const key = { "idempotency-key": `null-${crypto.randomUUID()}` };
    const nulls = await cal.post(
      "/api/v1/trade/create",
      { ...TRADE, stopLoss: null, takeProfit: null, trailingStop: null },
      key,
    );
    expect(nulls.status, JSON.stringify(nulls.body)).toBe(201);
    expect(nulls.body.trade).toMatchObject({ stopLoss: null, takeProfit: null, trailingStop: null });
    const absent = await cal.post("/api/v1/trade/create", TRADE, key);
    expect([absent.status, absent.body]).toEqual([201, nulls.body]);
  });

  it("POST /trade/orders and each OCO leg take null exits and a null expiry (good till cancelled)", async () => {
    const none = { stopLoss: null, takeProfit: null, trailingStop: null, expiresAt: null };
    const placed = await cal.post("/api/v1/trade/orders", { ...ORDER, ...none });
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    expect(placed.body.order).toMatchObject({ stopLoss: null, takeProfit: null, trailingStop: null, expiresAt: null });
    const legs = [
      { ...ORDER, ...none },
      { ...ORDER, type: "stop", price: "2100", ...none },
    ];
    const oco = await cal.post("/api/v1/trade/orders/oco", { legs });
    expect(oco.status, JSON.stringify(oco.body)).toBe(201);
  });

  it("still refuses null for a field that has no none: 400 INVALID_REQUEST naming it", async () => {
    const res = await cal.post("/api/v1/trade/create", { ...TRADE, margin: null });
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    expect(res.body.error?.message).toBe('margin: expected a positive decimal such as "10" or "12.5", received null.');
  });
});

describe("a trailing stop's terms", () => {
  it.each([
    [{ percent: "100" }, 'trailingStop.percent: expected a percent from 0.01 to 99.99, received "100".'],
    [{ percent: "100.5" }, 'trailingStop.percent: expected a percent from 0.01 to 99.99, received "100.5".'],
    [{ percent: "0" }, 'trailingStop.percent: expected a percent from 0.01 to 99.99, received "0".'],
    [{ percent: "1.005" }, 'trailingStop.percent: expected at most 2 decimals, received "1.005".'],
    [{ distance: "abc" }, 'trailingStop.distance: expected a positive decimal such as "10" or "12.5", received "abc".'],
    [{ distance: "0" }, 'trailingStop.distance: expected an amount above zero, received "0".'],
    // As sent, not as read ("0"), nested as at the top
    [{ distance: "0.00" }, 'trailingStop.distance: expected an amount above zero, received "0.00".'],
    [
      { distance: "10", activationPrice: "2100.001" },
      'trailingStop.activationPrice: expected at most 2 decimals (ETH prices are in steps of 0.01), received "2100.001".',
    ],
  ])(
    "POST /trade/create trailingStop %j → 422 INVALID_TRAILING_STOP, before the engine: %s",
    async (terms, message) => {
      const inputs = await stack.redis.xlen(stack.keys.input);
      const res = await cal.post("/api/v1/trade/create", { ...TRADE, trailingStop: terms });
      expect([res.status, res.body.error]).toEqual([422, { code: "INVALID_TRAILING_STOP", message }]);
      expect(await stack.redis.xlen(stack.keys.input)).toBe(inputs);
    },
  );

  it("a percent that is not a decimal shows examples the percent's own check then takes", async () => {
    const res = await cal.post("/api/v1/trade/create", { ...TRADE, trailingStop: { percent: "abc" } });
    const message = 'trailingStop.percent: expected a positive decimal such as "10" or "12.5", received "abc".';
    expect([res.status, res.body.error]).toEqual([422, { code: "INVALID_TRAILING_STOP", message }]);
    for (const example of AMOUNT_EXAMPLES) {
      const taken = await cal.post("/api/v1/trade/create", { ...TRADE, trailingStop: { percent: example } });
      expect([taken.status, taken.body.error], example).toEqual([201, undefined]);
    }
  });

  it("a margin that is not a decimal shows examples that buy a step of BTC at leverage 1", async () => {
    await stack.setQuote("BTC_USDC_PERP", "97000", "97000.1");
    const btc = { asset: "BTC", type: "long", leverage: 1 };
    const res = await cal.post("/api/v1/trade/create", { ...btc, margin: "abc" });
    expect([res.status, res.body.error?.message]).toEqual([
      400,
      'margin: expected a positive decimal such as "10" or "12.5", received "abc".',
    ]);
    for (const example of AMOUNT_EXAMPLES) {
      const taken = await cal.post("/api/v1/trade/create", { ...btc, margin: example });
      expect([taken.status, taken.body.error], example).toEqual([201, undefined]);
    }
  });

  it("a wrong JSON type inside it is still INVALID_REQUEST", async () => {
    const res = await cal.post("/api/v1/trade/create", { ...TRADE, trailingStop: { distance: true } });
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
  });
});

describe("messages say what was expected and what came", () => {
  const create = (margin: string) =>
    cal.post("/api/v1/trade/create", `{"asset":"ETH","type":"long","margin":${margin},"leverage":2}`);

  it.each([
    [
      '"1000000000000"',
      'margin: expected at most 1000000000, received "1000000000000": 13 digits before the decimal point.',
    ],
    [
      '"12345678901234567890123456"',
      'margin: expected at most 1000000000, received "12345678901234567890123456": 26 digits before the decimal point.',
    ],
    ['"1000000000.5"', 'margin: expected at most 1000000000, received "1000000000.5".'],
    // What was sent, as sent: a JSON number as its token, unquoted, as the schema's own refusals show it; a string
    // quoted, before it is read ("0.0" is the amount 0).
    [
      "0.1234567890123456789",
      "margin: expected at most 6 decimals (USD amounts are in steps of 0.000001), received 0.1234567890123456789.",
    ],
    [
      '"0.1234567890123456789"',
      'margin: expected at most 6 decimals (USD amounts are in steps of 0.000001), received "0.1234567890123456789".',
    ],
    [
      `"0.${"0".repeat(100)}1"`,
      `margin: expected at most 6 decimals (USD amounts are in steps of 0.000001), received "0.${"0".repeat(38)}…" (103 characters).`,
    ],
    [
      `0.${"0".repeat(100)}1`,
      `margin: expected at most 6 decimals (USD amounts are in steps of 0.000001), received 0.${"0".repeat(38)}… (103 characters).`,
    ],
    ["1e-7", "margin: expected at most 6 decimals (USD amounts are in steps of 0.000001), received 1e-7."],
    ["1.5e-9", "margin: expected at most 6 decimals (USD amounts are in steps of 0.000001), received 1.5e-9."],
    ['"0.0"', 'margin: expected an amount above zero, received "0.0".'],
    ["0.000", "margin: expected an amount above zero, received 0.000."],
    ['"0001000000000.50"', 'margin: expected at most 1000000000, received "0001000000000.50".'],
    ["1e40", "margin: expected at most 1000000000, received 1e40: 41 digits before the decimal point."],
    // Exponents past ±40 are not spelt out (json-body.ts): the answer says so rather than "not a decimal".
    [
      "1e41",
      'margin: expected a positive decimal such as "10" or "12.5", received 1e41: out of range, an exponent over 40.',
    ],
    [
      "1e-41",
      'margin: expected a positive decimal such as "10" or "12.5", received 1e-41: out of range, an exponent under -40.',
    ],
  ])("margin %s → 400 INVALID_AMOUNT: %s", async (margin, message) => {
    const res = await create(margin);
    expect([res.status, res.body.error]).toEqual([400, { code: "INVALID_AMOUNT", message }]);
  });

  it("a close's quantity or percent that is not a positive decimal is INVALID_AMOUNT, as docs/api.md says", async () => {
    for (const [field, value] of [
      ["quantity", "abc"],
      ["percent", "abc"],
      ["percent", -5],
    ] as const) {
      const res = await cal.post("/api/v1/trade/close", { tradeId: "T0-999999", [field]: value });
      const received = typeof value === "string" ? `"${value}"` : String(value);
      expect([res.status, res.body.error], `${field} ${value}`).toEqual([
        400,
        {
          code: "INVALID_AMOUNT",
          message: `${field}: expected a positive decimal such as "10" or "12.5", received ${received}.`,
        },
      ]);
    }
  });

  it("an Idempotency-Key used on another endpoint: 409 naming both endpoints", async () => {
    const key = { "idempotency-key": `elsewhere-${crypto.randomUUID()}` };
    expect((await cal.post("/api/v1/trade/create", TRADE, key)).status).toBe(201);
    const elsewhere = await cal.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "0.01" }, key);
    expect([elsewhere.status, elsewhere.body.error]).toEqual([
      409,
      {
        code: "IDEMPOTENCY_CONFLICT",
        message:
          "This Idempotency-Key was first used on POST /api/v1/trade/create, not POST /api/v1/trade/order; use a new " +
          "key for each action.",
      },
    ]);
    const otherBody = await cal.post("/api/v1/trade/create", { ...TRADE, margin: "11" }, key);
    expect([otherBody.status, otherBody.body.error?.message]).toEqual([
      409,
      "This Idempotency-Key was used with a different request body; use a new key for a different request.",
    ]);
  });
});

describe("leverage: a JSON number read by its value", () => {
  it("10.0 and 1e1 are 10, the same request as 10 to an Idempotency-Key; 10.5 is refused", async () => {
    const key = { "idempotency-key": `leverage-${crypto.randomUUID()}` };
    const body = (leverage: string) => `{"asset":"ETH","type":"long","margin":"10","leverage":${leverage}}`;
    const first = await cal.post("/api/v1/trade/create", body("10.0"), key);
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body.trade).toMatchObject({ leverage: 10 });
    for (const same of ["1e1", "10"])
      expect(await cal.post("/api/v1/trade/create", body(same), key)).toMatchObject({ status: 201, body: first.body });
    const half = await cal.post("/api/v1/trade/create", body("10.5"));
    expect([half.status, half.body.error]).toEqual([
      400,
      {
        code: "INVALID_REQUEST",
        message: "leverage: expected a whole number from 1 to 100, as a JSON number such as 10, received 10.5.",
      },
    ]);
  });
});

describe("a spot order's refusals, as docs/api.md lists them", () => {
  it("400 UNKNOWN_ASSET, 400 INVALID_AMOUNT, 422 INSUFFICIENT_BALANCE, NOTIONAL_TOO_LARGE and NO_PRICE", async () => {
    const dee = client(stack.app, (await stack.signIn("dee@example.com")).token);
    const order = (asset: string, side: string, quantity: string) =>
      dee.post("/api/v1/trade/order", { asset, side, quantity });
    const inputs = await stack.redis.xlen(stack.keys.input);
    for (const [asset, quantity, code] of [
      ["DOGE", "1", "UNKNOWN_ASSET"],
      ["ETH", "0", "INVALID_AMOUNT"],
      ["ETH", "0.00001", "INVALID_AMOUNT"],
      ["ETH", "1000000000000", "INVALID_AMOUNT"],
    ] as const) {
      const res = await order(asset, "buy", quantity);
      expect([res.status, res.body.error?.code], `${asset} ${quantity}`).toEqual([400, code]);
    }
    expect(await stack.redis.xlen(stack.keys.input)).toBe(inputs); // refused before the engine
    for (const [asset, side, quantity, code] of [
      ["ETH", "buy", "6", "INSUFFICIENT_BALANCE"], // 12,006 USD; 10,000 free
      ["ETH", "sell", "0.1", "INSUFFICIENT_BALANCE"], // none held
      ["ETH", "buy", "10000", "NOTIONAL_TOO_LARGE"], // 20,010,000 USD, over the per-order limit
      ["SOL", "buy", "0.1", "NO_PRICE"], // no SOL quote in this stack
    ] as const) {
      const res = await order(asset, side, quantity);
      expect([res.status, res.body.error?.code], `${side} ${quantity} ${asset}`).toEqual([422, code]);
    }
  });
});

describe("a signed-out session on a trade POST", () => {
  it("is 401 whatever is wrong with the request, on every trade POST, and nothing reaches the log", async () => {
    const { token } = await stack.signIn("gone@example.com");
    const live = client(stack.app, (await stack.signIn("gone@example.com")).token);
    const gone = client(stack.app, token);
    expect((await gone.del("/api/v1/auth/logout")).status).toBe(200);
    const inputs = await stack.redis.xlen(stack.keys.input);
    // Each is refused before admission, where revocation is checked otherwise: a live session gets the refusal.
    const bad = [
      ["/api/v1/trade/create", { ...TRADE, margin: "1.0000001" }, {}, 400, "INVALID_AMOUNT"],
      ["/api/v1/trade/create", { ...TRADE, trailingStop: { percent: "100" } }, {}, 422, "INVALID_TRAILING_STOP"],
      ["/api/v1/trade/close", { id: "T0-1" }, {}, 400, "INVALID_REQUEST"],
      ["/api/v1/trade/modify", "{", {}, 400, "MALFORMED_JSON"],
      ["/api/v1/trade/order", { asset: "DOGE", side: "buy", quantity: "1" }, {}, 400, "UNKNOWN_ASSET"],
      [
        "/api/v1/trade/order",
        { asset: "ETH", side: "buy", quantity: "1" },
        { "idempotency-key": "a b" },
        400,
        "INVALID_IDEMPOTENCY_KEY",
      ],
      ["/api/v1/trade/order", "x", { "content-type": "text/plain" }, 415, "UNSUPPORTED_MEDIA_TYPE"],
      ["/api/v1/trade/orders", { ...ORDER, price: "1900.001" }, {}, 422, "INVALID_PRICE"],
      ["/api/v1/trade/orders/oco", { legs: [ORDER] }, {}, 400, "INVALID_REQUEST"],
      ["/api/v1/trade/orders/cancel", {}, {}, 400, "INVALID_REQUEST"],
    ] as const;
    for (const [path, body, headers, status, code] of bad) {
      const refused = await live.post(path, body, headers);
      expect([refused.status, refused.body.error?.code], path).toEqual([status, code]);
      const res = await gone.post(path, body, headers);
      expect([res.status, res.body.error], `${path} ${code}`).toEqual([
        401,
        { code: "UNAUTHENTICATED", message: SESSION_NOT_VALID },
      ]);
    }
    expect(await stack.redis.xlen(stack.keys.input)).toBe(inputs);
  });

  it("costs no revocation check of its own unless refused before admission", async () => {
    const isRevoked = vi.spyOn(stack.deps.sessions, "isRevoked");
    try {
      expect((await cal.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "0.01" })).status).toBe(201);
      const refused = await cal.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "10" });
      expect([refused.status, refused.body.error?.code]).toEqual([422, "INSUFFICIENT_BALANCE"]);
      expect(isRevoked).not.toHaveBeenCalled(); // the admission script checked, in its one round trip
      expect((await cal.post("/api/v1/trade/order", { asset: "ETH", side: "buy", quantity: "1e-5" })).status).toBe(400);
      expect(isRevoked).toHaveBeenCalledTimes(1);
    } finally {
      isRevoked.mockRestore();
    }
  });
});

describe("a 422 the API answers for the request's input, as docs/api.md lists them, is like a 400", () => {
  let limited: ApiStack;
  beforeAll(async () => {
    limited = await startApiStack({ settings: { tradeRate: { limit: 3, windowMs: 60_000 } } });
    await limited.setQuote("ETH_USDC_PERP", "2000", "2001");
  });
  afterAll(() => limited.close());

  /** One of each kind of 422 the API answers before admission. */
  const inputRefusals = [
    ["/api/v1/trade/orders", { ...ORDER, price: "1900.001" }, "INVALID_PRICE"],
    ["/api/v1/trade/orders", { ...ORDER, trailingStop: { distance: "5" } }, "INVALID_TRAILING_STOP"],
    ["/api/v1/trade/create", { ...TRADE, trailingStop: { distance: "0" } }, "INVALID_TRAILING_STOP"],
    ["/api/v1/trade/create", { ...TRADE, leverage: 1_000_000 }, "INVALID_LEVERAGE"],
  ] as const;

  it("does not count against the trade limit; the engine's 422s with the same codes do", async () => {
    const dee = client(limited.app, (await limited.signIn("dee@example.com")).token);
    for (let round = 0; round < 2; round++) {
      for (const [path, body, code] of inputRefusals) {
        const res = await dee.post(path, body);
        expect([res.status, res.body.error?.code], `${path} ${JSON.stringify(body)}`).toEqual([422, code]);
      }
    }
    const engines: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await dee.post("/api/v1/trade/create", { ...TRADE, leverage: 101 });
      engines.push([res.status, res.body.error?.code]);
    }
    const refused = [422, "INVALID_LEVERAGE"];
    expect(engines).toEqual([refused, refused, refused, [429, "RATE_LIMITED"]]);
  });

  it("does not use the Idempotency-Key: the same refusal again, the key free for another body", async () => {
    const eve = client(limited.app, (await limited.signIn("eve@example.com")).token);
    const key = { "idempotency-key": `input-${crypto.randomUUID()}` };
    const bad = { ...ORDER, price: "1900.001" };
    for (let i = 0; i < 2; i++)
      expect((await eve.post("/api/v1/trade/orders", bad, key)).body.error?.code).toBe("INVALID_PRICE");
    const placed = await eve.post("/api/v1/trade/orders", ORDER, key);
    expect(placed.status, JSON.stringify(placed.body)).toBe(201);
    // A key already used: the refusal for the input, not 409.
    expect((await eve.post("/api/v1/trade/orders", bad, key)).body.error?.code).toBe("INVALID_PRICE");
    // The engine's refusal is an answer to the key: the same key with another body is 409.
    const engineKey = { "idempotency-key": `engine-${crypto.randomUUID()}` };
    const refused = await eve.post("/api/v1/trade/create", { ...TRADE, leverage: 101 }, engineKey);
    expect([refused.status, refused.body.error?.code]).toEqual([422, "INVALID_LEVERAGE"]);
    const other = await eve.post("/api/v1/trade/create", TRADE, engineKey);
    expect([other.status, other.body.error?.code]).toEqual([409, "IDEMPOTENCY_CONFLICT"]);
  });
});
