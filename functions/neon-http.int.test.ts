// The functions' deployed Postgres path, `neon()` over HTTP (via: "http"), against the local peer for Neon's
// SQL-over-HTTP endpoint (testing/neon-http-peer.ts) in front of the real local Postgres; the same queries through
// the local-proxy path give the same answers.
import { neon, NeonDbError } from "@neondatabase/serverless";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { isBackendFailure } from "./backend-failure.ts";
import { connectFunctionsPostgres, type FunctionsPostgres } from "./postgres.ts";
import { startNeonHttpPeer, type NeonHttpPeer } from "./testing/neon-http-peer.ts";

const quiet = createLogger("test", { sink: () => undefined });
const TEN_MIB = 10 * 1024 * 1024;
let t: TestDatabase;
let peer: NeonHttpPeer;
let http: FunctionsPostgres;
let proxied: FunctionsPostgres;
beforeAll(async () => {
  t = await createTestDatabase();
  peer = await startNeonHttpPeer({ postgresUrl: t.url });
  http = await connectFunctionsPostgres(peer.connectionString, quiet, { neonFetchOptions: peer.fetchOptions });
  proxied = await connectFunctionsPostgres(t.url, quiet);
  await t.db.query("CREATE TABLE notes (id int PRIMARY KEY, body text)");
});
afterAll(async () => {
  await http?.close();
  await proxied?.close();
  await peer?.close();
  await t?.drop();
});

/** The peer's answer to a hand-made request, through the same dispatcher the driver uses. */
async function post(headers: Record<string, string>, body: string, method = "POST") {
  // The dispatcher is undici's own type; Node's fetch takes it, though its RequestInit names an older copy of it.
  const init = { method, headers, ...(method === "GET" ? {} : { body }), ...peer.fetchOptions };
  const res = await fetch("https://api.us-east-2.aws.neon.tech/sql", init as unknown as RequestInit);
  return { status: res.status, body: await res.json() };
}

