/**
 * Test support for the stream: a stream started in-process on a free port under its own key prefix, tickets and
 * events written to Redis the way the API and the worker write them (functions/auth/stream-tickets.ts,
 * worker/events.ts; docs/architecture.md, "The stream"), and a WebSocket client that records every frame.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { WebSocket } from "ws";
import type { PrivateOutput } from "../../contract/messages.ts";
import { streamTicketHash } from "../../functions/auth/stream-tickets.ts";
import { keyspace, type Keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { eventMember } from "../../worker/events.ts";
import { DEFAULT_LIMITS } from "../config.ts";
import type { StreamLimits } from "../connection.ts";
import { NO_METRICS, type StreamMetrics } from "../metrics.ts";
import { startStream, type RunningStream } from "../stream.ts";

export const APP_ORIGIN = "http://localhost:3000";

export interface TestStream {
  readonly url: string;
  readonly keys: Keyspace;
  readonly redis: Redis;
  /** The fan-out reader's connection name, to kill it (CLIENT KILL) in a test. */
  readonly readerName: string;
  readonly stream: RunningStream;
  /** What the stream logged at warn and above, each line parsed. */
  readonly logs: LogLine[];
  close(): Promise<void>;
}

export type LogLine = Record<string, unknown> & { event: string; level: string };

/**
 * `options.commands`: the stream's command connection (tickets, events, revocations), closed by the caller; by
 * default the fixture's own (`TestStream.redis`), which always reaches Redis directly. `options.beforeStart`: writes
 * to the stream's keyspace before the stream starts (read models it reads at start).
 */
export async function startTestStream(
  limits: Partial<StreamLimits> = {},
  options: {
    metrics?: StreamMetrics;
    commands?: Redis;
    beforeStart?: (redis: Redis, keys: Keyspace) => Promise<void>;
  } = {},
): Promise<TestStream> {
  const prefix = `t-c-${randomUUID()}:`;
  const keys = keyspace(prefix);
  const redis = new Redis(TEST_REDIS_URL);
  const readerName = `${prefix.replace(/:$/, "")}-fanout`;
  const reader = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null, connectionName: readerName });
  const logs: LogLine[] = [];
  await options.beforeStart?.(redis, keys);
  const stream = await startStream({
    redis: options.commands ?? redis,
    reader,
    keys,
    log: createLogger("stream-test", { level: "warn", sink: (line) => logs.push(JSON.parse(line) as LogLine) }),
    metrics: options.metrics ?? NO_METRICS,
    limits: { ...DEFAULT_LIMITS, ...limits },
    allowedOrigins: new Set([APP_ORIGIN]),
    port: 0,
    host: "127.0.0.1",
  });
  return {
    url: `ws://127.0.0.1:${stream.port}/api/v1/stream`,
    keys,
    redis,
    readerName,
    stream,
    logs,
    async close() {
      await stream.close();
      await deleteKeysWithPrefix(redis, prefix);
      redis.disconnect();
    },
  };
}

/** A ticket as POST /api/v1/stream/ticket issues it: 32 random bytes, stored by hash for `ttlMs`. */
export async function issueTicket(
  t: TestStream,
  who: { userId: string; sessionId?: string; sessionExpiresAtMs?: number },
  ttlMs = 30_000,
): Promise<string> {
  const ticket = randomBytes(32).toString("base64url");
  const value = {
    userId: who.userId,
    sessionId: who.sessionId ?? randomUUID(),
    sessionExpiresAtMs: who.sessionExpiresAtMs ?? Date.now() + 3_600_000,
  };
  await t.redis.set(t.keys.streamTicketKey(streamTicketHash(ticket)), JSON.stringify(value), "PX", ttlMs);
  return ticket;
}

let outputMs = 1_800_000_000_000;

