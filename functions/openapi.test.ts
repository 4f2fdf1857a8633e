import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ETH, close, given, messageOf, open, opened } from "../engine/testing/spec-support.ts";
import { decodeCursor } from "./history-cursor.ts";
import { FIELD_FIRST_EXAMPLES } from "./openapi.ts";
import { apiDocument, dereferenced } from "./testing/document.ts";

const raw = apiDocument("http://localhost:3000");
const doc = dereferenced(raw);
const paths = doc.paths as Record<string, Record<string, unknown>>;

describe("the OpenAPI document", () => {
  it("lists every endpoint of docs/api.md with its method", () => {
    const operations = Object.entries(paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual([
      "DELETE /api/v1/auth/logout",
      "DELETE /api/v1/auth/sessions",
      "GET /api/v1/account/assets",
      "GET /api/v1/account/balance",
      "GET /api/v1/account/balance/usd",
      "GET /api/v1/account/summary",
      "GET /api/v1/auth/me",
      "GET /api/v1/auth/verify",
      "GET /api/v1/market/candles",
      "GET /api/v1/market/quotes",
      "GET /api/v1/trade/history",
      "GET /api/v1/trade/open",
      "GET /api/v1/trade/orders",
      "GET /api/v1/trade/orders/history",
      "GET /api/v1/trade/spot-orders",
      "GET /health",
      "POST /api/v1/auth",
      "POST /api/v1/stream/ticket",
      "POST /api/v1/trade/close",
      "POST /api/v1/trade/create",
      "POST /api/v1/trade/modify",
      "POST /api/v1/trade/order",
      "POST /api/v1/trade/orders",
      "POST /api/v1/trade/orders/cancel",
      "POST /api/v1/trade/orders/oco",
    ]);
    expect(doc.openapi).toBe("3.1.0");
  });

  it("describes request bodies from the schemas the routes validate with, money as a decimal string or a number", () => {
    expect(paths["/api/v1/trade/create"]).toMatchObject({
      post: {
        parameters: [{ name: "Idempotency-Key", in: "header" }],
        requestBody: {
          content: {
            "application/json": {
              schema: {
                additionalProperties: false,
                required: expect.arrayContaining(["asset", "type", "margin", "leverage"]) as unknown,
                properties: { asset: { enum: ["ETH", "BTC", "SOL", "ADA"] }, margin: { type: ["string", "number"] } },
              },
            },
          },
        },
        responses: { 201: {}, 400: {}, 401: {}, 409: {}, 422: {}, 429: {}, 503: {}, 504: {} },
      },
    });
  });

  it("describes the history's query and the shape of a closed trade", () => {
    expect(paths["/api/v1/trade/history"]).toMatchObject({
      get: {
        parameters: [
          { name: "limit", in: "query" },
          { name: "cursor", in: "query" },
        ],
        responses: {
          200: {
            content: {
              "application/json": {
                schema: {
                  properties: {
                    trades: {
                      items: {
                        required: expect.arrayContaining(["closePrice", "pnl", "closeReason", "closedAt"]) as unknown,
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    });
  });

  it("gives each history a cursor example of its own rows: a closed trade's, an order's, a spot order's", () => {
    const cursorExample = (path: string) => {
      const get = (paths[path] as { get: { parameters: { name: string; schema: { example?: string } }[] } }).get;
      return get.parameters.find((p) => p.name === "cursor")?.schema.example ?? "";
    };
    const examples = {
      "/api/v1/trade/history": "T",
      "/api/v1/trade/orders/history": "P",
      "/api/v1/trade/spot-orders": "O",
    };
    for (const [path, kind] of Object.entries(examples))
      expect(decodeCursor(cursorExample(path))?.id, path).toMatch(new RegExp(`^${kind}\\d+-\\d+$`));
    // docs/api.md's spot-orders page shows the same cursor.
    expect(readFileSync(resolve(import.meta.dirname, "../docs/api.md"), "utf8")).toContain(
      `"nextCursor": "${cursorExample("/api/v1/trade/spot-orders")}"`,
    );
  });

  it("spells a reference that may be null anyOf [$ref, null]: no component takes null, no allOf mixes it in", () => {
    const components = (raw.components as { schemas: Record<string, { type?: unknown }> }).schemas;
    const nullable = Object.entries(components).filter(([, s]) => [s.type].flat().includes("null"));
    expect(nullable.map(([name]) => name)).toEqual([]);
    const allOfNull: string[] = [];
    const walk = (node: unknown, at: string): void => {
      if (node === null || typeof node !== "object") return;
      const allOf = (node as { allOf?: { type?: unknown }[] }).allOf;
      if (allOf?.some((s) => [s.type].flat().includes("null")) === true) allOfNull.push(at);
      for (const [key, child] of Object.entries(node)) walk(child, `${at}/${key}`);
    };
    walk(raw, "#");
    expect(allOfNull).toEqual([]);
    const close = (raw.paths as Record<string, Record<string, unknown>>)["/api/v1/trade/close"];
    expect(close).toMatchObject({
      post: {
        responses: {
          200: {
            content: {
              "application/json": {
                schema: {
                  properties: { remaining: { anyOf: [{ $ref: "#/components/schemas/Trade" }, { type: "null" }] } },
                },
              },
            },
          },
        },
      },
    });
  });

  it("gives an OCO pair exactly two legs and two orders: prefixItems alone would take any number in OpenAPI 3.1", () => {
    const oco = paths["/api/v1/trade/orders/oco"] as {
      post: { requestBody: Content; responses: Record<string, Content> };
    };
    type Content = { content: { "application/json": { schema: { properties: Record<string, unknown> } } } };
    const pair = { type: "array", minItems: 2, maxItems: 2, prefixItems: [{}, {}] };
    expect(oco.post.requestBody.content["application/json"].schema.properties["legs"]).toMatchObject(pair);
    expect(oco.post.responses["201"]!.content["application/json"].schema.properties["orders"]).toMatchObject(pair);
  });

  it("documents an entry order's trailing stop as null: any other value is refused, whatever its terms", () => {
    const entry = (raw.components as { schemas: Record<string, { properties: object; required: string[] }> }).schemas[
      "EntryOrderRequest"
    ]!;
    expect(entry.properties).toMatchObject({
      trailingStop: {
        type: "null",
        description: expect.stringContaining(
          "Any other value, whatever its terms, is refused 422 INVALID_TRAILING_STOP",
        ) as unknown,
      },
    });
    expect(entry.required).not.toContain("trailingStop");
    // A trade's trailing stop keeps its terms.
    expect(paths["/api/v1/trade/create"]).toMatchObject({
      post: {
        requestBody: {
          content: {
            "application/json": {
              schema: { properties: { trailingStop: { anyOf: [{ properties: { distance: {} } }, { type: "null" }] } } },
            },
          },
        },
      },
    });
  });

  it("describes the public market routes: no security, the candles' query with its intervals", () => {
    expect(paths["/api/v1/market/quotes"]).toMatchObject({ get: { security: [], responses: { 200: {} } } });
    expect(paths["/api/v1/market/candles"]).toMatchObject({
      get: {
        security: [],
        parameters: [
          { name: "asset", in: "query", required: true, schema: { enum: ["ETH", "BTC", "SOL", "ADA"] } },
          { name: "interval", in: "query", required: true, schema: { enum: ["1m", "5m", "15m", "1h", "4h", "1d"] } },
          { name: "from", in: "query", required: false },
          { name: "to", in: "query", required: false },
          { name: "limit", in: "query", required: false },
        ],
        responses: { 200: {}, 400: {}, 429: {} },
      },
    });
  });

  it("gives every operation a 400 INVALID_REQUEST: a query parameter it does not take is refused", () => {
    for (const [path, ops] of Object.entries(paths))
      for (const [method, op] of Object.entries(ops)) {
        const bad = (op as { responses: Record<string, { content?: Record<string, { examples?: object }> }> })
          .responses["400"];
        expect(Object.keys(bad?.content?.["application/json"]?.examples ?? {}), `${method} ${path}`).toContain(
          "INVALID_REQUEST",
        );
      }
  });

  it("names the session cookie this API takes: __Host-session with Secure cookies (https), session over http", () => {
    const schemes = (document: Record<string, unknown>) =>
      (document.components as { securitySchemes: Record<string, { in?: string; name?: string }> }).securitySchemes;
    expect(schemes(raw).cookie).toMatchObject({ in: "cookie", name: "session" });
    expect(schemes(apiDocument("https://api.example.com")).cookie).toMatchObject({
      in: "cookie",
      name: "__Host-session",
    });
  });

  it("gives every 429 and 503 its Retry-After header, with the seconds docs/api.md gives", () => {
    const answers = Object.values(paths).flatMap((ops) =>
      Object.values(ops).flatMap((op) =>
        Object.entries((op as { responses: Record<string, { headers?: Record<string, unknown> }> }).responses),
      ),
    );
    const waiting = answers.filter(([status]) => status === "429" || status === "503");
    expect(waiting.length).toBeGreaterThan(10);
    for (const [status, response] of waiting) {
      expect(response.headers?.["Retry-After"], status).toMatchObject({ schema: { type: "integer", minimum: 1 } });
    }
    const trade = paths["/api/v1/trade/create"] as { post: { responses: Record<string, { headers: unknown }> } };
    expect(trade.post.responses["503"]!.headers).toMatchObject({
      "Retry-After": { description: expect.stringContaining("5 for UNAVAILABLE, 1 for ENGINE_UNAVAILABLE") as unknown },
    });
    expect(trade.post.responses["429"]!.headers).toMatchObject({
      "Retry-After": { description: expect.stringContaining("left of the limit's current window") as unknown },
    });
    const health = paths["/health"] as { get: { responses: Record<string, { headers: unknown }> } };
    expect(health.get.responses["503"]!.headers).toMatchObject({ "Retry-After": {} });
  });

  it("shows, for each refusal that leads with its field, a message the engine really sends", () => {
    const h = given();
    h.price(ETH, "4300", "4300");
    const trade = opened(h, "alice", { stopLoss: "4250" });
    const sent: Record<string, string> = {
      INVALID_LEVERAGE: messageOf(open(h, "alice", { leverage: 500 }).answer),
      TRADE_NOT_FOUND: messageOf(close(h, "alice", "T0-999").answer),
      ORDER_NOT_FOUND: messageOf(h.instruct("alice", { kind: "cancel_order", orderId: "P0-999" }).answer),
      NOTHING_TO_MODIFY: messageOf(
        h.instruct("alice", { kind: "modify_trade", tradeId: trade.id, stopLoss: "4250" }).answer,
      ),
    };
    expect(Object.keys(FIELD_FIRST_EXAMPLES).sort()).toEqual(Object.keys(sent).sort());
    // Every example of the code, wherever an operation answers with it.
    const shown: Record<string, Set<string>> = {};
    for (const ops of Object.values(paths))
      for (const op of Object.values(ops) as { responses: Record<string, { content?: Record<string, unknown> }> }[])
        for (const response of Object.values(op.responses)) {
          const examples = (response.content?.["application/json"] as { examples?: object } | undefined)?.examples;
          for (const [code, example] of Object.entries(examples ?? {}))
            (shown[code] ??= new Set()).add((example as { value: { error: { message: string } } }).value.error.message);
        }
    for (const [code, message] of Object.entries(sent)) expect([...(shown[code] ?? [])], code).toEqual([message]);
  });
});
