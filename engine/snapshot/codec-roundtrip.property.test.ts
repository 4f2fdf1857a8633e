// decode(encode(state)) against state, field by field, for states that random logs (engine/testing/random-log.ts)
// reach, each snapshot taken at a few points of its log: what replay.property.test.ts cannot see, a field a restore
// loses that no later entry happens to read. Every field of every type a snapshot holds is listed below with how its
// restored value compares with the original's: as is, or through a projection where the restore rebuilds a layout
// (heap positions, trailing groups) or the field is a reference. tsc refuses a list that lacks a field of its type,
// and the test refuses an object with a field its list lacks, naming where the codec would save it: so a field added
// later is saved (and compared here) or declared derived, never forgotten. SNAPSHOT_ROUNDTRIP_RUNS sets the run count.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { apply } from "../core/apply.ts";
import { makeParams } from "../core/params.ts";
import type { PositionedHeap } from "../core/positioned-heap.ts";
import type { Receipt } from "../core/receipts.ts";
import {
  createState,
  factsOf,
  type Account,
  type EngineState,
  type House,
  type PendingBook,
  type PendingOrder,
  type Quote,
  type Trade,
  type TriggerBook,
} from "../core/state.ts";
import type { TrailBook, TrailSide } from "../core/trailing-book.ts";
import { bestOf, type TrailGroup, type TrailingStop } from "../core/trailing-stop.ts";
import type { TrailSystem } from "../core/trailing-system.ts";
import type { TriggerHeap } from "../core/trigger-heap.ts";
import { commandsArbitrary, toLog } from "../testing/random-log.ts";
import { decodeSnapshot, encodeSnapshot } from "./codec.ts";

const RUNS = Number(process.env.SNAPSHOT_ROUNDTRIP_RUNS ?? 1500);

/** How a restored field compares with the original's: as is (deep-equal), or through a projection of its owner. */
type Compare<T> = "same" | ((owner: T) => unknown);

interface Shape<T> {
  readonly name: string;
  /** Where the codec saves this type's fields, or rebuilds them: what the message names when a field is new. */
  readonly codec: string;
  /** Every field of T: a mapped type, so tsc refuses the list when T gains a field. */
  readonly fields: { readonly [K in keyof T]-?: Compare<T> };
}

const THIS_FILE = "engine/snapshot/codec-roundtrip.property.test.ts";

/** A field whose value is a heap's layout, which the restore rebuilds: its heap's contents are compared instead. */
const layout = (): undefined => undefined;

/** `o`'s fields as `shape` compares them; throws, naming the field, when `o` has a field the list lacks or the reverse. */
function project<T extends object>(shape: Shape<T>, o: T): Record<string, unknown> {
  const known = Object.keys(shape.fields);
  const actual = Object.keys(o);
  const added = actual.filter((k) => !known.includes(k));
  if (added.length > 0) {
    throw new Error(
      `${shape.name} has ${added.map((k) => `"${k}"`).join(", ")}, which ${THIS_FILE} does not know. If a restore ` +
        `must keep it, save and read it in ${shape.codec}, under a new SNAPSHOT_VERSION; if it is derived, rebuild ` +
        `it on decode. Either way, then add it to ${shape.name}'s fields in ${THIS_FILE}.`,
    );
  }
  const gone = known.filter((k) => !actual.includes(k));
  if (gone.length > 0) {
    throw new Error(
      `${shape.name} no longer has ${gone.join(", ")}: remove it from ${shape.name}'s fields in ${THIS_FILE}.`,
    );
  }
  const fields: [string, Compare<T>][] = Object.entries(shape.fields);
  return Object.fromEntries(
    fields.map(([k, compare]) => [k, compare === "same" ? (o as Record<string, unknown>)[k] : compare(o)]),
  );
}

/** A heap the restore rebuilds by heapify: its size, its top and its items, not where each sits. */
function contents<T>(heap: PositionedHeap<T>, id: (item: T) => number) {
  const top = heap.peek();
  return { size: heap.size, top: top === undefined ? null : id(top), items: [...heap].map(id).sort((a, b) => a - b) };
}

/** A trigger heap's layout is saved, so it compares as laid out. */
const laidOut = (heap: TriggerHeap) => [...heap].map((t) => t.seq);

