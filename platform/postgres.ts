/**
 * Postgres for the long-running processes (engine, worker, stream, migrations): node-postgres (`pg`) over TCP, a
 * pool per process, TLS as the connection string asks (`?sslmode=verify-full` for Neon: node-postgres treats
 * `require` the same, with a SECURITY WARNING on stderr at each start). The HTTP API's functions use
 * Neon's serverless driver instead (functions/postgres.ts); both hand out the `Queryable` below.
 *
 * A statement run on its own (`query`, not inside `transaction`) that Postgres rolled back as the loser of a deadlock
 * or a serialization conflict is sent again, a few times, with a warning: it left nothing behind, so sending it again
 * is what its caller would do, and the conflict is over once the other side went on. A transaction is not retried:
 * its function would have to run again, which only its caller can say is safe. A transaction whose statement met a
 * Postgres outage releases its connection as broken, so the pool opens a new one: a node that turned read-only in a
 * failover would otherwise answer 25006 on it for as long as it lives. What an error means, conflict or outage, is
 * decided in postgres-errors.ts, for every process alike.
 */
import pg, { type QueryResultRow } from "pg";
import QueryStream from "pg-query-stream";
import { ConfigError } from "./config.ts";
import type { Logger } from "./log.ts";
import { classifyPostgresError, postgresErrorCode } from "./postgres-errors.ts";

/** A row as the drivers give it: column name → value parsed by its type (numeric and int8 stay strings). */
export type Row = QueryResultRow;

export interface Rows<R extends Row> {
  rows: R[];
  /** Rows returned or changed; null for a statement that has no count. */
  rowCount: number | null;
}

/** What a pool, a transaction's client and the functions' connection can all do. */
export interface Queryable {
  query<R extends Row = Row>(text: string, params?: unknown[]): Promise<Rows<R>>;
}

/** A transaction's connection. */
export interface Transaction extends Queryable {
  /**
   * A query's rows as they arrive, `rowsPerFetch` at a time (a server-side cursor), keeping none once handed over:
   * for a result too big to hold at once, or worth using before its last row is in (a snapshot's chunks). Leaving
   * the loop early closes the cursor.
   */
  stream<R extends Row>(text: string, params: unknown[], options?: { rowsPerFetch?: number }): AsyncIterable<R>;
}

export interface Postgres extends Queryable {
  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection; any throw rolls back and is rethrown. With `timeoutMs`, a
   * transaction not committed that long after its connection was handed out (BEGIN on) fails with
   * TransactionTimeoutError, and its connection is destroyed rather than returned to the pool: a query in flight on
   * a connection that stopped answering would otherwise hold it (and `fn`) for ever, and its answer, should it come
   * after all, would meet the next user of the connection. Postgres rolls the transaction back when it sees the
   * connection close (or, on a path that no longer delivers even that, once idle_in_transaction_session_timeout ends
   * it). The transaction fails at once, whether or not `fn` ever settles. A deadline that passes while COMMIT is on
   * its way cannot tell whether it committed. `signal` abandons it the same way when it aborts, failing with the
   * signal's reason: for a caller that judges progress itself (a load that got no row for too long).
   */
  transaction<T>(
    fn: (tx: Transaction) => Promise<T>,
    options?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<T>;
  close(): Promise<void>;
}

/** A transaction past its `timeoutMs` (Postgres.transaction): abandoned, its connection destroyed. */
export class TransactionTimeoutError extends Error {
  override name = "TransactionTimeoutError";
}

export interface PostgresOptions {
  /** Largest number of connections the pool opens. */
  maxConnections?: number;
  /**
   * How long opening a connection may take (default 30 s): a server that accepts TCP and never answers (stopped, or
   * a dead peer behind a proxy) would otherwise hold a start, or a restore, for ever.
   */
  connectTimeoutMs?: number;
  /** How long `close` waits for connections still in use before it gives up on them (default 5 s). */
  closeTimeoutMs?: number;
  /**
   * How long a statement run on its own (`query`) may wait for its answer before it fails (default: for ever). Its
   * connection is dropped then, since its answer may still come. For a process that must not hang on a connection
   * that stopped answering; not applied inside `transaction`, whose statements (a migration's) may rightly run long.
   */
  queryTimeoutMs?: number;
}

/** Where a connection string points, for messages and logs (never its password). */
export function describeDatabase(databaseUrl: string): { host: string; port: number; database: string } {
  const url = new URL(databaseUrl);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? 5432 : Number(url.port),
    database: decodeURIComponent(url.pathname.slice(1)),
  };
}

