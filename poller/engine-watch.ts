/**
 * Warns when no engine serves the poller's key prefix. Only the engine trims `engine:input`, below a snapshot it
 * saved, so a poller whose prefix no engine holds (a typo in KEY_PREFIX, an engine stopped for good, a poller run on
 * its own) appends about 10 entries a second from the sim, more from live markets, for ever: on Upstash the key
 * refuses writes at its size limit, and on a shared Redis with `noeviction` the whole database fills. The poller
 * must not trim (that would break the snapshot rule), so it says so instead: `poller_no_engine` (warn) once the
 * engine lease has been seen by no check for `graceMs`, and again after each time an engine came back and left.
 *
 * Checked only while the connection is ready: a read queued for a Redis out of reach tells nothing, and the engine
 * needs time to take the lease again once Redis is back, so the wait starts over then.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../platform/log.ts";

export interface EngineWatchOptions {
  readonly redis: Redis;
  /** `keyspace(prefix).engineLease`: set, with a TTL, while an engine leads. */
  readonly leaseKey: string;
  /** The input stream that grows meanwhile, for the warning. */
  readonly stream: string;
  readonly log: Logger;
  /** How often to look (default 10 s). */
  readonly everyMs?: number;
  /** How long no engine may be seen before the warning (default 60 s: an engine's start and replay, a takeover). */
  readonly graceMs?: number;
}

export function watchEngine(options: EngineWatchOptions): { stop(): void } {
  const { redis, leaseKey, stream, log } = options;
  const graceMs = options.graceMs ?? 60_000;
  let seenAtMs = Date.now();
  let warned = false;
  let checking = false;
  const check = async () => {
    if (redis.status !== "ready") {
      seenAtMs = Date.now();
      return;
    }
    if ((await redis.exists(leaseKey)) === 1) {
      seenAtMs = Date.now();
      warned = false;
      return;
    }
    const missingMs = Date.now() - seenAtMs;
    if (warned || missingMs < graceMs) return;
    warned = true;
    log.warn("poller_no_engine", {
      leaseKey,
      stream,
      missingMs,
      message:
        `No engine holds ${leaseKey}: nothing reads or trims ${stream}, which grows with every price update. ` +
        `Start an engine with this KEY_PREFIX, or stop the poller.`,
    });
  };
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void check()
      .catch(() => undefined) // a failed look is no news: the next one tries again
      .finally(() => {
        checking = false;
      });
  }, options.everyMs ?? 10_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