/** Where an order or trade is filed, as its account's user id; and whether that account files it. */
const owner = (item: Trade | PendingOrder, filed: ReadonlyMap<number, unknown>) => ({
  userId: item.account.userId,
  filed: filed.get(item.seq) === item,
});

const orderSeq = (o: PendingOrder) => o.seq;

const receiptFacts = (r: Receipt): unknown => ("trade" in r ? { ...r, trade: factsOf(r.trade) } : r);

const STATE: Shape<EngineState> = {
  name: "EngineState",
  codec: "encodeSnapshot and readHead (engine/snapshot/codec.ts)",
  fields: {
    params: "same",
    lastInputId: "same",
    lastInputMs: "same",
    lastInputSeq: "same",
    nextSeq: "same",
    ignoredPriceUpdates: "same",
    house: (s) => project(HOUSE, s.house),
    // By user id: a restore adds the accounts in the snapshot's order (sorted), and nothing reads the map in order.
    accounts: (s) =>
      [...s.accounts].sort(([a], [b]) => (a < b ? -1 : 1)).map(([userId, a]) => [userId, project(ACCOUNT, a)]),
    quotes: (s) => s.quotes.map((q) => (q === undefined ? null : project(QUOTE, q))),
    books: (s) => s.books.map((b) => project(TRIGGER_BOOK, b)),
    pendingBooks: (s) => s.pendingBooks.map((b) => project(PENDING_BOOK, b)),
    expiries: (s) => contents(s.expiries, orderSeq),
    // In log order, receipts decoded (a restored window keeps them packed until asked).
    idempotency: ({ idempotency: w }) => ({
      size: w.size,
      owners: w.ownerCount,
      entries: [...w].map(([key, e]) => [key, e.atMs, receiptFacts(e.receipt)]),
    }),
    assetBySymbol: (s) => [...s.assetBySymbol],
    assetByMarket: (s) => [...s.assetByMarket],
  },
};

const HOUSE: Shape<House> = {
  name: "House",
  codec: "encodeSnapshot and readHead (engine/snapshot/codec.ts)",
  fields: { usd: "same", holdings: "same" },
};

const QUOTE: Shape<Quote> = {
  name: "Quote",
  codec: "the quotes of encodeSnapshot and readHead (engine/snapshot/codec.ts)",
  fields: { bidTicks: "same", askTicks: "same", atMs: "same", exchangeTimeUs: "same", source: "same" },
};

const ACCOUNT: Shape<Account> = {
  name: "Account",
  codec: "the accounts section of encodeSnapshot and decodeSnapshot (engine/snapshot/codec.ts)",
  fields: {
    userId: "same",
    usd: "same",
    holdings: "same",
    // In the maps' insertion order (sequence order): what a restore must keep, as views list them in it.
    openTrades: (a) => [...a.openTrades].map(([seq, t]) => [seq, project(TRADE, t)]),
    openMarginMicros: "same", // derived: each restored trade is filed again
    pendingOrders: (a) => [...a.pendingOrders].map(([seq, o]) => [seq, project(PENDING_ORDER, o)]),
    eventSeq: "same",
  },
};

const TRADE: Shape<Trade> = {
  name: "Trade",
  codec: "writeTrade and readTrade (TRADE, engine/snapshot/codec.ts), or the per-trade fields of the accounts section",
  fields: {
    seq: "same",
    assetIndex: "same",
    isLong: "same",
    marginMicros: "same",
    leverage: "same",
    quantitySteps: "same",
    openPriceTicks: "same",
    stopLossTicks: "same",
    takeProfitTicks: "same",
    liquidationTicks: "same",
    openedAtMs: "same",
    account: (t) => owner(t, t.account.openTrades),
    exitTicks: "same", // derived from the stop-loss and liquidation levels
    trailing: (t) => (t.trailing === null ? null : project(TRAILING_STOP, t.trailing)),
    exitPos: "same", // saved: the trigger heaps are restored as laid out
    profitPos: "same",
  },
};