export async function connectPostgres(
  databaseUrl: string,
  log: Logger,
  options: PostgresOptions = {},
): Promise<Postgres> {
  const where = describeDatabase(databaseUrl);
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 30_000,
  });
  // An idle client whose connection dies emits "error" on the pool; unhandled, that would crash the process.
  pool.on("error", (err: Error) => log.warn("postgres_idle_client_error", { ...where, error: err.message }));
  try {
    // Fail fast at start with a clear message rather than on the first real query.
    await pool.query("select 1");
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw (
      refusedConfiguration(databaseUrl, err) ??
      new Error(`cannot reach Postgres at ${where.host}:${where.port}/${where.database}: ${(err as Error).message}`, {
        cause: err,
      })
    );
  }
  log.info("postgres_connected", where);

  return {
    query: <R extends Row>(text: string, params?: unknown[]) =>
      retryingConflicts(
        () =>
          options.queryTimeoutMs === undefined
            ? pool.query<R>(text, params)
            : // pg reads query_timeout from a query's config as from the pool's; its types know only the pool's.
              pool.query<R>({ text, values: params, query_timeout: options.queryTimeoutMs } as pg.QueryConfig),
        (code, attempt) =>
          log.warn("postgres_statement_retried", { ...where, code, attempt, statement: text.slice(0, 60) }),
      ),
    transaction: async <T>(
      fn: (tx: Transaction) => Promise<T>,
      { timeoutMs, signal }: { timeoutMs?: number; signal?: AbortSignal } = {},
    ) => {
      const client = await pool.connect();
      let broken: Error | undefined;
      let abandoned: Error | undefined;
      let stopWaiting: (reason: Error) => void = () => undefined;
      // What `fn` is waiting for may never settle once its connection is gone (a row stream's cleanup waits for the
      // server's ReadyForQuery), so the transaction stops waiting for `fn` itself.
      const abandonment = new Promise<never>((_, reject) => (stopWaiting = reject));
      abandonment.catch(() => undefined);
      const abandon = (reason: Error) => {
        if (abandoned !== undefined) return;
        abandoned = broken = reason;
        stopWaiting(reason);
        // Destroyed, not ended: ending waits for the server's goodbye, which a dead path never delivers. The query in
        // flight then fails ("Connection terminated"), and so does any after it.
        (client as unknown as pg.Client).connection.stream.destroy();
      };
      const deadline =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () =>
                abandon(
                  new TransactionTimeoutError(
                    `no commit within ${timeoutMs} ms: the transaction was abandoned and its connection closed`,
                  ),
                ),
              timeoutMs,
            );
      const onAbort = () =>
        abandon(signal?.reason instanceof Error ? signal.reason : new Error(`transaction aborted: ${signal?.reason}`));
      if (signal?.aborted) onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      // The pool listens for a client's errors only while it is idle; one whose connection dies while it is checked
      // out here would otherwise throw an uncaught "error" event. Its next query fails, and that is reported.
      const onError = (err: Error) => {
        broken = err;
        // An abandonment's own doing is reported as the transaction's error.
        if (abandoned === undefined) log.warn("postgres_client_error", { ...where, error: err.message });
      };
      client.on("error", onError);
      try {
        await client.query("BEGIN");
        const work = fn({
          query: <R extends Row>(text: string, params?: unknown[]) => client.query<R>(text, params),
          stream: <R extends Row>(text: string, params: unknown[], o: { rowsPerFetch?: number } = {}) =>
            streamRows<R>(client, text, params, o.rowsPerFetch ?? 100),
        });
        work.catch(() => undefined); // once abandoned, its end (if any) goes unheard
        const result = await Promise.race([work, abandonment]);
        await client.query("COMMIT");
        return result;
      } catch (err) {
        if (classifyPostgresError(err) === "outage") broken = err as Error;
        try {
          await client.query("ROLLBACK");
        } catch (rollbackErr) {
          // The connection is unusable (e.g. it dropped): release it as broken so the pool discards it.
          broken = rollbackErr as Error;
        }
        throw abandoned ?? err;
      } finally {
        clearTimeout(deadline);
        signal?.removeEventListener("abort", onAbort);
        client.off("error", onError);
        client.release(broken);
      }
    },
    close: () => endWithin(pool, options.closeTimeoutMs ?? 5_000, log, where),
  };
}

