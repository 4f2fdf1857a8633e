// Coarser candles merged from 1m updates, and exact decimal comparison, on plain data.
import type { WebSocket } from "ws";
import { describe, expect, it } from "vitest";
import type { Candle } from "../contract/candles.ts";
import { CandleFanout, comparePrice, type MinuteRow, type StoredBucket } from "./candles.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamConnection } from "./connection.ts";
import { NO_METRICS } from "./metrics.ts";

function socket() {
  const sent: Record<string, unknown>[] = [];
  const ws = {
    bufferedAmount: 0,
    send: (data: Buffer | string) => sent.push(JSON.parse(String(data)) as Record<string, unknown>),
  };
  const conn = new StreamConnection(
    ws as unknown as WebSocket,
    { userId: "u", sessionId: "s", sessionExpiresAtMs: Infinity },
    DEFAULT_LIMITS,
    NO_METRICS,
    0,
  );
  return { conn, sent, ws };
}

const minute = (hhmm: string, open: string, high: string, low: string, close: string): Candle => ({
  asset: "BTC",
  interval: "1m",
  openTime: `2027-01-15T${hhmm}:00.000Z`,
  open,
  high,
  low,
  close,
});

/** The order of output n of the engine's log entry at `hhmm` plus `seconds` (worker/candles.ts outputOrder). */
const order = (hhmm: string, seconds: number, n = 0) =>
  String(BigInt(Date.parse(`2027-01-15T${hhmm}:00.000Z`) + seconds * 1_000) * 10n ** 30n + BigInt(n));

/** A 1m row as a worker fans it out, with the orders of the outputs its open and close came from. */
const ordered = (row: Candle, openOutput: string, closeOutput: string): MinuteRow => ({
  ...row,
  openOutput,
  closeOutput,
});

/** A 15m bucket as loaded from the table, its minutes from `first` to `last`. */
const stored = (first: string, last: string, open: string, high: string, low: string, close: string): StoredBucket => ({
  ...minute("10:00", open, high, low, close),
  interval: "15m",
  firstMinuteMs: Date.parse(`2027-01-15T${first}:00.000Z`),
  lastMinuteMs: Date.parse(`2027-01-15T${last}:00.000Z`),
  openOutput: order(first, 0),
  closeOutput: order(last, 59),
});

/** A loader whose every call waits until the test answers it. */
function loader() {
  const calls: { openTimeMs: number; resolve: (b: StoredBucket | undefined) => void; reject: (e: Error) => void }[] =
    [];
  const load = (_asset: string, _interval: string, openTimeMs: number) =>
    new Promise<StoredBucket | undefined>((resolve, reject) => calls.push({ openTimeMs, resolve, reject }));
  return { load, calls };
}

/**
 * Lets the loads' answers and the retries' timers (0 ms in these tests) run. In steps: a retry's timer is set by the
 * microtasks after the answer, which may run after a first step's timer was set and, on a busy machine, later than
 * its delay; a timer set once that step has fired comes after the retry's, whatever the load.
 */
const settle = async () => {
  for (let step = 0; step < 3; step++) await new Promise((r) => setTimeout(r, 2));
};

const at = (time: string) => Date.parse(`2027-01-15T${time}Z`);
const iso = (hhmm: string) => `2027-01-15T${hhmm}:00.000Z`;

describe("comparePrice", () => {
  it("orders by value, exactly, whatever the digits' lengths", () => {
    expect(comparePrice("ETH", "4303.9", "4303.10")).toBe(1);
    expect(comparePrice("BTC", "99.5", "100")).toBe(-1);
    expect(comparePrice("BTC", "100.0", "100")).toBe(0);
    expect(comparePrice("ETH", "007", "7")).toBe(0);
    expect(comparePrice("ETH", "0.5", "0")).toBe(1);
    // Finer than the asset's ticks now: a price stored before its priceDecimals was made coarser.
    expect(comparePrice("ETH", "4303.123", "4303.12")).toBe(1);
    expect(comparePrice("ETH", "4303.1195", "4303.12")).toBe(-1);
    expect(comparePrice("ETH", "4303.120", "4303.12")).toBe(0);
    for (const bad of ["x", "", "1.", ".5", "-1", "1e3"])
      expect(() => comparePrice("ETH", bad, "1")).toThrow(/not a decimal/);
    expect(() => comparePrice("XYZ", "1", "1")).toThrow(/unknown asset/);
  });
});

