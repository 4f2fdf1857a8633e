// The snapshot loader: a real worker thread reading a real Postgres, decoded on this thread as the bytes land.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { migrate } from "../../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { makeParams } from "../core/params.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { decodeSnapshot, encodeSnapshot, prescanIdempotency, SNAPSHOT_VERSION } from "../snapshot/codec.ts";
import { hashSnapshot, stateHash } from "../snapshot/hash.ts";
import { PostgresSnapshotStore } from "../snapshot/postgres-store.ts";
import { SnapshotIntegrityError } from "../snapshot/store.ts";
import { restoreState } from "./restore.ts";
import { MessageChannel, Worker } from "node:worker_threads";
import {
  CONTROL_WORDS,
  DONE,
  FAILED,
  FILLED,
  NO_SCAN,
  PRESCAN,
  STATE,
  VERSION,
  startSnapshotLoader,
  waitForBytes,
  waitForPrescan,
  type SnapshotLoader,
} from "./snapshot-loader.ts";

let t: TestDatabase;
const loaders: SnapshotLoader[] = [];
const lines: Record<string, unknown>[] = [];
const log = createLogger("test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });

beforeAll(async () => {
  t = await createTestDatabase();
  await migrate(t.db, t.log);
});
afterAll(async () => {
  await Promise.all(loaders.map((l) => l.close()));
  await t?.drop();
});
beforeEach(async () => {
  await t.db.query("TRUNCATE engine_snapshots, engine_snapshot_chunks");
  lines.length = 0;
});

function loader(): SnapshotLoader {
  const l = startSnapshotLoader(t.url);
  loaders.push(l);
  return l;
}

/** A state spanning several 4 MiB chunks: 1,500 accounts × 60 open trades and their remembered requests. */
function bigState() {
  const h = new EngineHarness({ maxOpenTradesPerUser: 100 });
  h.checkEveryStep = false;
  for (let u = 0; u < 1_500; u++) {
    if (u % 100 === 0) h.price("ETH_USDC_PERP", "4300.00", "4300.10");
    h.createAccount(`user-${u}`);
    for (let i = 0; i < 60; i++)
      h.instruct(`user-${u}`, {
        kind: "open_trade",
        asset: "ETH",
        side: i % 2 === 0 ? "long" : "short",
        margin: "10",
        leverage: 1 + (i % 20),
      });
    h.advance(3);
  }
  return h.state;
}

const CHUNK = 256 * 1024;

async function save(bytes: Uint8Array, lastInputId: string) {
  const store = new PostgresSnapshotStore(t.db, { chunkBytes: CHUNK });
  return store.save(bytes, {
    version: SNAPSHOT_VERSION,
    shard: 0,
    lastInputId,
    stateHash: hashSnapshot(bytes),
    takenAt: new Date().toISOString(),
  });
}

/** Overwrites the stored snapshot's byte at `at` (chunks are base64 text; Postgres' base64 breaks lines, removed). */
async function setByte(at: number, char: string) {
  await t.db.query(
    `UPDATE engine_snapshot_chunks SET data = translate(encode(set_byte(decode(data, 'base64'), $1, ascii($2)), 'base64'), E'\\n', '') WHERE idx = $3`,
    [at % CHUNK, char, Math.floor(at / CHUNK)],
  );
}

const fresh = makeParams({});

describe("startSnapshotLoader + restoreState", () => {
  it("restores the same state as a whole load, decoding while the chunks arrive", async () => {
    const state = bigState();
    const bytes = encodeSnapshot(state);
    const { head } = await save(bytes, state.lastInputId);
    expect(head.chunks).toBeGreaterThan(8);

    const restored = await restoreState(() => loader().load(), fresh, log);
    expect(stateHash(restored)).toBe(stateHash(state));
    const line = lines.find((l) => l.event === "restore_snapshot");
    expect(line).toMatchObject({
      lastInputId: state.lastInputId,
      bytes: bytes.length,
      accounts: 1_500,
      openTrades: 90_000,
    });
    expect(line?.loadMs).toEqual(expect.any(Number));
    expect(line?.waitMs).toEqual(expect.any(Number));
    expect(line?.scanWaitMs).toEqual(expect.any(Number));
  });

  it("hands over the thread's scan of the idempotency section, as this thread would make it", async () => {
    const state = bigState();
    const bytes = encodeSnapshot(state);
    await save(bytes, state.lastInputId);
    const loaded = (await loader().load())!;
    await loaded.verified;
    const scan = loaded.idempotency!();
    expect(scan).toBeDefined();
    expect(scan).toEqual(prescanIdempotency(bytes));
    expect(scan!.accounts.length).toBe(state.idempotency.size);
    expect(stateHash(decodeSnapshot(loaded.bytes, loaded.more, () => scan))).toBe(stateHash(state));
  });

  it("makes no scan of a idempotency section it cannot read, and the decode reports the fault", async () => {
    const state = bigState();
    const bytes = encodeSnapshot(state);
    // The last receipt's last amount made a varint that runs off the end; saved with its own (matching) hash.
    bytes[bytes.length - 1] = bytes.at(-1)! | 0x80;
    await save(bytes, state.lastInputId);
    const loaded = (await loader().load())!;
    await loaded.verified;
    expect(loaded.idempotency!()).toBeUndefined();
    await expect(restoreState(() => loader().load(), fresh, log)).rejects.toThrow("snapshot truncated");
  });

  it("starts fresh when no snapshot was ever saved, and serves several loads in turn", async () => {
    const l = loader();
    expect(await l.load()).toBeNull();
    const state = bigState();
    await save(encodeSnapshot(state), state.lastInputId);
    expect(stateHash(await restoreState(() => l.load(), fresh, log))).toBe(stateHash(state));
    expect(stateHash(await restoreState(() => l.load(), fresh, log))).toBe(stateHash(state));
  });

  it("refuses bytes that do not match the head, even when they decode", async () => {
    const state = bigState();
    const bytes = encodeSnapshot(state);
    await save(bytes, state.lastInputId);
    // A byte of a user id: the snapshot still decodes (to another state), but the hash differs.
    const at = Buffer.from(bytes).indexOf("user-7") + 2;
    await setByte(at, "X");
    await expect(restoreState(() => loader().load(), fresh, log)).rejects.toThrow(SnapshotIntegrityError);
    expect(lines.some((l) => l.event === "restore_snapshot")).toBe(false);
  });

  it("reports the load's failure, not the decode's, when corrupt bytes also fail to decode", async () => {
    const state = bigState();
    await save(encodeSnapshot(state), state.lastInputId);
    await setByte(0, "X"); // the magic
    const restore = restoreState(() => loader().load(), fresh, log);
    await expect(restore).rejects.toThrow(SnapshotIntegrityError);
    await expect(restore).rejects.toThrow(/is corrupt: SHA-256/);
  });

  it("refuses a snapshot with a chunk missing before any byte is decoded", async () => {
    const state = bigState();
    await save(encodeSnapshot(state), state.lastInputId);
    await t.db.query("DELETE FROM engine_snapshot_chunks WHERE idx = 3");
    await expect(restoreState(() => loader().load(), fresh, log)).rejects.toThrow(/has \d+ chunks, head says \d+/);
  });

  it("refuses to load once closed", async () => {
    const l = loader();
    await l.close();
    await expect(l.load()).rejects.toThrow(/snapshot loader thread exited/);
  });
});

describe("waitForPrescan", () => {
  it("returns nothing when the loader made no scan, and gives up after the stall time while it makes none", () => {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
    const { port1, port2 } = new MessageChannel();
    try {
      const started = performance.now();
      expect(() => waitForPrescan(control, port1, 200)).toThrow(
        "snapshot loader stalled: no idempotency scan for 200 ms",
      );
      expect(performance.now() - started).toBeGreaterThanOrEqual(190);
      Atomics.store(control, PRESCAN, NO_SCAN);
      port2.postMessage("not for the decode"); // ignored: only a SCANNED prescan is read from the port
      expect(waitForPrescan(control, port1, 200)).toBeUndefined();
    } finally {
      port1.close();
    }
  });
});

describe("waitForBytes: the decoding thread's side of the control words", () => {
  /** A thread that writes the control words as a loader does: filled, state, then the counter and a notify. */
  function writer(control: SharedArrayBuffer, steps: readonly { afterMs: number; filled?: number; state?: number }[]) {
    const code = `
      const { workerData } = require("node:worker_threads");
      const c = new Int32Array(workerData.control);
      const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      for (const s of workerData.steps) {
        sleep(s.afterMs);
        if (s.filled !== undefined) Atomics.store(c, ${FILLED}, s.filled);
        if (s.state !== undefined) Atomics.store(c, ${STATE}, s.state);
        Atomics.add(c, ${VERSION}, 1);
        Atomics.notify(c, ${VERSION});
      }`;
    return new Worker(code, { eval: true, workerData: { control, steps } });
  }
  const controlWords = () => new SharedArrayBuffer(CONTROL_WORDS * 4);

  it("returns once enough bytes are there, waiting through smaller steps", async () => {
    const control = controlWords();
    const w = writer(control, [
      { afterMs: 20, filled: 10 },
      { afterMs: 20, filled: 50 },
      { afterMs: 20, filled: 100 },
    ]);
    expect(waitForBytes(new Int32Array(control), 60, 5_000)).toBe(100);
    await new Promise((r) => w.once("exit", r));
  });

  it("returns what is there when the load ends short (done or failed), for the reader to call it truncated", async () => {
    for (const state of [DONE, FAILED]) {
      const control = controlWords();
      const w = writer(control, [
        { afterMs: 20, filled: 30 },
        { afterMs: 20, state },
      ]);
      expect(waitForBytes(new Int32Array(control), 60, 5_000)).toBe(30);
      await new Promise((r) => w.once("exit", r));
    }
  });

  it("gives up after the stall time with nothing changing, instead of blocking for ever", () => {
    const control = new Int32Array(controlWords());
    Atomics.store(control, FILLED, 7);
    const started = performance.now();
    expect(() => waitForBytes(control, 60, 200)).toThrow(
      "snapshot load stalled: no bytes for 200 ms (7 there, 60 needed)",
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  });
});
