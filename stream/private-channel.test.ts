// The private channel's reading rules on plain data: a store held in memory whose reads the test holds and releases,
// a socket standing in as an object, fake timers. (private.int.test.ts runs the same channel over real Redis.)
import type { WebSocket } from "ws";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PrivateOutput } from "../contract/messages.ts";
import { createLogger } from "../platform/log.ts";
import type { EventsAfter, PrivateState } from "../worker/events.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamConnection } from "./connection.ts";
import { NO_METRICS } from "./metrics.ts";
import { PrivateChannel, type PrivateStore } from "./private-channel.ts";
import { balancesEvent } from "./testing/stream-fixture.ts";

/** The events store's rules (worker/events.ts): the events after `since` up to the first one it does not hold. */
class MemoryStore implements PrivateStore {
  readonly events = new Map<number, PrivateOutput>();
  /** The seqs stored with `more`: their engine step follows them with another event for the user. */
  readonly continued = new Set<number>();
  /** The snapshot's seq, and the highest seq stored above a gap (worker/events.ts readPrivateState). */
  stateSeq = 0;
  aheadSeq = 0;
  /** The snapshot's balances (the read model). */
  balances: Record<string, string> = {};
  /** Events up to this seq have been trimmed: a read after an earlier seq is `beyond_retention`. */
  trimmedThrough = 0;
  reads = 0;
  stateReads = 0;
  /** While set, each read waits for it (what the read returns is what the store held when it was made). */
  gate: Promise<void> | undefined;

  readState(): Promise<PrivateState> {
    this.stateReads++;
    const { stateSeq: seq, aheadSeq, balances } = this;
    return Promise.resolve({
      seq,
      aheadSeq,
      markContinues: this.continued.has(seq),
      aheadContinues: this.continued.has(aheadSeq),
      balances,
      trades: [],
      orders: [],
    });
  }

  async readAfter(_userId: string, since: number, limit = 1000): Promise<EventsAfter> {
    this.reads++;
    if (since < this.trimmedThrough) return { ok: false, reason: "beyond_retention" };
    const events: PrivateOutput[] = [];
    while (events.length < limit && this.events.has(since + events.length + 1))
      events.push(this.events.get(since + events.length + 1)!);
    await this.gate;
    // `since` itself too, while it is kept (EVENTS_AFTER reads from it)
    const continued = [since, ...events.map((e) => e.seq)].filter(
      (seq) => seq > this.trimmedThrough && this.continued.has(seq),
    );
    // The highest seq held above the run after `since` (its contiguous mark), as the ahead set has it
    let run = since + events.length;
    while (this.events.has(run + 1)) run++;
    const aheadSeq = Math.max(0, ...[...this.events.keys()].filter((seq) => seq > run));
    return { ok: true, events, continued, mark: since + events.length, aheadSeq };
  }
}

const USER = "u-channel";

function setUp() {
  const sent: Record<string, unknown>[] = [];
  const closes: number[] = [];
  // What connection.ts uses of the net.Socket under ws: its cork, counted as Node counts it.
  const socket = {
    writableCorked: 0,
    cork: () => void socket.writableCorked++,
    uncork: () => void (socket.writableCorked = Math.max(0, socket.writableCorked - 1)),
  };
  const ws = {
    bufferedAmount: 0,
    _socket: socket,
    send: (data: string) => sent.push(JSON.parse(data) as Record<string, unknown>),
    close: (code: number) => closes.push(code),
  };
  const conn = new StreamConnection(
    ws as unknown as WebSocket,
    { userId: USER, sessionId: "s", sessionExpiresAtMs: Infinity },
    DEFAULT_LIMITS,
    NO_METRICS,
    0,
  );
  const store = new MemoryStore();
  const logs: Record<string, unknown>[] = [];
  const gaps: number[] = [];
  const channel = new PrivateChannel(conn, {
    store,
    quotes: new Map(),
    log: createLogger("stream-test", { level: "info", sink: (line) => logs.push(JSON.parse(line) as never) }),
    metrics: { gapWaiting: (delta) => gaps.push(delta) },
    now: () => performance.now(),
    flushQuotes: () => undefined,
  });
  const seqs = () => sent.filter((f) => f.type === "event").map((f) => f.seq);
  /** What went out after the snapshot: "event <seq>" and "summary <seq>". */
  const frames = () => sent.filter((f) => f.type !== "snapshot").map((f) => `${String(f.type)} ${String(f.seq)}`);
  /** Every frame, a snapshot's or resync's with the USD balance its summary shows. */
  const all = () =>
    sent.map((f) =>
      f.type === "snapshot" || f.type === "resync"
        ? `${f.type} ${String(f.seq)} balance ${(f.summary as { balance: string }).balance}`
        : `${String(f.type)} ${String(f.seq)}`,
    );
  return { channel, store, seqs, frames, all, logs, gaps, closes, ws, conn, socket };
}