describe("CandleFanout", () => {
  it("merges 1m updates onto the 1h bucket: first open, extremes, latest close; a new hour starts afresh", async () => {
    const fanout = new CandleFanout(undefined, () => undefined);
    const s = socket();
    fanout.subscribe(s.conn, "BTC", "1h", 0, 0);
    fanout.publish(minute("10:05", "100", "101", "99.5", "100.5"), 0);
    fanout.publish(minute("10:06", "100.5", "103", "100", "102"), 0);
    fanout.publish(minute("10:05", "100", "101.5", "99", "101"), 0); // a late update of an earlier minute
    fanout.publish(minute("11:00", "102", "102", "102", "102"), 0);
    await Promise.resolve();
    expect(s.sent.slice(-2)).toEqual([
      {
        type: "candle",
        asset: "BTC",
        interval: "1h",
        openTime: "2027-01-15T10:00:00.000Z",
        open: "100",
        high: "103",
        low: "99",
        close: "102",
      },
      {
        type: "candle",
        asset: "BTC",
        interval: "1h",
        openTime: "2027-01-15T11:00:00.000Z",
        open: "102",
        high: "102",
        low: "102",
        close: "102",
      },
    ]);
  });

  it("holds candles back from a backed-up socket, latest per series, sent once it drains; a bucket's last first", () => {
    const fanout = new CandleFanout(undefined, () => undefined, [], 1_000);
    const [slow, reading] = [socket(), socket()];
    for (const s of [slow, reading]) {
      fanout.subscribe(s.conn, "BTC", "1m", 0, 0);
      fanout.subscribe(s.conn, "BTC", "5m", 0, 0);
    }
    const closes = (s: ReturnType<typeof socket>) =>
      s.sent.map((f) => `${String(f.interval)} ${String(f.openTime).slice(11, 16)} ${String(f.close)}`);
    fanout.publish(minute("10:04", "100", "100", "100", "100"), 0);
    slow.ws.bufferedAmount = 5_000; // over the mark: held back from here
    fanout.publish(minute("10:04", "100", "101", "100", "101"), 0);
    fanout.publish(minute("10:04", "100", "102", "100", "102"), 0);
    fanout.publish(minute("10:05", "102", "103", "102", "103"), 0); // next 1m and 5m buckets
    fanout.publish(minute("10:05", "102", "104", "102", "104"), 0);
    fanout.tick(100);
    expect(closes(slow)).toEqual(["1m 10:04 100", "5m 10:00 100", "1m 10:04 102", "5m 10:00 102"]);
    slow.ws.bufferedAmount = 999;
    fanout.tick(200);
    expect(closes(slow).slice(4)).toEqual(["1m 10:05 104", "5m 10:05 104"]);
    expect(closes(reading)).toHaveLength(10); // every change, to the socket that keeps up
    fanout.tick(300);
    expect(closes(slow)).toHaveLength(6);
  });

  it("forgets what a socket was owed once it unsubscribes or leaves", () => {
    const fanout = new CandleFanout(undefined, () => undefined, [], 1_000);
    const slow = socket();
    fanout.subscribe(slow.conn, "BTC", "1m", 0, 0);
    fanout.subscribe(slow.conn, "BTC", "5m", 0, 0);
    slow.ws.bufferedAmount = 5_000;
    fanout.publish(minute("10:04", "100", "100", "100", "100"), 0);
    fanout.unsubscribe(slow.conn, "BTC", "1m");
    slow.ws.bufferedAmount = 0;
    fanout.tick(100);
    expect(slow.sent.map((f) => f.interval)).toEqual(["5m"]);
    slow.ws.bufferedAmount = 5_000;
    fanout.publish(minute("10:04", "100", "101", "100", "101"), 0);
    fanout.remove(slow.conn);
    slow.ws.bufferedAmount = 0;
    fanout.tick(200);
    expect(slow.sent).toHaveLength(1);
  });

  it("starts from the stored bucket when one is loaded, keeping updates that came meanwhile", async () => {
    let release: (c: StoredBucket) => void = () => undefined;
    const fanout = new CandleFanout(
      () => new Promise((resolve) => (release = resolve)),
      () => undefined,
    );
    const s = socket();
    const now = Date.parse("2027-01-15T10:07:30.000Z");
    fanout.subscribe(s.conn, "BTC", "15m", now, 0);
    fanout.publish(minute("10:07", "101", "101.5", "100.8", "101.2"), now);
    release(stored("10:00", "10:06", "99", "104", "98", "100.9"));
    await new Promise((r) => setTimeout(r, 0));
    expect(s.sent.at(-1)).toEqual({
      type: "candle",
      asset: "BTC",
      interval: "15m",
      openTime: "2027-01-15T10:00:00.000Z",
      open: "99",
      high: "104",
      low: "98",
      close: "101.2",
    });
  });

  it("keeps the loaded bucket's close when a late update of an earlier minute comes after the load", async () => {
    const fanout = new CandleFanout(
      () => Promise.resolve(stored("10:00", "10:07", "99", "104", "98", "100.9")),
      () => undefined,
    );
    const s = socket();
    fanout.subscribe(s.conn, "BTC", "15m", Date.parse("2027-01-15T10:07:30.000Z"), 0);
    await new Promise((r) => setTimeout(r, 0));
    fanout.publish(minute("10:03", "100", "100.2", "99.9", "100"), 0); // a late batch for 10:03
    expect(s.sent.at(-1)).toMatchObject({ open: "99", high: "104", low: "98", close: "100.9" });
    fanout.publish(minute("10:07", "100.9", "101", "100.8", "101"), 0);
    expect(s.sent.at(-1)).toMatchObject({ close: "101" });
  });

  it("loads a bucket once for the subscribers that come while it loads, and sends it to each", async () => {
    let loads = 0;
    let release: (c: StoredBucket) => void = () => undefined;
    const fanout = new CandleFanout(
      () => {
        loads++;
        return new Promise((resolve) => (release = resolve));
      },
      () => undefined,
    );
    const now = Date.parse("2027-01-15T10:07:30.000Z");
    const a = socket();
    const b = socket();
    fanout.subscribe(a.conn, "BTC", "1h", now, 0);
    fanout.subscribe(b.conn, "BTC", "1h", now + 10, 0);
    expect(loads).toBe(1);
    release({ ...stored("10:00", "10:07", "99", "104", "98", "100.9"), interval: "1h" });
    await new Promise((r) => setTimeout(r, 0));
    for (const s of [a, b]) expect(s.sent).toEqual([expect.objectContaining({ type: "candle", close: "100.9" })]);
    // Loaded: a later subscriber gets the bucket at once, without another load.
    const c = socket();
    fanout.subscribe(c.conn, "BTC", "1h", now + 20, 0);
    expect(c.sent).toEqual([expect.objectContaining({ close: "100.9" })]);
    expect(loads).toBe(1);
  });

  describe("sends a candle only with every stored minute of its bucket in it", () => {
    it("a row that comes while the bucket loads is merged, not sent, to subscribers old and new", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined);
      const [a, b] = [socket(), socket()];
      fanout.subscribe(a.conn, "BTC", "15m", at("10:07:30"), 0);
      fanout.publish(minute("10:07", "101", "101.5", "100.8", "101.2"), 0);
      fanout.subscribe(b.conn, "BTC", "15m", at("10:07:40"), 0);
      fanout.publish(minute("10:07", "101", "101.6", "100.8", "101.3"), 0);
      expect([a.sent, b.sent]).toEqual([[], []]);
      calls[0]!.resolve(stored("10:00", "10:06", "99", "104", "98", "100.9"));
      await settle();
      const whole = { open: "99", high: "104", low: "98", close: "101.3" };
      for (const s of [a, b]) expect(s.sent).toEqual([expect.objectContaining({ openTime: iso("10:00"), ...whole })]);
    });

    it("a row of an earlier bucket than the one loading is dropped (the last hour's final minute)", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "1h", at("11:00:00.200"), 0);
      expect(calls.map((c) => c.openTimeMs)).toEqual([at("11:00:00")]);
      fanout.publish(minute("10:59", "105", "105.5", "104.5", "105.2"), 0); // while the 11:00 bucket loads
      calls[0]!.resolve(undefined); // nothing stored yet for 11:00
      await settle();
      fanout.publish(minute("10:59", "105", "105.5", "104", "105.1"), 0); // and after
      expect(s.sent).toEqual([]);
      fanout.publish(minute("11:00", "105.1", "105.3", "105", "105.3"), 0);
      expect(s.sent).toEqual([
        expect.objectContaining({ openTime: iso("11:00"), open: "105.1", high: "105.3", low: "105", close: "105.3" }),
      ]);
    });

    it("a failed load is retried; the bucket is sent once one answers, with what came live meanwhile", async () => {
      const { load, calls } = loader();
      const errors: unknown[] = [];
      const fanout = new CandleFanout(load, (e) => errors.push(e), [0, 0]);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:30"), 0);
      calls[0]!.reject(new Error("connection refused"));
      await settle();
      fanout.publish(minute("10:07", "101", "101.5", "100.8", "101.2"), 0);
      expect(s.sent).toEqual([]);
      expect(calls.map((c) => c.openTimeMs)).toEqual([at("10:00:00"), at("10:00:00")]);
      calls[1]!.resolve(stored("10:00", "10:06", "99", "104", "98", "100.9"));
      await settle();
      expect(s.sent).toEqual([expect.objectContaining({ open: "99", high: "104", low: "98", close: "101.2" })]);
      expect(errors).toHaveLength(1);
    });

    it("retries a failing load at its last delay for as long as the bucket lasts; a later bucket ends it", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined, [0, 0]);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:30"), 0);
      for (let i = 0; i < 4; i++) {
        fanout.publish(minute(`10:0${7 + i}`, "101", "101.5", "100.8", "101.2"), 0);
        calls[i]!.reject(new Error("connection refused"));
        await settle();
      }
      expect(calls).toHaveLength(5); // past the end of the delays, still trying
      expect(s.sent).toEqual([]);
      // The series listened throughout, so every minute of the next bucket came to it.
      fanout.publish(minute("10:15", "102", "102.5", "101.8", "102.2"), 0);
      expect(s.sent).toEqual([expect.objectContaining({ openTime: iso("10:15"), open: "102", close: "102.2" })]);
      calls[4]!.reject(new Error("connection refused"));
      await settle();
      expect(calls).toHaveLength(5); // the later bucket ended the retries
    });

    it("an answer that cannot be merged is a failed load: logged and retried, the live minutes kept", async () => {
      const { load, calls } = loader();
      const errors: unknown[] = [];
      const fanout = new CandleFanout(load, (e) => errors.push(e), [0]);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:30"), 0);
      fanout.publish(minute("10:07", "101", "101.5", "100.8", "101.2"), 0);
      calls[0]!.resolve({ ...stored("10:00", "10:06", "99", "104", "98", "100.9"), closeOutput: "4.5e40" });
      await settle();
      expect(errors.map(String)).toEqual([expect.stringMatching(/output order 4.5e40 unreadable/)]);
      expect(s.sent).toEqual([]);
      calls[1]!.resolve(stored("10:00", "10:06", "99", "104", "98", "100.9"));
      await settle();
      expect(s.sent).toEqual([expect.objectContaining({ open: "99", high: "104", low: "98", close: "101.2" })]);
    });

    it("a row whose price is not one of the asset's throws while the bucket loads, and is not kept", async () => {
      const { load, calls } = loader();
      const errors: unknown[] = [];
      const fanout = new CandleFanout(load, (e) => errors.push(e));
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:30"), 0);
      for (const bad of ["x", "101.25", ""])
        expect(() => fanout.publish(minute("10:07", "101", bad, "100.8", "101.2"), 0)).toThrow(
          / of BTC is not a price at 1 decimal$/,
        );
      calls[0]!.resolve(stored("10:00", "10:06", "99", "104", "98", "100.9"));
      await settle();
      expect(errors).toEqual([]);
      expect(s.sent).toEqual([expect.objectContaining({ open: "99", high: "104", low: "98", close: "100.9" })]);
    });

    it("merges live rows onto a loaded bucket whose prices are finer than the asset's ticks now", async () => {
      // Minutes stored before BTC's priceDecimals was made coarser (1): loaded as stored, not a failed load.
      const { load, calls } = loader();
      const errors: unknown[] = [];
      const fanout = new CandleFanout(load, (e) => errors.push(e));
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:30"), 0);
      fanout.publish(minute("10:07", "101", "101.5", "98.1", "101.2"), 0);
      calls[0]!.resolve(stored("10:00", "10:06", "99.05", "104.25", "98.05", "100.95"));
      await settle();
      expect(errors).toEqual([]);
      expect(s.sent).toEqual([
        expect.objectContaining({ open: "99.05", high: "104.25", low: "98.05", close: "101.2" }),
      ]);
      fanout.publish(minute("10:08", "101", "104.3", "98", "102"), 0);
      expect(s.sent.at(-1)).toEqual(expect.objectContaining({ open: "99.05", high: "104.3", low: "98", close: "102" }));
    });

    it("a subscriber after the load gave up starts another", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined, []);
      const [a, b] = [socket(), socket()];
      fanout.subscribe(a.conn, "BTC", "15m", at("10:07:30"), 0);
      calls[0]!.reject(new Error("connection refused"));
      await settle();
      fanout.subscribe(b.conn, "BTC", "15m", at("10:08:30"), 0);
      calls[1]!.resolve(stored("10:00", "10:08", "99", "104", "98", "100.9"));
      await settle();
      for (const s of [a, b]) expect(s.sent).toEqual([expect.objectContaining({ close: "100.9" })]);
    });

    it("after the fan-out missed rows, loads the bucket again and sends nothing until it answers", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:30"), 0);
      calls[0]!.resolve(stored("10:00", "10:06", "99", "104", "98", "100.9"));
      await settle();
      expect(s.sent).toHaveLength(1);
      // The rows of 10:08 and 10:09 were trimmed while the reader could not read; 10:15's minutes may be too.
      fanout.recheck(at("10:15:10"));
      expect(calls.map((c) => c.openTimeMs)).toEqual([at("10:00:00"), at("10:15:00")]);
      // A row of the bucket being loaded: not whole yet, so not sent.
      fanout.publish(minute("10:16", "102", "102.5", "101.8", "102.2"), 0);
      expect(s.sent).toHaveLength(1);
      calls[1]!.resolve(stored("10:15", "10:15", "101.5", "103", "101", "102"));
      await settle();
      expect(s.sent.slice(1)).toEqual([
        expect.objectContaining({ openTime: iso("10:15"), open: "101.5", high: "103", low: "101", close: "102.2" }),
      ]);
    });

    it("a row of a later bucket while one loads starts it whole, and the load's answer is moot", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:14:59"), 0);
      fanout.publish(minute("10:15", "102", "102.5", "101.8", "102.2"), 0);
      calls[0]!.resolve(stored("10:00", "10:14", "99", "104", "98", "100.9"));
      await settle();
      expect(s.sent).toEqual([expect.objectContaining({ openTime: iso("10:15"), open: "102", close: "102.2" })]);
    });

    it("a series whose last subscriber left while it loaded is loaded afresh for the next", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined);
      const [a, b] = [socket(), socket()];
      fanout.subscribe(a.conn, "BTC", "15m", at("10:07:30"), 0);
      fanout.unsubscribe(a.conn, "BTC", "15m");
      fanout.publish(minute("10:07", "101", "105", "100.8", "101.2"), 0); // nobody listens: not kept
      fanout.subscribe(b.conn, "BTC", "15m", at("10:07:40"), 0);
      expect(calls).toHaveLength(2);
      calls[0]!.resolve(stored("10:00", "10:06", "99", "104", "98", "100.9")); // read before 10:07 was stored
      await settle();
      expect(b.sent).toEqual([]);
      calls[1]!.resolve(stored("10:00", "10:07", "99", "105", "98", "101.2"));
      await settle();
      expect(b.sent).toEqual([expect.objectContaining({ high: "105", close: "101.2" })]);
    });
  });

  describe("orders a minute's rows by the outputs their open and close came from", () => {
    // Two workers upsert one minute: A with its early quotes, then B with later ones (its row has A's in it). B fans
    // its row out first, then A its older one.
    const a = ordered(minute("10:07", "101", "101.5", "100.8", "101.2"), order("10:07", 1), order("10:07", 20));
    const b = ordered(minute("10:07", "101", "102", "100.8", "101.9"), order("10:07", 1), order("10:07", 40));

    it("an older row after a newer one changes nothing, and is not sent", () => {
      const fanout = new CandleFanout(undefined, () => undefined);
      const [m1, m15] = [socket(), socket()];
      fanout.subscribe(m1.conn, "BTC", "1m", 0, 0);
      fanout.subscribe(m15.conn, "BTC", "15m", 0, 0);
      fanout.publish(ordered(minute("10:06", "100", "101", "100", "101"), order("10:06", 0), order("10:06", 59)), 0);
      fanout.publish(b, 0);
      fanout.publish(a, 0);
      fanout.publish(b, 0); // sent again (a batch retried)
      expect(m1.sent.at(-1)).toMatchObject({ openTime: iso("10:07"), close: "101.9", high: "102" });
      expect(m1.sent).toHaveLength(2);
      expect(m15.sent.at(-1)).toMatchObject({ openTime: iso("10:00"), open: "100", close: "101.9", high: "102" });
      expect(m15.sent).toHaveLength(2);
    });

    it("a loaded bucket keeps its close against an older row of its last minute come during the load", async () => {
      const { load, calls } = loader();
      const fanout = new CandleFanout(load, () => undefined);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", at("10:07:50"), 0);
      fanout.publish(a, 0);
      calls[0]!.resolve({ ...stored("10:00", "10:07", "99", "104", "98", "101.9"), closeOutput: b.closeOutput! });
      await settle();
      expect(s.sent).toEqual([expect.objectContaining({ open: "99", close: "101.9" })]);
    });

    it("a row without them (a worker from before them) is ordered by minute, taking its minute's close", () => {
      const fanout = new CandleFanout(undefined, () => undefined);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "15m", 0, 0);
      fanout.publish(b, 0);
      fanout.publish(minute("10:07", "101", "102", "100.8", "101.7"), 0);
      fanout.publish(minute("10:06", "100", "100", "100", "100"), 0);
      expect(s.sent.at(-1)).toMatchObject({ open: "100", close: "101.7" });
    });

    it("an unreadable order throws before anything changed", () => {
      const fanout = new CandleFanout(undefined, () => undefined);
      const s = socket();
      fanout.subscribe(s.conn, "BTC", "1m", 0, 0);
      fanout.subscribe(s.conn, "BTC", "15m", 0, 0);
      expect(() => fanout.publish({ ...b, closeOutput: "4.5e40" }, 0)).toThrow(/output order 4.5e40 unreadable/);
      expect(s.sent).toEqual([]);
    });
  });
});

