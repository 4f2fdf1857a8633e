// The Postgres snapshot store: chunked bodies under a single-row head, replaced atomically, verified on load.
import { randomBytes } from "node:crypto";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_MIGRATIONS_DIR, migrate } from "../../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { expectSavesPastUnusable } from "../testing/past-unusable.ts";
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_VERSION } from "./codec.ts";
import { hashSnapshot, stateHash } from "./hash.ts";
import {
  connectPostgres,
  TransactionTimeoutError,
  type Postgres,
  type Row,
  type Transaction,
} from "../../platform/postgres.ts";
import { startRedisProxy } from "../../platform/testing/redis-proxy.ts";
import { PostgresSnapshotStore, SNAPSHOT_CHUNK_BYTES } from "./postgres-store.ts";
import {
  SnapshotIntegrityError,
  SnapshotLoadStalledError,
  type SnapshotHead,
  type SnapshotHeadInput,
} from "./store.ts";

const MiB = 1024 * 1024;
let t: TestDatabase;
let store: PostgresSnapshotStore;
beforeAll(async () => {
  t = await createTestDatabase();
  await migrate(t.db, t.log);
  store = new PostgresSnapshotStore(t.db);
});
afterAll(async () => {
  await t?.drop();
});
beforeEach(async () => {
  await t.db.query("TRUNCATE engine_snapshots, engine_snapshot_chunks");
});

function headFor(bytes: Uint8Array, lastInputId = "1700000000000-0"): SnapshotHeadInput {
  return {
    version: SNAPSHOT_VERSION,
    shard: 0,
    lastInputId,
    stateHash: hashSnapshot(bytes),
    takenAt: new Date(0).toISOString(),
  };
}

/** The test database, each transaction's connection as `wrap` makes it of the real one. */
function withTransactions(wrap: (tx: Transaction) => Transaction): Postgres {
  return {
    ...t.db,
    query: (text, params) => t.db.query(text, params),
    close: () => t.db.close(),
    transaction: (fn, options) => t.db.transaction((tx) => fn(wrap(tx)), options),
  };
}

/** The stored chunks (not the rows that reserve a generation for a save under way: idx -1). */
async function chunkRows() {
  const r = await t.db.query<{ generation: string; idx: number; size: number }>(
    "SELECT generation::text, idx, length(decode(data, 'base64')) AS size FROM engine_snapshot_chunks WHERE idx >= 0 ORDER BY generation, idx",
  );
  return r.rows;
}