/**
 * A refusal at connect that no restart can cure, as a ConfigError (the process exits 2: `npm start` stops the start
 * when that comes before the process was ever ready, and restarts it with the backoff after): the database named does
 * not exist (3D000), or the server refused the user or its password (class 28). The message names DATABASE_URL,
 * which every process connects with, without its password.
 */
function refusedConfiguration(databaseUrl: string, err: unknown): ConfigError | undefined {
  if (classifyPostgresError(err) !== "refused") return undefined;
  const { host, port, database } = describeDatabase(databaseUrl);
  const user = decodeURIComponent(new URL(databaseUrl).username);
  if (postgresErrorCode(err) === "3D000") {
    const createdb = ["createdb", "-h", host, "-p", String(port), ...(user === "" ? [] : ["-U", user]), database];
    return new ConfigError(
      `DATABASE_URL names database "${database}", which does not exist on the Postgres at ${host}:${port}: create it (${createdb.join(" ")}), or set DATABASE_URL to one that exists`,
      { cause: err },
    );
  }
  return new ConfigError(
    `the Postgres at ${host}:${port} refused DATABASE_URL's user${user === "" ? "" : ` "${user}"`} for database "${database}" (${(err as Error).message}): check the user and password in DATABASE_URL`,
    { cause: err },
  );
}

/**
 * Ends the pool, or gives up after `ms`: pool.end() waits for every client checked out, and one stuck on a
 * Postgres that stopped answering (a load abandoned as stalled) would hold a stopping process for ever. Its
 * socket goes with the process.
 */
async function endWithin(pool: pg.Pool, ms: number, log: Logger, where: object): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ms)));
  const ended = pool.end().then(() => false);
  try {
    if (await Promise.race([ended, gaveUp])) log.warn("postgres_close_timeout", { ...where, waitedMs: ms });
  } finally {
    clearTimeout(timer);
  }
}

/** Attempts of one statement in all. */
const STATEMENT_ATTEMPTS = 4;

/**
 * `run`, again after a conflict (a deadlock or a serialization failure: the statement was rolled back whole), up to
 * STATEMENT_ATTEMPTS in all; a short random pause first, so the two sides of a deadlock do not meet again at once.
 * Only for a statement outside a transaction.
 */
async function retryingConflicts<T>(
  run: () => Promise<T>,
  onRetry: (code: string | undefined, attempt: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      if (attempt >= STATEMENT_ATTEMPTS || classifyPostgresError(err) !== "conflict") throw err;
      onRetry(postgresErrorCode(err), attempt);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
    }
  }
}

/**
 * The query goes out on the first `next()`, not before: a stream made and never iterated (its caller threw first)
 * leaves no open cursor for the ROLLBACK to wait behind. Leaving the loop, by break or throw, destroys it.
 */
async function* streamRows<R extends Row>(
  client: pg.PoolClient,
  text: string,
  params: unknown[],
  rowsPerFetch: number,
): AsyncGenerator<R> {
  const rows = client.query(new QueryStream(text, params, { batchSize: rowsPerFetch }));
  try {
    for await (const row of rows) yield row as R;
  } finally {
    rows.destroy();
  }
}
