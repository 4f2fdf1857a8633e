/**
 * Keeps the leader's lease from a worker thread (lease-keeper-thread.ts), so a pause of the main thread (a major
 * GC of a large state, a CPU-starved machine) does not let it lapse and hand the log to a standby that would face
 * the same load: the thread renews it every fifth of the TTL while the main thread's heartbeat is fresh. A main
 * thread stuck longer than `stallMs` gets no renewal, so the lease lapses and a standby takes over; a process that
 * died or is stopped (SIGSTOP stops every thread) renews nothing either. Fencing is unchanged: every publish still
 * checks the lease value atomically, so a deposed leader writes nothing.
 */
import type { Worker } from "node:worker_threads";
import { endThread, startThread } from "../../platform/threads.ts";

export interface LeaseKeeperData {
  readonly redisUrl: string;
  readonly prefix: string;
  /** The lease value this engine holds ("<holder>:<token>"). */
  readonly value: string;
  readonly ttlMs: number;
  /** Longest main-thread silence for which the lease is still renewed. */
  readonly stallMs: number;
  /** The main thread's last heartbeat (Date.now()), one BigInt64 word. */
  readonly heartbeat: SharedArrayBuffer;
}

export interface LeaseKeeper {
  /** Resolves at the thread's first renewal (the leader does not wait for it: its own timer renews meanwhile). */
  readonly renewing: Promise<void>;
  /**
   * Ends the thread (before the lease is released: it must not renew what another engine may then take); called again,
   * the same ending.
   */
  stop(): Promise<void>;
}

/**
 * Starts the thread. It only renews: a lease found lost is the leader's own renewal's and publish's to notice (they
 * stop it), and the thread logs `leader_stalled` when it lets the lease lapse.
 */
export function startLeaseKeeper(data: Omit<LeaseKeeperData, "heartbeat">): LeaseKeeper {
  const heartbeat = new SharedArrayBuffer(8);
  const words = new BigInt64Array(heartbeat);
  const beat = () => Atomics.store(words, 0, BigInt(Date.now()));
  beat();
  // A tenth of the TTL: a stall shows as silence well before stallMs.
  const beating = setInterval(beat, Math.max(10, Math.floor(data.ttlMs / 10)));
  const worker: Worker = startThread("engine-lease-keeper", { ...data, heartbeat } satisfies LeaseKeeperData);
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  // A keeper that failed leaves the renewals to the leader's own timer, as before it had one.
  worker.on("error", () => undefined);
  const renewing = new Promise<void>((resolve) => worker.once("message", () => resolve()));
  let stopped: Promise<void> | undefined;
  return {
    renewing,
    stop: () => {
      clearInterval(beating);
      return (stopped ??= endThread(worker, exited, "stop"));
    },
  };
}
