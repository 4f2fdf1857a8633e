/**
 * The one loop that reads the fan-out stream (`{stream}:fanout`) for this replica: XREAD BLOCK from the entry that
 * was last when it started, then from the last id read, so nothing added between two reads is missed. No consumer
 * group: every replica reads every entry. After a Redis error or a lost connection (ioredis reconnects and sends
 * the read again, so that one may never fail) it says so (`onRecovered`) once reading works again: entries may
 * have been trimmed meanwhile, and the private channels must look in the store.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../platform/log.ts";

export interface FanoutReaderOptions {
  readonly redis: Redis;
  readonly key: string;
  readonly log: Logger;
  readonly onEntry: (id: string, fields: Record<string, string>) => void;
  readonly onRecovered: () => void;
  readonly blockMs?: number;
  readonly batch?: number;
}

/**
 * Starts reading (resolves once the starting point is known); `done` settles after `stop` aborts (disconnect
 * `redis` then, to cut a blocking read short).
 */
export async function startFanoutReader(
  options: FanoutReaderOptions,
  stop: AbortSignal,
): Promise<{ done: Promise<void> }> {
  const { redis, key, log } = options;
  const last = (await redis.xrevrange(key, "+", "-", "COUNT", 1))[0];
  let lastId = last?.[0] ?? "0-0";
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
        const reply = await redis.xread(
          "COUNT",
          options.batch ?? 1_000,
          "BLOCK",
          options.blockMs ?? 2_000,
          "STREAMS",
          key,
          lastId,
        );
        if (failed) {
          failed = false;
          log.info("fanout_recovered", { from: lastId });
          options.onRecovered();
        }
        const entries = reply?.[0]?.[1] ?? [];
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
