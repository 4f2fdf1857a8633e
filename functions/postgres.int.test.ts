// The functions' Postgres: Neon's serverless driver, its WebSocket Pool reaching the plain local Postgres through
// the in-process proxy (the HTTP mode runs against the local Neon peer in neon-http.int.test.ts).
import { neonConfig } from "@neondatabase/serverless";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { connectFunctionsPostgres, type FunctionsPostgres } from "./postgres.ts";

const quiet = createLogger("test", { sink: () => undefined });
let t: TestDatabase;
let db: FunctionsPostgres;
beforeAll(async () => {
  t = await createTestDatabase();
  db = await connectFunctionsPostgres(t.url, quiet);
});
afterAll(async () => {
  await db?.close();
  await t?.drop();
});

describe("the functions' Neon Pool through the local proxy", () => {
  it("runs queries with parameters, typed as the containers' driver types them", async () => {
    expect(db.via).toBe("local-proxy");
    const sql =
      "SELECT 1 AS one, $1::int + $2::int AS sum, $3::text AS text, $4::numeric(30,6) AS amount, $5::bytea AS bytes, $6::timestamptz AS at";
    const params = [40, 2, "héllo ✓", "12345678901234567890.123456", Buffer.from([0, 255, 7]), "2026-01-02T03:04:05Z"];
    const r = await db.query(sql, params);
    // numeric comes back as a string: money never passes through a float.
    expect(r.rows).toEqual([
      {
        one: 1,
        sum: 42,
        text: "héllo ✓",
        amount: "12345678901234567890.123456",
        bytes: Buffer.from([0, 255, 7]),
        at: new Date("2026-01-02T03:04:05Z"),
      },
    ]);
    expect(r.rowCount).toBe(1);
    expect((await t.db.query(sql, params)).rows).toEqual(r.rows);
  });

  it("runs two pools at once without touching the driver's process-wide config", async () => {
    const before = {
      wsProxy: neonConfig.wsProxy,
      pipelineConnect: neonConfig.pipelineConnect,
      secure: neonConfig.useSecureWebSocket,
    };
    const other = await connectFunctionsPostgres(t.url, quiet);
    try {
      const [a, b] = await Promise.all([
        db.query<{ db: string }>("SELECT current_database() AS db"),
        other.query<{ db: string }>("SELECT current_database() AS db"),
      ]);
      expect(a.rows[0]?.db).toBe(t.name);
      expect(b.rows[0]?.db).toBe(t.name);
    } finally {
      await other.close();
    }
    expect({
      wsProxy: neonConfig.wsProxy,
      pipelineConnect: neonConfig.pipelineConnect,
      secure: neonConfig.useSecureWebSocket,
    }).toEqual(before);
    expect(neonConfig.pipelineConnect).toBe("password");
  });

  it("fails fast with a clear message when Postgres is not there", async () => {
    const url = new URL(t.url);
    url.port = "1"; // nothing listens on port 1
    await expect(connectFunctionsPostgres(url.toString(), quiet)).rejects.toThrow(
      /cannot reach Postgres at 127\.0\.0\.1:1\/t_\w+ \(via the local WebSocket proxy\)/,
    );
  });

  it("without waitForAnswer, starts while Postgres is not there and logs that message instead", async () => {
    const url = new URL(t.url);
    url.port = "1";
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const unreachable = await connectFunctionsPostgres(url.toString(), log, { waitForAnswer: false });
    try {
      await expect(unreachable.query("SELECT 1")).rejects.toThrow();
      await until(() => lines.some((l) => l.event === "postgres_unreachable"));
      expect(lines.find((l) => l.event === "postgres_unreachable")).toMatchObject({
        level: "error",
        host: "127.0.0.1",
        port: 1,
        via: "local-proxy",
        error: expect.stringMatching(
          /^cannot reach Postgres at 127\.0\.0\.1:1\/t_\w+ \(via the local WebSocket proxy\): /,
        ) as unknown,
      });
    } finally {
      await unreachable.close();
    }
  });
});

async function until(done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!done() && Date.now() - started < timeoutMs) await new Promise((resolve) => setTimeout(resolve, 10));
}
