// Migrations: the repository's files apply once and in order, concurrent starters do not double-apply, and a
// failing file leaves nothing behind. Each test gets its own database: migrations change the whole schema.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "./log.ts";
import { DEFAULT_MIGRATIONS_DIR, migrate, migrationFiles } from "./migrate.ts";
import { connectPostgres } from "./postgres.ts";
import { createTestDatabase, type TestDatabase } from "./testing/test-database.ts";

const quiet = createLogger("test", { sink: () => undefined });
const REPO_MIGRATIONS = [
  "001_users.sql",
  "002_closed_orders.sql",
  "003_engine_snapshots.sql",
  "004_sign_in_tokens.sql",
  "005_snapshot_chunks_uncompressed.sql",
  "006_snapshot_chunks_base64.sql",
  "007_spot_orders.sql",
  "008_orders.sql",
  "009_closed_orders_per_close.sql",
  "010_candles.sql",
  "011_sign_in_tokens_unused_email.sql",
  "012_candles_1h.sql",
  "013_sign_in_tokens_session.sql",
];
const open: TestDatabase[] = [];
async function freshDatabase() {
  const t = await createTestDatabase();
  open.push(t);
  return t;
}
const folders: string[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.drop()));
  await Promise.all(folders.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function folder(files: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), "migrations-"));
  folders.push(dir);
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return dir;
}

