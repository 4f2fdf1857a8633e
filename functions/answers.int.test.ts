/**
 * Answers a person can act on: every validation error names the field, what was expected and what was received;
 * engine refusals give the numbers behind them; a wrong path points to the API reference and a wrong method says
 * which methods the path takes. In-process against real Redis and Postgres with the real engine and worker.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PARAMS } from "../engine/core/params.ts";
import { client } from "./testing/http.ts";
import { startApiStack, type ApiStack } from "./testing/api-stack.ts";

let stack: ApiStack;
let ada: ReturnType<typeof client>;

beforeAll(async () => {
  stack = await startApiStack();
  ada = client(stack.app, (await stack.signIn("ada@example.com")).token);
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
});
afterAll(() => stack.close());

const create = (fields: Record<string, unknown>) =>
  ada.post("/api/v1/trade/create", { asset: "ETH", type: "long", margin: "100", leverage: 10, ...fields });

describe("validation errors say field, expected and received", () => {
  it('leverage "5" is refused in plain words: a whole number, as a JSON number, and what came instead', async () => {
    const res = await create({ leverage: "5" });
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    expect(res.body.error?.message).toBe(
      'leverage: expected a whole number from 1 to 100, as a JSON number such as 10, received the string "5".',
    );
    expect(res.body.error?.message).toContain(`from 1 to ${DEFAULT_PARAMS.maxLeverage},`); // the engine's limit
    expect((await create({ leverage: 1.5 })).body.error?.message).toBe(
      "leverage: expected a whole number from 1 to 100, as a JSON number such as 10, received 1.5.",
    );
  });

  it("a leverage too large is 422 INVALID_LEVERAGE however many digits it has; the engine's or the API's", async () => {
    const engines = await create({ leverage: 101 });
    expect([engines.status, engines.body.error?.code]).toEqual([422, "INVALID_LEVERAGE"]);
    expect(engines.body.error?.message).toBe("leverage: expected a whole number from 1 to 100, received 101.");
    // Longer ones are refused by the API itself, worded as the engine's.
    for (const [leverage, shown] of [
      [1_000_000, "1000000"],
      [1e40, "1e+40"],
    ] as const) {
      const res = await create({ leverage });
      expect([res.status, res.body.error?.code]).toEqual([422, "INVALID_LEVERAGE"]);
      expect(res.body.error?.message).toBe(`leverage: expected a whole number from 1 to 100, received ${shown}.`);
    }
    // 0 and a fraction stay what they were: not a leverage at all
    for (const leverage of [0, 1.5]) expect((await create({ leverage })).body.error?.code).toBe("INVALID_REQUEST");
  });

  it("a whole leverage past an exponent of 40, which is not spelt out, is 422 INVALID_LEVERAGE all the same", async () => {
    const body = (leverage: string) => `{"asset":"ETH","type":"long","margin":"100","leverage":${leverage}}`;
    const huge = `1e${"9".repeat(400)}`;
    for (const [leverage, shown] of [
      ["1e41", "1e41"],
      ["1.5E+41", "1.5E+41"],
      [huge, `${huge.slice(0, 40)}… (402 characters)`],
    ] as const) {
      const res = await ada.post("/api/v1/trade/create", body(leverage));
      expect([res.status, res.body.error], leverage).toEqual([
        422,
        {
          code: "INVALID_LEVERAGE",
          message: `leverage: expected a whole number from 1 to 100, received ${shown}.`,
        },
      ]);
    }
    // Not whole (more decimals than the exponent moves), zero, or tiny: not a leverage at all, as 1.5 and 0 are
    for (const leverage of [`1.${"0".repeat(42)}1e41`, "0e50", "1e-41"]) {
      const res = await ada.post("/api/v1/trade/create", body(leverage));
      expect([res.status, res.body.error?.code], leverage).toEqual([400, "INVALID_REQUEST"]);
    }
  });

  describe("a leverage past an exponent of 40 is judged by its value, not by the exponent's sign", () => {
    const body = (leverage: string) => `{"asset":"ETH","type":"long","margin":"100","leverage":${leverage}}`;
    const [z40, z50] = ["0".repeat(40), "0".repeat(50)];

    it("1e9 spelt 1(50 zeros)e-41 is 422 INVALID_LEVERAGE, as 1e9 is", async () => {
      const billion = `1${z50}e-41`;
      const res = await ada.post("/api/v1/trade/create", body(billion));
      const shown = `${billion.slice(0, 40)}… (55 characters)`;
      expect([res.status, res.body.error]).toEqual([
        422,
        {
          code: "INVALID_LEVERAGE",
          message: `leverage: expected a whole number from 1 to 100, received ${shown}.`,
        },
      ]);
    });

    it("10 spelt 0.(40 zeros)1e42 is 10, and 101 spelt past +40 goes to the engine as 101 does", async () => {
      // Another user: ada's balance is counted below
      const eve = client(stack.app, (await stack.signIn("eve@example.com")).token);
      const ten = await eve.post("/api/v1/trade/create", body(`0.${z40}1e42`));
      expect(
        [ten.status, (ten.body.trade as { leverage?: number } | undefined)?.leverage],
        JSON.stringify(ten.body),
      ).toEqual([201, 10]);
      const engines = await eve.post("/api/v1/trade/create", body(`0.${z40}101e43`));
      expect([engines.status, engines.body.error?.code]).toEqual([422, "INVALID_LEVERAGE"]);
      expect(engines.body.error?.message).toContain("received 101."); // the engine's refusal, of 101 as read
    });

    it("1.5 spelt past either way is not a leverage at all, as 1.5 is not", async () => {
      for (const leverage of [`15${z50}e-51`, `0.${z40}15e41`]) {
        const res = await ada.post("/api/v1/trade/create", body(leverage));
        expect([res.status, res.body.error?.code], leverage).toEqual([400, "INVALID_REQUEST"]);
      }
    });
  });

  it('{"id": …} on close: the unknown field is named, first, and tradeId is missing', async () => {
    const res = await ada.post("/api/v1/trade/close", { id: "T0-1" });
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    expect(res.body.error?.message).toBe(
      'Unknown field "id"; this request takes tradeId, quantity and percent. ' +
        "tradeId: expected a trade id such as T0-42, received nothing.",
    );
  });

  it("limit=1000 and limit=101 get the same kind of message", async () => {
    for (const limit of ["1000", "101", "0", "ten"]) {
      const res = await ada.get(`/api/v1/trade/history?limit=${limit}`);
      expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
      expect(res.body.error?.message).toBe(`limit: expected a whole number from 1 to 100, received "${limit}".`);
    }
  });

  it.each([
    // invalid_type: a value of the wrong JSON type is INVALID_REQUEST, whichever field it is in (docs/api.md)
    [
      "/api/v1/trade/create",
      { asset: "ETH", type: "long", margin: true, leverage: 1 },
      "INVALID_REQUEST",
      'margin: expected a positive decimal such as "10" or "12.5", received true.',
    ],
    [
      "/api/v1/trade/create",
      { asset: 5, type: "long", margin: "1", leverage: 1 },
      "INVALID_REQUEST",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received 5.',
    ],
    [
      "/api/v1/trade/order",
      { asset: null, side: "buy", quantity: "1" },
      "INVALID_REQUEST",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received null.',
    ],
    [
      "/api/v1/trade/order",
      { asset: "ETH", side: "buy", quantity: ["1"] },
      "INVALID_REQUEST",
      'quantity: expected a positive decimal such as "10" or "12.5", received an array of 1 item.',
    ],
    ["/api/v1/trade/close", { tradeId: 42 }, "INVALID_REQUEST", "tradeId: expected a string, received 42."],
    // a JSON number where an object belongs: not an object with an unknown field "text"
    [
      "/api/v1/trade/create",
      { asset: "ETH", type: "long", margin: "1", leverage: 1, trailingStop: 5 },
      "INVALID_REQUEST",
      "trailingStop: expected a JSON object, received 5.",
    ],
    [
      "/api/v1/trade/orders/oco",
      { legs: [5, 6] },
      "INVALID_REQUEST",
      "legs.0: expected a JSON object, received 5. legs.1: expected a JSON object, received 6.",
    ],
    ["/api/v1/trade/order", "5", "INVALID_REQUEST", "body: expected a JSON object, received 5."],
    // invalid_value (an enum)
    [
      "/api/v1/trade/order",
      { asset: "DOGE", side: "buy", quantity: "1" },
      "UNKNOWN_ASSET",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received "DOGE".',
    ],
    // too_big, and one problem per field even when a second rule fails too
    [
      "/api/v1/trade/close",
      { tradeId: "T".repeat(50) },
      "INVALID_REQUEST",
      `tradeId: expected at most 32 characters, received "${"T".repeat(40)}…" (50 characters).`,
    ],
    // invalid_format
    [
      "/api/v1/auth",
      { email: "not-an-email" },
      "INVALID_REQUEST",
      'email: expected an email address, received "not-an-email".',
    ],
    // custom (the schema's own wording)
    [
      "/api/v1/trade/order",
      { asset: "ETH", side: "buy", quantity: "-1" },
      "INVALID_AMOUNT",
      'quantity: expected a positive decimal such as "10" or "12.5", received "-1".',
    ],
    // unrecognized_keys, with the fields the request takes
    [
      "/api/v1/trade/create",
      { asset: "ETH", type: "long", margin: "1", leverage: 1, stoploss: "5" },
      "INVALID_REQUEST",
      'Unknown field "stoploss"; this request takes asset, type, margin, leverage, stopLoss, takeProfit and trailingStop.',
    ],
    // missing fields: what each expects, as a wrong value of it is told, and that nothing came
    [
      "/api/v1/trade/create",
      { type: "long", margin: "100", leverage: 10 },
      "INVALID_REQUEST",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received nothing.',
    ],
    [
      "/api/v1/trade/order",
      { asset: "ETH" },
      "INVALID_REQUEST",
      'side: expected one of "buy", "sell", received nothing. ' +
        'quantity: expected a positive decimal such as "10" or "12.5", received nothing.',
    ],
    [
      "/api/v1/trade/create",
      {},
      "INVALID_REQUEST",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received nothing. ' +
        'type: expected one of "long", "short", received nothing. ' +
        'margin: expected a positive decimal such as "10" or "12.5", received nothing. (1 more problem.)',
    ],
    ["/api/v1/auth", {}, "INVALID_REQUEST", "email: expected an email address, received nothing."],
    // the field the code is for is told first, before the missing ones after it
    [
      "/api/v1/trade/create",
      { asset: "XYZ" },
      "UNKNOWN_ASSET",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received "XYZ". ' +
        'type: expected one of "long", "short", received nothing. ' +
        'margin: expected a positive decimal such as "10" or "12.5", received nothing. (1 more problem.)',
    ],
    // an unknown field explains the missing ones (a wrapped body): told before them, not counted past three
    [
      "/api/v1/trade/create",
      { trade: { asset: "ETH", type: "long", margin: "100", leverage: 10 } },
      "INVALID_REQUEST",
      'Unknown field "trade"; this request takes asset, type, margin, leverage, stopLoss, takeProfit and ' +
        'trailingStop. asset: expected one of "ETH", "BTC", "SOL", "ADA", received nothing. ' +
        'type: expected one of "long", "short", received nothing. (2 more problems.)',
    ],
    // ... after the field the code is for, when that is a field's own code
    [
      "/api/v1/trade/create",
      { asset: "XYZ", data: {} },
      "UNKNOWN_ASSET",
      'asset: expected one of "ETH", "BTC", "SOL", "ADA", received "XYZ". ' +
        'Unknown field "data"; this request takes asset, type, margin, leverage, stopLoss, takeProfit and ' +
        'trailingStop. type: expected one of "long", "short", received nothing. (2 more problems.)',
    ],
    // the body itself
    ["/api/v1/trade/order", [1, 2], "INVALID_REQUEST", "body: expected a JSON object, received an array of 2 items."],
    // a value that passed the schema but not the asset's precision
    [
      "/api/v1/trade/order",
      { asset: "ETH", side: "buy", quantity: "0.00001" },
      "INVALID_AMOUNT",
      'quantity: expected at most 4 decimals (ETH quantities are in steps of 0.0001), received "0.00001".',
    ],
    // one decimal in the singular, and the step of the asset at hand: ADA's quantities are coarser than ETH's
    [
      "/api/v1/trade/order",
      { asset: "ADA", side: "buy", quantity: "4303.93" },
      "INVALID_AMOUNT",
      'quantity: expected at most 1 decimal (ADA quantities are in steps of 0.1), received "4303.93".',
    ],
  ])("POST %s %j → %s: %s", async (path, body, code, message) => {
    const res = await ada.post(path, body, { "x-test-ip": `answers-${crypto.randomUUID()}` });
    expect([res.status, res.body.error?.code]).toEqual([400, code]);
    expect(res.body.error?.message).toBe(message);
  });

  it("shows what was received safely: long values cut, control and bidirectional characters escaped", async () => {
    const res = await create({ stopLoss: `\u202e${"9".repeat(60)}` });
    expect(res.body.error?.message).toBe(
      `stopLoss: expected a positive decimal such as "10" or "12.5", received "\\u202e${"9".repeat(39)}…" (61 characters).`,
    );
    const query = await ada.get(`/api/v1/trade/history?limit=${encodeURIComponent("\u0000")}`);
    expect(query.body.error?.message).toBe('limit: expected a whole number from 1 to 100, received "\\u0000".');
  });

  it("too_small and an unknown query parameter, in a query string", async () => {
    const empty = await ada.get("/api/v1/trade/history?cursor=");
    expect(empty.body.error?.message).toBe('cursor: expected a non-empty string, received "".');
    const unknown = await ada.get("/api/v1/trade/history?page=2");
    expect(unknown.body.error?.message).toBe('Unknown query parameter "page"; this request takes limit and cursor.');
  });

  it("a parameter or field named like an object's own machinery is just unknown, and many unknown fields are counted", async () => {
    for (const name of ["constructor", "__proto__", "toString"]) {
      const res = await ada.get(`/api/v1/trade/history?${name}=1`);
      expect([res.status, res.body.error?.message]).toEqual([
        400,
        `Unknown query parameter "${name}"; this request takes limit and cursor.`,
      ]);
    }
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, 1]));
    const res = await ada.post("/api/v1/trade/close", { tradeId: "T0-1", ...many });
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    expect(res.body.error?.message).toBe(
      'Unknown fields "k0", "k1", "k2", "k3", "k4" and 995 more; this request takes tradeId, quantity and percent.',
    );
  });

  it("the docs page's files are looked up by their own names only", async () => {
    for (const name of ["constructor", "__proto__", "hasOwnProperty", "nope.js"]) {
      const res = await ada.get(`/api/v1/docs/${name}`);
      expect([res.status, res.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    }
  });

  it("a repeated query parameter and a malformed Content-Length say so", async () => {
    const repeated = await ada.get("/api/v1/trade/history?limit=1&limit=2");
    expect([repeated.status, repeated.body.error?.message]).toEqual([
      400,
      'Query parameter "limit": expected one value, received more than one.',
    ]);
    const length = await stack.app.request("/api/v1/auth", {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": "ten" },
      body: "{}",
    });
    expect(await length.json()).toEqual({
      error: { code: "INVALID_REQUEST", message: 'Content-Length: expected a whole number, received "ten".' },
    });
  });

  it("an Idempotency-Key that is not one says what it must be", async () => {
    const res = await ada.post(
      "/api/v1/trade/order",
      { asset: "ETH", side: "buy", quantity: "1" },
      {
        "idempotency-key": "my key",
      },
    );
    expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_IDEMPOTENCY_KEY"]);
    expect(res.body.error?.message).toBe(
      'Idempotency-Key: expected 1 to 128 printable ASCII characters without spaces, received "my key".',
    );
  });

  it("names the Content-Type it was sent", async () => {
    const res = await ada.post("/api/v1/trade/create", "{}", { "content-type": "text/plain" });
    expect([res.status, res.body.error?.code]).toEqual([415, "UNSUPPORTED_MEDIA_TYPE"]);
    expect(res.body.error?.message).toBe(
      'Send JSON (Content-Type: application/json); received Content-Type "text/plain".',
    );
  });

  it("refuses JSON in another charset than UTF-8 (RFC 8259 §8.1), naming the Content-Type it was sent", async () => {
    for (const [type, charset, shown] of [
      ["application/json; charset=latin1", "latin1", '"application/json; charset=latin1"'],
      ["application/json; charset=utf-16", "utf-16", '"application/json; charset=utf-16"'],
      ['application/json;charset="ISO-8859-1"', "ISO-8859-1", '"application/json;charset=\\"ISO-8859-1\\""'],
      // A long Content-Type is cut in the answer: the charset refused is named apart.
      [
        "application/json; charset=utf-8; charset=latin1",
        "latin1",
        '"application/json; charset=utf-8; charset…" (47 characters)',
      ],
      ["application/json; charset=", "", '"application/json; charset="'],
    ] as const) {
      const res = await ada.post("/api/v1/trade/create", "{}", { "content-type": type });
      expect([res.status, res.body.error], type).toEqual([
        415,
        {
          code: "UNSUPPORTED_MEDIA_TYPE",
          message:
            "Send JSON in UTF-8 (Content-Type: application/json, with charset=utf-8 or no charset); " +
            `received charset ${JSON.stringify(charset)} (Content-Type ${shown}).`,
        },
      ]);
    }
  });

  it("takes JSON with charset utf-8 (or another of its labels) in any case, quoted or not, or no charset: read on to the body's own check", async () => {
    for (const type of [
      "application/json",
      "application/json; charset=utf-8",
      "application/json;charset=UTF-8",
      'application/json; charset="utf-8"',
      "Application/JSON; Charset=Utf-8",
      "application/json; charset=utf8",
      "application/json; charset=UNICODE-1-1-UTF-8",
    ]) {
      const res = await ada.post("/api/v1/trade/create", "{}", { "content-type": type });
      expect([res.status, res.body.error?.code], type).toEqual([400, "INVALID_REQUEST"]);
    }
  });
});

describe("engine refusals give the numbers", () => {
  it("a stop-loss beyond the liquidation price says so, with the range it must lie in", async () => {
    const res = await create({ stopLoss: "1500" });
    expect([res.status, res.body.error?.code]).toEqual([422, "INVALID_STOP_LOSS"]);
    expect(res.body.error?.message).toBe(
      "The stop-loss is not valid for this trade. stopLoss 1500 is below this long's liquidation price 1809.92, " +
        "so it could never fire: a long's stop-loss must be at or above the liquidation price 1809.92 and below " +
        "the current bid 2000.",
    );
    expect(res.body.error?.message).not.toContain("wrong side");
  });

  it("INSUFFICIENT_BALANCE says what the order needs and what is free", async () => {
    const open = await create({ margin: "9879.65", leverage: 1 });
    expect(open.status).toBe(201);
    const res = await create({ margin: "500" });
    expect([res.status, res.body.error?.code]).toEqual([422, "INSUFFICIENT_BALANCE"]);
    expect(res.body.error?.message).toBe(
      "The balance does not cover this order. It needs 500 USD of margin; 120.35 USD is free.",
    );
  });

  it("NOTHING_TO_MODIFY names a level the trade already has by its price, however it was sent", async () => {
    const bea = client(stack.app, (await stack.signIn("bea@example.com")).token);
    const open = await bea.post("/api/v1/trade/create", { asset: "ETH", type: "long", margin: "100", leverage: 10 });
    const id = (open.body.trade as { id: string }).id;
    expect((await bea.post("/api/v1/trade/modify", { tradeId: id, stopLoss: "1900" })).status).toBe(200);
    for (const stopLoss of ["1.9e3", '"1900.00"', '"1900"']) {
      const res = await bea.post("/api/v1/trade/modify", `{"tradeId":"${id}","stopLoss":${stopLoss}}`);
      expect([res.status, res.body.error?.code], stopLoss).toEqual([422, "NOTHING_TO_MODIFY"]);
      expect(res.body.error?.message, stopLoss).toBe(
        "stopLoss, takeProfit and trailingStop: expected at least one that sets, moves or removes an exit, " +
          "received stopLoss at 1900, as the trade already has it.",
      );
    }
  });
});

describe("unknown paths and methods", () => {
  it.each(["/", "/api/v1", "/api/v1/nope", "/api/v1/trade"])("GET %s → 404 pointing to the docs", async (path) => {
    const res = await ada.get(path);
    expect([res.status, res.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    expect(res.body.error?.message).toBe(`There is nothing at GET ${path}. See the API reference at /api/v1/docs.`);
  });

  it.each(["/api/v1/stream", "/api/v1/stream/", "/api/v1/stream/x"])(
    "GET %s → 404 saying where the stream is: the ticket's url, at STREAM_URL",
    async (path) => {
      const res = await ada.get(path);
      expect([res.status, res.body.error?.code]).toEqual([404, "NOT_FOUND"]);
      expect(res.body.error?.message).toBe(
        `There is nothing at GET ${path}. The live stream is a WebSocket at ws://localhost:3001/api/v1/stream ` +
          "(STREAM_URL): open the url that POST /api/v1/stream/ticket answers, with ?ticket=<ticket>. " +
          "See the API reference at /api/v1/docs.",
      );
    },
  );

  it("a WebSocket upgrade on the API's port, at any path → 404 saying where the stream is", async () => {
    const res = await ada.get("/", { connection: "Upgrade", upgrade: "websocket" });
    expect([res.status, res.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    expect(res.body.error?.message).toBe(
      "There is nothing at GET /. The live stream is a WebSocket at ws://localhost:3001/api/v1/stream (STREAM_URL): " +
        "open the url that POST /api/v1/stream/ticket answers, with ?ticket=<ticket>. " +
        "See the API reference at /api/v1/docs.",
    );
  });

  it("a trailing slash on a path that exists without it → 404 saying so, for any method, never a redirect", async () => {
    const docs = " See the API reference at /api/v1/docs.";
    const open = await ada.get("/api/v1/trade/open/");
    expect([open.status, open.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    expect(open.body.error?.message).toBe(
      `There is nothing at GET /api/v1/trade/open/; did you mean /api/v1/trade/open, without the trailing slash?${docs}`,
    );
    const openBefore = (await ada.get("/api/v1/trade/open")).body as unknown;
    const create = await ada.post("/api/v1/trade/create//", {
      asset: "ETH",
      type: "long",
      margin: "100",
      leverage: 10,
    });
    expect([create.status, create.body.error?.message]).toEqual([
      404,
      "There is nothing at POST /api/v1/trade/create//; did you mean /api/v1/trade/create, without the trailing " +
        `slash?${docs}`,
    ]);
    expect((await ada.get("/api/v1/trade/open")).body).toEqual(openBefore); // nothing was opened
    const wrongMethod = await ada.post("/api/v1/trade/open/", {});
    expect(wrongMethod.body.error?.message).toBe(
      "There is nothing at POST /api/v1/trade/open/; did you mean /api/v1/trade/open, without the trailing slash, " +
        `which takes GET, HEAD?${docs}`,
    );
    const docsPage = await ada.get("/api/v1/docs/");
    expect(docsPage.body.error?.message).toBe(
      `There is nothing at GET /api/v1/docs/; did you mean /api/v1/docs, without the trailing slash?${docs}`,
    );
    // Nothing to point to: the plain 404; nor for a path a parameter route would match (it may not exist either).
    expect((await ada.get("/api/v1/nope/")).body.error?.message).toBe(`There is nothing at GET /api/v1/nope/.${docs}`);
    expect((await ada.get("/api/v1/docs/nope/")).body.error?.message).toBe(
      `There is nothing at GET /api/v1/docs/nope/.${docs}`,
    );
  });

  it("a wrong method on a route that exists → 405 METHOD_NOT_ALLOWED with Allow", async () => {
    const get = await ada.get("/api/v1/trade/create");
    expect([get.status, get.body.error?.code]).toEqual([405, "METHOD_NOT_ALLOWED"]);
    expect(get.headers.get("allow")).toBe("POST");
    expect(get.body.error?.message).toBe(
      "/api/v1/trade/create does not take GET; it takes POST. See the API reference at /api/v1/docs.",
    );
    const post = await ada.post("/api/v1/trade/history", {});
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
    const anonymous = await client(stack.app).get("/api/v1/auth");
    expect([anonymous.status, anonymous.headers.get("allow")]).toEqual([405, "POST"]);
    const logout = await client(stack.app).post("/api/v1/auth/logout", {});
    expect([logout.status, logout.headers.get("allow")]).toEqual([405, "DELETE"]);
  });

  it("answers 405 and 404 without a session too: no route's session check runs for a path it does not serve", async () => {
    const anonymous = client(stack.app);
    const get = await anonymous.get("/api/v1/trade/create");
    expect([get.status, get.headers.get("allow")]).toEqual([405, "POST"]);
    const post = await anonymous.post("/api/v1/account/balance", {});
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
    for (const path of ["/api/v1/trade/nope", "/api/v1/account/nope"]) {
      expect((await anonymous.get(path)).status).toBe(404);
    }
    expect((await anonymous.get("/api/v1/trade/open")).status).toBe(401);
  });
});
