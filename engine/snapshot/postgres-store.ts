/**
 * Engine snapshots in Postgres. The head is the seed's single-row `engine_snapshots` table (its JSONB names the
 * last input applied, the state hash, the size and where the body is); the body — the binary encoding, ~80 MB at
 * 1M open trades and 1M remembered requests, far beyond what one JSONB value holds — lives in
 * `engine_snapshot_chunks` as 4 MiB chunks under a generation number, each stored as base64 text
 * (migrations/006: Postgres sends text as it is stored).
 *
 * Atomicity: a save writes the new generation's chunks, moves the head to it and deletes older generations in ONE
 * transaction, so after a crash at any point the head names a complete snapshot: the previous one or the new one.
 * Its generation is reserved first, in a transaction of its own under the save lock (RESERVED_IDX); then the chunks
 * go up without the lock, which is taken again only to move the head and delete: a writer frozen mid-upload holds up
 * no other save. Deletes see committed rows only, so no save deletes another's chunks while they upload.
 * The generation it replaces stays, named by the head's `previous`, for recovery to fall back on when the latest
 * proves unusable (a chunk damaged at rest, a snapshot this engine cannot decode): two generations are stored. (The
 * first save of a state restored past an unusable latest deletes that one instead: SaveOptions.pastUnusable.)
 * A save has a deadline (saveTimeoutMs): one that Postgres stops answering mid-way fails then, its connection
 * destroyed, and rolls back as any failed save does.
 * A load reads the head and its chunks in one repeatable-read transaction, so a save committing meanwhile cannot
 * pull the chunks from under it, and it checks the length and SHA-256 against the head before it resolves. It can
 * stream: chunks land in the caller's buffer one by one, so recovery decodes while the rest is still coming.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { TransactionTimeoutError, type Postgres, type Queryable } from "../../platform/postgres.ts";
import { isAfterId } from "../core/step.ts";
import { Base64Writer } from "./base64.ts";
import {
  loadWhole,
  SnapshotIntegrityError,
  SnapshotLoadStalledError,
  type SnapshotChoice,
  type SnapshotHead,
  type SnapshotHeadInput,
  type SaveOptions,
  type SnapshotSave,
  type SnapshotSink,
  type SnapshotStore,
} from "./store.ts";

export const SNAPSHOT_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * How long a save may take, lock wait included, before it is given up (SNAPSHOT_SAVE_TIMEOUT_MS's default): a
 * 1M-trade snapshot (~77 MiB) writes in about a second here (docs/benchmarks.md), and the full book's (141 MB) in a
 * few, so a minute leaves room for a slow network or a busy Postgres and still ends a save that is stuck.
 */
export const DEFAULT_SAVE_TIMEOUT_MS = 60_000;

/**
 * Serializes savers (a fenced-out engine finishing a save, a test) where they take a generation, and where they read
 * and move the head. The release before this store held it for the whole save, and takes MAX()+1 under it.
 */
const SAVE_LOCK_KEY = "7243019188271345002";

const headSchema = z.object({
  version: z.number().int().nonnegative(),
  shard: z.number().int().nonnegative(),
  lastInputId: z.string(),
  stateHash: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  generation: z.number().int().positive(),
  chunks: z.number().int().nonnegative(),
  takenAt: z.string(),
});
/** The row: the latest head, and the one it replaced (whose chunks are kept) when there was one. */
const rowSchema = headSchema.extend({ previous: headSchema.optional() });

export class PostgresSnapshotStore implements SnapshotStore {
  private readonly chunkBytes: number;
  /** One chunk's base64, reused by every save (made on the first). */
  private base64: Base64Writer | undefined;

  private readonly idleTimeoutMs: number;
  private readonly lockTimeoutMs: number;
  private readonly stallMs: number;
  private readonly saveTimeoutMs: number;

  constructor(
    private readonly db: Postgres,
    options: {
      chunkBytes?: number;
      /** A save's transaction idle this long between statements (its writer frozen) is ended by Postgres. */
      idleTimeoutMs?: number;
      /** How long a save waits for the save lock before it fails. */
      lockTimeoutMs?: number;
      /** A load with no answer from Postgres for this long fails (default 30 s). */
      stallMs?: number;
      /**
       * A save not committed this long after it began fails with TransactionTimeoutError, its connection destroyed
       * (default SNAPSHOT_SAVE_TIMEOUT_MS's, 60 s): a connection that stops answering mid-save would otherwise hold
       * the snapshotter, and the log's trim, for ever.
       */
      saveTimeoutMs?: number;
    } = {},
  ) {
    this.chunkBytes = options.chunkBytes ?? SNAPSHOT_CHUNK_BYTES;
    if (!Number.isInteger(this.chunkBytes) || this.chunkBytes < 1) throw new Error(`bad chunk size ${this.chunkBytes}`);
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 120_000;
    this.stallMs = options.stallMs ?? 30_000;
    this.saveTimeoutMs = options.saveTimeoutMs ?? DEFAULT_SAVE_TIMEOUT_MS;
    for (const ms of [this.idleTimeoutMs, this.lockTimeoutMs, this.stallMs, this.saveTimeoutMs])
      if (!Number.isInteger(ms) || ms < 1) throw new Error(`bad timeout ${ms}`);
  }

