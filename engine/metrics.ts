/**
 * The engine's Prometheus metrics. The leader updates them once per batch with plain numbers (no labels looked up,
 * nothing allocated per entry), at the same points where it logs engine_stats and replay_done (the lag also at
 * replay_start and replay_progress); a standby sets only the lag, as often; the snapshot figures come from the
 * follower thread's snapshot_saved message. What can be read at scrape time (the lease) is read then.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** What the leader reports (runner/leader.ts; a standby, only `lag`); every method is cheap enough per batch. */
export interface LeaderMetrics {
  /** A batch of `entries` applied, its outputs encoded, in `seconds` (not reading it or waiting on its publish). */
  batchApplied(entries: number, seconds: number): void;
  /** Trades open now (kept by the leader from its outputs). */
  openTrades(count: number): void;
  /** Log time between the stream's newest entry and the last one applied (undefined: the head was not readable). */
  lag(ms: number | undefined): void;
  /** The replay after a restore is done: `ms` to apply `entries`. */
  replayed(entries: number, ms: number): void;
  /** The state's count of price updates ignored since the log began (kept in the snapshot, so it survives restarts). */
  ignoredPriceUpdates(total: number): void;
}

/** What the follower thread posts after each saved snapshot (runner/follower.ts). */
export interface SnapshotFigures {
  readonly bytes: number;
  readonly encodeMs: number;
  readonly hashMs: number;
  readonly writeMs: number;
}

export interface EngineMetrics extends LeaderMetrics {
  /** A snapshot restore (at start, or a restore_again) took `ms`: the gauge shows the last one. */
  restored(ms: number): void;
  /** This engine, a hot standby, took the lease over. */
  tookOver(): void;
  snapshotSaved(figures: SnapshotFigures): void;
  /** This engine, leading, started its snapshotter: the snapshot age counts from now until it reports. */
  snapshotterStarted(): void;
  /** The snapshotter found Postgres current (a save, or nothing new to save). */
  snapshotCurrent(): void;
  /** A save or restore of the snapshotter failed; it tries again. */
  snapshotFailed(): void;
}

/** Snapshot phases: a full snapshot of a large state takes seconds. */
const SNAPSHOT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** A batch of one order applies in microseconds; a replay batch of thousands in milliseconds. */
const BATCH_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

