/**
 * Keeps the leader's lease from a worker thread (lease-keeper-thread.ts), so a pause of the main thread (a major
 * GC of a large state, a CPU-starved machine) does not let it lapse and hand the log to a standby that would face
 * the same load: the thread renews it every fifth of the TTL while the main thread's heartbeat is fresh, unless a
 * publish extended it since its last tick. A main thread stuck longer than `stallMs` gets no renewal, so the lease
 * lapses and a standby takes over; a process that died or is stopped (SIGSTOP stops every thread) renews nothing
 * either. Fencing is unchanged: every publish still checks the lease value atomically, so a deposed leader writes
 * nothing.
 */
import type { Worker } from "node:worker_threads";
import type { Logger } from "../../platform/log.ts";
import { endThread, startThread } from "../../platform/threads.ts";

/**
 * Milliseconds on the monotonic clock (CLOCK_MONOTONIC) that every thread of this process reads alike, which a wall
 * clock stepped back or forward does not move. (performance.now() counts from each thread's own start.)
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/**
 * Word indexes in `LeaseKeeperData.shared`, each a time in milliseconds. The main thread's heartbeat, a monotonicMs():
 * its silence is judged on a clock no step of the wall clock moves.
 */
export const HEARTBEAT_AT = 0;
/**
 * When the main thread sent the last publish Redis acknowledged (a publish extends the lease), a Date.now(); a step of
 * the wall clock only makes it look stale, and a stale one is renewed:
 */
export const EXTENDED_AT = 1;
/** When the thread sent the last renewal Redis acknowledged, a Date.now() (as EXTENDED_AT): */
export const RENEWED_AT = 2;
/** 1 while the leader has made no progress for stuckMs (its heartbeat goes on): the thread renews nothing then. */
export const STUCK = 3;

export interface LeaseKeeperData {
  readonly redisUrl: string;
  readonly prefix: string;
  /** The lease value this engine holds ("<holder>:<token>"). */
  readonly value: string;
  readonly ttlMs: number;
  /** Longest main-thread silence for which the lease is still renewed. */
  readonly stallMs: number;
  /** Four BigInt64 words: HEARTBEAT_AT, EXTENDED_AT, RENEWED_AT, STUCK. */
  readonly shared: SharedArrayBuffer;
}

export interface LeaseKeeper {
  /** Resolves at the thread's first renewal. */
  readonly renewing: Promise<void>;
  /**
   * When the lease was last extended as far as this process knows (Date.now() of the sending): by a publish the main
   * thread recorded (`extended`) or by the thread's own renewal; 0 before either. A leader whose lease this has not
   * moved for a while renews it itself: the thread may not be up yet, may have died or its connection may be stuck.
   */
  extendedAt(): number;
  /** Resolves when the thread finds the lease held by another engine (it then renews nothing more). */
  readonly lost: Promise<void>;
  /** Records a lease extension the main thread sent (a publish), at `atMs` (Date.now()): the thread skips a renewal. */
  extended(atMs: number): void;
  /**
   * Records the leader's progress (a read of the log or a publish answered) at `atMs` (performance.now()): from the
   * first, none for stuckMs stops the renewals until the next.
   */
  progressed(atMs: number): void;
  /**
   * Ends the thread (before the lease is released: it must not renew what another engine may then take); called again,
   * the same ending.
   */
  stop(): Promise<void>;
}

/**
 * Starts the thread. It only renews: a lost lease it reports (`lost`), and the leader's publish finds it too (fenced);
 * the thread logs `leader_stalled` when it lets the lease lapse, and `log` gets `lease_keeper_failed` if it dies.
 */
export function startLeaseKeeper(
  data: Omit<LeaseKeeperData, "shared">,
  log: Logger,
  /** Longest time without the leader's progress (performance.now() ms) for which it still beats; default stallMs. */
  stuckMs = data.stallMs,
  /** Starts the thread (a test's stands in for one that fails). */
  start: (workerData: LeaseKeeperData) => Worker = (workerData) => startThread("engine-lease-keeper", workerData),
): LeaseKeeper {
  const shared = new SharedArrayBuffer(32);
  const words = new BigInt64Array(shared);
  // Once the leader reports progress (`progressed`, from when it is live), renewals stop with it too, not only with
  // its event loop: a main thread awaiting a dead connection is alive but keeps nothing moving. At once, by STUCK:
  // a heartbeat that merely stopped would be renewed on for stallMs more, past the stuck limit the leader goes by.
  let progressAt: number | undefined;
  const beat = () => {
    const stuck = progressAt !== undefined && performance.now() - progressAt > stuckMs;
    Atomics.store(words, STUCK, stuck ? 1n : 0n);
    Atomics.store(words, HEARTBEAT_AT, BigInt(monotonicMs()));
  };
  beat();
  // A tenth of the TTL: a stall shows as silence well before stallMs.
  const beating = setInterval(beat, Math.max(10, Math.floor(data.ttlMs / 10)));
  const worker = start({ ...data, shared });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  // A thread that failed renews nothing more: extendedAt stops moving and the leader's own timer renews. Said at error:
  // from then on a pause of the main thread longer than the TTL hands the lease to a standby, as the thread exists to
  // prevent.
  worker.on("error", (err) => log.error("lease_keeper_failed", { error: err }));
  let onLost = () => undefined as void;
  const lost = new Promise<void>((resolve) => (onLost = resolve));
  const renewing = new Promise<void>((resolve) =>
    worker.on("message", (message) => {
      if (message === "renewing") resolve();
      else if (message === "lost") onLost();
    }),
  );
  let stopped: Promise<void> | undefined;
  return {
    renewing,
    extendedAt: () => Math.max(Number(Atomics.load(words, EXTENDED_AT)), Number(Atomics.load(words, RENEWED_AT))),
    lost,
    extended: (atMs) => Atomics.store(words, EXTENDED_AT, BigInt(atMs)),
    progressed: (atMs) => (progressAt = atMs),
    stop: () => {
      clearInterval(beating);
      return (stopped ??= endThread(worker, exited, "stop"));
    },
  };
}
