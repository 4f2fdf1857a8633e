/**
 * The one loop that reads the fan-out stream (`{stream}:fanout`) for this replica: XREAD BLOCK from the entry that
 * was last before the stream read the read models it starts from (`fanoutTail`), then from the last id read, so
 * nothing added between two reads is missed. No consumer
 * group: every replica reads every entry. After a Redis error or a lost connection (ioredis reconnects and sends
 * the read again, so that one may never fail) it says so (`onRecovered`) once reading works again: entries may
 * have been trimmed meanwhile, and the private channels must look in the store.
 *
 * A reader that falls behind without an error (a stalled process, a burst it cannot keep up with) can be overtaken
 * by the trim as well, and XREAD skips what is gone without a word. The trim (`MAXLEN ~`) keeps far more entries
 * than one read takes, so entries trimmed past the last id read leave a full read after it; only then does the
 * reader look at the oldest entry kept (one XRANGE), and when that is past the last id read it says so too. A read
 * that is not full costs no command more.
 */
import type { Redis } from "ioredis";
import { isAfterId } from "../engine/core/step.ts";
import type { Logger } from "../platform/log.ts";

export interface FanoutReaderOptions {
  readonly redis: Redis;
  readonly key: string;
  readonly log: Logger;
  readonly onEntry: (id: string, fields: Record<string, string>) => void;
  readonly onRecovered: () => void;
  /** The id to read after: `fanoutTail`'s. */
  readonly from: string;
  readonly blockMs?: number;
  readonly batch?: number;
}

/**
 * The fan-out's last entry id ("0-0" when it is empty): a reader started from it misses nothing added after this
 * call. Read it before any read model the stream starts from: an entry whose write lands between the two reads is
 * then read from the fan-out, where the other way round it would be in neither.
 */
export async function fanoutTail(redis: Redis, key: string): Promise<string> {
  return (await redis.xrevrange(key, "+", "-", "COUNT", 1))[0]?.[0] ?? "0-0";
}

/** Starts reading after `from`; `done` settles after `stop` aborts (disconnect `redis` then, to cut a read short). */
export function startFanoutReader(options: FanoutReaderOptions, stop: AbortSignal): { done: Promise<void> } {
  const { redis, key, log } = options;
  const batch = options.batch ?? 1_000;
  let lastId = options.from;
  let failed = false;
  let lost = false;
  redis.on("close", () => (lost = true));
  redis.on("ready", () => {
    if (!lost || stop.aborted) return;
    lost = false;
    log.info("fanout_reconnected", { from: lastId });
    options.onRecovered();
  });
  const loop = async () => {
    while (!stop.aborted) {
      try {
        const reply = await redis.xread("COUNT", batch, "BLOCK", options.blockMs ?? 2_000, "STREAMS", key, lastId);
        const entries = reply?.[0]?.[1] ?? [];
        if (failed) {
          failed = false;
          log.info("fanout_recovered", { from: lastId });
          options.onRecovered();
        } else if (entries.length === batch) {
          // Before the entries go out, so that candle series reload their buckets rather than send them short.
          const oldest = (await redis.xrange(key, "-", "+", "COUNT", 1))[0]?.[0];
          if (oldest !== undefined && isAfterId(oldest, lastId)) {
            log.warn("fanout_fell_behind", { from: lastId, oldestKept: oldest });
            options.onRecovered();
          }
        }
        for (const [id, flat] of entries) {
          lastId = id;
          const fields: Record<string, string> = {};
          for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
          options.onEntry(id, fields);
        }
        // The writes these entries caused start (connection.ts, in a setImmediate queued before this one) before the
        // next read is sent: what arrives during that burst comes in one reply and joins the sockets not yet written,
        // instead of a read, and a burst to every socket, per entry.
        if (entries.length > 0) await new Promise((resolve) => setImmediate(resolve));
      } catch (error) {
        if (stop.aborted) return;
        if (!failed) log.warn("fanout_read_failed", { error });
        failed = true;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  };
  return { done: loop() };
}
