/**
 * The leader: holds the lease, applies `engine:input` strictly after the state's cursor and publishes each
 * batch's outputs before reading the next. First it replays the tail (logging progress), then it follows the
 * stream live. It never snapshots (a follower does, see follower.ts), so it never pauses for one.
 *
 * Crash-only: if publishing fails or the lease is lost, it stops; the process exits and a restart recovers from
 * the last snapshot plus the log. Its replay publishes nothing of a batch that ends at or below the published cursor
 * (publisher.ts); a batch across it re-emits the outputs before it, with the same ids (consumers drop them).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";
import type { EngineOutput } from "../../contract/messages.ts";
import type { Logger } from "../../platform/log.ts";
import type { EngineState } from "../core/state.ts";
import type { LeaderMetrics } from "../metrics.ts";
import { parseInputId } from "../core/step.ts";
import { unlessAborted, type EngineLease } from "./lease.ts";
import type { LeaseKeeper } from "./lease-keeper.ts";
import type { LogPrefetch } from "./log-prefetch.ts";
import { applyDecoded, applyRaw, rangeAfter, readAfter } from "./log-stream.ts";
import { EncodedOutputs, FencedError, publishOutputs } from "./publisher.ts";

export interface LeaderOptions {
  /** Connection used only for blocking reads (a BLOCK holds its connection). */
  readonly reader: Redis;
  /** Connection for publishing and lease renewal. */
  readonly writer: Redis;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly lease: EngineLease;
  readonly state: EngineState;
  readonly batchSize?: number;
  readonly blockMs?: number;
  /** How often the live loop logs `engine_stats` (with the event-loop pauses since the last report). */
  readonly statsEveryMs?: number;
  /** The tail after the state's cursor, already read and decoded by another thread (log-prefetch.ts). */
  readonly prefetched?: LogPrefetch;
  /** Called once the replay is done and the leader follows the log live. */
  readonly onLive?: () => void;
  /** The longest one slice of a batch may keep the event loop (default: a tenth of the lease TTL, at least 10 ms). */
  readonly sliceMs?: number;
  /** Prometheus metrics (engine/metrics.ts), updated per batch and at each engine_stats report. */
  readonly metrics?: LeaderMetrics;
  /**
   * Renews the lease in the leader's stead (the lease keeper thread, told of each publish's extension): while it has
   * extended the lease within two renewal periods the leader's own timer sends nothing, and `lost` ends the leader as
   * its own renewal finding the lease gone would. Without one, the timer renews an idle leader's lease.
   */
  readonly renewer?: Pick<LeaseKeeper, "extendedAt" | "lost" | "extended" | "progressed">;
  /**
   * How long the leader may go without progress (a read of the log, a prefetched batch taken or a publish answered)
   * and still keep its lease (default six TTLs, as the keeper's stall limit, plus blockMs): a connection stuck on a
   * dead socket must not hold it for ever, in the replay as live.
   */
  readonly stuckAfterMs?: number;
  /**
   * How long the replay waits for the prefetch thread's next batch before it drops the prefetch and reads the log
   * itself (default half of stuckAfterMs): a prefetch whose connection died must not stall the replay.
   */
  readonly prefetchWaitMs?: number;
  /** Called after each publish Redis acknowledged (the published cursor moved). */
  readonly onPublished?: () => void;
}

export type LeaderEnd = "stopped" | "lease_lost";