const TRAILING_STOP: Shape<TrailingStop> = {
  name: "TrailingStop",
  codec: "writeTrailingStops and readTrailingStops (engine/snapshot/codec.ts)",
  fields: {
    trade: (s) => ({ seq: s.trade.seq, attached: s.trade.trailing === s }),
    byPercent: "same",
    amount: "same",
    activationTicks: "same",
    activated: "same",
    // Its group, as the group's best price: equal best price is the same group (TRAIL_GROUP compares the groups).
    group: (s) => (s.group === null ? null : bestOf(s)),
    finalBestTicks: "same",
    // Its place in its group's pairing heap, and (pending) in the activation heap: layouts a restore rebuilds.
    child: layout,
    sibling: layout,
    prev: layout,
    pos: layout,
  },
};

const PENDING_ORDER: Shape<PendingOrder> = {
  name: "PendingOrder",
  codec: "writePendingOrders and readPendingOrders (engine/snapshot/pending-codec.ts)",
  fields: {
    seq: "same",
    assetIndex: "same",
    isLong: "same",
    isStop: "same",
    priceTicks: "same",
    marginMicros: "same",
    leverage: "same",
    stopLossTicks: "same",
    takeProfitTicks: "same",
    expiresAtMs: "same",
    placedAtMs: "same",
    account: (o) => owner(o, o.account.pendingOrders),
    oco: (o) => (o.oco === undefined ? null : { seq: o.oco.seq, mutual: o.oco.oco === o }),
    // Whether it is in its fill and expiry heaps; where is the layout heapify rebuilds.
    heapPos: (o) => o.heapPos >= 0,
    expiryPos: (o) => o.expiryPos >= 0,
  },
};

const TRIGGER_BOOK: Shape<TriggerBook> = {
  name: "TriggerBook",
  codec: "the heap sizes and per-trade positions of encodeSnapshot and decodeSnapshot (engine/snapshot/codec.ts)",
  fields: {
    longExit: (b) => laidOut(b.longExit),
    longProfit: (b) => laidOut(b.longProfit),
    shortExit: (b) => laidOut(b.shortExit),
    shortProfit: (b) => laidOut(b.shortProfit),
    trailing: (b) => project(TRAIL_BOOK, b.trailing),
  },
};

const PENDING_BOOK: Shape<PendingBook> = {
  name: "PendingBook",
  codec: "readPendingOrders (engine/snapshot/pending-codec.ts), which rebuilds the fill heaps",
  fields: {
    longLimit: (b) => contents(b.longLimit, orderSeq),
    longStop: (b) => contents(b.longStop, orderSeq),
    shortLimit: (b) => contents(b.shortLimit, orderSeq),
    shortStop: (b) => contents(b.shortStop, orderSeq),
  },
};

/** The trailing index is not saved: readTrailingStops puts each stop back. */
const TRAIL_INDEX = "readTrailingStops (engine/snapshot/codec.ts), which rebuilds the trailing index";

const TRAIL_BOOK: Shape<TrailBook> = {
  name: "TrailBook",
  codec: TRAIL_INDEX,
  fields: {
    long: (b) => project(TRAIL_SIDE, b.long),
    short: (b) => project(TRAIL_SIDE, b.short),
    work: () => undefined, // counters of work done, for tests: not part of the state
  },
};

const TRAIL_SIDE: Shape<TrailSide> = {
  name: "TrailSide",
  codec: TRAIL_INDEX,
  fields: {
    byDistance: (s) => groups(s.byDistance),
    byPercent: (s) => groups(s.byPercent),
    pending: (s) => contents(s.pending, (stop) => stop.trade.seq),
  },
};

const TRAIL_GROUP: Shape<TrailGroup> = {
  name: "TrailGroup",
  codec: "readTrailingStops and TrailSystem.restore (engine/core/trailing-system.ts), which rebuild the groups",
  fields: {
    best: "same",
    // The stop that fires first, then all the group's stops: how its pairing heap is laid out is rebuilt.
    root: (g) => (g.root === null ? null : [g.root.trade.seq, stopsOf(g.root)]),
    size: "same",
    parent: (g) => g.parent?.best ?? null,
    level: "same",
    levelSeq: "same",
    worse: (g) => g.worse?.best ?? null,
    better: (g) => g.better?.best ?? null,
    pos: layout,
  },
};

