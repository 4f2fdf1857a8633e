/**
 * Postgres for the HTTP API's functions, through Neon's serverless driver (`@neondatabase/serverless`), as Neon
 * advises for serverless code. Every query the functions make is one statement on its own, so:
 * - a Neon host (`*.neon.tech`, deployed) is queried over HTTP (`neon()`): one request per query, no connection
 *   to open in a fresh Lambda container or to keep between invocations;
 * - any other host (localhost, CI, tests: a plain Postgres has no SQL-over-HTTP endpoint) is reached with the
 *   driver's WebSocket `Pool` through an in-process WebSocket→TCP proxy (platform/pg-ws-proxy.ts) on 127.0.0.1,
 *   allowed to dial only that host:port, and only for this process's clients (its secret, no browser Origin).
 * Tests run the HTTP path too, against a local peer for Neon's SQL-over-HTTP endpoint (functions/testing/
 * neon-http-peer.ts) reached through `neonFetchOptions`.
 *
 * The driver's process-wide `neonConfig` is left alone: a pool's clients get their settings through the per-client
 * `neonConfig` the driver documents, so two pools in one process (tests) cannot disturb each other.
 */
import { Client, neon, Pool, type ClientConfig } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import type { Logger } from "../platform/log.ts";
import { startPgWsProxy, type PgWsProxy } from "../platform/pg-ws-proxy.ts";
import { describeDatabase, type Queryable, type Row, type Rows } from "../platform/postgres.ts";

export interface FunctionsPostgres extends Queryable {
  /** "http" for Neon, "local-proxy" for any other Postgres. */
  readonly via: "http" | "local-proxy";
  close(): Promise<void>;
}

/**
 * How long one query over HTTP may take, answer read included, before it fails with a TimeoutError (a 503,
 * functions/backend-failure.ts). The functions' queries are short lookups and Neon usually wakes a suspended compute
 * in under a second, so seconds mean Neon is stalled; and a route does a few queries and waits for the engine within
 * the function's timeout (functions/engine-client.ts).
 */
export const NEON_QUERY_TIMEOUT_MS = 3_000;

export function isNeonHost(host: string): boolean {
  return /\.neon\.tech$/i.test(host);
}

export interface FunctionsPostgresOptions {
  /**
   * Merged into every HTTP request `neon()` makes (the driver's per-call `fetchOptions`). Only tests set it: a
   * dispatcher that carries the requests to the local Neon HTTP peer (functions/testing/neon-http-peer.ts), while the
   * URL the driver builds from DATABASE_URL's Neon host, the headers and the body stay the deployed ones.
   */
  neonFetchOptions?: Record<string, unknown>;
  /**
   * Whether the start waits for Postgres to answer `select 1`, and fails with a message naming the database and the
   * path when it does not. Default true: the Node server and the tests would rather not start than serve 503s. The
   * Lambda entry passes false, so that a container starts while Postgres is down and only the routes that need it
   * answer 503 (a start that threw would leave API Gateway's bare 500 on every route). The check then runs unawaited
   * and logs that message (`postgres_unreachable`) instead.
   */
  waitForAnswer?: boolean;
}