describe("PostgresSnapshotStore", () => {
  it("returns null when nothing was ever saved", async () => {
    expect(await store.load()).toBeNull();
  });

  it("round-trips a multi-chunk payload byte for byte", async () => {
    const bytes = new Uint8Array(randomBytes(9 * MiB));
    const { head } = await store.save(bytes, headFor(bytes, "1700000000123-4"));
    expect(head).toMatchObject({ bytes: 9 * MiB, chunks: 3, generation: 1, lastInputId: "1700000000123-4" });
    // 4 MiB + 4 MiB + 1 MiB.
    expect((await chunkRows()).map((r) => r.size)).toEqual([SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES, MiB]);

    const loaded = await store.load();
    expect(loaded?.head).toEqual(head);
    expect(Buffer.from(loaded!.bytes).equals(Buffer.from(bytes))).toBe(true);
  });

  it("stores a view into a larger buffer exactly (the engine's reused writer hands out views)", async () => {
    const backing = new Uint8Array(randomBytes(5 * MiB));
    const view = backing.subarray(1234, 1234 + 4 * MiB + 10);
    await store.save(view, headFor(view));
    const loaded = await store.load();
    expect(Buffer.from(loaded!.bytes).equals(Buffer.from(view))).toBe(true);
  });

  it("replaces the latest snapshot, keeping the one it replaced as the previous and deleting older ones", async () => {
    const first = new Uint8Array(randomBytes(9 * MiB));
    const second = new Uint8Array(randomBytes(5 * MiB));
    const third = new Uint8Array(randomBytes(3));
    await store.save(first, headFor(first, "1-0"));
    expect(await store.load("previous")).toBeNull();
    const { head } = await store.save(second, headFor(second, "2-0"));
    expect(head.generation).toBe(2);
    expect((await chunkRows()).map((r) => [r.generation, r.idx])).toEqual([
      ["1", 0],
      ["1", 1],
      ["1", 2],
      ["2", 0],
      ["2", 1],
    ]);
    const loaded = await store.load();
    expect(loaded?.head).toEqual(head);
    expect(Buffer.from(loaded!.bytes).equals(Buffer.from(second))).toBe(true);
    const previous = await store.load("previous");
    expect(previous?.head).toMatchObject({ generation: 1, lastInputId: "1-0", chunks: 3 });
    // A save no newer is skipped and answers with the saved head as it is, without the row's `previous`.
    const late = await store.save(first, headFor(first, "1-5"));
    expect(late.skipped).toBe(true);
    expect(late.head).toEqual(head);
    expect(Buffer.from(previous!.bytes).equals(Buffer.from(first))).toBe(true);

    await store.save(third, headFor(third, "3-0"));
    expect(await chunkRows()).toEqual([
      { generation: "2", idx: 0, size: SNAPSHOT_CHUNK_BYTES },
      { generation: "2", idx: 1, size: MiB },
      { generation: "3", idx: 0, size: 3 },
    ]);
    expect((await store.load("previous"))?.head).toMatchObject({ generation: 2, lastInputId: "2-0" });
    const heads = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM engine_snapshots");
    expect(heads.rows[0]?.n).toBe(1);
  });

  it("loads the previous snapshot when the latest is corrupt, and checks it just as strictly", async () => {
    const first = new Uint8Array(randomBytes(5 * MiB));
    const second = new Uint8Array(randomBytes(5 * MiB));
    await store.save(first, headFor(first, "1-0"));
    await store.save(second, headFor(second, "2-0"));
    await t.db.query(`UPDATE engine_snapshot_chunks SET data = translate(encode(set_byte(decode(data, 'base64'), 7,
      (get_byte(decode(data, 'base64'), 7) + 1) % 256), 'base64'), E'\\n', '') WHERE generation = 2 AND idx = 0`);
    await expect(store.load()).rejects.toThrow(/generation 2 is corrupt/);
    expect(Buffer.from((await store.load("previous"))!.bytes).equals(Buffer.from(first))).toBe(true);
    await t.db.query("DELETE FROM engine_snapshot_chunks WHERE generation = 1 AND idx = 1");
    await expect(store.load("previous")).rejects.toThrow("snapshot generation 1 has 1 chunks, head says 2");
  });

  it("has no previous after a head written before it kept one, and keeps that head's chunks on the next save", async () => {
    const first = new Uint8Array(randomBytes(1000));
    await store.save(first, headFor(first, "1-0"));
    // As a store that kept only the latest left it: the head without `previous`.
    await t.db.query("UPDATE engine_snapshots SET snapshot_data = snapshot_data - 'previous'");
    expect(await store.load("previous")).toBeNull();
    const second = new Uint8Array(randomBytes(1000));
    await store.save(second, headFor(second, "2-0"));
    expect(Buffer.from((await store.load("previous"))!.bytes).equals(Buffer.from(first))).toBe(true);
  });

  it("deletes an unusable latest on the first save past it, keeping the one the state was restored from", async () => {
    await expectSavesPastUnusable(store, async () => [
      ...new Set((await chunkRows()).map((r) => Number(r.generation))),
    ]);
  });

  it("streams chunk by chunk into the sink's buffer, telling how much is there after each", async () => {
    const bytes = new Uint8Array(randomBytes(9 * MiB + 5));
    const { head } = await store.save(bytes, headFor(bytes));
    let buffer: Uint8Array | undefined;
    const seen: { filled: number; matches: boolean }[] = [];
    const streamed = await store.stream({
      open: (h) => {
        expect(h).toEqual(head); // the head comes first, before any byte
        return (buffer = new Uint8Array(h.bytes));
      },
      // What is reported as there is there, already, byte for byte.
      progress: (filled) =>
        seen.push({ filled, matches: Buffer.from(buffer!.subarray(0, filled)).equals(bytes.subarray(0, filled)) }),
    });
    expect(streamed).toEqual(head);
    expect(seen).toEqual([
      { filled: SNAPSHOT_CHUNK_BYTES, matches: true },
      { filled: 2 * SNAPSHOT_CHUNK_BYTES, matches: true },
      { filled: 9 * MiB + 5, matches: true },
    ]);
  });

  it("refuses a chunk whose size is not what the others add up to, before moving any byte", async () => {
    const bytes = new Uint8Array(randomBytes(5 * MiB));
    await store.save(bytes, headFor(bytes));
    await t.db.query("UPDATE engine_snapshot_chunks SET data = substring(data from 1 for 100) WHERE idx = 1");
    let opened = false;
    const stream = store.stream({ open: (h) => ((opened = true), new Uint8Array(h.bytes)), progress: () => undefined });
    await expect(stream).rejects.toThrow(SnapshotIntegrityError);
    // Chunk 0 (4 MiB) is 5592408 base64 characters, 4194306 bytes less its padding (0–2); chunk 1 now 100, 75 bytes less its padding.
    await expect(stream).rejects.toThrow(`has ${4194306 + 75 - 4} to ${4194306 + 75} bytes, head says ${5 * MiB}`);
    expect(opened).toBe(false);
  });

  it("stores chunks as base64 text, and refuses one that is not, before moving any byte", async () => {
    const bytes = new Uint8Array(randomBytes(5 * MiB));
    await store.save(bytes, headFor(bytes));
    const stored = await t.db.query<{ type: string; data: string }>(
      "SELECT pg_typeof(data)::text AS type, data FROM engine_snapshot_chunks WHERE idx = 1",
    );
    expect(stored.rows[0]?.type).toBe("text");
    expect(stored.rows[0]?.data).toBe(Buffer.from(bytes.subarray(4 * MiB)).toString("base64"));
    await t.db.query("UPDATE engine_snapshot_chunks SET data = data || 'AB' WHERE idx = 1");
    let opened = false;
    const stream = store.stream({ open: (h) => ((opened = true), new Uint8Array(h.bytes)), progress: () => undefined });
    await expect(stream).rejects.toThrow(
      `snapshot generation 1 chunk 1 is not base64 (${Math.ceil(MiB / 3) * 4 + 2} characters)`,
    );
    expect(opened).toBe(false);
  });

  it("never moves the head back: an older (or equal) snapshot is skipped and the newer one stays", async () => {
    const store = new PostgresSnapshotStore(t.db);
    const newer = randomBytes(1000);
    expect((await store.save(newer, headFor(newer, "5-3"))).skipped).toBe(false);
    const older = randomBytes(1000);
    const late = await store.save(older, headFor(older, "5-2")); // e.g. a deposed leader's final snapshot
    expect(late.skipped).toBe(true);
    expect(late.head.lastInputId).toBe("5-3");
    expect((await store.save(older, headFor(older, "5-3"))).skipped).toBe(true);
    const loaded = await store.load();
    expect(loaded?.head.lastInputId).toBe("5-3");
    expect(Buffer.from(loaded!.bytes).equals(newer)).toBe(true);
  });

  it("leaves the previous snapshot whole when a save fails midway", async () => {
    const first = new Uint8Array(randomBytes(5 * MiB));
    await store.save(first, headFor(first, "1-0"));
    // A bigint cannot become JSON, so this save throws after inserting its chunks and before moving the head:
    // a stand-in for a crash at that point, inside the transaction.
    const second = new Uint8Array(randomBytes(5 * MiB));
    const broken = { ...headFor(second, "2-0"), shard: 1n as unknown as number };
    await expect(store.save(second, broken)).rejects.toThrow(/BigInt/);
    expect((await chunkRows()).map((r) => r.generation)).toEqual(["1", "1"]);
    const loaded = await store.load();
    expect(loaded?.head.lastInputId).toBe("1-0");
    expect(Buffer.from(loaded!.bytes).equals(Buffer.from(first))).toBe(true);
  });

  it("refuses to load a snapshot whose chunk was altered", async () => {
    const bytes = new Uint8Array(randomBytes(9 * MiB));
    await store.save(bytes, headFor(bytes));
    // Flip one byte in the middle chunk; the length stays the same, so only the hash can tell.
    // (Postgres' base64 breaks lines; the store writes none.)
    await t.db.query(`UPDATE engine_snapshot_chunks SET data = translate(encode(set_byte(decode(data, 'base64'), 1000,
      (get_byte(decode(data, 'base64'), 1000) + 1) % 256), 'base64'), E'\\n', '') WHERE idx = 1`);
    const load = store.load();
    await expect(load).rejects.toThrow(SnapshotIntegrityError);
    await expect(load).rejects.toThrow(/is corrupt: SHA-256 [0-9a-f]{64}, head says/);
  });

  it("refuses to load a snapshot with a missing chunk", async () => {
    const bytes = new Uint8Array(randomBytes(9 * MiB));
    await store.save(bytes, headFor(bytes));
    await t.db.query("DELETE FROM engine_snapshot_chunks WHERE idx = 2");
    await expect(store.load()).rejects.toThrow("has 2 chunks, head says 3");
  });

  it("refuses a head row that is not a chunked snapshot head (e.g. the seed's JSON state)", async () => {
    await t.db.query(`INSERT INTO engine_snapshots (id, snapshot_data) VALUES (1, '{"balances": {}}')`);
    await expect(store.load()).rejects.toThrow(/not a chunked snapshot head/);
  });

  it("loads a snapshot saved before migration 006, whose chunks it turned from bytea into base64 text", async () => {
    const old = await createTestDatabase();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    try {
      for (const name of await readdir(DEFAULT_MIGRATIONS_DIR)) {
        if (name < "006") await copyFile(join(DEFAULT_MIGRATIONS_DIR, name), join(dir, name));
      }
      await migrate(old.db, old.log, dir);
      // Saved as the store did then: bytea chunks (4 MiB + 1 MiB + 3 bytes) under a head.
      const bytes = new Uint8Array(randomBytes(5 * MiB + 3));
      const chunks = [bytes.subarray(0, 4 * MiB), bytes.subarray(4 * MiB)];
      for (const [idx, chunk] of chunks.entries()) {
        await old.db.query("INSERT INTO engine_snapshot_chunks (generation, idx, data) VALUES (1, $1, $2)", [
          idx,
          Buffer.from(chunk),
        ]);
      }
      const head = { ...headFor(bytes, "9-9"), bytes: bytes.length, generation: 1, chunks: 2 };
      await old.db.query("INSERT INTO engine_snapshots (id, snapshot_data) VALUES (1, $1::jsonb)", [
        JSON.stringify(head),
      ]);

      // 006 first: later migrations (other tables) may follow it.
      expect((await migrate(old.db, old.log))[0]).toBe("006_snapshot_chunks_base64.sql");
      const loaded = await new PostgresSnapshotStore(old.db).load();
      expect(loaded?.head).toEqual(head);
      expect(Buffer.from(loaded!.bytes).equals(Buffer.from(bytes))).toBe(true);
      const storage = await old.db.query<{ attstorage: string }>(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = 'engine_snapshot_chunks'::regclass AND attname = 'data'",
      );
      expect(storage.rows[0]?.attstorage).toBe("e"); // still stored as it is, uncompressed
    } finally {
      await old.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("round-trips an engine state: the decoded state has the same hash", async () => {
    // A few thousand accounts with open trades and their remembered requests: ~100k trades, several chunks.
    const h = new EngineHarness({ maxOpenTradesPerUser: 100 });
    h.checkEveryStep = false;
    for (let u = 0; u < 2_000; u++) {
      // Fresh quotes as log time moves on, so no order is refused as STALE_PRICE.
      if (u % 100 === 0) {
        h.price("ETH_USDC_PERP", "4300.00", "4300.10");
        h.price("SOL_USDC_PERP", "200.00", "200.02");
      }
      const user = `user-${u}`;
      h.createAccount(user);
      for (let i = 0; i < 50; i++) {
        const eth = (u + i) % 2 === 0;
        const long = i % 3 !== 0;
        h.instruct(user, {
          kind: "open_trade",
          asset: eth ? "ETH" : "SOL",
          side: long ? "long" : "short",
          margin: `${10 + (i % 9)}.25`,
          leverage: 1 + (i % 20),
        });
      }
      h.advance(3);
    }
    let openTrades = 0;
    for (const a of h.state.accounts.values()) openTrades += a.openTrades.size;
    expect(openTrades).toBe(100_000);
    const bytes = encodeSnapshot(h.state);
    const hash = stateHash(h.state);
    expect(bytes.length).toBeGreaterThan(SNAPSHOT_CHUNK_BYTES);

    const { writeMs, head } = await store.save(bytes, {
      version: SNAPSHOT_VERSION,
      shard: 0,
      lastInputId: h.state.lastInputId,
      stateHash: hash,
      takenAt: new Date().toISOString(),
    });
    const readStarted = performance.now();
    const loaded = await store.load();
    const readMs = performance.now() - readStarted;
    // Measured, not asserted: timing depends on the machine.
    console.log(
      JSON.stringify({
        event: "snapshot_store_timing",
        bytes: bytes.length,
        chunks: head.chunks,
        openTrades,
        writeMs: Math.round(writeMs),
        readMs: Math.round(readMs),
      }),
    );

    expect(loaded?.head.stateHash).toBe(hash);
    expect(stateHash(decodeSnapshot(loaded!.bytes))).toBe(hash);
    expect(decodeSnapshot(loaded!.bytes).lastInputId).toBe(h.state.lastInputId);
  });
});

describe("a save whose writer stops half-way", () => {
  it("bounds the wait for the save lock, held only to move the head, and sets Postgres's idle timeout", async () => {
    // A save that pauses once it holds the lock, as a frozen process would; it records its settings.
    let resume = () => undefined as void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    let reached = () => undefined as void;
    const atHead = new Promise<void>((resolve) => (reached = resolve));
    const settings: string[] = [];
    let locked = false;
    const pausing = withTransactions((tx) => ({
      stream: (text, params, options) => tx.stream(text, params, options),
      query: async (text, params) => {
        if (locked && settings.length === 0) {
          for (const name of ["idle_in_transaction_session_timeout", "lock_timeout"])
            settings.push(Object.values((await tx.query(`SHOW ${name}`)).rows[0]!)[0] as string);
          reached();
          await paused;
        }
        if (text.startsWith("SELECT pg_advisory_xact_lock")) locked = true;
        return tx.query(text, params);
      },
    }));
    const bytes = new Uint8Array(randomBytes(1024));
    const first = new PostgresSnapshotStore(pausing, { idleTimeoutMs: 60_000 }).save(bytes, headFor(bytes));
    await atHead;
    expect(settings).toEqual(["1min", "2min"]);
    // Another save waits for the lock no longer than its lockTimeoutMs, then fails (55P03 lock_not_available).
    const waiting = new PostgresSnapshotStore(t.db, { lockTimeoutMs: 300 });
    const started = performance.now();
    await expect(waiting.save(bytes, headFor(bytes, "1700000000999-0"))).rejects.toMatchObject({ code: "55P03" });
    expect(performance.now() - started).toBeLessThan(5_000);
    resume();
    expect((await first).head.generation).toBeGreaterThan(0);
  });

  it("takes no generation of, nor deletes chunks from, a save of the release before that runs while it uploads", async () => {
    const first = new Uint8Array(randomBytes(1024));
    await store.save(first, headFor(first, "1-0"));
    // This save pauses at its first chunk, its generation reserved, the lock not held.
    let resume = () => undefined as void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    let reached = () => undefined as void;
    const uploading = new Promise<void>((resolve) => (reached = resolve));
    const pausing = withTransactions((tx) => ({
      stream: (text, params, options) => tx.stream(text, params, options),
      query: async (text, params) => {
        if (text.includes("$3::text") && params?.[1] === 0) {
          reached();
          await paused;
        }
        return tx.query(text, params);
      },
    }));
    const newer = new Uint8Array(randomBytes(1024));
    const saving = new PostgresSnapshotStore(pausing).save(newer, headFor(newer, "3-0"));
    await uploading;
    // The release before saves meanwhile, as it did: the lock for the whole save, MAX()+1 of what it sees, the head
    // moved, every generation but the two kept deleted.
    const older = new Uint8Array(randomBytes(1024));
    const oldGeneration = await t.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", ["7243019188271345002"]);
      const head = (await tx.query<{ h: SnapshotHead }>("SELECT snapshot_data AS h FROM engine_snapshots")).rows[0]!.h;
      const next = await tx.query<{ g: string }>(
        `SELECT (GREATEST((SELECT MAX(generation) FROM engine_snapshot_chunks),
           (SELECT (snapshot_data->>'generation')::bigint FROM engine_snapshots WHERE id = 1), 0) + 1)::text AS g`,
      );
      const generation = Number(next.rows[0]!.g);
      await tx.query("INSERT INTO engine_snapshot_chunks (generation, idx, data) VALUES ($1, 0, $2)", [
        generation,
        Buffer.from(older).toString("base64"),
      ]);
      const full = { ...headFor(older, "2-0"), bytes: older.length, generation, chunks: 1 };
      await tx.query("UPDATE engine_snapshots SET snapshot_data = $1::jsonb WHERE id = 1", [
        JSON.stringify({ ...full, previous: { ...head, previous: undefined } }),
      ]);
      await tx.query("DELETE FROM engine_snapshot_chunks WHERE generation <> ALL($1::bigint[])", [
        [generation, head.generation],
      ]);
      return generation;
    });
    resume();
    const saved = await saving;
    expect(saved.skipped).toBe(false);
    expect(oldGeneration).not.toBe(saved.head.generation);
    // The head moved forward only: this save's (3-0) over the old one's (2-0), which stays the previous.
    const latest = await store.load();
    expect(latest?.head).toMatchObject({ lastInputId: "3-0", generation: saved.head.generation });
    expect(Buffer.from(latest!.bytes).equals(Buffer.from(newer))).toBe(true);
    const previous = await store.load("previous");
    expect(previous?.head).toMatchObject({ lastInputId: "2-0", generation: oldGeneration });
    expect(Buffer.from(previous!.bytes).equals(Buffer.from(older))).toBe(true);
  });

  it("holds up no other save when frozen part-way through a chunk, where no Postgres timeout ends it", async () => {
    const saved = new Uint8Array(randomBytes(1024));
    await store.save(saved, headFor(saved, "1700000000000-0"));
    // Bytes pass up to and with the write that starts a chunk's INSERT; then nothing more either way, the sockets kept
    // open: a frozen process mid-send (its kernel keeps the connection). Postgres waits inside that message.
    const proxy = await midMessageFreezer(t.url, "VALUES ($1, $2, $3::text)");
    const through = new URL(t.url);
    through.port = String(proxy.port);
    const db = await connectPostgres(through.toString(), t.log, { maxConnections: 1 });
    try {
      const bytes = new Uint8Array(randomBytes(2 * MiB));
      const frozen = proxy.froze;
      // Its own deadline far away: a SIGSTOPped process runs no timer.
      const frozenSave = new PostgresSnapshotStore(db, { idleTimeoutMs: 1_000, saveTimeoutMs: 600_000 }).save(
        bytes,
        headFor(bytes, "1700000000100-0"),
      );
      frozenSave.catch(() => undefined);
      await frozen;
      await new Promise((r) => setTimeout(r, 2_000)); // twice its idle timeout: Postgres has not ended it
      const next = new PostgresSnapshotStore(t.db, { lockTimeoutMs: 1_000 });
      const later = new Uint8Array(randomBytes(1024));
      const result = await next.save(later, headFor(later, "1700000000200-0"));
      expect(result.skipped).toBe(false);
      const loaded = await store.load();
      expect(loaded?.head.lastInputId).toBe("1700000000200-0");
      expect((await store.load("previous"))?.head.lastInputId).toBe("1700000000000-0");
      // Two generations stored; the frozen save's (2, reserved before its upload) is not the next save's.
      expect([...new Set((await chunkRows()).map((r) => r.generation))]).toEqual(["1", "3"]);
      expect(result.head.generation).toBe(3);
    } finally {
      proxy.close();
      await db.close().catch(() => undefined);
    }
  }, 30_000);
});

describe("a save that stops getting answers", () => {
  it("fails after saveTimeoutMs with its connection closed, leaves the saved snapshot whole, and the next save works", async () => {
    const saved = new Uint8Array(randomBytes(1024));
    await store.save(saved, headFor(saved));
    const proxy = await startRedisProxy(t.url);
    const through = new URL(t.url);
    through.port = String(proxy.port);
    // One connection, as the snapshotter has: a save that kept it would leave none for the next.
    const db = await connectPostgres(through.toString(), t.log, { maxConnections: 1 });
    try {
      const frozenStore = new PostgresSnapshotStore(db, { saveTimeoutMs: 500 });
      const bytes = new Uint8Array(randomBytes(1024));
      // Postgres stops answering at the first chunk: the transaction open, the connection alive.
      const frozen = proxy.freezeOn("VALUES ($1, $2, $3::text)");
      const save = frozenStore.save(bytes, headFor(bytes, "1700000000500-0"));
      await frozen;
      await expect(save).rejects.toThrow(TransactionTimeoutError);
      await expect(save).rejects.toThrow("no commit within 500 ms");
      expect((await store.load())?.head.lastInputId).toBe("1700000000000-0");
      // The frozen connection stays dead (its bytes are lost); the path is back for new ones.
      proxy.thaw();
      const again = await frozenStore.save(bytes, headFor(bytes, "1700000000600-0"));
      expect(again.skipped).toBe(false);
      expect((await store.load())?.head.lastInputId).toBe("1700000000600-0");
    } finally {
      await db.close();
      await proxy.close();
    }
  });
});

describe("a load that stops getting answers", () => {
  it("gives its connection up, so the next load on a one-connection pool gets one once Postgres answers", async () => {
    const bytes = new Uint8Array(randomBytes(1024));
    await store.save(bytes, headFor(bytes));
    const proxy = await startRedisProxy(t.url);
    const through = new URL(t.url);
    through.port = String(proxy.port);
    // One connection, as the snapshotter has, and a short wait for it: a stalled load that kept it would leave none.
    const db = await connectPostgres(through.toString(), t.log, { maxConnections: 1, connectTimeoutMs: 2_000 });
    try {
      const stalling = new PostgresSnapshotStore(db, { stallMs: 300 });
      const frozen = proxy.freezeOn("SELECT idx, data FROM engine_snapshot_chunks");
      const load = stalling.load();
      await frozen;
      await expect(load).rejects.toThrow(SnapshotLoadStalledError);
      // The frozen connection stays dead (its bytes are lost); the path is back for new ones.
      proxy.thaw();
      expect((await stalling.load())?.head.lastInputId).toBe("1700000000000-0");
    } finally {
      await db.close();
      await proxy.close();
    }
  });

  it("fails with SnapshotLoadStalledError after stallMs, and writes nothing more to the sink", async () => {
    const bytes = new Uint8Array(randomBytes(9 * MiB));
    await store.save(bytes, headFor(bytes));
    // The chunks stop coming after the first, as from a Postgres that stopped answering; released at the end.
    let release = () => undefined as void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const freezing = withTransactions((tx) => ({
      query: (text, params) => tx.query(text, params),
      stream: <R extends Row>(text: string, params: unknown[], options?: { rowsPerFetch?: number }) =>
        (async function* () {
          for await (const row of tx.stream<R>(text, params, options)) {
            yield row;
            await released;
            throw new Error("released");
          }
        })(),
    }));
    const filled: number[] = [];
    const started = performance.now();
    const load = new PostgresSnapshotStore(freezing, { stallMs: 300 }).stream({
      open: (head) => new Uint8Array(head.bytes),
      progress: (at) => filled.push(at),
    });
    try {
      await expect(load).rejects.toThrow(SnapshotLoadStalledError);
      await expect(load).rejects.toThrow("snapshot load stalled: no answer from Postgres for 300 ms");
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(filled).toEqual([SNAPSHOT_CHUNK_BYTES]);
    } finally {
      release();
    }
  });
});

/**
 * A proxy to Postgres that passes bytes until a client write contains `marker`, passes that write (a message's start),
 * then nothing more either way, its sockets left open: a process frozen in the middle of sending.
 */
async function midMessageFreezer(url: string, marker: string) {
  const target = new URL(url);
  let frozen = false;
  let onFrozen = () => undefined as void;
  const froze = new Promise<void>((resolve) => (onFrozen = resolve));
  const sockets: Socket[] = [];
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, upstream);
    client.on("data", (chunk: Buffer) => {
      if (frozen) return;
      upstream.write(chunk);
      if (chunk.includes(marker)) {
        frozen = true;
        onFrozen();
      }
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!frozen) client.write(chunk);
    });
    for (const socket of [client, upstream]) socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    froze,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}