export function engineMetrics(registry: Registry, lease: () => string | undefined): EngineMetrics {
  const registers = [registry];
  const applied = new Counter({
    name: "engine_entries_applied_total",
    help: "Entries of engine:input applied by this engine as leader (replay and live).",
    registers,
  });
  const batch = new Histogram({
    name: "engine_apply_batch_duration_seconds",
    help: "Time to apply one batch of entries read from engine:input and encode its outputs (not reading it or waiting on its publish).",
    buckets: BATCH_BUCKETS,
    registers,
  });
  const open = new Gauge({ name: "engine_open_trades", help: "Trades open in the engine's state.", registers });
  const lag = new Gauge({
    name: "engine_lag_seconds",
    help: "Log time between the newest entry of engine:input and the last one applied, set every ENGINE_STATS_EVERY_MS by the leader and by a standby, and during a leader's replay at its start, each second and its end; NaN before the first time or when the head could not be read.",
    registers,
  });
  lag.set(Number.NaN); // unknown until the first report, not 0
  const recovery = new Gauge({
    name: "engine_recovery_duration_seconds",
    help: "The last of each recovery phase of this process: restore (a snapshot's load and decode, at start or again after a gap in the log) and replay (the log after the state, as this engine began to lead). Waiting as a standby is not counted.",
    labelNames: ["phase"] as const,
    registers,
  });
  const replayedEntries = new Gauge({
    name: "engine_recovery_replayed_entries",
    help: "Entries replayed after the snapshot in the last recovery.",
    registers,
  });
  const snapshot = new Histogram({
    name: "engine_snapshot_duration_seconds",
    help: "Snapshots saved by the follower thread, by phase: encode, hash, write (to Postgres).",
    labelNames: ["phase"] as const,
    buckets: SNAPSHOT_BUCKETS,
    registers,
  });
  const snapshotBytes = new Gauge({
    name: "engine_snapshot_size_bytes",
    help: "Size of the last snapshot saved.",
    registers,
  });
  const snapshotAt = new Gauge({
    name: "engine_snapshot_last_saved_timestamp_seconds",
    help: "When the last snapshot was saved (Unix time).",
    registers,
  });
  new Gauge({
    name: "engine_lease_held",
    help: "1 while this engine holds the engine lease (it leads), 0 while it restores or follows as a hot standby.",
    registers,
    collect() {
      this.set(lease() === undefined ? 0 : 1);
    },
  });
  new Gauge({
    name: "engine_lease_fencing_token",
    help: "The fencing token of the lease this engine holds (0 when it holds none).",
    registers,
    collect() {
      const token = Number(lease()?.split(":").pop());
      this.set(Number.isSafeInteger(token) ? token : 0);
    },
  });
  // When the snapshotter of this engine, leading, last found Postgres current (or started); undefined before.
  let snapshotCurrentMs: number | undefined;
  new Gauge({
    name: "engine_snapshot_age_seconds",
    help: "On a leader: seconds since its snapshotter last found the newest state saved in Postgres (a snapshot saved, or nothing new to save), counted from its start before that; it grows while saves fail. NaN on an engine that does not lead, and on a leader until its snapshotter starts, after its replay.",
    registers,
    collect() {
      this.set(
        lease() === undefined || snapshotCurrentMs === undefined ? Number.NaN : (Date.now() - snapshotCurrentMs) / 1000,
      );
    },
  });
  const snapshotFailures = new Counter({
    name: "engine_snapshot_failures_total",
    help: "Snapshot saves and snapshotter restores that failed (Postgres down or unreachable) and are tried again.",
    registers,
  });
  const takeovers = new Counter({
    name: "engine_takeovers_total",
    help: "Times this engine, as a hot standby, took the lease over from a leader that died, stalled or handed over.",
    registers,
  });
  const ignoredPrices = new Counter({
    name: "engine_price_updates_ignored_total",
    help: "Price updates the engine's state has ignored since the log began: malformed, crossed, out of range, for an unknown market, from a clock more than staleQuoteMs ahead, or more than staleQuoteMs behind the market's newest evidence. The total is kept in the state, so a restarted engine starts from it; set by the leader at each engine_stats report.",
    registers,
  });
  let ignoredReported = 0;
  const encode = snapshot.labels("encode");
  const hash = snapshot.labels("hash");
  const write = snapshot.labels("write");
  return {
    batchApplied(entries, seconds) {
      applied.inc(entries);
      batch.observe(seconds);
    },
    openTrades: (count) => open.set(count),
    lag: (ms) => lag.set(ms === undefined ? Number.NaN : ms / 1000),
    restored: (ms) => recovery.set({ phase: "restore" }, ms / 1000),
    tookOver: () => takeovers.inc(),
    ignoredPriceUpdates(total) {
      if (total > ignoredReported) ignoredPrices.inc(total - ignoredReported);
      ignoredReported = Math.max(ignoredReported, total);
    },
    replayed(entries, ms) {
      recovery.set({ phase: "replay" }, ms / 1000);
      replayedEntries.set(entries);
    },
    snapshotSaved(f) {
      encode.observe(f.encodeMs / 1000);
      hash.observe(f.hashMs / 1000);
      write.observe(f.writeMs / 1000);
      snapshotBytes.set(f.bytes);
      snapshotAt.set(Date.now() / 1000);
      snapshotCurrentMs = Date.now();
    },
    snapshotterStarted: () => (snapshotCurrentMs = Date.now()),
    snapshotCurrent: () => (snapshotCurrentMs = Date.now()),
    snapshotFailed: () => snapshotFailures.inc(),
  };
}
