/**
 * Appends accepted quotes to the engine's input stream as `price_update` messages.
 *
 * Order: quotes are XADDed in the order `publish` was called. One drain loop sends one pipeline at a time on one
 * connection, once it is ready, so a later quote never lands before an earlier one, even across a Redis reconnect.
 * Batching: quotes that arrive while a pipeline is in flight, or while Redis is out of reach (or in the same
 * event-loop turn), go out together in the next one.
 *
 * Once: a pipeline is never sent twice. Its connection does not resend what a dropped connection left unanswered
 * (`connectPublisherRedis`): Redis may have run it already, and the same XADDs again would put the market's price
 * path back in the log a second time, older prices after newer ones, which the engine takes when they are at most
 * its `staleQuoteMs` older (docs/trading-rules.md, Prices). Such a pipeline's reply never comes, so each is raced
 * against the connection's `close`: when the connection closes first, its entries are counted `lost` (written in
 * full, in part or not at all) and the loop goes on with the next; what was written of them came before anything
 * the next connection sends, and the market's next quote or heartbeat supersedes them.
 *
 * Bounded: a connection can also stay open and answer nothing (a blackholed path, a frozen or failing-over Redis, a
 * proxy that keeps the TCP session), which neither ioredis nor the kernel notices for many minutes, and every price
 * would wait behind that one pipeline meanwhile. So a pipeline unanswered after `replyTimeoutMs` is given up as a
 * close is (counted `lost`, never sent again) and its connection is dropped, so the next one goes out on a fresh one.
 * Order is not kept then: its bytes may still be on the way (the kernel retransmits a closed socket's unsent data),
 * and if the path heals Redis may run them after the fresh connection's newer entries. The engine ignores such an
 * entry more than `staleQuoteMs` (5 s) older than the market's newest; a less old one is taken for a moment, as
 * another clock a little behind is, until the market's next update.
 *
 * Entries are never trimmed here: only the engine may trim `engine:input`, below a durably saved snapshot.
 * When Redis is unreachable for long, the oldest queued quotes are shed beyond `maxQueued` (counted): a newer quote
 * for a market supersedes an older one, so shedding the oldest loses the least.
 */
import type { Redis } from "ioredis";
import type { PriceUpdate } from "../contract/messages.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { throttled, type Logger } from "../platform/log.ts";
import { CLOSED, connectRedis, unlessClosed } from "../platform/redis.ts";
import type { TopOfBook } from "./frames.ts";

export type PriceSource = PriceUpdate["source"];

export interface PublisherCounters {
  /** Entries Redis accepted. */
  written: number;
  /** Entries Redis refused (an error reply: out of memory, wrong key type). */
  failed: number;
  /** Quotes shed while too many were waiting for Redis. */
  shed: number;
  /** Entries of pipelines whose replies were lost with the connection: written in full, in part or not at all. */
  lost: number;
}

/**
 * How long a sent pipeline may wait for its reply (ms). Upstash answers one within a few ms in its region and a few
 * hundred across regions, so 5 s is far beyond any live connection's answer. Shorter would gain little: the engine
 * refuses orders for stale prices 5 s after a market's last entry whatever the poller does, and a connection dropped
 * under a Redis that was only slow costs just that pipeline's entries (see the module comment for one that lands
 * late).
 */
export const REPLY_TIMEOUT_MS = 5_000;

/**
 * The publisher's own connection: it never resends a command whose reply a dropped connection lost, and asks a Redis
 * loading its data every second whether it is ready, so its answers keep coming well within the handshake's bound.
 */
export function connectPublisherRedis(url: string, log: Logger): Redis {
  return connectRedis(url, log, "poller-publisher", { resendUnanswered: false, loadingRecheckMs: 1_000 });
}

export interface PublisherOptions {
  /** A connection of its own, from `connectPublisherRedis` (one that resends would write a lost pipeline twice). */
  readonly redis: Redis;
  /** The input stream, `keyspace(prefix).input`. */
  readonly stream: string;
  readonly log: Logger;
  readonly maxQueued?: number;
  readonly maxBatch?: number;
  /** A pipeline unanswered this long (ms) is given up and its connection dropped (default `REPLY_TIMEOUT_MS`). */
  readonly replyTimeoutMs?: number;
}

export function toPriceUpdate(quote: TopOfBook, source: PriceSource): PriceUpdate {
  return {
    type: "price_update",
    market: quote.market,
    bid: quote.bid,
    ask: quote.ask,
    exchangeTimeUs: quote.exchangeTimeUs,
    source,
  };
}

export class PricePublisher {
  readonly counters: PublisherCounters = { written: 0, failed: 0, shed: 0, lost: 0 };
  private writtenAtMs: number | undefined;
  private queue: PriceUpdate[] = [];
  private inFlight = 0;
  private draining: Promise<void> | undefined;
  private readonly maxQueued: number;
  private readonly maxBatch: number;
  private readonly replyTimeoutMs: number;
  private readonly logTrouble: ReturnType<typeof throttled>;

  constructor(private readonly options: PublisherOptions) {
    this.maxQueued = options.maxQueued ?? 10_000;
    this.maxBatch = options.maxBatch ?? 500;
    this.replyTimeoutMs = options.replyTimeoutMs ?? REPLY_TIMEOUT_MS;
    this.logTrouble = throttled(options.log, 10_000);
  }

