/**
 * The order of the three paginated histories within one millisecond, through the API against real Postgres
 * (testing/api-stack.ts): rows written in one millisecond come newest first in the order the engine made them,
 * not in the text order of their ids ("O0-10" sorts before "O0-9" as text), and paging one row at a time through
 * them skips and repeats none. The rows are put in Postgres directly, as the worker writes them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeCursor } from "./history-cursor.ts";
import { client } from "./testing/http.ts";
import { startApiStack, type ApiStack } from "./testing/api-stack.ts";

let stack: ApiStack;
let dana: ReturnType<typeof client>;
let userId: string;

/** The millisecond most rows share, and the ones either side of it. */
const MS = Date.parse("2026-01-02T03:04:05.678Z");
const at = (ms: number) => new Date(ms).toISOString();

beforeAll(async () => {
  stack = await startApiStack();
  const signedIn = await stack.signIn("dana@example.com");
  dana = client(stack.app, signedIn.token);
  userId = signedIn.user.id;
});
afterAll(() => stack.close());

/** Every page of `path` at `limit=1`, in order: the ids each showed, and that no page after the last was offered. */
async function pageThrough(path: string, list: string, id: string): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 50; pages++) {
    const res = await dana.get(`${path}?limit=1${cursor === null ? "" : `&cursor=${cursor}`}`);
    expect(res.status).toBe(200);
    const rows = res.body[list] as Record<string, string>[];
    seen.push(...rows.map((r) => r[id]!));
    cursor = res.body.nextCursor as string | null;
    if (cursor === null) return seen;
  }
  throw new Error(`${path} never ended`);
}

describe("history pages within one millisecond", () => {
  it("spot orders: newest executed first across a digit boundary of their ids, one per page", async () => {
    // O0-7 a millisecond before, O0-12 one after; O0-8 … O0-11 in the same millisecond, executed in id order.
    const rows: [string, number][] = [
      ["O0-7", MS - 1],
      ["O0-8", MS],
      ["O0-9", MS],
      ["O0-10", MS],
      ["O0-11", MS],
      ["O0-12", MS + 1],
    ];
    for (const [id, ms] of rows) {
      const seq = id.slice(3);
      await stack.pg.db.query(
        `INSERT INTO spot_orders (id, user_id, asset, side, quantity, price, total, executed_at, output_id)
         VALUES ($1, $2, 'ETH', 'buy', '0.1', '2000', '200', $3, $4)`,
        [id, userId, at(ms), `${ms}-${seq}:0`],
      );
    }
    const newestFirst = ["O0-12", "O0-11", "O0-10", "O0-9", "O0-8", "O0-7"];
    expect(((await dana.get("/api/v1/trade/spot-orders")).body.orders as { id: string }[]).map((o) => o.id)).toEqual(
      newestFirst,
    );
    expect(await pageThrough("/api/v1/trade/spot-orders", "orders", "id")).toEqual(newestFirst);
  });

  it("entry orders: newest placed first across a digit boundary of their ids, one per page", async () => {
    const rows: [string, number][] = [
      ["P0-98", MS],
      ["P0-99", MS],
      ["P0-100", MS],
      ["P0-101", MS],
      ["P0-102", MS + 5],
    ];
    for (const [id, ms] of rows) {
      const seq = Number(id.slice(3));
      await stack.pg.db.query(
        `INSERT INTO orders (id, user_id, asset, side, type, price, margin, leverage, status, placed_at, updated_at,
           last_output_id, last_output_ms, last_output_seq, last_output_n)
         VALUES ($1, $2, 'ETH', 'long', 'limit', '1900', '100', 10, 'pending', $3, $3, $4, $5, $6, 0)`,
        [id, userId, at(ms), `${ms}-${seq}:0`, ms, seq],
      );
    }
    expect(await pageThrough("/api/v1/trade/orders/history", "orders", "id")).toEqual([
      "P0-102",
      "P0-101",
      "P0-100",
      "P0-99",
      "P0-98",
    ]);
  });

  it("closed trades: newest close first by the output that made it, not by trade id, one per page", async () => {
    // Within one millisecond, in the engine's order: a partial close of T0-9 (input MS-4), then T0-10 and T0-9's
    // last part closed by one input (MS-5, outputs 0 and 1), then T0-100 (input MS-10, "MS-10:0" < "MS-4:0" as text).
    const closes: [closeId: string, tradeId: string, outputId: string][] = [
      ["T0-9.12", "T0-9", `${MS}-4:0`],
      ["T0-10", "T0-10", `${MS}-5:0`],
      ["T0-9", "T0-9", `${MS}-5:1`],
      ["T0-100", "T0-100", `${MS}-10:0`],
    ];
    for (const [closeId, tradeId, outputId] of closes) {
      await stack.pg.db.query(
        `INSERT INTO closed_orders (close_id, id, user_id, asset, type, margin, leverage, quantity, open_price,
           close_price, pnl, close_reason, opened_at, closed_at, output_id)
         VALUES ($1, $2, $3, 'ETH', 'long', '100', 10, '0.5', '2000', '2010', '5', 'manual', $4, $5, $6)`,
        [closeId, tradeId, userId, at(MS - 60_000), at(MS), outputId],
      );
    }
    const newestFirst = ["T0-100", "T0-9", "T0-10", "T0-9.12"];
    expect(
      ((await dana.get("/api/v1/trade/history")).body.trades as { closeId: string }[]).map((t) => t.closeId),
    ).toEqual(newestFirst);
    expect(await pageThrough("/api/v1/trade/history", "trades", "closeId")).toEqual(newestFirst);
  });

  it("a cursor naming no row of the user's resumes before its millisecond", async () => {
    const made = encodeCursor(at(MS), "O0-999");
    const res = await dana.get(`/api/v1/trade/spot-orders?cursor=${made}`);
    expect(res.status).toBe(200);
    expect((res.body.orders as { id: string }[]).map((o) => o.id)).toEqual(["O0-7"]);
  });
});
