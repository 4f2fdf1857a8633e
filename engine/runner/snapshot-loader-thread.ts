/**
 * The snapshot loader's thread (snapshot-loader.ts): its own Postgres connection, so moving the chunks and decoding
 * their base64 (~80 MB at 1M open trades and 1M remembered requests) never runs on the thread that decodes the
 * snapshot. For each "load" it streams the latest snapshot into shared memory and publishes its progress in the
 * control words; then, while the engine still decodes the accounts, it scans the idempotency section for it
 * (prescanIdempotency) and posts the scan on the head's `idempotency` port.
 */
import { MessageChannel, parentPort, workerData, type MessagePort } from "node:worker_threads";
import { createLogger } from "../../platform/log.ts";
import { connectPostgres } from "../../platform/postgres.ts";
import { prescanIdempotency, type IdempotencyScan } from "../snapshot/codec.ts";
import { PostgresSnapshotStore } from "../snapshot/postgres-store.ts";
import { SnapshotIntegrityError } from "../snapshot/store.ts";
import {
  CONTROL_WORDS,
  DONE,
  FAILED,
  FILLED,
  NO_SCAN,
  PRESCAN,
  SCANNED,
  STATE,
  VERSION,
  type FromLoader,
  type LoaderThreadData,
} from "./snapshot-loader.ts";

const data = workerData as LoaderThreadData;
const port = parentPort!;
const log = createLogger("engine", { base: { role: "snapshot_loader" } });
let connected = connect();

function connect() {
  const connecting = connectPostgres(data.databaseUrl, log, { maxConnections: 1 });
  connecting.catch(() => undefined); // reported by the load that needs it
  return connecting;
}

port.on("message", (message: "load" | "close") => {
  if (message === "load") void load();
  else
    void connected
      .then(
        (db) => db.close(),
        () => undefined,
      )
      .finally(() => port.close());
});

async function load(): Promise<void> {
  const post = (m: FromLoader) => port.postMessage(m);
  let control: Int32Array | undefined;
  let bytes: Uint8Array | undefined;
  const channel = new MessageChannel();
  const signal = (word: number, value: number) => {
    Atomics.store(control!, word, value);
    Atomics.add(control!, VERSION, 1);
    Atomics.notify(control!, VERSION);
  };
  const started = performance.now();
  try {
    // A connection that failed as the thread started (Postgres down: main.ts waits for it) is opened again.
    const store = new PostgresSnapshotStore(await connected.catch(() => (connected = connect())));
    const head = await store.stream({
      open: (h) => {
        const shared = new SharedArrayBuffer(h.bytes);
        const words = new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
        control = new Int32Array(words);
        port.postMessage(
          { type: "head", head: h, bytes: shared, control: words, idempotency: channel.port2 } satisfies FromLoader,
          [channel.port2],
        );
        bytes = new Uint8Array(shared);
        return bytes;
      },
      progress: (filled) => signal(FILLED, filled),
    });
    if (head === null) return post({ type: "none" });
    signal(STATE, DONE);
    post({ type: "done", loadMs: performance.now() - started });
  } catch (err) {
    if (control !== undefined) signal(STATE, FAILED);
    const e = err instanceof Error ? err : new Error(String(err));
    post({
      type: "error",
      name: e.name,
      message: e.message,
      generation: err instanceof SnapshotIntegrityError ? err.generation : undefined,
    });
  } finally {
    if (control !== undefined)
      signal(PRESCAN, prescan(channel.port1, Atomics.load(control, STATE) === DONE ? bytes : undefined));
    channel.port1.close();
  }
}

/** Scans the idempotency section of a loaded (and verified) snapshot and posts the scan; returns the PRESCAN state. */
function prescan(to: MessagePort, loaded: Uint8Array | undefined): number {
  let scan: IdempotencyScan | undefined;
  try {
    scan = loaded === undefined ? undefined : prescanIdempotency(loaded);
  } catch (err) {
    // The decode meets the same fault and reports it: left to that, with the bytes' check.
    log.warn("prescan_failed", { error: err });
  }
  if (scan === undefined) return NO_SCAN;
  to.postMessage(scan, [scan.accounts.buffer, scan.requestIds.buffer, scan.receipts.buffer, scan.times.buffer]);
  return SCANNED;
}
