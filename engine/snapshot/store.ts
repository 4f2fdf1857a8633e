/**
 * Where snapshots are kept: the interface the engine's runner uses (follower, restore, snapshot loader), its
 * types, and an in-memory implementation for tests that need no Postgres. The production store is
 * PostgresSnapshotStore (postgres-store.ts).
 *
 * Every store keeps these promises:
 * - the head never moves back: a save whose last input id is not after the saved one is skipped;
 * - a save replaces the latest snapshot whole or not at all, and keeps the one it replaces as the previous: when the
 *   latest turns out unusable, recovery starts from the previous one instead (the log is kept back to it). A save of
 *   a state restored that way (SaveOptions.pastUnusable) deletes the unusable latest instead, and keeps the previous;
 * - a load resolves only with bytes that match the head's length and SHA-256, else rejects with
 *   SnapshotIntegrityError.
 */
import { createHash } from "node:crypto";
import { isAfterId } from "../core/step.ts";

export interface SnapshotHead {
  /** Snapshot encoding version (codec.ts SNAPSHOT_VERSION). */
  version: number;
  shard: number;
  /** Id of the last engine:input entry applied; recovery replays strictly after it. */
  lastInputId: string;
  /** hashSnapshot(bytes), hex. */
  stateHash: string;
  bytes: number;
  generation: number;
  chunks: number;
  /** ISO time the state was captured. */
  takenAt: string;
}

/** What the caller knows about a snapshot; the store fills in its size and where it put it. */
export type SnapshotHeadInput = Omit<SnapshotHead, "bytes" | "generation" | "chunks">;

/** The stored snapshot does not match its head: recovery must not start from it. */
export class SnapshotIntegrityError extends Error {
  override name = "SnapshotIntegrityError";

