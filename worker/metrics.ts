/**
 * The worker's Prometheus metrics, updated where the worker already counts for its worker_stats line: entries
 * acknowledged per batch, the group's backlog and the Postgres backlog at each report, and the time of each Postgres
 * insert; and the entries it refused (bad_output_entry), once each refusal is final (worker.ts, countRefused).
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface WorkerMetrics {
  handled(entries: number): void;
  /** The group's backlog as worker_stats reports it; undefined when it could not be read. */
  backlog(backlog: { lag: number | null; pending: number } | undefined): void;
  /** Entries the Postgres backlog owes (worker/postgres-backlog.ts), all workers', as worker_stats reports it. */
  postgresBacklog(entries: number): void;
  postgresWrite(seconds: number): void;
  /**
   * An entry refused as `bad_output_entry`, counted once its refusal is final (worker.ts, countRefused): a private
   * output's or another's, refused at decode or by Postgres.
   */
  badOutputEntry(kind: "private" | "public", reason: "decode" | "postgres"): void;
}

export function workerMetrics(registry: Registry): WorkerMetrics {
  const registers = [registry];
  const handled = new Counter({
    name: "worker_entries_handled_total",
    help: "Entries of engine:output this worker handled and acknowledged (read or claimed), those whose Postgres writes it left to the Postgres backlog included.",
    registers,
  });
  const lag = new Gauge({
    name: "worker_group_lag_entries",
    help: "Entries of engine:output not yet delivered to any worker of the group, as of the last worker_stats report (NaN before the first, or when Redis cannot tell).",
    registers,
  });
  const pending = new Gauge({
    name: "worker_group_pending_entries",
    help: "Entries delivered to the group's workers but not yet acknowledged, as of the last worker_stats report (NaN before the first).",
    registers,
  });
  const postgresBacklog = new Gauge({
    name: "worker_postgres_backlog_entries",
    help: "Entries of engine:output acknowledged while Postgres was down whose history and candles are not yet written, as of the last worker_stats report (NaN before the first). One figure for all the workers (each that knows something is owed reports it, the others 0): aggregate with max(), not sum(). An upper bound: an owed range counts its batch whole, entries another worker acknowledged included.",
    registers,
  });
  // Unknown until the first report, not 0.
  lag.set(Number.NaN);
  pending.set(Number.NaN);
  postgresBacklog.set(Number.NaN);
  const write = new Histogram({
    name: "worker_postgres_write_duration_seconds",
    help: "Time of one batch's Postgres writes, or of one page of the Postgres backlog's once Postgres is back: closed orders and spot orders inserted, entry orders and candles upserted.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const bad = new Counter({
    name: "worker_bad_output_entries_total",
    help: "Entries of engine:output refused as bad_output_entry, each counted once by the worker that acknowledged its batch (or, for Postgres, wrote its owed range): reason decode when it does not decode to an output the worker can apply (skipped whole), postgres when Postgres refused its history or candle with a data error (only those left out); kind private for a private output's (by its type), public for any other. Watch it: each needs an operator.",
    labelNames: ["kind", "reason"] as const,
    registers,
  });
  // Every series from the start, at 0, so that an alert on an increase sees the first one.
  for (const kind of ["private", "public"] as const)
    for (const reason of ["decode", "postgres"] as const) bad.inc({ kind, reason }, 0);
  return {
    handled: (entries) => handled.inc(entries),
    badOutputEntry: (kind, reason) => bad.inc({ kind, reason }),
    backlog(b) {
      lag.set(b === undefined || b.lag === null ? Number.NaN : b.lag);
      pending.set(b === undefined ? Number.NaN : b.pending);
    },
    postgresBacklog: (entries) => postgresBacklog.set(entries),
    postgresWrite: (seconds) => write.observe(seconds),
  };
}