export async function runLeader(o: LeaderOptions, signal: AbortSignal): Promise<LeaderEnd> {
  const { state, log, metrics } = o;
  const batchSize = o.batchSize ?? 1000;
  const lost = new AbortController();
  // A fifth of the TTL: renewals may be lost or late several times before the lease lapses. A publish renews it too,
  // so the timer renews only when none went out since its last tick (an idle leader), and while a renewer keeps the
  // lease only when that has stopped (not up yet, dead, its connection stuck: nothing for two periods).
  const renewEveryMs = Math.max(20, Math.floor(o.lease.ttlMs / 5));
  let publishedAt = 0;
  // Progress: a read of the log, a prefetched batch taken or a publish answered. Without it for stuckAfterMs, in the
  // replay as live, nothing renews the lease (the keeper's heartbeat stops too): a standby takes over, and this leader
  // is fenced should it ever resume. Measured on the monotonic clock (a wall clock stepped forward is no stall), and
  // past the blocking read's own wait.
  const blockMs = o.blockMs ?? 1000;
  const stuckAfterMs = o.stuckAfterMs ?? 6 * o.lease.ttlMs + blockMs;
  let lastProgressAt = 0;
  let stuck = false;
  // Stuck a lease TTL past that limit, the lease has lapsed (the keeper stops renewing at the same limit) and a standby
  // may lead: this leader is deposed whether or not its connection ever answers again, so it ends as on a lost lease
  // (exit 1, restarted as a standby) instead of waiting on that connection, ready and counted as the lease holder.
  const deposedAfterMs = stuckAfterMs + o.lease.ttlMs;
  let stuckForMs: number | undefined;
  const progressed = () => {
    lastProgressAt = performance.now();
    o.renewer?.progressed(lastProgressAt);
  };
  progressed();
  void o.renewer?.lost.then(() => lost.abort());
  const renewedElsewhere = () => {
    if (o.renewer === undefined) return false;
    const age = Date.now() - o.renewer.extendedAt();
    return age >= 0 && age < 2 * renewEveryMs; // a negative age (the wall clock stepped back) counts as stale
  };
  // One renewal at a time: through a Redis outage the connection holds the first, and more would only queue behind it
  // and fail together (one warning each) when it drops. A failure is logged once until a renewal answers again.
  let renewing = false;
  let renewFailing = false;
  const renewal = setInterval(() => {
    const sinceProgressMs = performance.now() - lastProgressAt;
    if (sinceProgressMs > stuckAfterMs) {
      if (!stuck) log.error("leader_stuck", { sinceProgressMs, stuckAfterMs });
      stuck = true;
      if (sinceProgressMs > deposedAfterMs && !lost.signal.aborted) {
        stuckForMs = Math.round(sinceProgressMs);
        lost.abort();
      }
      return;
    }
    stuck = false;
    if (renewing || performance.now() - publishedAt < renewEveryMs || renewedElsewhere()) return;
    renewing = true;
    o.lease
      .renew()
      .then(
        (held) => {
          renewFailing = false;
          if (!held) lost.abort();
        },
        (err: unknown) => {
          if (!renewFailing) log.warn("lease_renew_failed", { error: err });
          renewFailing = true;
        },
      )
      .finally(() => (renewing = false));
  }, renewEveryMs);
  const stop = AbortSignal.any([signal, lost.signal]);
  // What a publish in flight may still do matters no more once the lease is lost (it is fenced, or lands in order).
  const unlessLost = async (publish: Promise<void>) => {
    await unlessAborted(publish, lost.signal);
    if (lost.signal.aborted) throw new LeaseLostError();
  };
  let applied = 0;
  let lastStatsMs = Date.now();
  // Event-loop pauses of the leader (GC, long batches): max and p99 per stats period, in the engine_stats line.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();

  // One publish may be in flight while the next batch is applied: Redis runs a batch's XADDs while this process
  // applies the next. A batch is sent only once the previous one succeeded, so a failed publish (fenced, or any
  // Redis error) is never followed by a later batch or cursor: the leader stops at the next batch with nothing
  // out of order.
  let publishing: Promise<void> = Promise.resolve();
  // Kept from the outputs, so no scrape has to count the state: a trade opened emits one trade_opened, and each close
  // one closed_order, a partial close too (the trade stays open: its remainingQuantity is not "0").
  let openTrades = metrics === undefined ? 0 : countOpenTrades(state);
  // The longest the event loop is kept by one slice of a batch: well within the lease, so a leader busy with a
  // backlog (a replay, a burst, a slow machine) still renews it, by the slice's publish and by the timer.
  const sliceMs = o.sliceMs ?? Math.max(10, Math.floor(o.lease.ttlMs / 10));
  // Each publish call Redis answered (a slice's, or each part of one too large for one call) is progress, and
  // extended the lease as of its sending.
  const extended = (sentAt: number, sentAtMs: number) => {
    progressed();
    publishedAt = sentAt;
    o.renewer?.extended(sentAtMs);
  };
  const applyBatch = async <E>(entries: readonly E[], applyOne: (state: EngineState, entry: E) => EngineOutput[]) => {
    let from = 0;
    while (from < entries.length) {
      const startedAt = performance.now();
      const outputs = new EncodedOutputs();
      let next = from;
      while (next < entries.length) {
        for (const out of applyOne(state, entries[next++]!)) {
          outputs.push(out);
          if (out.type === "trade_opened") openTrades++;
          else if (out.type === "closed_order" && out.trade.remainingQuantity === "0") openTrades--;
        }
        // By size as well, between inputs: a slice of many inputs with a few outputs each goes in one publish call
        // that Redis accepts; only one whose last input has many outputs (mass stops) is published in parts.
        if (outputs.full) break;
        // The clock is read every 64 entries: reading it costs more than applying a price update.
        if ((next - from) % 64 === 0 && performance.now() - startedAt >= sliceMs) break;
      }
      if (metrics !== undefined) {
        metrics.batchApplied(next - from, (performance.now() - startedAt) / 1000);
        metrics.openTrades(openTrades);
      }
      // Published even when stopping: what was applied goes out (or the lease check refuses all of it).
      const previous = publishing;
      const through = state.lastInputId;
      publishing = previous.then(async () => {
        await publishOutputs(o.writer, o.keys, o.lease, through, outputs, extended);
        o.onPublished?.();
      });
      publishing.catch(() => undefined); // awaited by the next batch or at the end; not unhandled meanwhile
      await unlessLost(previous);
      applied += next - from;
      from = next;
      // More of this batch to come: let the timers (the lease renewal) and the publish's reply in first.
      if (from < entries.length) await new Promise((resolve) => setImmediate(resolve));
    }
  };

  try {
    // Replay: everything already in the log after the restored cursor, as fast as it reads.
    const replayStart = Date.now();
    let replayed = 0;
    log.info("replay_start", { from: state.lastInputId });
    // The lag during the replay as well (a takeover's gauge otherwise keeps the standby's last figure, and a start's
    // reads NaN, until the first engine_stats): at its start and end, and at each replay_progress without waiting.
    const reportLag = async () => {
      const head = await unlessAborted(streamHead(o.writer, o.keys), stop);
      if (!stop.aborted) metrics?.lag(lagMs(head, state.lastInputMs));
    };
    if (metrics !== undefined) await reportLag();
    let progressAt = replayStart;
    const progress = (n: number) => {
      replayed += n;
      if (Date.now() - progressAt < 1000) return;
      progressAt = Date.now();
      if (metrics !== undefined) void reportLag();
      log.info("replay_progress", {
        entries: replayed,
        lastInputId: state.lastInputId,
        perSec: rate(replayed, replayStart),
      });
    };
    // First what the prefetch thread read and decoded meanwhile, then the rest of the log from here.
    let abandoned = false;
    if (o.prefetched !== undefined) {
      let takeMs = 0; // waiting for the batches, and receiving them
      const waitMs = o.prefetchWaitMs ?? Math.floor(stuckAfterMs / 2);
      for (;;) {
        const takeFrom = performance.now();
        const waited = AbortSignal.timeout(waitMs);
        const entries = await o.prefetched.next(state.lastInputId, AbortSignal.any([stop, waited]));
        takeMs += performance.now() - takeFrom;
        if (entries === undefined) {
          abandoned = waited.aborted && !stop.aborted;
          break;
        }
        progressed();
        await applyBatch(entries, applyDecoded);
        progress(entries.length);
        if (stop.aborted) break;
      }
      const end = o.prefetched.ended;
      log.info("replay_prefetched", {
        entries: replayed,
        prefetchMs: end?.ms,
        takeMs: Math.round(takeMs),
        ...(end?.error === undefined ? {} : { stoppedBecause: end.error }),
        // Its connection stuck, most likely: the rest is read here.
        ...(abandoned && { abandonedAfterMs: waitMs }),
      });
      if (abandoned) void o.prefetched.close();
    }
    // The next range is read (on the reader connection, idle until live) while this one is applied and published.
    // After a prefetch that gave up waiting, in ranges of one batch: a link that slow could take longer over ten than
    // the stuck limit allows, and each range answered is progress.
    const rangeSize = abandoned ? batchSize : batchSize * 10;
    let next = rangeAfter(o.reader, o.keys.input, state.lastInputId, rangeSize);
    for (;;) {
      // A read that never answers (a dead socket) ends with the stop, a lease given up as lost included.
      const entries = await unlessAborted(next, stop);
      if (entries === undefined) break;
      progressed();
      if (entries.length === 0 || stop.aborted) break;
      next = rangeAfter(o.reader, o.keys.input, entries[entries.length - 1]![0], rangeSize);
      next.catch(() => undefined); // awaited on the next turn; a failure there must not go unhandled meanwhile
      await applyBatch(entries, applyRaw);
      progress(entries.length);
    }
    await unlessLost(publishing);
    log.info("replay_done", {
      entries: replayed,
      ms: Date.now() - replayStart,
      perSec: rate(replayed, replayStart),
      lastInputId: state.lastInputId,
    });
    loopDelay.reset(); // the replay's long batches are not live pauses
    metrics?.replayed(replayed, Date.now() - replayStart);
    if (metrics !== undefined) await reportLag();
    metrics?.openTrades(openTrades);
    metrics?.ignoredPriceUpdates(state.ignoredPriceUpdates);
    // Stopped (or deposed) during the replay: what it applied is published; it never goes live, so no follower starts.
    if (!stop.aborted) o.onLive?.();

    while (!stop.aborted) {
      const entries = await unlessAborted(
        readAfter(o.reader, o.keys.input, state.lastInputId, batchSize, blockMs),
        stop,
      );
      if (entries === undefined) break; // stopped, or deposed, while the read waited: its entries stay in the log
      progressed();
      if (entries.length > 0) await applyBatch(entries, applyRaw);
      else await unlessLost(publishing); // idle: nothing waits for longer than one blocking read
      if (Date.now() - lastStatsMs >= (o.statsEveryMs ?? 10_000)) {
        const lastGenerated = await unlessAborted(streamHead(o.writer, o.keys), stop);
        const lag = lagMs(lastGenerated, state.lastInputMs);
        metrics?.lag(lag);
        metrics?.ignoredPriceUpdates(state.ignoredPriceUpdates);
        log.info("engine_stats", {
          applied,
          lastInputId: state.lastInputId,
          streamHead: lastGenerated,
          lagMs: lag,
          accounts: state.accounts.size,
          ignoredPriceUpdates: state.ignoredPriceUpdates,
          loopDelayMaxMs: nsToMs(loopDelay.max),
          loopDelayP99Ms: nsToMs(loopDelay.percentile(99)),
        });
        loopDelay.reset();
        lastStatsMs = Date.now();
      }
    }
    await unlessLost(publishing);
  } catch (error) {
    // A publish refused by the fence: another engine leads (this one stalled past its TTL, and the renewal timer
    // had not run yet). Deposed, not crashed; as when the lease was found lost while a publish was awaited.
    if (!(error instanceof FencedError) && !(error instanceof LeaseLostError)) throw error;
    lost.abort();
  } finally {
    clearInterval(renewal);
    loopDelay.disable();
  }
  if (lost.signal.aborted) {
    log.error("lease_lost", { lastInputId: state.lastInputId, ...(stuckForMs !== undefined && { stuckForMs }) });
    // Nothing to release (a release sent on a stuck connection would only hold the exit); engine_lease_held reads 0.
    o.lease.forget();
    return "lease_lost";
  }
  return "stopped";
}