/** A system's groups down its stack, from the least good best (found from the level heap's top, through `worse`). */
function groups(system: TrailSystem) {
  let g = system.peek() ?? null;
  while (g !== null && g.worse !== null) g = g.worse;
  const stack: Record<string, unknown>[] = [];
  for (; g !== null; g = g.better) stack.push(project(TRAIL_GROUP, g));
  return { groupCount: system.groupCount, stack };
}

/** The trade sequences of the stops in a pairing heap, sorted. */
function stopsOf(root: TrailingStop): number[] {
  const seqs: number[] = [];
  const todo = [root];
  for (let s = todo.pop(); s !== undefined; s = todo.pop()) {
    seqs.push(s.trade.seq);
    if (s.child !== null) todo.push(s.child);
    if (s.sibling !== null) todo.push(s.sibling);
  }
  return seqs.sort((a, b) => a - b);
}

type Command = Parameters<typeof toLog>[0][number];

/**
 * Logs in which every open is on one market at leverage 1 to 5 with a trailing stop: stops that live long enough to
 * share a best price (one group, which a restore rebuilds), which the plain logs rarely make.
 */
const trailingLogs = commandsArbitrary(400).map((commands) =>
  commands.map((c): Command =>
    c.c !== "open"
      ? c
      : {
          ...c,
          m: 0,
          leverage: (Math.abs(Math.round(c.leverage)) % 5) + 1,
          trail: c.trail ?? { distanceBps: (Math.abs(c.tpBps ?? 0) % 300) + 1, percent: "1", activationBps: null },
        },
  ),
);

/** What a compared state holds that a restore could lose: the property is only as strong as the states it sees. */
function noteKinds(s: EngineState, seen: Set<string>): void {
  const groupSizes = new Map<string, number>();
  for (const a of s.accounts.values()) {
    if (a.eventSeq > 0) seen.add("numbered events");
    for (const t of a.openTrades.values()) {
      seen.add(t.exitPos >= 0 ? "trade with an exit" : "trade without an exit");
      if (t.profitPos >= 0) seen.add("trade with a take-profit");
      if (t.trailing === null) continue;
      seen.add(t.trailing.activated ? "active trailing stop" : "pending trailing stop");
      if (!t.trailing.activated) continue;
      const group = `${t.assetIndex} ${t.isLong} ${t.trailing.byPercent} ${bestOf(t.trailing)}`;
      groupSizes.set(group, (groupSizes.get(group) ?? 0) + 1);
    }
    for (const o of a.pendingOrders.values()) {
      seen.add(o.oco === undefined ? "pending order" : "OCO leg");
      if (o.expiryPos >= 0) seen.add("expiring order");
    }
  }
  if ([...groupSizes.values()].some((n) => n > 1)) seen.add("trailing group of several stops");
  if (s.idempotency.size > 0) seen.add("remembered request");
}

describe("snapshot round trip", () => {
  it("restores every field of the state: values, references, Map order, saved heap layouts, remembered requests", () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(
        fc.oneof(commandsArbitrary(400), trailingLogs),
        fc.constantFrom(8, 1),
        fc.array(fc.nat(), { maxLength: 3 }),
        (commands, maxOpenTradesPerUser, cutSeeds) => {
          // Small idempotency caps, so eviction leaves gaps in the window; an open-trade limit of 1 rejects fills.
          const params = makeParams({ maxOpenTradesPerUser, idempotencyMaxPerUser: 4, idempotencyMaxEntries: 9 });
          const log = toLog(commands);
          const cuts = new Set([...cutSeeds.map((c) => c % log.length), log.length - 1]);
          const state = createState(params);
          log.forEach((entry, i) => {
            apply(state, entry);
            if (!cuts.has(i)) return;
            noteKinds(state, seen);
            const restored = decodeSnapshot(encodeSnapshot(state));
            expect(project(STATE, restored), `snapshot after entry ${i} of ${log.length}`).toEqual(
              project(STATE, state),
            );
          });
        },
      ),
      { numRuns: RUNS },
    );
    // Each kind, at least once: a generator that stopped making one would leave its fields unchecked.
    expect([...seen].sort()).toEqual([
      "OCO leg",
      "active trailing stop",
      "expiring order",
      "numbered events",
      "pending order",
      "pending trailing stop",
      "remembered request",
      "trade with a take-profit",
      "trade with an exit",
      "trade without an exit",
      "trailing group of several stops",
    ]);
  });
});