const event = (seq: number) => balancesEvent(USER, seq, String(seq));

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("PrivateChannel", () => {
  it("hands its events to the kernel at once, not at the socket's turn to be uncorked after a quote burst", async () => {
    const { channel, store, seqs, socket } = setUp();
    // The turns at which corked sockets are uncorked never come here: only the channel's own flush can uncork.
    const turns: (() => void)[] = [];
    vi.stubGlobal("setImmediate", (fn: () => void) => turns.push(fn));
    try {
      await channel.start(undefined);
      store.events.set(1, event(1));
      channel.notify(event(1));
      await vi.advanceTimersByTimeAsync(0);
      expect(seqs()).toEqual([1]);
      expect(turns.length).toBeGreaterThan(0); // it was corked for a turn
      expect(socket.writableCorked).toBe(0);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("a recheck while a read is under way reads again once it is done", async () => {
    const { channel, store, seqs } = setUp();
    await channel.start(undefined);
    let release = () => undefined as void;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    channel.recheck(); // reads: the store holds nothing yet
    store.events.set(1, event(1)); // stored while its notification was lost
    channel.recheck();
    store.gate = undefined;
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(seqs()).toEqual([1]);
    expect(store.reads).toBe(2);
  });

  it("reads again at once when an event is notified during a read that came back empty, not on the retry", async () => {
    const { channel, store, seqs, gaps } = setUp();
    // A resume that is up to date: the read for it is made before 4 is stored, and 4's notification comes during it.
    for (const n of [1, 2, 3]) store.events.set(n, event(n));
    store.stateSeq = 3;
    let release = () => undefined as void;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    const resuming = channel.start(3);
    await vi.advanceTimersByTimeAsync(0);
    expect(store.reads).toBe(1);
    store.events.set(4, event(4));
    channel.notify(event(4));
    store.gate = undefined;
    release();
    await resuming; // no fake time passes: a retry timer would not have fired
    expect(seqs()).toEqual([4]);
    expect(store.reads).toBe(2);
    expect(gaps).toEqual([]); // never counted as waiting on a gap
  });

  it("backs off on a gap that does not fill, to one read per 5 s, and logs and counts it once, then its end", async () => {
    const { channel, store, seqs, logs, gaps } = setUp();
    await channel.start(undefined);
    store.events.set(2, event(2)); // 1 never stored (an output the worker refused)
    channel.notify(event(2));
    await vi.advanceTimersByTimeAsync(30_000);
    // Reads at 0, 0.25, 0.75, 1.75, 3.75, 7.75 s, then every 5 s: 12.75 … 27.75.
    expect(store.reads).toBe(10);
    expect(seqs()).toEqual([]);
    expect(gaps).toEqual([1]);
    const waiting = logs.filter((l) => l.event === "private_gap_waiting");
    expect(waiting).toEqual([expect.objectContaining({ userId: USER, missingSeq: 1, notifiedSeq: 2 })]);
    // It fills after all: both go out on the next read, and the channel is no longer waiting.
    store.events.set(1, event(1));
    await vi.advanceTimersByTimeAsync(5_000);
    expect(seqs()).toEqual([1, 2]);
    expect(gaps).toEqual([1, -1]);
    expect(logs.filter((l) => l.event === "private_gap_closed")).toEqual([
      expect.objectContaining({ level: "info", userId: USER, missingSeq: 1, how: "filled", waitedMs: 32_750 }),
    ]);
    const reads = store.reads;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(store.reads).toBe(reads);
  });

  it("logs the end of a gap it logged as waiting, skipped by a resync or open at the close, and of no other", async () => {
    const gapLines = (logs: Record<string, unknown>[]) =>
      logs.filter((l) => String(l.event).startsWith("private_gap")).map((l) => `${String(l.event)} ${String(l.how)}`);
    // A gap that fills within 5 s: neither line
    const short = setUp();
    await short.channel.start(undefined);
    short.store.events.set(2, event(2));
    short.channel.notify(event(2));
    await vi.advanceTimersByTimeAsync(1_000);
    short.store.events.set(1, event(1));
    short.channel.notify(event(1));
    await vi.advanceTimersByTimeAsync(0);
    expect(short.seqs()).toEqual([1, 2]);
    expect(short.gaps).toEqual([1, -1]);
    expect(gapLines(short.logs)).toEqual([]);
    // One the channel stops waiting for, its socket closed
    const closed = setUp();
    await closed.channel.start(undefined);
    closed.store.events.set(2, event(2));
    closed.channel.notify(event(2));
    await vi.advanceTimersByTimeAsync(10_000);
    closed.channel.stop();
    expect(gapLines(closed.logs)).toEqual(["private_gap_waiting undefined", "private_gap_closed channel_closed"]);
    // One that a resync skips: the missing event was trimmed from the store before it came
    const skipped = setUp();
    await skipped.channel.start(undefined);
    skipped.store.events.set(2, event(2));
    skipped.channel.notify(event(2));
    await vi.advanceTimersByTimeAsync(10_000);
    [skipped.store.trimmedThrough, skipped.store.stateSeq] = [1, 2];
    await vi.advanceTimersByTimeAsync(5_000);
    expect(skipped.gaps).toEqual([1, -1]);
    expect(gapLines(skipped.logs)).toEqual(["private_gap_waiting undefined", "private_gap_closed resync"]);
    expect(skipped.logs.find((l) => l.event === "private_gap_closed")).toMatchObject({ missingSeq: 1, userId: USER });
  });

  it("reads what the store holds above a gap once it fills, though it subscribed after their fan-out", async () => {
    for (const since of [undefined, 1]) {
      const { channel, store, seqs } = setUp();
      // 1 sent; a worker died holding 2, another stored and fanned out 3..5 above the gap before this subscribe.
      for (const n of [1, 3, 4, 5]) store.events.set(n, event(n));
      [store.stateSeq, store.aheadSeq] = [1, 5];
      await channel.start(since);
      store.events.set(2, event(2)); // the claimed 2 is stored: the mark moves to 5, and only 2 is fanned out
      channel.notify(event(2));
      await vi.advanceTimersByTimeAsync(0);
      expect(seqs(), `since ${since}`).toEqual([2, 3, 4, 5]);
    }
  });

  it("learns from a recheck's read of events stored above a gap whose fan-out it missed, and sends them", async () => {
    const { channel, store, seqs, gaps } = setUp();
    for (let n = 1; n <= 10; n++) store.events.set(n, event(n));
    store.stateSeq = 10;
    await channel.start(undefined);
    // A worker died holding 11; another stored 12 above the gap and fanned it out, but this replica's reader lost
    // that entry (the fan-out's trim overtook it): it rechecks, and the store holds nothing after 10 yet
    store.events.set(12, event(12));
    channel.recheck();
    await vi.advanceTimersByTimeAsync(0);
    expect(gaps).toEqual([1]); // waiting for 11
    // 11 is claimed and stored (the mark moves over 12), and only 11 is fanned out
    store.events.set(11, event(11));
    channel.notify(event(11));
    await vi.advanceTimersByTimeAsync(0);
    expect(seqs()).toEqual([11, 12]);
    expect(gaps).toEqual([1, -1]);
  });

  it("after a resync, reads what the store holds above a gap once it fills, though no fan-out will name it", async () => {
    const { channel, store, seqs } = setUp();
    for (let n = 1; n <= 5; n++) store.events.set(n, event(n));
    store.stateSeq = 5;
    await channel.start(undefined);
    // The fan-out reader lost entries for long: 6 has been trimmed from the store since, 7 and 8 are kept, and 10 is
    // stored above a gap at 9 (a worker died holding it). The recheck's read resyncs at 8.
    for (const n of [7, 8, 10]) store.events.set(n, event(n));
    [store.trimmedThrough, store.stateSeq, store.aheadSeq] = [6, 8, 10];
    channel.recheck();
    await vi.advanceTimersByTimeAsync(0);
    // 9 is claimed and stored (the mark moves over 10), and only 9 is fanned out
    store.events.set(9, event(9));
    channel.notify(event(9));
    await vi.advanceTimersByTimeAsync(0);
    expect(seqs()).toEqual([9, 10]);
  });

  it("sends the summary after an engine step's last event for the user, not between its events", async () => {
    const { channel, store, frames } = setUp();
    await channel.start(undefined);
    // Live: a step's first event (more to come), then its last
    channel.notify(event(1), true);
    expect(frames()).toEqual(["event 1"]);
    expect(channel.midStep).toBe(true);
    channel.notify(event(2));
    expect(frames()).toEqual(["event 1", "event 2", "summary 2"]);
    expect(channel.midStep).toBe(false);
    // From the store: the step's last event notified before its first, which closes the gap; one summary after both
    for (const n of [3, 4]) store.events.set(n, event(n));
    channel.notify(event(4));
    channel.notify(event(3), true);
    await vi.advanceTimersByTimeAsync(0);
    expect(frames().slice(3)).toEqual(["event 3", "event 4", "summary 4"]);
    // A read from the store that ends on an event with more to come holds the summary back too
    store.events.set(5, event(5));
    channel.notify(event(6));
    channel.notify(event(5), true);
    await vi.advanceTimersByTimeAsync(0);
    expect(frames().slice(6)).toEqual(["event 5"]);
  });

  it("sends a summary only once it shows the account as of its seq: after a resume's replay, past a gap's events", async () => {
    const summaries = (frames: string[]) => frames.filter((f) => f.startsWith("summary"));
    // A resume from 0 of an account at 700, read in two batches: the account read for it is as of 700 all along
    const resume = setUp();
    for (let n = 1; n <= 700; n++) resume.store.events.set(n, event(n));
    [resume.store.stateSeq, resume.store.balances] = [700, { USD: "700" }];
    let release = () => undefined as void;
    resume.store.gate = new Promise<void>((resolve) => (release = resolve));
    const resuming = resume.channel.start(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(resume.channel.summaryReady).toBe(false); // a price-driven summary waits too (hub.ts)
    resume.store.gate = undefined;
    release();
    await resuming;
    expect(resume.seqs()).toHaveLength(700);
    expect(summaries(resume.frames())).toEqual(["summary 700"]);
    expect(resume.channel.summaryReady).toBe(true);
    // A snapshot at 1 whose account already shows 3..5, stored above the gap at 2: no summary until 5 went out
    const gap = setUp();
    for (const n of [1, 3, 4, 5]) gap.store.events.set(n, event(n));
    [gap.store.stateSeq, gap.store.aheadSeq, gap.store.balances] = [1, 5, { USD: "5" }];
    await gap.channel.start(undefined);
    expect(gap.channel.summaryReady).toBe(false);
    gap.store.events.set(2, event(2));
    gap.channel.notify(event(2)); // sent at once; 3..5 are read from the store
    await vi.advanceTimersByTimeAsync(0);
    expect(gap.frames()).toEqual(["event 2", "event 3", "event 4", "event 5", "summary 5"]);
    // A resume from past the store's mark (another deployment's seq): none before the resync resets the account
    const ahead = setUp();
    ahead.store.stateSeq = 3;
    ahead.store.gate = new Promise<void>(() => undefined);
    void ahead.channel.start(9);
    await vi.advanceTimersByTimeAsync(0);
    expect(ahead.channel.summaryReady).toBe(false);
  });

  it("after a resync, sends the events notified while its state was read at once, not on the retry as a gap", async () => {
    const { channel, store, frames, gaps } = setUp();
    // A resume from 1 with 2 trimmed: a resync, at 5. 6 is stored and notified while the resync's state is read.
    for (const n of [3, 4, 5]) store.events.set(n, event(n));
    [store.trimmedThrough, store.stateSeq] = [2, 5];
    const readState = store.readState.bind(store);
    let release: (() => void) | undefined;
    let reads = 0;
    store.readState = () => {
      const state = readState(); // the store as the read found it
      return ++reads === 1 ? state : new Promise((resolve) => (release = () => resolve(state)));
    };
    const resuming = channel.start(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(release).toBeDefined();
    store.events.set(6, event(6));
    channel.notify(event(6));
    release!();
    await resuming; // no fake time passes: a retry timer would not have fired
    expect(frames()).toEqual(["resync 5", "event 6", "summary 6"]);
    expect(gaps).toEqual([]); // never counted as waiting on a gap
  });

  it("closes the socket with 1011 when a resync cannot be sent, rather than go on past what it skipped", async () => {
    const { channel, store, frames, logs, closes } = setUp();
    // Resuming from 0 with 1 trimmed: a resync, over a read model the summary cannot read.
    for (const n of [2, 3]) store.events.set(n, event(n));
    [store.trimmedThrough, store.stateSeq, store.balances] = [1, 3, { USD: "not a number" }];
    await channel.start(0);
    expect(closes).toEqual([1011]);
    expect(logs.filter((l) => l.event === "private_channel_failed")).toEqual([
      expect.objectContaining({ userId: USER, seq: 3 }),
    ]);
    // Nothing after it goes out on this socket: the client resumes from its last seq on the next.
    store.events.set(4, event(4));
    channel.notify(event(4));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(frames()).toEqual([]);
  });

  it("holds the summary back after an event read from the store whose step goes on, until it ends", async () => {
    const { channel, store, frames } = setUp();
    // A resume whose read ends at the mark, between a trade's opening (2) and the balance change that pays for it (3)
    for (const n of [1, 2]) store.events.set(n, event(n));
    store.continued.add(2);
    store.stateSeq = 2;
    await channel.start(1);
    expect(frames()).toEqual(["event 2"]);
    expect(channel.midStep).toBe(true);
    store.events.set(3, event(3));
    channel.notify(event(3));
    expect(frames()).toEqual(["event 2", "event 3", "summary 3"]);
    // Notifications lost (the fan-out reader missed entries): the read ends inside a step all the same
    for (const n of [4, 5]) store.events.set(n, event(n));
    store.continued.add(5);
    channel.recheck();
    await vi.advanceTimersByTimeAsync(0);
    expect(frames().slice(3)).toEqual(["event 4", "event 5"]);
    store.events.set(6, event(6));
    channel.notify(event(6));
    expect(frames().slice(3)).toEqual(["event 4", "event 5", "event 6", "summary 6"]);
    // A step across two reads of a long catch-up (500 events each): one summary, after its last event
    for (let n = 7; n <= 507; n++) store.events.set(n, event(n));
    store.continued.add(506);
    channel.recheck();
    await vi.advanceTimersByTimeAsync(0);
    expect(frames().filter((f) => f.startsWith("summary"))).toEqual(["summary 3", "summary 6", "summary 507"]);
  });

  it("holds the summary back from the start when it starts at a step's first event, its next not stored yet", async () => {
    // 2 opened a trade, stored with `more`; 3 (its margin paid) is still with the worker. The mark is 2.
    for (const [since, stateSeq] of [
      [undefined, 2], // a snapshot at the mark, sent after its 2 s wait: the state read says the event there goes on
      [2, 2], // a resume from the mark: so does the state read, and the read after 2
      [2, 1], // a resume from 2 stored after the state read: the read after 2 says it
    ] as const) {
      const { channel, store, frames } = setUp();
      for (const n of [1, 2]) store.events.set(n, event(n));
      store.continued.add(2);
      store.stateSeq = stateSeq;
      const starting = channel.start(since);
      await vi.advanceTimersByTimeAsync(2_000);
      await starting;
      expect(channel.midStep, `since ${since}, state at ${stateSeq}`).toBe(true);
      expect(channel.summaryReady).toBe(false);
      store.events.set(3, event(3));
      channel.notify(event(3));
      expect(frames()).toEqual(["event 3", "summary 3"]);
    }
  });

  it("sends no snapshot or resync read in the middle of an engine step: it waits for the step's end", async () => {
    for (const since of [undefined, 0]) {
      const { channel, store, all } = setUp();
      // 1 paid in 1,000 USD, 2 opened a trade (its margin of 100 still in the balance: the read models say 1,100),
      // stored with `more`; 3 (the margin paid) is in the worker's next batch. A resume from 0 finds 1 trimmed.
      for (const n of [1, 2]) store.events.set(n, event(n));
      store.continued.add(2);
      [store.stateSeq, store.balances, store.trimmedThrough] = [2, { USD: "1100" }, since === undefined ? 0 : 1];
      const starting = channel.start(since);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(all(), `since ${since}`).toEqual([]);
      expect(store.stateReads).toBe(since === undefined ? 3 : 4); // 0, 0.25, 0.75 s; a resume's own read first
      // 3 is stored (the mark moves to 3) and fanned out: the state is read again at once, and sent
      store.events.set(3, event(3));
      [store.stateSeq, store.balances] = [3, { USD: "1000" }];
      channel.notify(event(3));
      await vi.advanceTimersByTimeAsync(0);
      await starting;
      const type = since === undefined ? "snapshot" : "resync";
      expect(all()).toEqual([`${type} 3 balance 1000`]);
      expect(channel.summaryReady).toBe(true);
      // Live from 3 on: no event sent twice, none lost
      store.events.set(4, event(4));
      channel.notify(event(4));
      expect(all().slice(1)).toEqual(["event 4", "summary 4"]);
    }
  });

  it("after such a wait, sends the events notified while the state was read again, each once", async () => {
    const { channel, store, all, gaps } = setUp();
    for (const n of [1, 2]) store.events.set(n, event(n));
    store.continued.add(2);
    store.stateSeq = 2;
    const readState = store.readState.bind(store);
    let release: (() => void) | undefined;
    store.readState = () => {
      const state = readState(); // the store as the read found it
      return store.stateReads === 1 ? state : new Promise((resolve) => (release = () => resolve(state)));
    };
    const starting = channel.start(undefined);
    await vi.advanceTimersByTimeAsync(0);
    // 3 ends the step: it wakes the wait, and its read finds the mark at 3; 4 is stored and notified during that read
    store.events.set(3, event(3));
    store.stateSeq = 3;
    channel.notify(event(3));
    await vi.advanceTimersByTimeAsync(0);
    expect(release).toBeDefined();
    store.events.set(4, event(4));
    store.stateSeq = 4;
    channel.notify(event(4));
    release!();
    await starting;
    expect(all()).toEqual(["snapshot 3 balance 0", "event 4", "summary 4"]);
    expect(store.stateReads).toBe(2);
    expect(gaps).toEqual([]);
  });

  it("sends the state read mid-step after 2 s, logged, and no summary frame until the step's end", async () => {
    const { channel, store, all, logs } = setUp();
    for (const n of [1, 2]) store.events.set(n, event(n));
    store.continued.add(2);
    [store.stateSeq, store.balances] = [2, { USD: "1100" }];
    const starting = channel.start(undefined);
    await vi.advanceTimersByTimeAsync(1_999);
    expect(all()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await starting;
    expect(all()).toEqual(["snapshot 2 balance 1100"]);
    expect(store.stateReads).toBe(5); // 0, 0.25, 0.75, 1.75 and 2 s
    expect(logs.filter((l) => l.event === "private_state_mid_step")).toEqual([
      expect.objectContaining({ level: "warn", userId: USER, seq: 2, waitedMs: 2_000 }),
    ]);
    expect(channel.summaryReady).toBe(false);
    store.events.set(3, event(3));
    channel.notify(event(3));
    expect(all().slice(1)).toEqual(["event 3", "summary 3"]);
  });

  it("ends the wait for a step when it stops (unsubscribe, socket closed): nothing sent, no timer left", async () => {
    const { channel, store, all } = setUp();
    for (const n of [1, 2]) store.events.set(n, event(n));
    store.continued.add(2);
    store.stateSeq = 2;
    const starting = channel.start(undefined);
    await vi.advanceTimersByTimeAsync(500);
    channel.stop();
    await starting; // no fake time passes
    expect(vi.getTimerCount()).toBe(0);
    const reads = store.stateReads;
    store.events.set(3, event(3));
    store.stateSeq = 3;
    channel.notify(event(3));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(all()).toEqual([]);
    expect([store.stateReads, store.reads]).toEqual([reads, 0]);
  });

  it("stays stopped when its snapshot closed the socket: no read, retry or gap on it after", async () => {
    const { channel, store, closes, gaps, ws, conn } = setUp();
    conn.private = channel;
    ws.bufferedAmount = 2 * DEFAULT_LIMITS.privateBufferCapBytes; // a client that stopped reading: 4008
    // 2 and 3 stored above a gap: a channel that went on would read the store for them, and wait for the gap.
    for (const n of [2, 3]) store.events.set(n, event(n));
    [store.stateSeq, store.aheadSeq] = [0, 3];
    await channel.start(undefined);
    expect(closes).toEqual([4008]);
    channel.notify(event(1));
    await vi.advanceTimersByTimeAsync(30_000);
    expect(store.reads).toBe(0);
    expect(gaps).toEqual([]);
  });

  it("a read that fails is retried, and stops being retried once one succeeds", async () => {
    const { channel, store, logs, gaps } = setUp();
    await channel.start(undefined);
    const readAfter = store.readAfter.bind(store);
    let failures = 2;
    store.readAfter = (...args) => (failures-- > 0 ? Promise.reject(new Error("redis down")) : readAfter(...args));
    channel.recheck();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(logs.filter((l) => l.event === "private_read_failed")).toHaveLength(2);
    expect(store.reads).toBe(1); // the third read, which succeeded; nothing after it
    expect(gaps).toEqual([]);
  });
});
