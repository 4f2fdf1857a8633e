/**
 * The engine lease: only its holder may apply the log and publish. Acquiring takes a fencing token from a
 * counter and sets the lease to "<holder>:<token>" if nobody holds it; the holder renews it well within its TTL.
 * Every publish checks, atomically in Redis, that the lease still holds exactly that value (see publisher.ts), so
 * an engine that stalled past its TTL (GC, a stopped VM) and lost the lease cannot write a single output after
 * its successor started.
 */
import type { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";
import type { Logger } from "../../platform/log.ts";

/** Extends the lease if it still holds this value (1), else 0. */
export const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export class EngineLease {
  /** "<holder>:<fencing token>" while held. */
  value: string | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
    private readonly holder: string,
    readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /** Tries once; true when this process now holds the lease. */
  async tryAcquire(): Promise<boolean> {
    const token = await this.redis.incr(this.keys.engineFence);
    const value = `${this.holder}:${token}`;
    const set = await this.redis.set(this.keys.engineLease, value, "PX", this.ttlMs, "NX");
    // A SET whose reply a dropped connection lost is resent by ioredis and finds the key taken, by this value: the
    // token is new, so nobody else can have written it.
    if (set !== "OK" && (await this.redis.get(this.keys.engineLease)) !== value) return false;
    this.value = value;
    this.log.info("lease_acquired", { holder: this.holder, fence: token, ttlMs: this.ttlMs });
    return true;
  }

  /** Extends the lease; false when it is no longer ours (then the caller must stop applying at once). */
  async renew(): Promise<boolean> {
    if (this.value === undefined) return false;
    const ok = (await this.redis.eval(RENEW, 1, this.keys.engineLease, this.value, this.ttlMs)) as number;
    return ok === 1;
  }

  /** Forgets a lease found lost: nothing more to renew or release. */
  forget(): void {
    this.value = undefined;
  }

  /**
   * Deletes the lease if it is still ours; one another engine took meanwhile is left alone (and not logged). Waits
   * at most one TTL for the answer: nothing renews the lease once it is being released, so by then it has lapsed
   * anyway, and a Redis out of reach must not hold up a stopping engine (the script, if it runs later, still deletes
   * only this value). Says which: "released", "unanswered", or "not_held" (not ours: lapsed or another engine's, or
   * none was held), when a handover is not this engine's to report.
   */
  async release(): Promise<"released" | "unanswered" | "not_held"> {
    const value = this.value;
    if (value === undefined) return "not_held";
    this.value = undefined;
    let timer: NodeJS.Timeout | undefined;
    const unanswered = new Promise<"unanswered">((resolve) => {
      timer = setTimeout(() => resolve("unanswered"), this.ttlMs);
    });
    try {
      const deleted = await Promise.race([this.redis.eval(RELEASE, 1, this.keys.engineLease, value), unanswered]);
      if (deleted === "unanswered") {
        this.log.warn("lease_release_unanswered", { holder: this.holder, waitedMs: this.ttlMs });
        return "unanswered";
      }
      if (deleted !== 1) return "not_held";
      this.log.info("lease_released", { holder: this.holder });
      return "released";
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Waits `ms`, or less if `signal` aborts; leaves no listener behind either way (loops call it often). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Resolves as `work` does, or with undefined once `signal` aborts first (`work` then settles unheard). */
export function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const aborted = () => resolve(undefined);
    signal.addEventListener("abort", aborted, { once: true });
    work
      .then(resolve, reject)
      .finally(() => signal.removeEventListener("abort", aborted))
      .catch(() => undefined);
  });
}
