/**
 * The hot standby: an engine that does not hold the lease follows the log in its main thread with the same
 * deterministic core as the leader, never past the leader's published cursor (what it has applied has gone out, so
 * at takeover it re-applies and publishes exactly what the leader applied but did not publish). It polls the lease
 * and the cursor every `pollMs`; when the lease is free (the leader released it on SIGTERM, or died and it
 * expired) it takes it with a new fencing token and returns, and its caller leads from its state: only the few
 * entries after the published cursor are left to apply.
 */
import type { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";
import type { Logger } from "../../platform/log.ts";
import type { EngineState } from "../core/state.ts";
import { catchUp } from "./follower.ts";
import { sleep, type EngineLease } from "./lease.ts";

export interface StandbyOptions {
  readonly redis: Redis;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly lease: EngineLease;
  readonly state: EngineState;
  readonly pollMs: number;
  /**
   * Until then (a timestamp), this standby is fresh from a restore: finding the lease free, it waits two polls and
   * looks again before taking it, so a standby that has followed for longer takes it first.
   */
  readonly yieldUntil?: number;
  /** Called once, when the standby first caught up with the published cursor. */
  readonly onReady?: () => void;
}

/** Follows until this engine holds the lease ("leader") or `signal` aborts ("stopped"). */
export async function runStandby(o: StandbyOptions, signal: AbortSignal): Promise<"leader" | "stopped"> {
  const { log, state } = o;
  let ready = false;
  let leader: string | null | undefined;
  let leaderSeenAt = Date.now();
  let yielded = false;
  while (!signal.aborted) {
    // One command per poll (both keys carry the shard's hash tag): a standby's idle cost is billed per command.
    const [holder, published] = await o.redis.mget(o.keys.engineLease, o.keys.enginePublished);
    if (holder === null || holder === undefined) {
      // Stopping (npm start stops both engines at once): the released lease is not this engine's to take.
      if (signal.aborted) break;
      if (!yielded && Date.now() < (o.yieldUntil ?? 0)) {
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
    if (holder !== leader) log.info("standby", { leader: holder, lastInputId: state.lastInputId });
    leader = holder;
    leaderSeenAt = Date.now();
    // What was published, a batch per poll until caught up (no pause between them).
    // Small batches: applying one keeps this event loop from the lease for its duration.
    if (!(await catchUp({ redis: o.redis, keys: o.keys, state, batchSize: 500 }, published ?? null))) continue;
    if (!ready) {
      ready = true;
      o.onReady?.();
    }
    await sleep(o.pollMs, signal);
  }
  return "stopped";
}
