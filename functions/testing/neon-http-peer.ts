/**
 * Test support: a local peer for Neon's SQL-over-HTTP endpoint, so the functions' `neon()` path (functions/postgres.ts,
 * `via: "http"`) runs in tests exactly as deployed, against the machine's real Postgres through `pg`.
 *
 * How it is reached. The driver builds the URL from DATABASE_URL's host (`https://api.<region>.aws.neon.tech/sql`,
 * its default `fetchEndpoint`) and takes per-call `fetchOptions`; the peer hands out a `dispatcher` for them whose
 * connections all dial 127.0.0.1:<peer port> (plain HTTP on loopback: no TLS). The URL, headers and body stay the
 * deployed ones, and the driver's process-wide `neonConfig` is not touched.
 *
 * What it speaks, as Neon's proxy does (sources below; the checks, payload and error body are in neon-http-wire.ts):
 * - `POST /sql` only (OPTIONS /sql answers CORS); anything else is 400 with the JSON string "query is not supported".
 * - The connection string comes from the `Neon-Connection-String` header: missing, not a URL, not postgres(ql)://,
 *   no user, no password, or an IP instead of a host name → 400. Its first host label is the endpoint id; any
 *   endpoint other than the peer's is refused as Neon's control plane refuses an unknown one (400).
 * - No content-type check: the driver sends its JSON as `text/plain;charset=UTF-8`, and Neon reads it anyway.
 * - Body: `{query, params?, arrayMode?}` or `{queries: [...]}` (a batch, run in one transaction with the
 *   `Neon-Batch-Isolation-Level` / `-Read-Only` / `-Deferrable` headers; answered as `{results: [...]}`). JSON params
 *   become Postgres text as Neon converts them (null → NULL, string as is, number/bool/object as JSON text, array →
 *   array literal). Every statement goes through the extended protocol with text results, so one statement per
 *   query, as on Neon.
 * - Limits: a request body over 10 MiB → 413 "request is too large (max is N bytes)"; a response that has passed
 *   10 MiB when its next row is due → 507 "response is too large (max is N bytes)" (the proxy checks the response
 *   written so far before each row). The driver reports both as "Server error (HTTP status …): <body>".
 * - A result: `{fields: [{name, dataTypeID, tableID, columnID, dataTypeSize, dataTypeModifier, format}], rows,
 *   command, rowCount, rowAsArray}`, values as Postgres text (`Neon-Raw-Text-Output: true`, which the driver always
 *   sends; the peer refuses a request without it rather than guess Neon's typed JSON).
 * - Errors: HTTP 400 (507/413 above, 500 when Postgres cannot be reached) with `{message, code, detail, hint,
 *   position, internalPosition, internalQuery, severity, where, table, column, schema, dataType, constraint, file,
 *   line, routine}`; a Postgres error fills them from its fields (the driver copies exactly these onto NeonDbError),
 *   any other error has code and severity "" and the rest null. A Postgres error raised while connecting, before
 *   the query, is a 500 with its fields, but 3D000 (no such database) a 400 (neon-http-wire.ts, ConnectRefused); the
 *   driver keeps a 500 only as its message, "Server error (HTTP status 500): <body>", without a code. Credentials
 *   Postgres refuses (class 28: a role it does not have, a wrong password where it checks one) are answered as the
 *   proxy answers those it checks itself before connecting, 400 "password authentication failed for user '<role>'"
 *   without SQLSTATE (serverless/backend.rs `authenticate_with_password`, auth/mod.rs `AuthError::PasswordFailed`).
 *
 * Sources: Neon docs, "Neon serverless driver" (https://neon.com/docs/serverless/serverless-driver: HTTP for one-shot
 * queries, `transaction()` for a non-interactive batch) and the changelog of 2023-08-16
 * (https://neon.com/docs/changelog/2023-08-16: "The maximum response size for queries over HTTP was raised from 1 MB to
 * 10 MB"); Neon's proxy, github.com/neondatabase/neon proxy/src/serverless/ (sql_over_http.rs: payload, headers,
 * result and error bodies, status codes; backend.rs: which errors while connecting are the user's; http_util.rs:
 * connection-string checks; error.rs: messages; json.rs:
 * params to text; mod.rs: routing) and proxy/src/binary/proxy.rs (request and response caps, 10 MiB each); the
 * driver, node_modules/@neondatabase/serverless (index.mjs: request headers, result parsing, NeonDbError fields;
 * CONFIG.md: `fetchEndpoint` is global only, `fetchOptions` per call).
 *
 * Not modelled: Neon's connection pooling and auth broker (JWT `Authorization`), typed (non-raw) JSON output,
 * query cancellation when the client goes away.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { connect as connectTcp, type AddressInfo } from "node:net";
import pg from "pg";
import { Agent, type Dispatcher } from "undici";
import { describeDatabase } from "../../platform/postgres.ts";
import {
  batchHeaders,
  beginStatement,
  ConnectRefused,
  connectionUrl,
  errorBody,
  parsePayload,
  Refusal,
  type QueryData,
} from "./neon-http-wire.ts";

/** Neon's proxy default for both caps (`sql_over_http_max_request_size_bytes` / `…_response_…`): 10 MiB. */
export const NEON_HTTP_MAX_BYTES = 10 * 1024 * 1024;