describe("a subscriber's first frame", () => {
  it("is the same whether another socket holds the series or not: a bucket that has ended is not sent", async () => {
    // A quiet series: its last minute is 10:00, and nothing has come since. Both subscribe at 10:03:10.
    const { load, calls } = loader();
    const held = new CandleFanout(load, () => undefined);
    const early = socket();
    held.subscribe(early.conn, "BTC", "1m", at("10:00:30"), 0);
    calls[0]!.resolve({ ...stored("10:00", "10:00", "99", "100", "98", "99.5"), interval: "1m" });
    await settle();
    expect(early.sent).toEqual([expect.objectContaining({ openTime: iso("10:00"), close: "99.5" })]);
    const late = socket();
    held.subscribe(late.conn, "BTC", "1m", at("10:03:10"), 0);
    const fresh = new CandleFanout(load, () => undefined);
    const alone = socket();
    fresh.subscribe(alone.conn, "BTC", "1m", at("10:03:10"), 0);
    expect(calls[1]!.openTimeMs).toBe(at("10:03:00")); // the bucket now falls in, of which nothing is stored
    calls[1]!.resolve(undefined);
    await settle();
    expect([late.sent, alone.sent]).toEqual([[], []]);
    // The next row brings the current bucket to both.
    for (const fanout of [held, fresh]) fanout.publish(minute("10:03", "99.6", "99.7", "99.6", "99.7"), 0);
    for (const s of [late, alone])
      expect(s.sent).toEqual([expect.objectContaining({ openTime: iso("10:03"), close: "99.7" })]);
  });
});
