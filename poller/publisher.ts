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
 * path back in the log a second time, older prices after newer ones, which the engine takes (docs/trading-rules.md,
 * Prices). Such a pipeline's reply never comes, so each is raced against the connection's `close`: when the
 * connection closes first, its entries are counted `lost` (written in full, in part or not at all) and the loop goes
 * on with the next; the market's next quote or heartbeat supersedes them.
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

/** The publisher's own connection: it never resends a command whose reply a dropped connection lost. */
export function connectPublisherRedis(url: string, log: Logger): Redis {
  return connectRedis(url, log, "poller-publisher", { resendUnanswered: false });
}

export interface PublisherOptions {
  /** A connection of its own, from `connectPublisherRedis` (one that resends would write a lost pipeline twice). */
  readonly redis: Redis;
  /** The input stream, `keyspace(prefix).input`. */
  readonly stream: string;
  readonly log: Logger;
  readonly maxQueued?: number;
  readonly maxBatch?: number;
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
  private queue: PriceUpdate[] = [];
  private draining: Promise<void> | undefined;
  private readonly maxQueued: number;
  private readonly maxBatch: number;
  private readonly logTrouble: ReturnType<typeof throttled>;

  constructor(private readonly options: PublisherOptions) {
    this.maxQueued = options.maxQueued ?? 10_000;
    this.maxBatch = options.maxBatch ?? 500;
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
        await this.send(pipeline, batch.length);
      }
    } finally {
      this.draining = undefined;
    }
  }

  /** Resolves once the connection is ready (at once when it is, or when it has ended: every XADD then fails). */
  private async connected(): Promise<void> {
    const { redis } = this.options;
    if (redis.status === "ready" || redis.status === "end") return;
    await new Promise((resolve) => redis.once("ready", resolve));
  }

  private async send(pipeline: ReturnType<Redis["pipeline"]>, size: number): Promise<void> {
    try {
      const results = await unlessClosed(this.options.redis, pipeline.exec());
      if (results === CLOSED) {
        this.counters.lost += size;
        this.options.log.warn("publisher_reply_lost", {
          stream: this.options.stream,
          entries: size,
          counters: this.counters,
        });
        return;
      }
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
    }
  }
}