export interface NeonHttpPeerOptions {
  /** The real Postgres queries run on: its host and port (user, password, database come from each request). */
  readonly postgresUrl: string;
  /** The Neon host the peer stands in for; its first label is the endpoint id it accepts. */
  readonly endpointHost?: string;
  readonly maxRequestBytes?: number;
  readonly maxResponseBytes?: number;
}

export interface NeonHttpPeer {
  /**
   * `postgresUrl` with the Neon endpoint host in place of its host and port, and `sslmode=require` as Neon's own
   * strings carry (a password is added when it has none): the functions' DATABASE_URL.
   */
  readonly connectionString: string;
  /** For `neon(…, { fetchOptions })`: carries every request to the peer, whatever host its URL names. */
  readonly fetchOptions: { dispatcher: Dispatcher };
  /** Host header and path of each request, in order: what the driver addressed. */
  readonly requests: readonly { host: string; path: string }[];
  close(): Promise<void>;
}

/** Text results untouched: the peer answers Postgres's text, as Neon's raw output does. */
const RAW_TEXT: pg.CustomTypesConfig = { getTypeParser: () => (value: string) => value };

export async function startNeonHttpPeer(options: NeonHttpPeerOptions): Promise<NeonHttpPeer> {
  const endpointHost = options.endpointHost ?? "ep-local-peer-000000.us-east-2.aws.neon.tech";
  const endpointId = endpointHost.split(".")[0]!;
  const maxRequestBytes = options.maxRequestBytes ?? NEON_HTTP_MAX_BYTES;
  const maxResponseBytes = options.maxResponseBytes ?? NEON_HTTP_MAX_BYTES;
  const target = describeDatabase(options.postgresUrl);
  const pools = new Map<string, pg.Pool>();
  const requests: { host: string; path: string }[] = [];

  const poolFor = (url: URL): pg.Pool => {
    const config: pg.PoolConfig = {
      host: target.host,
      port: target.port,
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.slice(1)),
      max: 4,
    };
    const appName = url.searchParams.get("application_name");
    if (appName !== null) config.application_name = appName;
    const key = JSON.stringify(config);
    let pool = pools.get(key);
    if (pool === undefined) {
      pool = new pg.Pool(config);
      // An idle connection that dies is dropped by the pool; without a listener it would crash the test process.
      pool.on("error", () => undefined);
      pools.set(key, pool);
    }
    return pool;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0]!;
    requests.push({ host: req.headers.host ?? "", path });
    if (path === "/sql" && req.method === "OPTIONS") {
      res.writeHead(200, {
        allow: "OPTIONS, POST",
        "access-control-allow-origin": "*",
        "access-control-allow-headers":
          "Authorization, Neon-Connection-String, Neon-Raw-Text-Output, Neon-Array-Mode, Neon-Pool-Opt-In, Neon-Batch-Read-Only, Neon-Batch-Isolation-Level",
        "access-control-max-age": "86400",
      });
      res.end();
      return;
    }
    if (path !== "/sql" || req.method !== "POST") {
      await drain(req);
      sendJson(res, 400, "query is not supported");
      return;
    }
    try {
      const url = connectionUrl(req.headers["neon-connection-string"]);
      const headers = batchHeaders(req.headers);
      const body = await readBody(req, maxRequestBytes);
      const payload = parsePayload(body);
      if (url.hostname.split(".")[0] !== endpointId) {
        throw new Refusal(400, "Control plane request failed: endpoint cannot be found");
      }
      if (req.headers["neon-raw-text-output"] !== "true") {
        throw new Refusal(
          400,
          "neon-http-peer: only Neon-Raw-Text-Output: true is served (what @neondatabase/serverless sends)",
        );
      }
      const arrayMode = req.headers["neon-array-mode"] === "true";
      const client = await poolFor(url)
        .connect()
        .catch((err: unknown) => {
          if (!(err instanceof pg.DatabaseError)) throw new Refusal(500, `Couldn't connect to compute node`);
          // Neon's proxy checks the role and its password itself before it connects: one it does not take (a role it
          // does not know included) is its own 400, without SQLSTATE. Here Postgres checks them (class 28).
          if (err.code?.startsWith("28") === true)
            throw new Refusal(400, `password authentication failed for user '${decodeURIComponent(url.username)}'`);
          throw new ConnectRefused(err);
        });
      let broken: Error | undefined;
      try {
        if (Array.isArray(payload)) {
          let text = `{"results":[`;
          let bytes = text.length;
          await client.query(beginStatement(headers));
          try {
            for (const [i, q] of payload.entries()) {
              const one =
                (i === 0 ? "" : ",") + (await run(client, q, arrayMode, maxResponseBytes, bytes + (i === 0 ? 0 : 1)));
              bytes += Buffer.byteLength(one);
              text += one;
            }
            await client.query("COMMIT");
          } catch (err) {
            await client.query("ROLLBACK").catch((rollbackErr: Error) => (broken = rollbackErr));
            throw err;
          }
          sendText(res, 200, `${text}]}`, headers.echo);
        } else {
          sendText(res, 200, await run(client, payload, arrayMode, maxResponseBytes, 0));
        }
      } finally {
        client.release(broken);
      }
    } catch (err) {
      sendError(res, err);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: (err as Error).message });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const dispatcher = new Agent({
    connect: (_opts, callback) => {
      const socket = connectTcp(port, "127.0.0.1");
      socket.once("connect", () => callback(null, socket));
      socket.once("error", (err) => callback(err, null));
    },
  });

  const neonUrl = new URL(options.postgresUrl);
  neonUrl.protocol = "postgresql:";
  neonUrl.host = endpointHost;
  neonUrl.search = "?sslmode=require";
  // Neon takes no connection string without a password; a local server that trusts loopback ignores this one.
  if (neonUrl.password === "") neonUrl.password = "local-peer";

  return {
    connectionString: neonUrl.toString(),
    fetchOptions: { dispatcher },
    requests,
    close: async () => {
      await dispatcher.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...pools.values()].map((p) => p.end()));
    },
  };
}

