/**
 * The stream process's parts wired together from parameters (main.ts reads the configuration; the tests call this
 * with their own Redis prefix and a free port): the hub, the HTTP/WebSocket server and the fan-out reader.
 */
import type { AddressInfo } from "node:net";
import type { Redis } from "ioredis";
import type { Keyspace } from "../contract/names.ts";
import type { Logger } from "../platform/log.ts";
import { readEventsAfter, readPrivateState } from "../worker/events.ts";
import type { LoadBucket } from "./candles.ts";
import type { StreamLimits } from "./connection.ts";
import { fanoutTail, startFanoutReader } from "./fanout-reader.ts";
import { StreamHub } from "./hub.ts";
import type { StreamMetrics } from "./metrics.ts";
import { createStreamServer } from "./server.ts";

export interface StreamOptions {
  /** Commands: tickets, the events store, revocation checks. */
  readonly redis: Redis;
  /** The fan-out reader's own connection (its reads block). */
  readonly reader: Redis;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly metrics: StreamMetrics;
  readonly limits: StreamLimits;
  readonly allowedOrigins: ReadonlySet<string>;
  readonly port: number;
  readonly host: string;
  readonly loadBucket?: LoadBucket | undefined;
}

export interface RunningStream {
  readonly port: number;
  readonly hub: StreamHub;
  /**
   * Stops listening and accepting (an upgrade still checking its ticket gets 503), closes every socket with 1001 (cut
   * a second later if its client has not answered) and stops reading the fan-out. A second call gets the same promise.
   */
  close(): Promise<void>;
}

/** Sessions per pipeline of the revocation check: one round trip each, none large enough to hold Redis up long. */
const REVOCATION_CHUNK = 500;

/** Which of `sessions` are revoked: EXISTS on each one's revocation key, pipelined in chunks, one chunk at a time. */
export async function revokedSessions(
  redis: Redis,
  keys: Keyspace,
  sessions: readonly { userId: string; sessionId: string }[],
  chunk = REVOCATION_CHUNK,
): Promise<boolean[]> {
  const revoked: boolean[] = [];
  for (let i = 0; i < sessions.length; i += chunk) {
    const pipe = redis.pipeline();
    for (const s of sessions.slice(i, i + chunk)) pipe.exists(keys.sessionRevokedKey(s.userId, s.sessionId));
    for (const [error, n] of (await pipe.exec()) ?? []) {
      if (error) throw error;
      revoked.push(n === 1);
    }
  }
  return revoked;
}

/**
 * GETDEL of a ticket's key, for the upgrade. ioredis sends a command again after a lost connection, and a GETDEL that
 * ran before the connection dropped finds nothing the second time: a null met after a lost connection may be the
 * client's own ticket, spent by the first run, so it is an error (503: try again with a new ticket), not an unknown
 * ticket (401).
 */
export function ticketTaker(redis: Redis, keys: Keyspace): (ticketHash: string) => Promise<string | null> {
  let connectionsLost = 0;
  redis.on("close", () => connectionsLost++);
  return async (ticketHash) => {
    const before = connectionsLost;
    const stored = await redis.getdel(keys.streamTicketKey(ticketHash));
    if (stored === null && connectionsLost !== before)
      throw new Error("the connection to Redis dropped during GETDEL: the ticket may have been taken by a first run");
    return stored;
  };
}

export async function startStream(options: StreamOptions): Promise<RunningStream> {
  const { redis, keys, log } = options;
  const hub = new StreamHub({
    limits: options.limits,
    store: {
      readState: (userId) => readPrivateState(redis, keys, userId),
      readAfter: (userId, since, limit) => readEventsAfter(redis, keys, userId, since, limit),
    },
    revokedSessions: (sessions) => revokedSessions(redis, keys, sessions),
    loadBucket: options.loadBucket,
    log,
    metrics: options.metrics,
  });
  // The fan-out's start before the quotes read model: a quote the worker writes to both in between comes from the
  // fan-out (the hub drops its copy of a quote it was seeded with), where it would be missed the other way round, and
  // a halted market's quote stay stale until its next.
  const from = await fanoutTail(options.reader, keys.streamFanout);
  hub.start(await redis.hgetall(keys.quotesKey));
  const stop = new AbortController();
  const reading = startFanoutReader(
    {
      redis: options.reader,
      key: keys.streamFanout,
      log,
      onEntry: (id, fields) => hub.handleEntry(id, fields),
      onRecovered: () => hub.fanoutRecovered(),
      from,
    },
    stop.signal,
  );
  const server = createStreamServer({
    hub,
    takeTicket: ticketTaker(redis, keys),
    sessionRevoked: async (userId, sessionId) => (await redis.exists(keys.sessionRevokedKey(userId, sessionId))) === 1,
    allowedOrigins: options.allowedOrigins,
    maxFrameBytes: options.limits.maxFrameBytes,
    maxConnectionsPerUser: options.limits.maxConnectionsPerUser,
    heartbeatMs: options.limits.heartbeatMs,
    log,
  });
  const { http } = server;
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port, options.host, () => {
      http.off("error", reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    port,
    hub,
    close() {
      closed ??= (async () => {
        stop.abort();
        options.reader.disconnect();
        await server.close();
        await reading.done;
      })();
      return closed;
    },
  };
}