/** A balances_changed output of `userId` with its seq, as the engine emits it. */
export function balancesEvent(userId: string, seq: number, usd: string): PrivateOutput {
  const inputId = `${outputMs++}-0`;
  return { type: "balances_changed", id: `${inputId}:0`, inputId, userId, balances: { USD: usd }, seq };
}

/**
 * Stores events as the worker does: each in the events set (with `more` when its seq is in `more`: its engine step
 * follows it with another event for the user), the balances read model updated, the mark advanced over every
 * contiguous seq. (The worker's real write is a script; here the test controls the order.)
 */
export async function storeEvents(
  t: TestStream,
  events: readonly PrivateOutput[],
  more: readonly number[] = [],
): Promise<void> {
  for (const e of events) {
    await t.redis.zadd(t.keys.eventsKey(e.userId), e.seq, eventMember(e, more.includes(e.seq)));
    if (e.type === "balances_changed") {
      await t.redis.del(t.keys.balancesKey(e.userId));
      await t.redis.hset(t.keys.balancesKey(e.userId), e.balances);
    }
    let mark = Number((await t.redis.get(t.keys.eventsSeqKey(e.userId))) ?? 0);
    while ((await t.redis.zcount(t.keys.eventsKey(e.userId), mark + 1, mark + 1)) === 1) mark++;
    await t.redis.set(t.keys.eventsSeqKey(e.userId), mark);
  }
}

/** The fan-out entries the worker adds after storing them. */
export async function fanOutEvents(t: TestStream, events: readonly PrivateOutput[]): Promise<void> {
  for (const e of events) {
    await t.redis.xadd(
      t.keys.streamFanout,
      "*",
      "kind",
      "event",
      "user",
      e.userId,
      "seq",
      e.seq,
      "body",
      JSON.stringify(e),
    );
  }
}

export async function fanOut(t: TestStream, kind: string, body: unknown): Promise<void> {
  await t.redis.xadd(t.keys.streamFanout, "*", "kind", kind, "body", JSON.stringify(body));
}

export type Frame = Record<string, unknown> & { type: string };

/** A socket that records every frame and how it closed. */
export class TestClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      this.frames.push(JSON.parse((data as Buffer).toString("utf8")) as Frame);
      for (const w of this.waiters) w();
    });
    this.closed = new Promise((resolve) =>
      ws.on("close", (code, reason) => {
        resolve({ code, reason: String(reason) });
        for (const w of this.waiters) w();
      }),
    );
  }

  static connect(url: string, headers: Record<string, string> = {}): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      const client = new TestClient(ws);
      ws.once("open", () => resolve(client));
      ws.once("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += String(c)));
        res.on("end", () => reject(new RefusedUpgrade(res.statusCode ?? 0, body, res.headers)));
      });
      ws.once("error", reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  of(type: string): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }

  /** Waits until `test` holds over the frames so far (or the socket closes). */
  async until<T>(test: (frames: Frame[]) => T | undefined | false, timeoutMs = 5_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = test(this.frames);
      if (found !== undefined && found !== false) return found;
      if (this.ws.readyState === WebSocket.CLOSED)
        throw new Error(`socket closed; frames: ${JSON.stringify(this.frames)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; frames: ${JSON.stringify(this.frames).slice(0, 2_000)}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          this.waiters.delete(done);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }

  close(): void {
    this.ws.close();
  }
}

export class RefusedUpgrade extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    /** The answer's headers, names in lower case. */
    readonly headers: Readonly<Record<string, string | string[] | undefined>> = {},
  ) {
    super(`upgrade refused: ${status} ${body}`);
  }
}

/** A user id no other test uses. */
export const newUserId = (): string => `u-${randomUUID().slice(0, 8)}`;

/** A socket of `userId`, through a fresh ticket. */
export async function connectAs(t: TestStream, userId: string): Promise<TestClient> {
  return TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId })}`);
}

/** The seqs of the event frames received, in order. */
export const eventSeqs = (frames: Frame[]): number[] =>
  frames.filter((f) => f.type === "event").map((f) => f.seq as number);