  publish(update: PriceUpdate): void {
    this.queue.push(update);
    if (this.queue.length > this.maxQueued) {
      const excess = this.queue.length - this.maxQueued;
      this.queue.splice(0, excess);
      this.counters.shed += excess;
      this.logTrouble("warn", "publisher_shedding", { stream: this.options.stream, counters: this.counters });
    }
    this.draining ??= this.drain();
  }

  /** Resolves once every quote published so far has been written (or refused) by Redis. */
  flush(): Promise<void> {
    return this.draining ?? Promise.resolve();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Updates in the pipeline sent and not yet answered (0 or up to `maxBatch`). */
  get sending(): number {
    return this.inFlight;
  }

  /** When Redis last accepted an entry (ms since the epoch, as its reply came), undefined before the first. */
  get lastWrittenAtMs(): number | undefined {
    return this.writtenAtMs;
  }

  private async drain(): Promise<void> {
    try {
      // One macrotask of patience: the frames of one socket read arrive in one turn and share a pipeline.
      await new Promise((resolve) => setImmediate(resolve));
      while (this.queue.length > 0) {
        // While Redis is out of reach the quotes wait here, where the oldest are shed, not in ioredis's queue.
        await this.connected();
        const batch = this.queue.splice(0, this.maxBatch);
        const pipeline = this.options.redis.pipeline();
        for (const update of batch) pipeline.xadd(this.options.stream, "*", ...encodeFields(update));
        this.inFlight = batch.length;
        try {
          await this.send(pipeline, batch.length);
        } finally {
          this.inFlight = 0;
        }
      }
    } finally {
      this.draining = undefined;
    }
  }

  /**
   * Resolves once the connection is ready (at once when it is, or when it has ended: every XADD then fails). A socket
   * that connected and on which nothing has answered for `replyTimeoutMs` before it is ready (its handshake: its
   * name, then the ready check) is as dead as one that stops answering a pipeline (a frozen Redis, or a dead proxy in
   * front of one, accepts connections all the same, and one may answer the first commands and then nothing), and
   * ioredis would wait on it for ever: it is dropped, and another opened.
   */
  private async connected(): Promise<void> {
    const { redis, stream, log } = this.options;
    while (redis.status !== "ready" && redis.status !== "end") {
      const outcome = await new Promise<"ready" | "unanswered">((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        let socket: typeof redis.stream | undefined;
        // Each answer starts the bound again, until ready: a Redis loading its data after a restart answers only the
        // ready check, asked every second (`connectPublisherRedis`), and waiting for it is an outage, not a dead socket.
        const restart = () => {
          clearTimeout(timer);
          timer = setTimeout(() => done("unanswered"), this.replyTimeoutMs);
        };
        const disarm = () => {
          clearTimeout(timer);
          socket?.off("data", restart);
          socket = undefined;
        };
        const arm = () => {
          disarm();
          socket = redis.stream;
          socket.on("data", restart);
          restart();
        };
        const ready = () => done("ready");
        const done = (value: "ready" | "unanswered") => {
          disarm();
          redis.off("ready", ready).off("connect", arm).off("close", disarm);
          resolve(value);
        };
        redis.on("ready", ready).on("connect", arm).on("close", disarm);
        if (redis.status === "connect") arm();
      });
      if (outcome === "ready") return;
      log.warn("publisher_handshake_timeout", { stream, replyTimeoutMs: this.replyTimeoutMs });
      await dropConnection(redis);
    }
  }

  private async send(pipeline: ReturnType<Redis["pipeline"]>, size: number): Promise<void> {
    const { redis, stream, log } = this.options;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), this.replyTimeoutMs);
    });
    try {
      const results = await Promise.race([unlessClosed(redis, pipeline.exec()), timedOut]);
      if (results === CLOSED || results === TIMED_OUT) {
        this.counters.lost += size;
        const reason = results === CLOSED ? "closed" : "timeout";
        const timeout = results === TIMED_OUT ? { replyTimeoutMs: this.replyTimeoutMs } : {};
        log.warn("publisher_reply_lost", { stream, reason, ...timeout, entries: size, counters: this.counters });
        if (results === TIMED_OUT) await dropConnection(redis);
        return;
      }
      const now = Date.now();
      for (const [err] of results ?? []) {
        if (err) {
          this.counters.failed++;
          this.logTrouble("error", "publisher_write_failed", {
            stream: this.options.stream,
            error: err.message,
            counters: this.counters,
          });
        } else {
          this.counters.written++;
          this.writtenAtMs = now;
        }
      }
    } catch (err) {
      // exec rejects only when the whole pipeline could not be queued; its quotes are lost, later ones still go.
      this.counters.failed += size;
      this.logTrouble("error", "publisher_write_failed", {
        stream: this.options.stream,
        error: (err as Error).message,
        counters: this.counters,
      });
    } finally {
      clearTimeout(timer);
    }
  }
}

const TIMED_OUT = Symbol("timed out");

/**
 * Closes `redis`'s socket and resolves once it has closed; ioredis then opens a fresh one (its retry strategy). The
 * wait matters: until the close, the connection still says it is ready, and a pipeline sent on it would be lost too.
 * It does not wait for ever on a dead peer either: ioredis destroys a socket whose close did not finish within its
 * `disconnectTimeout` (2 s).
 */
async function dropConnection(redis: Redis): Promise<void> {
  const closed = new Promise((resolve) => redis.once("close", resolve));
  redis.disconnect(true);
  await closed;
}
