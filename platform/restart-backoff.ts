/**
 * The crash-loop rule for what `npm start` restarts when it dies: its components (supervisor.ts) and its own Redis
 * and Postgres (watched-server.ts).
 * - A run that served `stableMs` (10 s; for a component, from its ready event) is restarted at once: waiting only
 *   leaves a gap (the engine without a standby, the components without their Redis).
 * - A run that ended sooner, or a start that failed, is a failure: the next start waits a backoff, 1 s doubling to
 *   30 s for each failure in a row, and from the second in a row it is a crash loop, worth a warning. Restarting at
 *   once what dies as it starts (or cannot start: its port taken, its data broken) would only spin and fill the log.
 * The count starts over after a run that served `stableMs`.
 */
export const STABLE_MS = 10_000;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;

/** How long to wait before starting again what failed `failures` times in a row. */
export function backoffMs(failures: number): number {
  return Math.min(FIRST_BACKOFF_MS * 2 ** Math.max(failures - 1, 0), MAX_BACKOFF_MS);
}

/** When to start it again, after a run ended or a start failed. */
export interface Restart {
  readonly restartInMs: number;
  /** Failures in a row, this one included; 0 after a run that served. */
  readonly failures: number;
  /** The second failure in a row or later. */
  readonly crashLoop: boolean;
}

/** The rule for one thing restarted (a component's process, a server): its failures in a row. */
export class RestartBackoff {
  private failures = 0;

  constructor(private readonly stableMs = STABLE_MS) {}

  /** A run ended after serving `servedMs`, or never served (it was never ready, or could not be started): undefined. */
  ended(servedMs: number | undefined): Restart {
    if (servedMs !== undefined && servedMs >= this.stableMs) {
      this.failures = 0;
      return { restartInMs: 0, failures: 0, crashLoop: false };
    }
    this.failures++;
    return { restartInMs: backoffMs(this.failures), failures: this.failures, crashLoop: this.failures >= 2 };
  }
}
