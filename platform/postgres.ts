/**
 * Postgres through `@neondatabase/serverless` — its `Pool`, which speaks the wire protocol over a WebSocket — for
 * Neon in production and for a plain Postgres locally, in CI and in tests.
 *
 * Connection rule (`shouldUseLocalProxy`):
 * - a host ending in `.neon.tech` is Neon: the driver connects straight to it (wss://host/v2, its defaults);
 * - any other host (localhost, 127.0.0.1, a container name, …) is plain Postgres: this module starts an in-process
 *   WebSocket→TCP proxy (pg-ws-proxy.ts) on 127.0.0.1, allowed to dial only that host:port, and points the driver
 *   at it over plain ws:// without connection pipelining (which needs cleartext password auth);
 * - `viaLocalProxy` overrides the rule: `false` sends even a non-Neon host to the driver's own endpoint (a
 *   self-hosted Neon proxy at host/v2), `true` proxies a Neon host too. Entry files read it from `PG_VIA_WS_PROXY`
 *   ("0" / "1"; unset = the rule) with `localProxyFromEnv`.
 *
 * The driver's `neonConfig` is a process-wide default, so nothing here touches it: every client of a pool gets its
 * own settings through the per-client `neonConfig` (a Client subclass set as the pool's `Client`). Two pools in one
 * process — tests, or Neon plus a local database — cannot disturb each other or other code.
 */
import {
  Client,
  Pool,
  type ClientConfig,
  type PoolClient,
  type QueryResult,
  type QueryResultRow,
  type Submittable,
} from "@neondatabase/serverless";
import { WebSocket } from "ws";
import type { Logger } from "./log.ts";
import { startPgWsProxy, type PgWsProxy } from "./pg-ws-proxy.ts";

/** What both the pool and a transaction's client can do. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/** A transaction's connection. */
export interface Transaction extends Queryable {
  /**
   * Runs a query and hands each row to `onRow` as it arrives, keeping none: for a result too big to hold at once,
   * or worth using before its last row is in (a snapshot's chunks). Resolves with the number of rows when the query
   * ends; rejects with its error, or with the first throw of `onRow` (the rows after that are dropped).
   */
  eachRow<R extends QueryResultRow>(text: string, params: unknown[], onRow: (row: R) => void): Promise<number>;
}

export interface Postgres extends Queryable {
  /** Runs `fn` inside BEGIN … COMMIT on one connection; any throw rolls back and is rethrown. */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** True when this pool reaches Postgres through the in-process WebSocket→TCP proxy. */
  readonly viaLocalProxy: boolean;
}

export interface PostgresOptions {
  viaLocalProxy?: boolean;
  /** Largest number of connections the pool opens. */
  maxConnections?: number;
}

export function isNeonHost(host: string): boolean {
  return /\.neon\.tech$/i.test(host);
}

export function shouldUseLocalProxy(host: string, override?: boolean): boolean {
  return override ?? !isNeonHost(host);
}

/** `PG_VIA_WS_PROXY`: "1" forces the local proxy, "0" disables it, unset or empty leaves it to the host rule. */
export function localProxyFromEnv(value: string | undefined): boolean | undefined {
  if (value === undefined || value === "") return undefined;
  if (value === "1") return true;
  if (value === "0") return false;
  throw new Error(`PG_VIA_WS_PROXY must be "0" or "1", got "${value}"`);
}

/** Pool options from an entry's environment (`PG_VIA_WS_PROXY`, see localProxyFromEnv). */
export function postgresOptionsFromEnv(env: Readonly<Record<string, string | undefined>>): PostgresOptions {
  const viaLocalProxy = localProxyFromEnv(env.PG_VIA_WS_PROXY);
  return viaLocalProxy === undefined ? {} : { viaLocalProxy };
}

