/**
 * A run of failures of something the engine retries through a Postgres outage (a snapshot save, the snapshotter's
 * restore, the first connection at start): the first failure of a run is logged with its error and what kind of
 * Postgres error it is (`postgres`: `outage`, `stalled`, `refused`, `conflict` or `other`, as
 * platform/postgres-errors.ts decides it for every process), the next ones only counted, and the success that ends
 * the run is logged with how many there were and how long it lasted, so an outage reads as two lines however long it
 * lasts. The pause before the next attempt doubles from 1 s to 30 s, as npm start's restarts do
 * (platform/restart-backoff.ts).
 *
 * Every kind is tried again, on purpose: the snapshotter must never stop the leader trading, and an engine starting
 * has nothing to restore from but Postgres (its caller throws a refusal there). A failure of another kind than the
 * run's so far is logged again, with the failures counted until then: an outage that ends on a Postgres that fails
 * the save some other way (a dropped table, a permission refused) is no longer one that waiting mends, and says so.
 */
import type { Fields, Logger } from "../../platform/log.ts";
import { classifyPostgresError, type PostgresErrorKind } from "../../platform/postgres-errors.ts";
import { backoffMs } from "../../platform/restart-backoff.ts";

export class FailureRun {
  private failures = 0;
  private sinceMs = 0;
  private kind: PostgresErrorKind | undefined;

  constructor(
    private readonly log: Logger,
    private readonly events: { readonly failed: string; readonly recovered?: string },
    private readonly fields: Fields = {},
  ) {}

  /**
   * Counts a failure (logging the first of a run, and the first of each other kind); returns how long to wait before
   * the next attempt.
   */
  failed(err: unknown, maxWaitMs = Number.POSITIVE_INFINITY, fields: Fields = {}): number {
    this.failures++;
    const retryInMs = Math.min(backoffMs(this.failures), maxWaitMs);
    const postgres = classifyPostgresError(err);
    if (this.failures === 1) this.sinceMs = Date.now();
    if (postgres !== this.kind) {
      const before = this.failures === 1 ? {} : { failures: this.failures - 1 };
      this.log.error(this.events.failed, { ...this.fields, ...fields, error: err, postgres, retryInMs, ...before });
      this.kind = postgres;
    }
    return retryInMs;
  }

  /** Ends a run of failures, if one is under way. */
  succeeded(fields: Fields = {}): void {
    if (this.failures === 0) return;
    if (this.events.recovered !== undefined) {
      this.log.info(this.events.recovered, {
        ...this.fields,
        ...fields,
        failures: this.failures,
        failingForMs: Date.now() - this.sinceMs,
      });
    }
    this.failures = 0;
    this.kind = undefined;
  }
}
