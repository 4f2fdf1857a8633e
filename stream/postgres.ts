/**
 * Postgres for the stream, which reads it for one thing only: a candle bucket so far, when the bucket's first
 * subscriber comes (candles.ts, loadBucketFrom). Quotes and private events come from Redis alone, so the stream serves
 * without Postgres: one started while Postgres is down, unreachable or silent (a deploy, a scale-out or a replaced task
 * during a Neon outage or suspend) connects in the background, as the worker does (worker/postgres-outages.ts): tried
 * again 1 s after a failure, then doubling to one try per 10 s, the outage logged once (`postgres_unavailable` at
 * warn, `postgres_recovered` with `downMs` once a try succeeds). Until then a load fails at once, logged as
 * `candle_load_failed` and tried again by the candle fan-out (candles.ts, LOAD_RETRY_DELAYS_MS). Whatever fails a
 * connect is tried again, as the engine does at its start: a restart would only meet it again. But a Postgres that
 * answers and refuses DATABASE_URL (a wrong password, no such database: platform/postgres.ts refusedConfiguration)
 * is no outage: the tries stop, and `refused` gives its ConfigError, which stops the stream (exit 2).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ConfigError } from "../platform/config.ts";
import type { Logger } from "../platform/log.ts";
import { postgresErrorCode } from "../platform/postgres-errors.ts";
import { connectPostgres, type Postgres, type Queryable, type Row, type Rows } from "../platform/postgres.ts";
import { DEFAULT_POSTGRES_RETRY, type PostgresRetry } from "../worker/postgres-outages.ts";

/**
 * How long a bucket's load waits for its answer: on a connection that stopped answering it would otherwise wait for
 * ever, and its series with it; failed, it is tried again on another connection (the pool drops the silent one).
 */
const LOAD_TIMEOUT_MS = 10_000;

export interface BackgroundPostgres extends Queryable {
  /**
   * Resolves once the first try at connecting has ended: with its refusal of DATABASE_URL, if that is how it ended,
   * else undefined (connected, or failed and to be tried again).
   */
  readonly firstTry: Promise<ConfigError | undefined>;
  /** Resolves with a refusal of DATABASE_URL (the tries have stopped), whenever one comes; else never. */
  readonly refused: Promise<ConfigError>;
  /**
   * Stops the tries, and closes the connection if one was made. A connect under way is not waited for (against a
   * silent Postgres it lasts its 30 s timeout): it closes what it connects, if anything.
   */
  close(): Promise<void>;
}

export interface BackgroundOptions {
  readonly retry?: PostgresRetry;
  /** How to connect (tests): platform/postgres.ts connectPostgres, loads bounded by LOAD_TIMEOUT_MS, by default. */
  readonly connect?: (databaseUrl: string, log: Logger) => Promise<Postgres>;
}

export function connectInBackground(
  databaseUrl: string,
  log: Logger,
  {
    retry = DEFAULT_POSTGRES_RETRY,
    connect = (url, connectLog) => connectPostgres(url, connectLog, { queryTimeoutMs: LOAD_TIMEOUT_MS }),
  }: BackgroundOptions = {},
): BackgroundPostgres {
  const closing = new AbortController();
  let db: Postgres | undefined;
  let settleFirst: (refusal: ConfigError | undefined) => void = () => undefined;
  let refuse: (refusal: ConfigError) => void = () => undefined;
  const firstTry = new Promise<ConfigError | undefined>((resolve) => (settleFirst = resolve));
  const refused = new Promise<ConfigError>((resolve) => (refuse = resolve));

  void (async () => {
    let downSince: number | undefined;
    for (let pauseMs = retry.firstMs; !closing.signal.aborted; pauseMs = Math.min(retry.maxMs, pauseMs * 2)) {
      try {
        const connected = await connect(databaseUrl, log);
        if (closing.signal.aborted) return await connected.close();
        db = connected;
        if (downSince !== undefined)
          log.info("postgres_recovered", { downMs: Math.round(performance.now() - downSince) });
        return settleFirst(undefined);
      } catch (err) {
        if (err instanceof ConfigError) {
          if (closing.signal.aborted) return settleFirst(undefined); // stopping anyway: exit 0, not 2
          refuse(err);
          return settleFirst(err);
        }
        if (downSince === undefined) {
          downSince = performance.now();
          const code = postgresErrorCode(err);
          log.warn("postgres_unavailable", {
            error: err instanceof Error ? err.message : String(err),
            ...(code === undefined ? {} : { code }),
            retryInMs: pauseMs,
          });
        }
        settleFirst(undefined);
        await sleep(pauseMs, undefined, { signal: closing.signal }).catch(() => undefined);
      }
    }
  })();

  return {
    firstTry,
    refused,
    query: <R extends Row>(text: string, params?: unknown[]): Promise<Rows<R>> =>
      db === undefined ? Promise.reject(new Error("Postgres is not connected yet")) : db.query<R>(text, params),
    close: async () => {
      closing.abort();
      settleFirst(undefined);
      await db?.close();
    },
  };
}