  constructor(
    message: string,
    /** The generation found unusable, when its head could be read. */
    readonly generation?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Which snapshot to read: the latest saved, or the one it replaced. */
export type SnapshotChoice = "latest" | "previous";

/** A snapshot load that got no answer (or no byte) for too long: nothing is known about the snapshot itself. */
export class SnapshotLoadStalledError extends Error {
  override name = "SnapshotLoadStalledError";
}

/** Where `stream` puts a snapshot's bytes. */
export interface SnapshotSink {
  /** Called once, before any byte: the buffer to fill, `head.bytes` long. */
  open(head: SnapshotHead): Uint8Array;
  /** The first `filled` bytes of the buffer are there. */
  progress(filled: number): void;
}

export interface SnapshotSave {
  writeMs: number;
  /** The saved head: the new one, or when skipped the newer one already there. */
  head: SnapshotHead;
  skipped: boolean;
  /** The generation of the unusable latest this save deleted (SaveOptions.pastUnusable), if it did. */
  deletedUnusable?: number | undefined;
}

export interface SaveOptions {
  /**
   * The state saved was restored past the unusable latest snapshot `generation`: from the previous one
   * (`restoredFrom`), or fresh (null) when there was none. While that one is still the head (and its previous still
   * `restoredFrom`), the save deletes it and keeps `restoredFrom` as the previous. Kept as the previous, it would
   * leave one usable snapshot until the save after, and recovery nothing to fall back on should the new latest prove
   * unusable too.
   */
  readonly pastUnusable?: UnusableLatest | undefined;
}

/** A latest snapshot a restore passed over, and what it restored from instead (SaveOptions.pastUnusable). */
export interface UnusableLatest {
  readonly generation: number;
  readonly restoredFrom: number | null;
}

export interface SnapshotStore {
  /**
   * Stores `bytes` as the new snapshot. `input.stateHash` must be hashSnapshot(bytes): it is not recomputed (a
   * hash of tens of MB would block the caller's event loop); a wrong one makes the next load fail. The bytes are
   * only read until the returned promise settles, so they may be a view of a buffer that is reused afterwards.
   */
  save(bytes: Uint8Array, input: SnapshotHeadInput, options?: SaveOptions): Promise<SnapshotSave>;
  /** The latest snapshot (or the previous), verified against its head; null when there is none. */
  load(which?: SnapshotChoice): Promise<{ bytes: Uint8Array; head: SnapshotHead } | null>;
  /** The latest snapshot's head as saved, its bytes neither read nor checked; null when there is none. */
  latestHead(): Promise<SnapshotHead | null>;
  /**
   * The latest snapshot (or the previous) into the sink's buffer, piece by piece, so a caller can decode the start
   * while the rest is still coming. Resolves with the head once every byte is there and matches it (null when there
   * is none); rejects with SnapshotIntegrityError when they do not: bytes the sink saw before that are only
   * trustworthy once this resolves.
   */
  stream(sink: SnapshotSink, which?: SnapshotChoice): Promise<SnapshotHead | null>;
}

/** A store in this process's memory: for tests, with the same promises as the Postgres one. */
export class MemorySnapshotStore implements SnapshotStore {
  private saved: { bytes: Uint8Array; head: SnapshotHead } | undefined;
  private previous: { bytes: Uint8Array; head: SnapshotHead } | undefined;

  constructor(private readonly chunkBytes = 4 * 1024 * 1024) {}

  save(bytes: Uint8Array, input: SnapshotHeadInput, options: SaveOptions = {}): Promise<SnapshotSave> {
    const started = performance.now();
    const current = this.saved?.head;
    if (current !== undefined && !isAfterId(input.lastInputId, current.lastInputId))
      return Promise.resolve({ writeMs: performance.now() - started, head: current, skipped: true });
    const head: SnapshotHead = {
      ...input,
      bytes: bytes.length,
      generation: (current?.generation ?? 0) + 1,
      chunks: Math.ceil(bytes.length / this.chunkBytes),
    };
    const unusable = options.pastUnusable;
    const deletedUnusable =
      current !== undefined &&
      current.generation === unusable?.generation &&
      (this.previous?.head.generation ?? null) === unusable.restoredFrom
        ? current.generation
        : undefined;
    if (deletedUnusable === undefined) this.previous = this.saved;
    this.saved = { bytes: bytes.slice(), head };
    return Promise.resolve({ writeMs: performance.now() - started, head, skipped: false, deletedUnusable });
  }

  load(which: SnapshotChoice = "latest"): Promise<{ bytes: Uint8Array; head: SnapshotHead } | null> {
    return loadWhole(this, which);
  }

  latestHead(): Promise<SnapshotHead | null> {
    return Promise.resolve(this.saved?.head ?? null);
  }

  /** Overwrites a byte of a stored snapshot, as a disk or a hand might: for tests of what a load then refuses. */
  corrupt(which: SnapshotChoice, at: number): void {
    const saved = which === "latest" ? this.saved : this.previous;
    if (saved === undefined || at >= saved.bytes.length) throw new Error(`no byte ${at} in the ${which} snapshot`);
    saved.bytes[at] = saved.bytes[at]! ^ 0xff;
  }

  async stream(sink: SnapshotSink, which: SnapshotChoice = "latest"): Promise<SnapshotHead | null> {
    const saved = which === "latest" ? this.saved : this.previous;
    if (saved === undefined) return null;
    const { head, bytes } = saved;
    const target = sink.open(head);
    const hash = createHash("sha256");
    for (let at = 0; at < bytes.length;) {
      const piece = bytes.subarray(at, Math.min(at + this.chunkBytes, bytes.length));
      target.set(piece, at);
      hash.update(piece);
      at += piece.length;
      sink.progress(at);
      await Promise.resolve();
    }
    const digest = hash.digest("hex");
    if (digest !== head.stateHash)
      throw new SnapshotIntegrityError(
        `snapshot generation ${head.generation} is corrupt: SHA-256 ${digest}, head says ${head.stateHash}`,
        head.generation,
      );
    return head;
  }
}

/** `load` for a store that streams: the whole snapshot into one buffer of its size. */
export async function loadWhole(
  store: SnapshotStore,
  which: SnapshotChoice = "latest",
): Promise<{ bytes: Uint8Array; head: SnapshotHead } | null> {
  let bytes = new Uint8Array(0);
  const head = await store.stream({ open: (h) => (bytes = new Uint8Array(h.bytes)), progress: () => undefined }, which);
  return head === null ? null : { bytes, head };
}
