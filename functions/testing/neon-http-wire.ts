/**
 * The wire format of Neon's SQL-over-HTTP endpoint as the local peer (neon-http-peer.ts) reads and answers it: the
 * connection-string and header checks, the payload and its parameters as Postgres text, the error body. Each rule
 * follows Neon's proxy (github.com/neondatabase/neon, proxy/src/serverless/: http_util.rs, sql_over_http.rs,
 * error.rs, json.rs); the messages are its messages.
 */
import type { IncomingHttpHeaders } from "node:http";
import pg from "pg";

export interface QueryData {
  query: string;
  params: (string | null)[];
  arrayMode: boolean | undefined;
}

/** A refusal the proxy answers itself (no Postgres error behind it). */
export class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const ISOLATION_LEVELS: Record<string, string> = {
  Serializable: "SERIALIZABLE",
  ReadUncommitted: "READ UNCOMMITTED",
  ReadCommitted: "READ COMMITTED",
  RepeatableRead: "REPEATABLE READ",
};

export function connectionUrl(header: string | string[] | undefined): URL {
  if (typeof header !== "string") throw new Refusal(400, "invalid header: neon-connection-string");
  let url: URL;
  try {
    url = new URL(header);
  } catch (err) {
    throw new Refusal(400, `invalid connection string: ${(err as Error).message}`);
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") throw new Refusal(400, "incorrect scheme");
  if (url.pathname.length <= 1) throw new Refusal(400, "missing database name");
  if (url.username === "") throw new Refusal(400, "missing username");
  if (url.password === "") throw new Refusal(400, "missing authentication credentials: required password");
  // Neon routes by the endpoint id in the host name; an IP address names none.
  if (url.hostname === "" || /^[\d.]+$|^\[/.test(url.hostname)) throw new Refusal(400, "missing hostname");
  return url;
}

export function batchHeaders(headers: IncomingHttpHeaders) {
  const level = headers["neon-batch-isolation-level"];
  if (level !== undefined && (typeof level !== "string" || ISOLATION_LEVELS[level] === undefined)) {
    throw new Refusal(400, "invalid isolation level");
  }
  const readOnly = headers["neon-batch-read-only"] === "true";
  const deferrable = headers["neon-batch-deferrable"] === "true";
  const echo: Record<string, string> = {};
  if (readOnly) echo["neon-batch-read-only"] = "true";
  if (deferrable) echo["neon-batch-deferrable"] = "true";
  if (level !== undefined) echo["neon-batch-isolation-level"] = level;
  return { level, readOnly, deferrable, echo };
}

export function beginStatement(h: ReturnType<typeof batchHeaders>): string {
  const modes = [
    ...(h.level === undefined ? [] : [`ISOLATION LEVEL ${ISOLATION_LEVELS[h.level]!}`]),
    ...(h.readOnly ? ["READ ONLY"] : []),
    ...(h.deferrable ? ["DEFERRABLE"] : []),
  ];
  return `START TRANSACTION ${modes.join(", ")}`.trim();
}

export function parsePayload(body: Buffer): QueryData | QueryData[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new Refusal(400, `could not parse the HTTP request body: ${(err as Error).message}`);
  }
  const single = queryData(json);
  if (single !== undefined) return single;
  const queries = (json as { queries?: unknown } | null)?.queries;
  if (Array.isArray(queries)) {
    const batch = queries.map(queryData);
    if (batch.every((q) => q !== undefined)) return batch;
  }
  throw new Refusal(
    400,
    "could not parse the HTTP request body: data did not match any variant of untagged enum Payload",
  );
}

function queryData(json: unknown): QueryData | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const { query, params, arrayMode } = json as Record<string, unknown>;
  if (typeof query !== "string") return undefined;
  if (params !== undefined && !Array.isArray(params)) return undefined;
  if (arrayMode !== undefined && typeof arrayMode !== "boolean") return undefined;
  return { query, params: (params ?? []).map(paramText), arrayMode };
}

/** A JSON parameter as Postgres text, as Neon converts it (proxy/src/serverless/json.rs). */
export function paramText(value: unknown): string | null {
  if (value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return arrayLiteral(value);
  return JSON.stringify(value);
}

function arrayLiteral(value: unknown): string {
  if (value === null) return "NULL";
  if (Array.isArray(value)) return `{${value.map(arrayLiteral).join(",")}}`;
  // Inside an array literal strings are quoted and escaped as JSON strings are; an object goes in as its JSON text.
  return typeof value === "object" ? JSON.stringify(JSON.stringify(value)) : JSON.stringify(value);
}

const DB_ERROR_FIELDS = [
  "code",
  "detail",
  "hint",
  "position",
  "internalPosition",
  "internalQuery",
  "severity",
  "where",
  "table",
  "column",
  "schema",
  "dataType",
  "constraint",
  "file",
  "line",
  "routine",
] as const;

/**
 * A Postgres error raised while the proxy connects to the compute, before any query: the session's start refused (a
 * database that does not exist, too many connections, a server starting up or shutting down, a database not
 * accepting connections). The proxy answers it with the error's fields, as a query's error, but with the status of
 * its connect step: 400 only for an error it counts as the user's, which among Postgres's is 3D000 (a database name
 * that does not exist), else 500 (proxy/src/serverless/sql_over_http.rs `get_http_status_code`: `ConnectCompute`
 * is 400 for `ErrorKind::User`, else 500; proxy/src/serverless/backend.rs `HttpConnError::get_error_kind`:
 * `PostgresConnectionError` with `SqlState::INVALID_CATALOG_NAME` is `User`, any other Postgres error `Postgres`).
 */
export class ConnectRefused extends Error {
  constructor(readonly dbError: pg.DatabaseError) {
    super(dbError.message);
  }
}

/**
 * Neon's error answer: a Postgres error is a 400 with its fields (the ones the driver copies onto NeonDbError), one
 * raised while connecting the status ConnectRefused says; any other has code and severity "" and the rest null, with
 * the refusal's status (500 when unexpected).
 */
export function errorBody(err: unknown): { status: number; body: Record<string, unknown> } {
  const body: Record<string, unknown> = { message: (err as Error).message };
  const dbError = err instanceof ConnectRefused ? err.dbError : err;
  if (dbError instanceof pg.DatabaseError) {
    for (const field of DB_ERROR_FIELDS) body[field] = dbError[field] ?? null;
    const connecting = err instanceof ConnectRefused && dbError.code !== "3D000";
    return { status: connecting ? 500 : 400, body };
  }
  for (const field of DB_ERROR_FIELDS) body[field] = field === "code" || field === "severity" ? "" : null;
  return { status: err instanceof Refusal ? err.status : 500, body };
}
