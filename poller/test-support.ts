/** Helpers for the poller's socket and Redis tests. */
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { createLogger, type Logger } from "../platform/log.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import type { PriceSource } from "./publisher.ts";

/** Polls until `check` returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 3_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface LogLine {
  level: string;
  event: string;
  [field: string]: unknown;
}

/** A logger that keeps its lines in memory, for asserting on events. */
export function captureLog(component = "poller-test"): {
  log: Logger;
  lines: LogLine[];
  events: (name: string) => LogLine[];
} {
  const lines: LogLine[] = [];
  const log = createLogger(component, { level: "debug", sink: (line) => lines.push(JSON.parse(line) as LogLine) });
  return { log, lines, events: (name) => lines.filter((l) => l.event === name) };
}

/** A quote per market far from the sim's levels: a sim that starts at its levels does not send these first. */
export const FAR_FROM_LEVELS: Readonly<Record<string, { readonly bid: string; readonly ask: string }>> = {
  ETH_USDC_PERP: { bid: "5123.45", ask: "5123.5" },
  BTC_USDC_PERP: { bid: "61000.1", ask: "61000.3" },
  SOL_USDC_PERP: { bid: "204.4", ask: "204.41" },
  ADA_USDC_PERP: { bid: "0.51234", ask: "0.51236" },
};

/** Appends a price_update of each market's quote to `stream`, as a poller that ran before would have. */
export async function appendQuotes(
  redis: Redis,
  stream: string,
  quotes: Readonly<Record<string, { readonly bid: string; readonly ask: string }>>,
  source: PriceSource,
): Promise<void> {
  for (const [market, { bid, ask }] of Object.entries(quotes))
    await redis.xadd(
      stream,
      "*",
      ...encodeFields({ type: "price_update", market, bid, ask, exchangeTimeUs: "1", source }),
    );
}

/** A TCP port that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

/** The real Redis, and input streams each under a fresh prefix; `close()` deletes them and disconnects. */
export function redisStreams() {
  const redis = new Redis(TEST_REDIS_URL);
  const streams: string[] = [];
  return {
    redis,
    fresh(): string {
      const stream = keyspace(`test:${randomUUID()}:`).input;
      streams.push(stream);
      return stream;
    },
    async close(): Promise<void> {
      if (streams.length > 0) await redis.del(...streams);
      redis.disconnect();
    },
  };
}