  async save(bytes: Uint8Array, input: SnapshotHeadInput, options: SaveOptions = {}): Promise<SnapshotSave> {
    try {
      return await this.saveWithin(bytes, input, options);
    } catch (err) {
      // Its two transactions share the one deadline: said as the save's, not as what was left of it for the second.
      if (!(err instanceof TransactionTimeoutError)) throw err;
      throw new TransactionTimeoutError(
        `no commit within ${this.saveTimeoutMs} ms: the transaction was abandoned and its connection closed`,
        { cause: err },
      );
    }
  }

  private async saveWithin(bytes: Uint8Array, input: SnapshotHeadInput, options: SaveOptions): Promise<SnapshotSave> {
    const started = performance.now();
    const chunks = Math.ceil(bytes.length / this.chunkBytes);
    let skipped = false;
    let deletedUnusable: number | undefined;
    // The head never moves back: a snapshot no newer than the saved one is dropped, before anything is uploaded. (A
    // leader that lost its lease may still try to save; its successor may already have trimmed the log past that
    // older cursor.) Checked again under the lock: another save may move the head meanwhile.
    const reserved = await this.db.transaction(async (tx) => {
      await this.limitWaits(tx);
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [SAVE_LOCK_KEY]);
      const { saved, replaced } = await readHead(tx);
      if (saved !== undefined && !isAfterId(input.lastInputId, saved.lastInputId)) return { skip: replaced ?? saved };
      return { generation: await reserveGeneration(tx) };
    }, this.deadlineFrom(started));
    if ("skip" in reserved) {
      return { writeMs: performance.now() - started, head: reserved.skip, skipped: true, deletedUnusable };
    }
    const generation = reserved.generation;
    const head = await this.db.transaction(async (tx) => {
      await this.limitWaits(tx);
      // The chunks go up without the save lock: a writer frozen part-way through a chunk (SIGSTOP, a stalled VM) is
      // in the middle of a message, where no Postgres timeout ends it, and would hold the lock until TCP gave up on
      // it (hours). Holding no lock, it blocks nobody: its rows are uncommitted, so no other save sees or deletes them,
      // and their generation is reserved.
      const base64 = (this.base64 ??= new Base64Writer(this.chunkBytes));
      for (let idx = 0; idx < chunks; idx++) {
        const start = idx * this.chunkBytes;
        const text = base64.encode(bytes.subarray(start, Math.min(start + this.chunkBytes, bytes.length)));
        // A Buffer parameter goes in binary format, which for text is its bytes as they are: the chunk's base64
        // never becomes a JavaScript string (base64.ts says why that matters). Each insert is awaited before the
        // buffer is reused.
        const data = Buffer.from(text.buffer, text.byteOffset, text.length);
        await tx.query("INSERT INTO engine_snapshot_chunks (generation, idx, data) VALUES ($1, $2, $3::text)", [
          generation,
          idx,
          data,
        ]);
      }
      // Then, one saver at a time, only what is quick: re-read the head, move it, delete old generations.
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [SAVE_LOCK_KEY]);
      const { saved, replaced } = await readHead(tx);
      if (saved !== undefined && !isAfterId(input.lastInputId, saved.lastInputId)) {
        skipped = true;
        await tx.query("DELETE FROM engine_snapshot_chunks WHERE generation = $1", [generation]);
        return replaced ?? saved;
      }
      // Past an unusable latest that is still the head, the one the state was restored from stays the previous.
      let previous = replaced;
      const unusable = options.pastUnusable;
      const row = rowSchema.safeParse(saved).data;
      if (
        replaced !== undefined &&
        replaced.generation === unusable?.generation &&
        (row?.previous?.generation ?? null) === unusable.restoredFrom
      ) {
        deletedUnusable = replaced.generation;
        previous = row?.previous;
      }
      const full: SnapshotHead = {
        version: input.version,
        shard: input.shard,
        lastInputId: input.lastInputId,
        stateHash: input.stateHash,
        bytes: bytes.length,
        generation,
        chunks,
        takenAt: input.takenAt,
      };
      await tx.query(
        `INSERT INTO engine_snapshots (id, snapshot_data, created_at) VALUES (1, $1::jsonb, NOW())
         ON CONFLICT (id) DO UPDATE SET snapshot_data = EXCLUDED.snapshot_data, created_at = EXCLUDED.created_at`,
        [JSON.stringify({ ...full, previous })],
      );
      // Committed rows only: another save's chunks, uploaded and not yet committed, are not seen, so not deleted
      // (that save keeps them once it moves the head, or drops them). Its reservation stays while it is newer than
      // this generation, so no save takes its generation meanwhile; older ones (this save's own, a failed save's)
      // go: this generation, now stored, keeps every later one above them.
      const kept = previous === undefined ? [generation] : [generation, previous.generation];
      await tx.query(
        `DELETE FROM engine_snapshot_chunks
          WHERE generation <> ALL($1::bigint[]) AND (idx <> ${RESERVED_IDX} OR generation <= $2)`,
        [kept, generation],
      );
      await tx.query(`DELETE FROM engine_snapshot_chunks WHERE generation = $1 AND idx = ${RESERVED_IDX}`, [
        generation,
      ]);
      return full;
    }, this.deadlineFrom(started));
    return { writeMs: performance.now() - started, head, skipped, deletedUnusable };
  }

  /**
   * Postgres ends a transaction idle idleTimeoutMs between statements (its writer frozen), and no save waits for the
   * lock longer than lockTimeoutMs nor than its own deadline, saveTimeoutMs, whichever is shorter: a save that deadline
   * ends is tried again.
   */
  private async limitWaits(tx: Queryable): Promise<void> {
    await tx.query(`SET LOCAL idle_in_transaction_session_timeout = ${this.idleTimeoutMs}`);
    await tx.query(`SET LOCAL lock_timeout = ${this.lockTimeoutMs}`);
  }

  /** What is left of a save's saveTimeoutMs, begun at `started`, for its next transaction. */
  private deadlineFrom(started: number): { timeoutMs: number } {
    return { timeoutMs: Math.max(1, Math.round(this.saveTimeoutMs - (performance.now() - started))) };
  }

  load(which: SnapshotChoice = "latest"): Promise<{ bytes: Uint8Array; head: SnapshotHead } | null> {
    return loadWhole(this, which);
  }

  async latestHead(): Promise<SnapshotHead | null> {
    const rows = await this.db.query<{ snapshot_data: unknown }>(
      "SELECT snapshot_data FROM engine_snapshots WHERE id = 1",
    );
    const row = rows.rows[0];
    if (row === undefined) return null;
    const parsed = headSchema.safeParse(row.snapshot_data);
    if (!parsed.success) {
      throw new SnapshotIntegrityError(`engine_snapshots head is not a chunked snapshot head: ${parsed.error.message}`);
    }
    return parsed.data;
  }

  /**
   * Chunk by chunk, each as it arrives from Postgres. Rejects with SnapshotLoadStalledError once `stallMs` pass
   * without an answer (a Postgres that stopped answering mid-load would otherwise hold recovery for ever); the
   * transaction is then abandoned, its connection destroyed (a snapshotter with one connection would otherwise have
   * none left to try again with), and writes nothing more to the sink.
   */
  async stream(sink: SnapshotSink, which: SnapshotChoice = "latest"): Promise<SnapshotHead | null> {
    let timer: NodeJS.Timeout | undefined;
    let stalled: SnapshotLoadStalledError | undefined;
    let giveUp: (err: Error) => void = () => undefined;
    const gaveUp = new Promise<never>((_, reject) => (giveUp = reject));
    const abandon = new AbortController();
    const answered = () => {
      if (stalled !== undefined) throw stalled;
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = new SnapshotLoadStalledError(`snapshot load stalled: no answer from Postgres for ${this.stallMs} ms`);
        giveUp(stalled);
        abandon.abort(stalled);
      }, this.stallMs);
    };
    answered();
    const reading = this.read(sink, which, answered, abandon.signal);
    reading.catch(() => undefined); // after a stall it fails unheard, its connection destroyed
    try {
      return await Promise.race([reading, gaveUp]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * `stream`'s transaction; `answered` is called on each answer from Postgres, and throws once the load stalled, when
   * `stalled` aborts too.
   */
  private read(
    sink: SnapshotSink,
    which: SnapshotChoice,
    answered: () => void,
    stalled: AbortSignal,
  ): Promise<SnapshotHead | null> {
    const abandon = { signal: stalled };
    return this.db.transaction(async (tx) => {
      await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      const headRows = await tx.query<{ snapshot_data: unknown }>(
        "SELECT snapshot_data FROM engine_snapshots WHERE id = 1",
      );
      answered();
      const row = headRows.rows[0];
      if (row === undefined) return null;
      const parsed = rowSchema.safeParse(row.snapshot_data);
      if (!parsed.success) {
        throw new SnapshotIntegrityError(
          `engine_snapshots head is not a chunked snapshot head: ${parsed.error.message}`,
        );
      }
      const { previous, ...latest } = parsed.data;
      const head = which === "latest" ? latest : previous;
      if (head === undefined) return null;
      // The sizes first (octet_length reads no chunk data), so a missing or short chunk fails before any byte moves.
      const layout = await tx.query<{ idx: number; size: number }>(
        "SELECT idx, octet_length(data) AS size FROM engine_snapshot_chunks WHERE generation = $1 ORDER BY idx",
        [head.generation],
      );
      answered();
      checkLayout(head, layout.rows);
      const target = sink.open(head);
      const bytes = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
      const hash = createHash("sha256");
      let next = 0;
      let at = 0;
      // A few chunks per fetch, each used as it arrives: Postgres sends the next ones while this one is decoded.
      const rows = tx.stream<{ idx: number; data: string }>(
        "SELECT idx, data FROM engine_snapshot_chunks WHERE generation = $1 ORDER BY idx",
        [head.generation],
        { rowsPerFetch: 2 },
      );
      for await (const { idx, data } of rows) {
        answered();
        const size = Buffer.byteLength(data, "base64");
        if (idx !== next || data.length !== layout.rows[idx]!.size || at + size > head.bytes) {
          throw new SnapshotIntegrityError(
            `snapshot generation ${head.generation} chunk ${next} changed while it was read`,
            head.generation,
          );
        }
        next++;
        // Decoded straight into the sink's buffer.
        bytes.write(data, at, size, "base64");
        hash.update(bytes.subarray(at, at + size));
        at += size;
        sink.progress(at);
      }
      if (at !== head.bytes)
        throw new SnapshotIntegrityError(
          `snapshot generation ${head.generation} changed while it was read`,
          head.generation,
        );
      const digest = hash.digest("hex");
      if (digest !== head.stateHash) {
        throw new SnapshotIntegrityError(
          `snapshot generation ${head.generation} is corrupt: SHA-256 ${digest}, head says ${head.stateHash}`,
          head.generation,
        );
      }
      return head;
    }, abandon);
  }
}

/**
 * A row of idx RESERVED_IDX (no data) marks a generation taken by a save whose chunks are still uploading: committed
 * before the upload, under the save lock, so every save after it (this release's, or the one before, which takes
 * MAX()+1 of what it sees under that lock) takes a greater one.
 */
const RESERVED_IDX = -1;

/** The next generation, reserved (the caller holds the save lock): after every one stored or named by the head. */
async function reserveGeneration(tx: Queryable): Promise<number> {
  const result = await tx.query<{ next: string }>(
    `INSERT INTO engine_snapshot_chunks (generation, idx, data)
     SELECT GREATEST(
       (SELECT MAX(generation) FROM engine_snapshot_chunks),
       (SELECT (snapshot_data->>'generation')::bigint FROM engine_snapshots WHERE id = 1
          AND jsonb_typeof(snapshot_data->'generation') = 'number'),
       0) + 1, ${RESERVED_IDX}, ''
     RETURNING generation::text AS next`,
  );
  return Number(result.rows[0]!.next);
}

/** The stored head row as it is, and the head a save replaces, parsed: without its own `previous`. */
async function readHead(
  tx: Queryable,
): Promise<{ saved: SnapshotHead | undefined; replaced: SnapshotHead | undefined }> {
  const current = await tx.query<{ snapshot_data: SnapshotHead }>(
    "SELECT snapshot_data FROM engine_snapshots WHERE id = 1",
  );
  const saved = current.rows[0]?.snapshot_data;
  // zod drops keys it does not know: `previous` goes.
  return { saved, replaced: headSchema.safeParse(saved).data };
}

function checkLayout(head: SnapshotHead, rows: readonly { idx: number; size: number }[]): void {
  const where = `snapshot generation ${head.generation}`;
  if (rows.length !== head.chunks)
    throw new SnapshotIntegrityError(`${where} has ${rows.length} chunks, head says ${head.chunks}`, head.generation);
  // Each chunk is base64 on its own: 4 characters per 3 bytes, the last group padded with up to two "=".
  let most = 0;
  rows.forEach((r, i) => {
    if (r.idx !== i) throw new SnapshotIntegrityError(`${where} is missing chunk ${i}`, head.generation);
    if (r.size % 4 !== 0)
      throw new SnapshotIntegrityError(`${where} chunk ${i} is not base64 (${r.size} characters)`, head.generation);
    most += (r.size / 4) * 3;
  });
  const least = most - 2 * rows.length;
  if (head.bytes < least || head.bytes > most) {
    throw new SnapshotIntegrityError(
      `${where} has ${least === most ? most : `${Math.max(0, least)} to ${most}`} bytes, head says ${head.bytes}`,
      head.generation,
    );
  }
}