describe("the functions' neon() over HTTP, against the local Neon peer", () => {
  it("runs parameterised queries typed as through the local proxy: numeric a string, timestamptz a Date, null", async () => {
    // Given the functions connected with a Neon host in DATABASE_URL
    expect(http.via).toBe("http");
    expect(new URL(peer.connectionString).hostname).toBe("ep-local-peer-000000.us-east-2.aws.neon.tech");
    // When the same query runs through both paths
    const sql =
      "SELECT $1::int + $2::int AS sum, $3::text AS text, $4::numeric(30,6) AS amount, $5::timestamptz AS at, $6::text AS nothing, $7::bigint AS big, $8::bytea AS bytes, $9::int[] AS list";
    const params = [
      40,
      2,
      "héllo ✓ 💶",
      "12345678901234567890.123456",
      "2026-01-02T03:04:05Z",
      null,
      "9007199254740993",
      Buffer.from([0, 255, 7]),
      [1, 2],
    ];
    const overHttp = await http.query(sql, params);
    // Then the values are exact and typed alike (numeric and bigint stay strings: no float on the way; bytea a
    // Buffer, an int[] an array)
    const expected = {
      sum: 42,
      text: "héllo ✓ 💶",
      amount: "12345678901234567890.123456",
      at: new Date("2026-01-02T03:04:05Z"),
      nothing: null,
      big: "9007199254740993",
      bytes: Buffer.from([0, 255, 7]),
      list: [1, 2],
    };
    expect(overHttp.rows).toEqual([expected]);
    expect(overHttp.rowCount).toBe(1);
    expect((await proxied.query(sql, params)).rows).toEqual([expected]);
    // And the driver addressed Neon's deployed endpoint for that host: api.<region>/sql
    expect(peer.requests.at(-1)).toEqual({ host: "api.us-east-2.aws.neon.tech", path: "/sql" });
  });

  it("writes, counts and reads back rows as the local proxy path does", async () => {
    const insert = await http.query("INSERT INTO notes (id, body) VALUES ($1, $2), ($3, $4)", [1, "un", 2, "deux"]);
    expect(insert.rowCount).toBe(2);
    const read = "SELECT id, body FROM notes ORDER BY id";
    expect((await http.query(read)).rows).toEqual([
      { id: 1, body: "un" },
      { id: 2, body: "deux" },
    ]);
    expect((await proxied.query(read)).rows).toEqual((await http.query(read)).rows);
  });

  it("returns a Postgres error as Neon does: NeonDbError with code, constraint, detail, position", async () => {
    // Given id 1 exists; when it is inserted again
    const duplicate = await http.query("INSERT INTO notes (id, body) VALUES (1, 'again')").catch((e: unknown) => e);
    // Then the driver raises NeonDbError carrying the unique violation's fields
    expect(duplicate).toBeInstanceOf(NeonDbError);
    expect(duplicate).toMatchObject({
      message: 'duplicate key value violates unique constraint "notes_pkey"',
      code: "23505",
      severity: "ERROR",
      table: "notes",
      constraint: "notes_pkey",
      detail: "Key (id)=(1) already exists.",
    });
    // The same code through the local proxy path
    await expect(proxied.query("INSERT INTO notes (id, body) VALUES (1, 'again')")).rejects.toMatchObject({
      code: "23505",
    });
    // A missing table: "SELECT 1 FROM " is 14 characters, so the error points at character 15
    await expect(http.query("SELECT 1 FROM no_such_table")).rejects.toMatchObject({
      code: "42P01",
      position: "15",
    });
    // One statement per query, as Neon runs each through the extended protocol
    await expect(http.query("SELECT 1; SELECT 2")).rejects.toMatchObject({ code: "42601" });
  });

  it("refuses a request body over 10 MiB with 413 and runs nothing", async () => {
    const big = "x".repeat(TEN_MIB);
    const refused = await http.query("INSERT INTO notes (id, body) VALUES (3, $1)", [big]).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NeonDbError);
    expect((refused as Error).message).toMatch(
      /^Server error \(HTTP status 413\): .*"message":"request is too large \(max is 10485760 bytes\)"/,
    );
    expect((await t.db.query("SELECT count(*)::int AS n FROM notes WHERE id = 3")).rows).toEqual([{ n: 0 }]);
  });

  it("refuses a response that passes 10 MiB with 507", async () => {
    // 12 rows of 1,000,000 characters: each row is 1,000,004 bytes of JSON (["…"]) and a comma; when the 12th is
    // due, 11 rows (over 11,000,000 bytes) are written, past 10,485,760, so it is refused.
    const refused = await http
      .query("SELECT repeat('x', 1000000) FROM generate_series(1, 12)")
      .catch((e: unknown) => e as Error);
    expect((refused as Error).message).toMatch(
      /^Server error \(HTTP status 507\): .*"message":"response is too large \(max is 10485760 bytes\)"/,
    );
  });

  it("checks the response cap before each row, counting the whole response written so far", async () => {
    // Given a peer capped at 200 bytes; a result of column v (text) starts with its fields,
    // {"fields":[{"name":"v","dataTypeID":25,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,
    // "format":"text"}],"rows":[ = 11+12+16+12+13+18+22+16+10 = 130 bytes; then ["ab"] (6), then ,["ab"] (7) each.
    // Before row k (k ≥ 1) 129 + 7k bytes are written: row 10 sees 199 (≤ 200), row 11 sees 206 (over).
    const small = await startNeonHttpPeer({ postgresUrl: t.url, maxResponseBytes: 200 });
    try {
      const sql = neon(small.connectionString, { fetchOptions: small.fetchOptions });
      const q = "SELECT 'ab'::text AS v FROM generate_series(1, $1::int)";
      // When 11 rows are asked for, then all come back; when 12, the 12th (row 11) is refused
      expect(await sql.query(q, [11])).toHaveLength(11);
      await expect(sql.query(q, [12])).rejects.toThrow(
        /^Server error \(HTTP status 507\): .*"message":"response is too large \(max is 200 bytes\)"/,
      );
    } finally {
      await small.close();
    }
  });

  it("refuses a connection string for an endpoint it does not serve, as Neon's control plane does", async () => {
    const other = new URL(peer.connectionString);
    other.hostname = "ep-other-endpoint-111111.us-east-2.aws.neon.tech";
    await expect(
      connectFunctionsPostgres(other.toString(), quiet, { neonFetchOptions: peer.fetchOptions }),
    ).rejects.toThrow(
      `cannot reach Postgres at ep-other-endpoint-111111.us-east-2.aws.neon.tech:5432/${t.name} (over HTTP): Control plane request failed: endpoint cannot be found`,
    );
  });

  it("a Postgres error while connecting: Neon's 500, but 400 with its SQLSTATE for a database that does not exist", async () => {
    const closed = `${t.name}_closed`;
    await t.db.query(`CREATE DATABASE ${closed} ALLOW_CONNECTIONS false`);
    try {
      const url = new URL(peer.connectionString);
      url.pathname = `/${closed}`;
      const refused = neon(url.toString(), { fetchOptions: peer.fetchOptions });
      const err = (await refused.query("SELECT 1").catch((e: unknown) => e)) as NeonDbError;
      // The driver keeps no fields for a status other than 400, only the body in its message.
      expect(err.message).toMatch(/^Server error \(HTTP status 500\): \{"message":"database \\".*\\" is not currently/);
      expect(err.code).toBeUndefined();
    } finally {
      await t.db.query(`DROP DATABASE ${closed}`);
    }
    const missing = new URL(peer.connectionString);
    missing.pathname = "/no_such_database";
    const err = (await neon(missing.toString(), { fetchOptions: peer.fetchOptions })
      .query("SELECT 1")
      .catch((e: unknown) => e)) as NeonDbError;
    expect([err.message, err.code]).toEqual(['database "no_such_database" does not exist', "3D000"]);
  });

  it("a database that does not exist fails alike over HTTP and through the local proxy: 3D000, one answer", async () => {
    const failures: unknown[] = [];
    for (const [url, options] of [
      [peer.connectionString, { neonFetchOptions: peer.fetchOptions }],
      [t.url, {}],
    ] as const) {
      const missing = new URL(url);
      missing.pathname = "/no_such_database";
      const db = await connectFunctionsPostgres(missing.toString(), quiet, { ...options, waitForAnswer: false });
      failures.push(await db.query("SELECT 1").catch((e: unknown) => e));
      await db.close();
    }
    expect(failures.map((e) => (e as { code?: unknown }).code)).toEqual(["3D000", "3D000"]);
    // So the API answers it alike deployed and locally: 503, a configuration Postgres refuses, as a role it refuses.
    expect(failures.map((e) => isBackendFailure(e))).toEqual([true, true]);
  });

  it("answers malformed requests with Neon's statuses and error body", async () => {
    const noString = await post({ "neon-raw-text-output": "true" }, JSON.stringify({ query: "SELECT 1" }));
    expect(noString).toMatchObject({
      status: 400,
      body: { message: "invalid header: neon-connection-string", code: "", detail: null },
    });
    const ip = new URL(peer.connectionString);
    ip.hostname = "127.0.0.1"; // Neon routes by the endpoint id in the host name; an address names none
    const byIp = await post(
      { "neon-connection-string": ip.toString(), "neon-raw-text-output": "true" },
      JSON.stringify({ query: "SELECT 1" }),
    );
    expect(byIp).toMatchObject({ status: 400, body: { message: "missing hostname" } });
    const notJson = await post({ "neon-connection-string": peer.connectionString }, "SELECT 1");
    expect(notJson.status).toBe(400);
    expect((notJson.body as { message: string }).message).toMatch(/^could not parse the HTTP request body: /);
    expect(await post({}, "", "GET")).toEqual({ status: 400, body: "query is not supported" });
  });

  it("runs a transaction() batch in one transaction: a failing statement rolls back the ones before it", async () => {
    const sql = neon(peer.connectionString, { fetchOptions: peer.fetchOptions });
    const failed = await sql
      .transaction([sql`INSERT INTO notes (id, body) VALUES (10, 'first')`, sql`INSERT INTO notes (id) VALUES (1)`])
      .catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: "23505" });
    expect((await t.db.query("SELECT count(*)::int AS n FROM notes WHERE id = 10")).rows).toEqual([{ n: 0 }]);
    const [ins, rows] = await sql.transaction(
      [sql`INSERT INTO notes (id, body) VALUES (11, 'ok')`, sql`SELECT body FROM notes WHERE id = ${11}`],
      { isolationLevel: "Serializable" },
    );
    expect(ins).toEqual([]);
    expect(rows).toEqual([{ body: "ok" }]);
  });
});
