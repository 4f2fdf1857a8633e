/**
 * The hot standby: an engine that does not hold the lease follows the log in its main thread with the same
 * deterministic core as the leader, never past the leader's published cursor (what it has applied has gone out, so
 * at takeover it re-applies and publishes exactly what the leader applied but did not publish). It polls the lease
 * and what was published after its cursor every `pollMs` (one script); when the lease is free (the leader released
 * it on SIGTERM, or died and it expired) it takes it with a new fencing token and returns, and its caller leads from
 * its state: only the few entries after the published cursor are left to apply.
 */
import type { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";
import type { Logger } from "../../platform/log.ts";
import type { EngineState } from "../core/state.ts";
import type { LeaderMetrics } from "../metrics.ts";
import { applyTail, PUBLISHED_TAIL_LUA } from "./follower.ts";
import { lagMs, streamHead } from "./leader.ts";
import { sleep, unlessAborted, type EngineLease } from "./lease.ts";
import type { RawEntry } from "./log-stream.ts";

export interface StandbyOptions {
  readonly redis: Redis;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly lease: EngineLease;
  readonly state: EngineState;
  readonly pollMs: number;
  /** Called once, when the standby first caught up with the published cursor. */
  readonly onReady?: () => void;
  /** `engine_lag_seconds` is set every this many ms (default 10 000), as the leader sets it. */
  readonly statsEveryMs?: number;
  readonly metrics?: Pick<LeaderMetrics, "lag">;
}

/**
 * The lease's holder, its remaining ms, and what was published after this standby's cursor (PUBLISHED_TAIL_LUA: the
 * entries, and whether everything after the cursor is still in the log), in one command.
 * KEYS[1] the lease, KEYS[2] the published cursor, KEYS[3] the log.
 */
const POLL = `
local published = redis.call('GET', KEYS[2])
local log = KEYS[3]
${PUBLISHED_TAIL_LUA}
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), entries, kept}`;

/**
 * Follows until this engine holds the lease ("leader") or `signal` aborts ("stopped"): at once, also when a read of
 * Redis is waiting (an outage), as nothing it reads needs an answer once it stops.
 *
 * A standby that never saw the lease's last holder renew it (its remaining time only went down: an engine
 * restarted after that leader died) waits two polls before it takes the lease when it lapses, so a standby that
 * watched that leader live, and has nothing to replay, takes it first. A lease released on a handover was renewed
 * while this standby watched, so the handover is not delayed.
 */
export async function runStandby(o: StandbyOptions, signal: AbortSignal): Promise<"leader" | "stopped"> {
  const { log, state } = o;
  let ready = false;
  let leader: string | null | undefined;
  let leaderSeenAt = Date.now();
  let leaderRenewed = false;
  let lastPttl = Number.POSITIVE_INFINITY;
  let yielded = false;
  let lastStatsMs = 0;
  while (!signal.aborted) {
    // One command per poll (the keys carry the shard's hash tag; an XINFO for the lag every statsEveryMs): a
    // standby's cost is billed per command. A stop does not wait for its answer: through a Redis outage the command
    // waits until Redis is back, and it only reads.
    const polled = (await unlessAborted(
      o.redis.eval(
        POLL,
        3,
        o.keys.engineLease,
        o.keys.enginePublished,
        o.keys.input,
        state.lastInputId,
        // Small batches: applying one keeps this event loop from the lease for its duration.
        "500",
      ),
      signal,
    )) as [string | null, number, RawEntry[], number] | undefined;
    if (polled === undefined) break;
    const [holder, pttl, entries, kept] = polled;
    if (holder === null) {
      // Stopping (npm start stops both engines at once): the released lease is not this engine's to take.
      if (signal.aborted) break;
      if (!leaderRenewed && !yielded) {
        yielded = true;
        await sleep(2 * o.pollMs, signal);
        continue;
      }
      if (await o.lease.tryAcquire()) {
        log.info("takeover", {
          fromInputId: state.lastInputId,
          previousLeader: leader ?? null,
          // Since a leader was last seen holding the lease: at most its TTL after it died, plus one poll.
          sinceLeaderSeenMs: Date.now() - leaderSeenAt,
        });
        return "leader";
      }
      continue; // another standby was quicker: it leads now
    }
    yielded = false;
    if (holder !== leader) {
      log.info("standby", { leader: holder, lastInputId: state.lastInputId });
      leaderRenewed = false;
    } else if (pttl > lastPttl) {
      leaderRenewed = true;
    }
    lastPttl = pttl;
    leader = holder;
    leaderSeenAt = Date.now();
    // What was published, a batch per poll until caught up (no pause between them).
    const caughtUp = applyTail(state, entries, kept === 1);
    // Behind the stream head, caught up or not: what a takeover now would have left to apply.
    if (o.metrics !== undefined && Date.now() - lastStatsMs >= (o.statsEveryMs ?? 10_000)) {
      const head = await unlessAborted(streamHead(o.redis, o.keys), signal);
      if (signal.aborted) break;
      o.metrics.lag(lagMs(head, state.lastInputMs));
      lastStatsMs = Date.now();
    }
    if (!caughtUp) continue;
    if (!ready) {
      ready = true;
      o.onReady?.();
    }
    await sleep(o.pollMs, signal);
  }
  return "stopped";
}