export async function connectPostgres(
  databaseUrl: string,
  log: Logger,
  options: PostgresOptions = {},
): Promise<Postgres> {
  const url = new URL(databaseUrl);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? 5432 : Number(url.port);
  const where = { host, port, database: decodeURIComponent(url.pathname.slice(1)) };
  const viaLocalProxy = shouldUseLocalProxy(host, options.viaLocalProxy);

  let proxy: PgWsProxy | undefined;
  if (viaLocalProxy) {
    const key = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    proxy = await startPgWsProxy({ allow: [key], log: log.child({ part: "pg_ws_proxy" }) });
  }
  const pool = new Pool({ connectionString: databaseUrl, max: options.maxConnections ?? 10 });
  pool.Client = clientWithSettings(proxy?.port);
  // An idle client whose connection dies emits "error" on the pool; unhandled, that would crash the process.
  pool.on("error", (err: Error) => log.warn("postgres_idle_client_error", { ...where, error: err.message }));
  // Any listener other than "error" also keeps Pool.query on the WebSocket even if some other code turns on the
  // process-wide, experimental `poolQueryViaFetch` (HTTP fetch cannot reach a local Postgres).
  pool.on("connect", () => log.debug("postgres_client_connected", where));

  const close = async () => {
    await pool.end();
    await proxy?.close();
  };
  try {
    // Fail fast at start with a clear message rather than on the first real query.
    await pool.query("select 1");
  } catch (err) {
    await close().catch(() => undefined);
    throw new Error(
      `cannot reach Postgres at ${host}:${port}/${where.database}${viaLocalProxy ? " (via the local WebSocket proxy)" : ""}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  log.info("postgres_connected", { ...where, viaLocalProxy });

  return {
    viaLocalProxy,
    query: <R extends QueryResultRow>(text: string, params?: unknown[]) => pool.query<R>(text, params),
    transaction: async <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await fn({
          query: <R extends QueryResultRow>(text: string, params?: unknown[]) => client.query<R>(text, params),
          eachRow: (text, params, onRow) => eachRow(client, text, params, onRow),
        });
        await client.query("COMMIT");
        return result;
      } catch (err) {
        try {
          await client.query("ROLLBACK");
        } catch (rollbackErr) {
          // The connection is unusable (e.g. it dropped): release it as broken so the pool discards it.
          broken = rollbackErr as Error;
        }
        throw err;
      } finally {
        client.release(broken);
      }
    },
    close,
  };
}

/**
 * The driver's Query (node-postgres's, which the driver bundles: a query handed to `client.query` as an object emits
 * "row" for each row, and keeps no rows when it has a "row" listener and no callback). The package's typings declare
 * it, but its module exports it only as this static of Client, where node-postgres puts it too.
 */
interface RowQuery extends Submittable {
  on(event: "row", listener: (row: QueryResultRow) => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(event: "end", listener: () => void): this;
}
const RowQuery = (Client as unknown as { Query?: new (text: string, values: unknown[]) => RowQuery }).Query;

function eachRow<R extends QueryResultRow>(
  client: PoolClient,
  text: string,
  params: unknown[],
  onRow: (row: R) => void,
): Promise<number> {
  if (RowQuery === undefined)
    return Promise.reject(
      new Error("@neondatabase/serverless no longer has Client.Query: eachRow needs another way to stream rows"),
    );
  return new Promise<number>((resolve, reject) => {
    let rows = 0;
    let failed = false;
    const query = new RowQuery(text, params);
    query.on("row", (row) => {
      if (failed) return;
      try {
        onRow(row as R);
        rows++;
      } catch (err) {
        failed = true;
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    query.on("error", reject);
    query.on("end", () => resolve(rows));
    client.query(query);
  });
}

/**
 * The driver's WebSocket to the in-process proxy. Every frame it sends has an all-zero masking key, which `ws`
 * takes as leave-the-payload-as-it-is, and the proxy's `ws` then skips unmasking. Masking exists for intermediaries
 * between a browser and a server; on loopback to our own proxy there are none. Without `ws`' optional native addon
 * both sides XOR every byte in JavaScript, which would be most of the CPU of writing a snapshot through the proxy.
 * Connections straight to Neon keep the default random keys.
 */
export class LoopbackWebSocket extends WebSocket {
  constructor(address: string | URL) {
    super(address, { generateMask: (mask) => mask.fill(0) });
  }
}

/**
 * A driver Client class whose instances carry this pool's settings. `neonConfig` on an instance is the client's
 * socket options, created in the constructor and read only when it connects, so setting them here is in time.
 */
function clientWithSettings(proxyPort: number | undefined): typeof Client {
  return class PoolClientWithSettings extends Client {
    constructor(config?: string | ClientConfig) {
      super(config);
      const c = this.neonConfig;
      // Node 20 has no global WebSocket.
      c.webSocketConstructor = WebSocket;
      // Coalescing buffers each write and flushes it from setTimeout(0), which Node runs after ≥ 1 ms: every query
      // would wait a millisecond for nothing, several times the cost of a worker's INSERT. Queries here are one
      // message each, so there is nothing to coalesce.
      c.coalesceWrites = false;
      if (proxyPort === undefined) return;
      c.wsProxy = (host, port) =>
        `127.0.0.1:${proxyPort}/v1?address=${host.includes(":") ? `[${host}]` : host}:${port}`;
      // The proxy is plain ws:// on loopback; Postgres-level TLS stays off (forceDisablePgSSL, the default).
      c.useSecureWebSocket = false;
      c.webSocketConstructor = LoopbackWebSocket;
      c.forceDisablePgSSL = true;
      // Pipelining sends a cleartext password before the server asks for one; a plain Postgres (trust, SCRAM)
      // rejects that, so the startup runs as the normal request/response exchange.
      c.pipelineConnect = false;
      c.pipelineTLS = false;
    }
  };
}
