/**
 * Trading through a Postgres outage, with the real processes (API, engine, worker, poller) on real Redis, every one of
 * them reaching Postgres through a proxy the test cuts and mends. Trading needs only Redis, and so do its answers: a
 * trade opened and closed while Postgres is down is answered, the account moves, and the history routes answer 503
 * until Postgres is back; then the close is in the history, once.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../platform/testing/processes.ts";
import { createProcessStack, type ProcessStack } from "./testing/process-stack.ts";

interface ApiBody {
  [field: string]: unknown;
  trade: { id: string; closeId: string };
  trades: { id: string; closeId: string }[];
  error: { code: string };
}

let stack: ProcessStack;
const http = (method: string, path: string, options: { token?: string; body?: unknown } = {}) =>
  stack.http<ApiBody>(method, path, options);

beforeAll(async () => {
  stack = await createProcessStack(`test:pg-outage:${randomUUID()}:`, {}, { postgresProxy: true });
  await stack.start("api");
  await Promise.all([stack.start("engine"), stack.start("worker"), stack.start("poller")]);
}, 120_000);

afterAll(async () => {
  await stack.postgresProxy?.mend();
  await stack.stop();
}, 60_000);

describe("trading through a Postgres outage, with the real processes", () => {
  it("answers a trade opened and closed while Postgres is down; its close is in the history once it is back", async () => {
    const token = await stack.signIn("olga@example.com");
    await stack.quote("ETH_USDC_PERP", "3000", "3000.5");
    await stack.postgresProxy!.cut();

    const opened = await http("POST", "/api/v1/trade/create", {
      token,
      body: { asset: "ETH", type: "long", margin: "200", leverage: 5 },
    });
    expect(opened.status).toBe(201);
    const tradeId = opened.body.trade.id;
    expect((await http("GET", "/api/v1/trade/open", { token })).body.trades.map((t) => t.id)).toEqual([tradeId]);
    expect((await http("GET", "/api/v1/account/balance/usd", { token })).body).toMatchObject({ balance: "9800" });
    const closed = await http("POST", "/api/v1/trade/close", { token, body: { tradeId } });
    expect(closed.status).toBe(200);
    expect((await http("GET", "/api/v1/trade/open", { token })).body.trades).toEqual([]);
    const history = await http("GET", "/api/v1/trade/history", { token });
    expect([history.status, history.body.error.code]).toEqual([503, "UNAVAILABLE"]);

    await stack.postgresProxy!.mend();
    const trades = await until(
      async () => {
        const h = await http("GET", "/api/v1/trade/history", { token });
        return h.status === 200 && h.body.trades.length > 0 ? h.body.trades : undefined;
      },
      30_000,
      "the close in the history",
    );
    expect(trades.map((t) => [t.id, t.closeId])).toEqual([[tradeId, closed.body.trade.closeId]]);
    const worker = stack.children.get("worker")!;
    // Logged once the catch-up's writes are done, so it may reach us just after the row the API already lists.
    await worker.waitFor("postgres_caught_up", 10_000);
    expect(worker.events("crash")).toEqual([]);
  }, 90_000);
});
