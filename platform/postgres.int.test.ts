// The containers' Postgres: node-postgres over TCP, its transactions, and its streamed rows.
import { createServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "./config.ts";
import { createLogger } from "./log.ts";
import { connectPostgres, TransactionTimeoutError } from "./postgres.ts";
import { until } from "./testing/processes.ts";
import { startRedisProxy } from "./testing/redis-proxy.ts";
import { createTestDatabase, type TestDatabase } from "./testing/test-database.ts";

const quiet = createLogger("test", { sink: () => undefined });
let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

describe("pg Pool over TCP", () => {
  it("runs queries with parameters, exactly typed", async () => {
    const r = await t.db.query<{ one: number; sum: number; text: string; amount: string; bytes: Buffer }>(
      "SELECT 1 AS one, $1::int + $2::int AS sum, $3::text AS text, $4::numeric(30,6) AS amount, $5::bytea AS bytes",
      [40, 2, "héllo ✓", "12345678901234567890.123456", Buffer.from([0, 255, 7])],
    );
    // numeric comes back as a string: money never passes through a float.
    expect(r.rows).toEqual([
      { one: 1, sum: 42, text: "héllo ✓", amount: "12345678901234567890.123456", bytes: Buffer.from([0, 255, 7]) },
    ]);
  });

  it("takes a Buffer parameter for a text column as its bytes, as they are", async () => {
    const r = await t.db.query<{ text: string }>("SELECT $1::text AS text", [Buffer.from("QUJD", "latin1")]);
    expect(r.rows[0]?.text).toBe("QUJD");
  });

  it("commits a transaction, and rolls one back when its function throws", async () => {
    await t.db.query("CREATE TABLE tx_probe (v int)");
    await t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tx_probe VALUES (1)");
    });
    const boom = t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tx_probe VALUES (2)");
      throw new Error("boom");
    });
    await expect(boom).rejects.toThrow("boom");
    const rows = await t.db.query<{ v: number }>("SELECT v FROM tx_probe ORDER BY v");
    expect(rows.rows).toEqual([{ v: 1 }]);
  });

  it("sees the transaction's own writes on its one connection, and hides them from others until commit", async () => {
    await t.db.query("CREATE TABLE tx_iso (v int)");
    await t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tx_iso VALUES (7)");
      expect((await tx.query("SELECT count(*)::int AS n FROM tx_iso")).rows[0]).toEqual({ n: 1 });
      expect((await t.db.query("SELECT count(*)::int AS n FROM tx_iso")).rows[0]).toEqual({ n: 0 });
    });
    expect((await t.db.query("SELECT count(*)::int AS n FROM tx_iso")).rows[0]).toEqual({ n: 1 });
  });

  it("streams a transaction's rows as they arrive, in order", async () => {
    const seen: { i: number; length: number; at: number }[] = [];
    const ended = await t.db.transaction(async (tx) => {
      // Rows of 1 MiB, the third one made after a 0.3 s sleep.
      const rows = tx.stream<{ i: number; data: string }>(
        "SELECT i, repeat('x', 1048576) AS data, CASE WHEN i = 3 THEN pg_sleep(0.3) END AS nap FROM generate_series(1, $1::int) AS i",
        [3],
        { rowsPerFetch: 1 },
      );
      for await (const row of rows) seen.push({ i: row.i, length: row.data.length, at: performance.now() });
      return performance.now();
    });
    expect(seen.map((r) => [r.i, r.length])).toEqual([
      [1, 1048576],
      [2, 1048576],
      [3, 1048576],
    ]);
    // The first rows were there before the sleep that the last one waited for: they were not held back to the end.
    expect(ended - seen[0]!.at).toBeGreaterThanOrEqual(250);
  });

  it("ends a stream with the query's error, or at the loop's first throw, and rolls back", async () => {
    await t.db.query("CREATE TABLE stream_probe (v int)");
    const failing = t.db.transaction(async (tx) => {
      for await (const row of tx.stream("SELECT 1 / (2 - i) AS v FROM generate_series(1, 3) AS i", [], {
        rowsPerFetch: 1,
      }))
        void row;
    });
    await expect(failing).rejects.toThrow("division by zero");
    const calls: number[] = [];
    const thrown = t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO stream_probe VALUES (1)");
      for await (const row of tx.stream<{ i: number }>("SELECT i FROM generate_series(1, 5) AS i", [], {
        rowsPerFetch: 1,
      })) {
        calls.push(row.i);
        if (row.i === 2) throw new Error("row 2 is bad");
      }
    });
    await expect(thrown).rejects.toThrow("row 2 is bad");
    expect(calls).toEqual([1, 2]); // nothing after the throw
    expect((await t.db.query("SELECT count(*)::int AS n FROM stream_probe")).rows[0]).toEqual({ n: 0 });
    // The connections are fine afterwards.
    for (let i = 0; i < 3; i++)
      expect((await t.db.transaction((tx) => tx.query<{ two: number }>("SELECT 2 AS two"))).rows).toEqual([{ two: 2 }]);
  });

  it("sends a stream's query only when it is iterated: one made and dropped leaves the rollback unblocked", async () => {
    const dropped = t.db.transaction((tx) => {
      tx.stream("SELECT pg_sleep(30)", []);
      return Promise.reject(new Error("failed before the loop"));
    });
    const started = performance.now();
    await expect(dropped).rejects.toThrow("failed before the loop");
    expect(performance.now() - started).toBeLessThan(10_000); // a sent query would hold the ROLLBACK for 30 s
    expect((await t.db.transaction((tx) => tx.query<{ two: number }>("SELECT 2 AS two"))).rows).toEqual([{ two: 2 }]);
  });

  it("sends a statement again when Postgres rolled it back as a deadlock's loser, and says so", async () => {
    await t.db.query("CREATE TABLE deadlock_probe (k int PRIMARY KEY, v int NOT NULL)");
    await t.db.query("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)");
    // The statement locks row 1, then waits for row 2, which the transaction holds; the transaction then waits for
    // row 1. The statement waited first, so its backend is the first to look for a deadlock, and gives up its own.
    const { outcome } = await t.db.transaction(async (tx) => {
      await tx.query("UPDATE deadlock_probe SET v = v + 1 WHERE k = 2");
      const statement = t.db.query(
        "INSERT INTO deadlock_probe VALUES (1, 10), (2, 10) ON CONFLICT (k) DO UPDATE SET v = deadlock_probe.v + 10",
      );
      const outcome = statement.then(
        () => "done",
        (err: unknown) => (err as { code?: string }).code,
      );
      for (let waiting = 0; waiting === 0;) {
        const { rows } = await t.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        waiting = rows[0]!.n;
      }
      await tx.query("UPDATE deadlock_probe SET v = v + 1 WHERE k = 1");
      return { outcome }; // in an object: the sent-again statement waits for this transaction's commit
    });
    expect(await outcome).toBe("done");
    const { rows } = await t.db.query<{ k: number; v: number }>("SELECT k, v FROM deadlock_probe ORDER BY k");
    expect(rows).toEqual([
      { k: 1, v: 11 },
      { k: 2, v: 11 },
    ]);
    expect(t.logLines).toContainEqual(
      expect.objectContaining({ event: "postgres_statement_retried", code: "40P01", attempt: 1 }),
    );
  });

  it("reports a connection that dies while a transaction holds it, instead of an uncaught error", async () => {
    const events: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => void events.push(JSON.parse(line) as Record<string, unknown>) });
    const db = await connectPostgres(t.url, log, { maxConnections: 1 });
    try {
      const tx = db.transaction(async (q) => {
        const { rows } = await q.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
        // Ended from outside while this transaction is idle: no query of its own is there to fail.
        await t.db.query("SELECT pg_terminate_backend($1)", [rows[0]!.pid]);
        await new Promise((resolve) => setTimeout(resolve, 300));
        await q.query("SELECT 1");
      });
      await expect(tx).rejects.toThrow();
      expect(events.filter((e) => e.event === "postgres_client_error").length).toBeGreaterThan(0);
      expect((await db.query<{ two: number }>("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]); // a new connection
    } finally {
      await db.close();
    }
  });

  it("gives a transaction's connection up when Postgres answered an outage on it, as a read-only node does", async () => {
    const db = await connectPostgres(t.url, quiet, { maxConnections: 1 });
    const pid = async () => (await db.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
    try {
      const first = await pid();
      // A write in a read-only transaction is answered 25006, as one that reaches a node read-only after a failover.
      const readOnly = db.transaction(async (tx) => {
        await tx.query("SET TRANSACTION READ ONLY");
        await tx.query("CREATE TABLE read_only_probe (v int)");
      });
      await expect(readOnly).rejects.toMatchObject({ code: "25006" });
      const second = await pid();
      expect(second).not.toBe(first); // a new connection, wherever the address leads now
      // Any other error leaves the connection to the pool.
      await expect(db.transaction((tx) => tx.query("SELECT 1/0"))).rejects.toMatchObject({ code: "22012" });
      expect(await pid()).toBe(second);
    } finally {
      await db.close();
    }
  });

  it("fails a statement on its own after queryTimeoutMs and drops its connection; a transaction's runs long", async () => {
    const db = await connectPostgres(t.url, quiet, { maxConnections: 1, queryTimeoutMs: 300 });
    try {
      const started = performance.now();
      await expect(db.query("SELECT pg_sleep(3)")).rejects.toThrow("Query read timeout");
      expect(performance.now() - started).toBeLessThan(2_000);
      // The pool's one connection was dropped, not kept busy: the next statement gets a new one at once.
      expect((await db.query<{ two: number }>("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
      const slow = await db.transaction((tx) => tx.query<{ three: number }>("SELECT 3 AS three FROM pg_sleep(0.6)"));
      expect(slow.rows).toEqual([{ three: 3 }]);
    } finally {
      await db.close();
    }
  });

  it("gives up a transaction past its timeoutMs on a connection that stopped answering, and destroys that connection", async () => {
    const events: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => void events.push(JSON.parse(line) as Record<string, unknown>) });
    const proxy = await startRedisProxy(t.url);
    const through = new URL(t.url);
    through.port = String(proxy.port);
    const db = await connectPostgres(through.toString(), log, { maxConnections: 1 });
    const lockKey = "7243019188271345099";
    try {
      const frozen = proxy.freezeOn("tx_deadline_second");
      const tx = db.transaction(
        async (q) => {
          await q.query("SELECT pg_advisory_xact_lock($1::bigint)", [lockKey]);
          await q.query("SELECT 'tx_deadline_second'"); // never answered
        },
        { timeoutMs: 500 },
      );
      await frozen;
      // Without the deadline it would wait for ever: the statement's answer never comes.
      await expect(tx).rejects.toThrow(TransactionTimeoutError);
      await expect(tx).rejects.toThrow("no commit within 500 ms");
      // Postgres saw the connection close: the transaction ended, its lock with it (a snapshot save's, say).
      const free = () =>
        t.db.transaction(async (q) => {
          const { rows } = await q.query<{ got: boolean }>("SELECT pg_try_advisory_xact_lock($1::bigint) AS got", [
            lockKey,
          ]);
          return rows[0]!.got ? true : undefined;
        });
      await until(free, 5_000, "the abandoned transaction's lock");
      // The path is back, but the frozen connection's bytes are lost for good: only a new connection answers, and
      // the pool's one slot was given back for it.
      proxy.thaw();
      expect((await db.query<{ two: number }>("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
      expect(events.filter((e) => e.event === "postgres_client_error")).toEqual([]);
    } finally {
      await db.close();
      await proxy.close();
    }
  });

  it("closes within its timeout while a connection is still held (a load abandoned on a silent Postgres)", async () => {
    const events: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => void events.push(JSON.parse(line) as Record<string, unknown>) });
    const db = await connectPostgres(t.url, log, { maxConnections: 1, closeTimeoutMs: 300 });
    let release = () => undefined as void;
    const held = db.transaction(() => new Promise<void>((resolve) => (release = resolve)));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    await db.close();
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(events.map((e) => e.event)).toContain("postgres_close_timeout");
    release();
    await held.catch(() => undefined);
  });

  it("fails fast with a clear message when Postgres is not there", async () => {
    const url = new URL(t.url);
    url.port = "1"; // nothing listens on port 1
    await expect(connectPostgres(url.toString(), quiet)).rejects.toThrow(
      /cannot reach Postgres at 127\.0\.0\.1:1\/t_\w+: .*ECONNREFUSED/,
    );
  });

  it("calls a database that does not exist a configuration error: DATABASE_URL named, without its password, and how to create it", async () => {
    const url = new URL(t.url);
    url.password = "s3cret";
    url.pathname = "/no_such_db_here";
    const failed = await connectPostgres(url.toString(), quiet).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(ConfigError);
    const { message } = failed as Error;
    expect(message).toBe(
      `DATABASE_URL names database "no_such_db_here", which does not exist on the Postgres at ${url.hostname}:${url.port || 5432}: create it (createdb -h ${url.hostname} -p ${url.port || 5432} -U ${url.username} no_such_db_here), or set DATABASE_URL to one that exists`,
    );
    expect(message).not.toContain("s3cret");
  });

  it("calls a user the server refuses a configuration error naming DATABASE_URL's user", async () => {
    const url = new URL(t.url);
    url.username = "no_such_role_here";
    url.password = "s3cret";
    const failed = await connectPostgres(url.toString(), quiet).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(ConfigError);
    const { message } = failed as Error;
    expect(message).toMatch(
      /^the Postgres at [\d.]+:\d+ refused DATABASE_URL's user "no_such_role_here" for database "t_\w+" \(.+\): check the user and password in DATABASE_URL$/,
    );
    expect(message).not.toContain("s3cret");
  });

  it("gives up on a server that accepts the connection and never answers, after the connect timeout", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket)); // reads the startup message, says nothing
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const url = new URL(t.url);
      url.port = String((silent.address() as AddressInfo).port);
      const started = performance.now();
      await expect(connectPostgres(url.toString(), quiet, { connectTimeoutMs: 300 })).rejects.toThrow(
        /cannot reach Postgres at 127\.0\.0\.1:\d+\/t_\w+: .*timeout/i,
      );
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(sockets.length).toBeGreaterThan(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