/** The lease was found lost while a publish was awaited. */
class LeaseLostError extends Error {}

/** The id of engine:input's newest entry (XINFO STREAM); undefined when it cannot be read. */
export async function streamHead(redis: Redis, keys: Keyspace): Promise<string | undefined> {
  const info = (await redis.xinfo("STREAM", keys.input).catch(() => undefined)) as unknown[] | undefined;
  return info === undefined ? undefined : String(info[info.indexOf("last-generated-id") + 1]);
}

/**
 * How far the engine is behind the newest entry of engine:input, in log time: the newest id's milliseconds less
 * those of the last input applied (0 when caught up). Undefined, shown as unknown, when the head could not be read,
 * or before any input was applied (a replay with no snapshot): the head's whole epoch time is no lag.
 */
export function lagMs(streamHead: string | undefined, lastInputMs: number): number | undefined {
  if (streamHead === undefined || lastInputMs === 0) return undefined;
  const { ms } = parseInputId(streamHead);
  return Math.max(0, ms - lastInputMs);
}

function countOpenTrades(state: EngineState): number {
  let n = 0;
  for (const account of state.accounts.values()) n += account.openTrades.size;
  return n;
}

function rate(n: number, sinceMs: number): number {
  const ms = Date.now() - sinceMs;
  return ms === 0 ? n : Math.round((n * 1000) / ms);
}

/** The histogram records nanoseconds (0 before any sample); logged as ms with 0.1 ms precision. */
function nsToMs(ns: number): number {
  return Number.isFinite(ns) ? Math.round(ns / 1e5) / 10 : 0;
}