export async function connectFunctionsPostgres(
  databaseUrl: string,
  log: Logger,
  options: FunctionsPostgresOptions = {},
): Promise<FunctionsPostgres> {
  const where = describeDatabase(databaseUrl);
  const via = isNeonHost(where.host) ? "http" : "local-proxy";
  let db: FunctionsPostgres;
  if (via === "http") {
    const sql = neon(databaseUrl, { fullResults: true });
    db = {
      via,
      query: async <R extends Row>(text: string, params?: unknown[]) =>
        (await sql.query(text, params, {
          // A new signal per query: a Neon that accepts the request and never answers would otherwise hold the
          // function until Lambda ends it, and the client would get API Gateway's bare 500 instead of a 503.
          fetchOptions: { ...options.neonFetchOptions, signal: AbortSignal.timeout(NEON_QUERY_TIMEOUT_MS) },
        })) as unknown as Rows<R>,
      close: () => Promise.resolve(),
    };
  } else {
    refuseTlsThroughProxy(databaseUrl, where.host);
    const key = where.host.includes(":") ? `[${where.host}]:${where.port}` : `${where.host}:${where.port}`;
    const proxy = await startPgWsProxy({ allow: [key], log: log.child({ part: "pg_ws_proxy" }) });
    let pool: Pool;
    try {
      pool = new Pool({ connectionString: databaseUrl, max: 10 });
    } catch (err) {
      await proxy.close();
      throw err;
    }
    pool.Client = clientThroughProxy(proxy);
    // An idle client whose connection dies emits "error" on the pool; unhandled, that would crash the process.
    pool.on("error", (err: Error) => log.warn("postgres_idle_client_error", { ...where, error: err.message }));
    db = {
      via,
      query: <R extends Row>(text: string, params?: unknown[]) => pool.query<R>(text, params),
      close: async () => {
        await pool.end();
        await proxy.close();
      },
    };
  }
  // A clear message at start rather than a driver's error on the first request: the driver's own (Neon's "fetch
  // failed") names no database.
  const answered = db.query("select 1").then(
    () => undefined,
    (err: unknown) =>
      new Error(
        `cannot reach Postgres at ${where.host}:${where.port}/${where.database} (${via === "http" ? "over HTTP" : "via the local WebSocket proxy"}): ${(err as Error).message}`,
        { cause: err },
      ),
  );
  const report = (failure: Error | undefined) => {
    if (failure === undefined) log.info("postgres_connected", { ...where, via });
    else log.error("postgres_unreachable", { ...where, via, error: failure.message });
  };
  if (options.waitForAnswer === false) {
    void answered.then(report);
    return db;
  }
  const failure = await answered;
  if (failure !== undefined) {
    await db.close().catch(() => undefined);
    throw failure;
  }
  report(undefined);
  return db;
}

/**
 * The local proxy carries Postgres without TLS (plain on loopback, then the proxy's own TCP connection): fine for a
 * Postgres on this machine or a private network, wrong for one that asks for TLS (`sslmode=require` and stricter),
 * whose traffic would cross the network in the clear. Such a database is refused rather than silently downgraded.
 */
function refuseTlsThroughProxy(databaseUrl: string, host: string): void {
  const sslmode = new URL(databaseUrl).searchParams.get("sslmode");
  if (sslmode === null || ["disable", "allow", "prefer"].includes(sslmode)) return;
  throw new Error(
    `DATABASE_URL: the API reaches a Postgres that is not on Neon (${host}) through a local WebSocket proxy without TLS, ` +
      `but sslmode=${sslmode} asks for TLS; use a Neon host, or a Postgres reachable without TLS (no sslmode=${sslmode})`,
  );
}

/**
 * The driver's Client with its documented per-client `neonConfig` pointed at the proxy. Those settings are read
 * only when the client connects, so setting them in the constructor is in time.
 */
function clientThroughProxy(proxy: PgWsProxy): typeof Client {
  return class ProxiedClient extends Client {
    constructor(config?: string | ClientConfig) {
      super(config);
      const c = this.neonConfig;
      // Node 20 has no global WebSocket.
      c.webSocketConstructor = WebSocket;
      // The secret admits this process's clients only; the driver's `new WebSocket(url)` sends no Origin header,
      // which the proxy refuses as a browser page's.
      c.wsProxy = (host, port) =>
        `127.0.0.1:${proxy.port}/v1?address=${host.includes(":") ? `[${host}]` : host}:${port}` +
        `&secret=${encodeURIComponent(proxy.secret)}`;
      // The proxy is plain ws:// on loopback; Postgres-level TLS stays off.
      c.useSecureWebSocket = false;
      c.forceDisablePgSSL = true;
      // Pipelining sends a cleartext password before the server asks for one; a plain Postgres (trust, SCRAM)
      // rejects that, so the startup runs as the normal request/response exchange.
      c.pipelineConnect = false;
      c.pipelineTLS = false;
      // Coalescing flushes each write from setTimeout(0), ≥ 1 ms later: every query would wait for nothing.
      c.coalesceWrites = false;
    }
  };
}