describe("migrate", () => {
  it("applies the repository's migrations once, logging each, and a second run applies nothing", async () => {
    const t = await freshDatabase();
    expect(await migrate(t.db, t.log)).toEqual(REPO_MIGRATIONS);
    const logged = t.logLines.filter((l) => l.event === "migration_applied").map((l) => l.name);
    expect(logged).toEqual(REPO_MIGRATIONS);
    expect(await migrate(t.db, t.log)).toEqual([]);
    const recorded = await t.db.query<{ name: string }>("SELECT name FROM schema_migrations ORDER BY name");
    expect(recorded.rows.map((r) => r.name)).toEqual(REPO_MIGRATIONS);
  });

  it("creates tables whose constraints hold the rules", async () => {
    const t = await freshDatabase();
    await migrate(t.db, quiet);
    await t.db.query("INSERT INTO users (email) VALUES ('a@example.com')");
    await expect(t.db.query("INSERT INTO users (email) VALUES ('B@example.com')")).rejects.toThrow(
      "users_email_lower_case",
    );
    await expect(t.db.query("INSERT INTO users (email) VALUES ('a@example.com')")).rejects.toThrow(/duplicate key/);

    const order = (id: string, type: string, outputId: string, closeId = id, reason = "manual") =>
      t.db.query(
        `INSERT INTO closed_orders (close_id, id, user_id, asset, type, margin, leverage, quantity, open_price,
         close_price, pnl, close_reason, opened_at, closed_at, output_id)
       VALUES ($4, $1, 'u1', 'ETH', $2, '100.000001', 10, '0.2325581395', '4300.1', '4310.55', '-1.234567',
         $5, now(), now(), $3)`,
        [id, type, outputId, closeId, reason],
      );
    await order("T0-1", "long", "o1");
    await expect(order("T0-2", "sideways", "o2")).rejects.toThrow(/check constraint/);
    // output_id is the replay guard: the same engine output cannot land twice under another trade id.
    await expect(order("T0-3", "short", "o1")).rejects.toThrow(/duplicate key/);
    // A trade's partial closes share its id, each under its own close_id; a close_id lands once.
    await order("T0-1", "long", "o4", "T0-1.1", "trailing_stop");
    await expect(order("T0-1", "long", "o5", "T0-1.1")).rejects.toThrow(/duplicate key/);
    await expect(order("T0-6", "long", "o6", "T0-6", "margin_call")).rejects.toThrow(/check constraint/);
    const stored = await t.db.query("SELECT close_id, margin, quantity, pnl FROM closed_orders ORDER BY close_id");
    expect(stored.rows).toEqual([
      { close_id: "T0-1", margin: "100.000001", quantity: "0.2325581395", pnl: "-1.234567" },
      { close_id: "T0-1.1", margin: "100.000001", quantity: "0.2325581395", pnl: "-1.234567" },
    ]);

    const entry = (id: string, status: string) =>
      t.db.query(
        `INSERT INTO orders (id, user_id, asset, side, type, price, margin, leverage, status, placed_at, updated_at,
         last_output_id, last_output_ms, last_output_seq, last_output_n)
       VALUES ($1, 'u1', 'ETH', 'long', 'limit', '4200.25', '100', 10, $2, now(), now(), '1-0:0', 1, 0, 0)`,
        [id, status],
      );
    await entry("O0-1", "pending");
    await expect(entry("O0-2", "open")).rejects.toThrow(/check constraint/);
    await expect(entry("O0-1", "filled")).rejects.toThrow(/duplicate key/);

    const spot = (id: string, side: string, outputId: string) =>
      t.db.query(
        `INSERT INTO spot_orders (id, user_id, asset, side, quantity, price, total, executed_at, output_id)
         VALUES ($1, 'u1', 'BTC', $2, '0.00001', '60010.5', '0.600105', now(), $3)`,
        [id, side, outputId],
      );
    await spot("O0-1", "buy", "s1");
    await expect(spot("O0-2", "hold", "s2")).rejects.toThrow(/check constraint/);
    await expect(spot("O0-3", "sell", "s1")).rejects.toThrow(/duplicate key/);
    await expect(spot("O0-1", "sell", "s4")).rejects.toThrow(/duplicate key/);
    const spotStored = await t.db.query("SELECT quantity, price, total FROM spot_orders");
    expect(spotStored.rows).toEqual([{ quantity: "0.0000100000", price: "60010.5000000000", total: "0.600105" }]);

    await expect(t.db.query("INSERT INTO engine_snapshots (id, snapshot_data) VALUES (2, '{}')")).rejects.toThrow(
      "single_row",
    );

    const candle = (openTime: string, open: string, high: string, low: string, close: string, outputs = [1, 2]) =>
      t.db.query(
        `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
         VALUES ('ETH', $1, $2, $3, $4, $5, $6, $7)`,
        [openTime, open, high, low, close, ...outputs],
      );
    await candle("2027-01-15T08:00:00Z", "2000", "2010.5", "1995.25", "2003");
    await expect(candle("2027-01-15T08:00:00Z", "2000", "2000", "2000", "2000")).rejects.toThrow(/duplicate key/);
    await expect(candle("2027-01-15T08:01:30Z", "2000", "2000", "2000", "2000")).rejects.toThrow("whole_minute");
    await expect(candle("2027-01-15T08:02:00Z", "2000", "1999", "1990", "1995")).rejects.toThrow("candles_1m_range");
    await expect(candle("2027-01-15T08:03:00Z", "2000", "2000", "2000", "2000", [2, 1])).rejects.toThrow("outputs");

    const hour = (openTime: string, open: string, high: string, low: string, close: string, outputs = [1, 2]) =>
      t.db.query(
        `INSERT INTO candles_1h (asset, open_time, open, high, low, close, open_output, close_output)
         VALUES ('ETH', $1, $2, $3, $4, $5, $6, $7)`,
        [openTime, open, high, low, close, ...outputs],
      );
    await hour("2027-01-15T08:00:00Z", "2000", "2010.5", "1995.25", "2003");
    await expect(hour("2027-01-15T08:00:00Z", "2000", "2000", "2000", "2000")).rejects.toThrow(/duplicate key/);
    await expect(hour("2027-01-15T09:01:00Z", "2000", "2000", "2000", "2000")).rejects.toThrow("whole_hour");
    await expect(hour("2027-01-15T10:00:00Z", "2000", "1999", "1990", "1995")).rejects.toThrow("candles_1h_range");
    await expect(hour("2027-01-15T11:00:00Z", "2000", "2000", "2000", "2000", [2, 1])).rejects.toThrow("outputs");
  });

  it("gives closed rows written before per-close rows their trade id as close_id", async () => {
    const t = await freshDatabase();
    const before = await folder({});
    for (const name of REPO_MIGRATIONS.slice(0, REPO_MIGRATIONS.indexOf("009_closed_orders_per_close.sql")))
      await writeFile(join(before, name), await readFile(join(DEFAULT_MIGRATIONS_DIR, name), "utf8"));
    await migrate(t.db, quiet, before);
    await t.db.query(
      `INSERT INTO closed_orders (id, user_id, asset, type, margin, leverage, quantity, open_price, close_price, pnl,
       close_reason, opened_at, closed_at, output_id)
       VALUES ('T0-7', 'u1', 'ETH', 'long', '100', 10, '0.5', '2000', '2100', '50', 'manual', now(), now(), 'o7')`,
    );
    expect(await migrate(t.db, quiet)).toEqual(
      REPO_MIGRATIONS.slice(REPO_MIGRATIONS.indexOf("009_closed_orders_per_close.sql")),
    );
    const { rows } = await t.db.query("SELECT close_id, id, remaining_quantity, loss_waived FROM closed_orders");
    expect(rows).toEqual([{ close_id: "T0-7", id: "T0-7", remaining_quantity: "0.0000000000", loss_waived: null }]);
  });

  it("fills candles_1h from the minutes stored before it: each hour the merge of its minutes by their outputs", async () => {
    const t = await freshDatabase();
    const before = await folder({});
    for (const name of REPO_MIGRATIONS.slice(0, REPO_MIGRATIONS.indexOf("012_candles_1h.sql")))
      await writeFile(join(before, name), await readFile(join(DEFAULT_MIGRATIONS_DIR, name), "utf8"));
    await migrate(t.db, quiet, before);
    const minute = (asset: string, openTime: string, prices: string[], outputs: number[]) =>
      t.db.query(
        `INSERT INTO candles_1m (asset, open_time, open, high, low, close, open_output, close_output)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [asset, openTime, ...prices, ...outputs],
      );
    // Inserted out of time order; the hour's open and close go by the outputs, its high and low by the extremes.
    await minute("ETH", "2027-01-15T08:59:00Z", ["2005", "2006", "2001", "2002.5"], [30, 39]);
    await minute("ETH", "2027-01-15T08:00:00Z", ["2000", "2010.5", "1995.25", "2003"], [10, 19]);
    await minute("ETH", "2027-01-15T08:30:00Z", ["2003", "2004", "1990", "2004"], [20, 29]);
    await minute("ETH", "2027-01-15T09:00:00Z", ["2002.5", "2002.5", "2002.5", "2002.5"], [40, 40]);
    await minute("BTC", "2027-01-15T08:15:00Z", ["60000.5", "60001", "60000", "60001"], [11, 12]);
    expect(await migrate(t.db, quiet)).toEqual(REPO_MIGRATIONS.slice(REPO_MIGRATIONS.indexOf("012_candles_1h.sql")));
    const { rows } = await t.db.query(
      `SELECT asset, open_time, open::float8, high::float8, low::float8, close::float8, open_output::int,
              close_output::int
         FROM candles_1h ORDER BY asset, open_time`,
    );
    const hour = (asset: string, time: string, prices: number[], outputs: number[]) => {
      const [open, high, low, close] = prices;
      const [open_output, close_output] = outputs;
      return { asset, open_time: new Date(time), open, high, low, close, open_output, close_output };
    };
    expect(rows).toEqual([
      hour("BTC", "2027-01-15T08:00:00Z", [60000.5, 60001, 60000, 60001], [11, 12]),
      hour("ETH", "2027-01-15T08:00:00Z", [2000, 2010.5, 1990, 2002.5], [10, 39]),
      hour("ETH", "2027-01-15T09:00:00Z", [2002.5, 2002.5, 2002.5, 2002.5], [40, 40]),
    ]);
  });

  it("applies in filename order regardless of directory order, each once", async () => {
    const t = await freshDatabase();
    // 002 depends on 001 and 010 on 002: out of order, a file would fail.
    const dir = await folder({
      "010_c.sql": "ALTER TABLE a ADD COLUMN c int",
      "001_a.sql": "CREATE TABLE a (x int)",
      "002_b.sql": "ALTER TABLE a ADD COLUMN b int; CREATE INDEX a_b ON a (b)",
    });
    expect(await migrationFiles(dir)).toEqual(["001_a.sql", "002_b.sql", "010_c.sql"]);
    expect(await migrate(t.db, quiet, dir)).toEqual(["001_a.sql", "002_b.sql", "010_c.sql"]);
    const cols = await t.db.query<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'a' ORDER BY ordinal_position",
    );
    expect(cols.rows.map((r) => r.column_name)).toEqual(["x", "b", "c"]);
  });

  it("refuses misnamed files and mixed number widths rather than skipping them", async () => {
    await expect(migrationFiles(await folder({ "001_a.sql": "", "2-b.sql": "" }))).rejects.toThrow("2-b.sql");
    await expect(migrationFiles(await folder({ "001_a.sql": "", "0002_b.sql": "" }))).rejects.toThrow("same width");
  });

  it("serializes concurrent starters: every file applied exactly once", async () => {
    const t = await freshDatabase();
    // Two separate pools stand in for two processes starting at once; each file sleeps so their runs overlap.
    const other = await connectPostgres(t.url, quiet);
    try {
      const dir = await folder({
        "001_a.sql": "SELECT pg_sleep(0.2); CREATE TABLE a (x int)",
        "002_b.sql": "SELECT pg_sleep(0.2); CREATE TABLE b (x int)",
      });
      const [mine, theirs] = await Promise.all([migrate(t.db, quiet, dir), migrate(other, quiet, dir)]);
      expect([...mine, ...theirs].sort()).toEqual(["001_a.sql", "002_b.sql"]);
      const recorded = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM schema_migrations");
      expect(recorded.rows[0]?.n).toBe(2);
    } finally {
      await other.close();
    }
  });

  it("rolls a failing file back whole, keeps what came before, and retries it next time", async () => {
    const t = await freshDatabase();
    const dir = await folder({
      "001_ok.sql": "CREATE TABLE ok (x int)",
      "002_bad.sql": "CREATE TABLE half (x int); SELECT no_such_function()",
    });
    await expect(migrate(t.db, quiet, dir)).rejects.toThrow(/migration 002_bad.sql failed: .*no_such_function/);
    const tables = await t.db.query<{ t: string | null }>(
      "SELECT to_regclass('ok')::text AS t UNION ALL SELECT to_regclass('half')::text",
    );
    expect(tables.rows.map((r) => r.t)).toEqual(["ok", null]);
    const recorded = await t.db.query<{ name: string }>("SELECT name FROM schema_migrations");
    expect(recorded.rows.map((r) => r.name)).toEqual(["001_ok.sql"]);

    await writeFile(join(dir, "002_bad.sql"), "CREATE TABLE half (x int)");
    expect(await migrate(t.db, quiet, dir)).toEqual(["002_bad.sql"]);
  });
});