/**
 * One query on its own: extended protocol (so one statement only), text results, as the JSON text Neon writes (its
 * key order). As the proxy checks, before each row the whole response written so far (`bytesBefore`: a batch's
 * earlier results; then this result's own fields and rows) must be within the cap.
 */
async function run(
  client: pg.PoolClient,
  q: QueryData,
  arrayModeDefault: boolean,
  maxBytes: number,
  bytesBefore: number,
): Promise<string> {
  const config = { text: q.query, values: q.params, rowMode: "array", types: RAW_TEXT, queryMode: "extended" };
  const result = await client.query<unknown[]>(config as pg.QueryArrayConfig);
  const arrayMode = q.arrayMode ?? arrayModeDefault;
  const fields = result.fields.map((f) => ({
    name: f.name,
    dataTypeID: f.dataTypeID,
    tableID: f.tableID,
    columnID: f.columnID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    format: f.format,
  }));
  let text = `{"fields":${JSON.stringify(fields)},"rows":[`;
  let bytes = bytesBefore + Buffer.byteLength(text);
  result.rows.forEach((row, i) => {
    if (bytes > maxBytes) throw new Refusal(507, `response is too large (max is ${maxBytes} bytes)`);
    const value = arrayMode ? row : Object.fromEntries(fields.map((f, c) => [f.name, row[c]]));
    const json = (i === 0 ? "" : ",") + JSON.stringify(value);
    bytes += Buffer.byteLength(json);
    text += json;
  });
  const command = JSON.stringify(result.command ?? "");
  return `${text}],"command":${command},"rowCount":${JSON.stringify(result.rowCount)},"rowAsArray":${arrayMode}}`;
}

/** Reads the whole body, keeping none past the cap; the rest is drained so the client still reads the 413. */
async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= maxBytes) chunks.push(chunk);
  }
  if (size > maxBytes) throw new Refusal(413, `request is too large (max is ${maxBytes} bytes)`);
  return Buffer.concat(chunks);
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req as AsyncIterable<Buffer>) void _;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendText(res, status, JSON.stringify(body));
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "access-control-allow-origin": "*",
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown): void {
  const { status, body } = errorBody(err);
  sendJson(res, status, body);
}
