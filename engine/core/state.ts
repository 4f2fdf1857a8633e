/**
 * The engine's whole state: plain data, owned by `apply`. Amounts are integers in minor units (see
 * contract/money.ts). The house is an account like the users': every transfer has two sides, so for each asset
 * the users' balances, the margin locked in open trades and the house balance sum to zero at all times.
 */
import type { AssetConfig } from "../../contract/markets.ts";
import type { EngineParams } from "./params.ts";
import { IdempotencyWindow } from "./idempotency-window.ts";
import { PositionedHeap } from "./positioned-heap.ts";
import { TriggerHeap } from "./trigger-heap.ts";
import { createTrailBook, type TrailBook } from "./trailing-book.ts";
import { ANY_NUMBER, type Writable } from "./any-number.ts";
import type { TrailingStop } from "./trailing-stop.ts";

export interface Account {
  readonly userId: string;
  /** Free USD in micros (not locked as margin). */
  usd: number;
  /** Spot holdings per asset index, in quantity steps. */
  readonly holdings: number[];
  /** Open trades by sequence number (a trade's id is derived from it: `tradeId`); filed by `fileTrade`. */
  readonly openTrades: Map<number, Trade>;
  /**
   * The margin locked in its open trades: the sum of their `marginMicros`, kept as trades open (`fileTrade`) and
   * settle (settlement.ts) so the account limit costs O(1) per close. Derived: a restore files every trade again.
   */
  openMarginMicros: number;
  /** Pending entry orders by sequence number (id: `pendingOrderId`), in placement order; see pending-book.ts. */
  readonly pendingOrders: Map<number, PendingOrder>;
  /** The `seq` of this user's last private output (0: none yet); step.ts assigns the next. */
  eventSeq: number;
}

/**
 * The house: counterparty to every grant, trade and spot order. Its balances are bigints: it pays every user's
 * starting grant, so its USD goes below −2^53 micros at about 900k users; a bigint add per order is cheap.
 */
export interface House {
  usd: bigint;
  readonly holdings: bigint[];
}

/** What a trade is, as numbers: enough to show it, remember it in a receipt, or snapshot it. */
export interface TradeFacts {
  /** Its id is `tradeId(shard, seq)`, made only when shown: a restore of 1M trades makes no strings. */
  readonly seq: number;
  readonly assetIndex: number;
  readonly isLong: boolean;
  readonly marginMicros: number;
  readonly leverage: number;
  readonly quantitySteps: number;
  readonly openPriceTicks: number;
  /** 0 when not set. */
  readonly stopLossTicks: number;
  readonly takeProfitTicks: number;
  /** Price at which the trade's equity reaches maintenance margin; 0 when it cannot be reached. */
  readonly liquidationTicks: number;
  readonly openedAtMs: number;
}

/**
 * An open trade: its facts plus where it lives (account, trigger heaps). Its exits can move (modify.ts); a partial
 * close (partial-close.ts) shrinks its quantity and margin and recomputes its liquidation level, re-filing it in its
 * heaps as a move of its exits does (trigger-index.ts, moveExits). Anything that must keep the facts as they were (a
 * receipt) keeps a copy, never the trade.
 */
export interface Trade extends TradeFacts {
  quantitySteps: number;
  marginMicros: number;
  liquidationTicks: number;
  readonly account: Account;
  stopLossTicks: number;
  takeProfitTicks: number;
  /** The protective exit level (stop-loss or liquidation, whichever the price reaches first); 0 when none. */
  exitTicks: number;
  /** Its trailing stop (trailing.ts); null when none. */
  trailing: TrailingStop | null;
  /** Positions in the trigger heaps, maintained by TriggerHeap; -1 when not in that heap. */
  exitPos: number;
  profitPos: number;
}

/** What a pending entry order is, as numbers: enough to show it or snapshot it. */
export interface PendingOrderFacts {
  readonly seq: number;
  readonly assetIndex: number;
  readonly isLong: boolean;
  /** Stop (fills once the market reaches the price) or limit (fills at the price or better). */
  readonly isStop: boolean;
  readonly priceTicks: number;
  /** The trade's margin on fill; reserved while pending (an OCO pair reserves the larger of its two). */
  readonly marginMicros: number;
  readonly leverage: number;
  /** 0 when not set. */
  readonly stopLossTicks: number;
  readonly takeProfitTicks: number;
  /** Log time from which it no longer fills; 0: good till cancelled. */
  readonly expiresAtMs: number;
  readonly placedAtMs: number;
}

/** A pending order: its facts plus where it lives (account, OCO partner, heaps). */
export interface PendingOrder extends PendingOrderFacts {
  readonly account: Account;
  /** The other leg of its one-cancels-other pair, while both are pending. */
  oco: PendingOrder | undefined;
  /** Positions in its market's fill heap and in the expiry heap; -1 when not in that heap. */
  heapPos: number;
  expiryPos: number;
}

/** Per market: the four fill indexes of pending orders, each with the next order to fill at the top. */
export interface PendingBook {
  /** Long limit: fills when ask ≤ price; highest price first. */
  readonly longLimit: PositionedHeap<PendingOrder>;
  /** Long stop: fills when ask ≥ price; lowest first. */
  readonly longStop: PositionedHeap<PendingOrder>;
  /** Short limit: fills when bid ≥ price; lowest first. */
  readonly shortLimit: PositionedHeap<PendingOrder>;
  /** Short stop: fills when bid ≤ price; highest first. */
  readonly shortStop: PositionedHeap<PendingOrder>;
}

export interface Quote {
  readonly bidTicks: number;
  readonly askTicks: number;
  /** Log time (input id ms) at which the market's newest evidence of life (`exchangeTimeUs`) entered the engine. */
  readonly atMs: number;
  /** Exchange time (µs digits) of the market's newest evidence of life: what staleness is measured against. */
  readonly exchangeTimeUs: string;
  readonly source: "backpack" | "sim";
}

/** Per market: the four trigger indexes, each ordered so the next trade to fire is at the top. */
export interface TriggerBook {
  /** Long stop-loss / liquidation: fires when bid ≤ level; highest level first. */
  readonly longExit: TriggerHeap;
  /** Long take-profit: fires when bid ≥ level; lowest first. */
  readonly longProfit: TriggerHeap;
  /** Short stop-loss / liquidation: fires when ask ≥ level; lowest first. */
  readonly shortExit: TriggerHeap;
  /** Short take-profit: fires when ask ≤ level; highest first. */
  readonly shortProfit: TriggerHeap;
  /** Trailing stops (trailing-book.ts). */
  readonly trailing: TrailBook;
}

export interface EngineState {
  readonly params: EngineParams;
  /** Id of the last input applied ("<ms>-<seq>"), or "0-0" for a fresh state. */
  lastInputId: string;
  lastInputMs: number;
  lastInputSeq: number;
  /** Next number for a trade or spot order id. */
  nextSeq: number;
  /**
   * Price updates refused (unknown market, malformed or crossed quote, an exchange time too far ahead of the log or
   * behind the market's newest): counted, never applied.
   */
  ignoredPriceUpdates: number;
  readonly house: House;
  readonly accounts: Map<string, Account>;
  readonly quotes: (Quote | undefined)[];
  readonly books: TriggerBook[];
  /** Per market: pending entry orders by fill price (pending-book.ts). */
  readonly pendingBooks: PendingBook[];
  /** Pending orders with an expiry, soonest first (ties by sequence): only its top is looked at per input. */
  readonly expiries: PositionedHeap<PendingOrder>;
  /** Receipts of first answers by (user, request id), in log order (oldest first): see idempotency.ts. */
  readonly idempotency: IdempotencyWindow;
  /** Derived from params: asset lookup by symbol and market. */
  readonly assetBySymbol: ReadonlyMap<string, number>;
  readonly assetByMarket: ReadonlyMap<string, number>;
}

export function createState(params: EngineParams): EngineState {
  const n = params.assets.length;
  const accounts = new Map<string, Account>();
  return {
    params,
    lastInputId: "0-0",
    lastInputMs: 0,
    lastInputSeq: 0,
    nextSeq: 1,
    ignoredPriceUpdates: 0,
    house: { usd: 0n, holdings: new Array<bigint>(n).fill(0n) },
    accounts,
    quotes: new Array<Quote | undefined>(n).fill(undefined),
    books: Array.from({ length: n }, () => createBook()),
    pendingBooks: Array.from({ length: n }, () => createPendingBook()),
    expiries: new PositionedHeap<PendingOrder>(expiresBefore, expiryPos),
    idempotency: new IdempotencyWindow(),
    assetBySymbol: new Map(params.assets.map((a, i) => [a.symbol, i])),
    assetByMarket: new Map(params.assets.map((a, i) => [a.market, i])),
  };
}

function createBook(): TriggerBook {
  return {
    longExit: new TriggerHeap("exit", true),
    longProfit: new TriggerHeap("profit", false),
    shortExit: new TriggerHeap("exit", false),
    shortProfit: new TriggerHeap("profit", true),
    trailing: createTrailBook(),
  };
}

/** Orders by price, the highest or lowest first; ties by sequence, so the order of fills never depends on layout. */
function byPrice(highestFirst: boolean) {
  return (a: PendingOrder, b: PendingOrder) =>
    a.priceTicks !== b.priceTicks ? highestFirst === a.priceTicks > b.priceTicks : a.seq < b.seq;
}

const heapPos = {
  get: (o: PendingOrder) => o.heapPos,
  set: (o: PendingOrder, i: number) => {
    o.heapPos = i;
  },
};
const expiryPos = {
  get: (o: PendingOrder) => o.expiryPos,
  set: (o: PendingOrder, i: number) => {
    o.expiryPos = i;
  },
};

function expiresBefore(a: PendingOrder, b: PendingOrder): boolean {
  return a.expiresAtMs !== b.expiresAtMs ? a.expiresAtMs < b.expiresAtMs : a.seq < b.seq;
}

function createPendingBook(): PendingBook {
  return {
    longLimit: new PositionedHeap(byPrice(true), heapPos),
    longStop: new PositionedHeap(byPrice(false), heapPos),
    shortLimit: new PositionedHeap(byPrice(false), heapPos),
    shortStop: new PositionedHeap(byPrice(true), heapPos),
  };
}

/** Not a small integer: a number field first set to it is stored as a double (see `newAccount`). */
const DOUBLE_FIELD = 0.5;

/**
 * A new account holding nothing. Its USD fields start as doubles and are set to 0 at once. V8 keeps a number field
 * as a small integer while every value stored in it is one; the first value that is not (past 2^31, or the result of
 * arithmetic on one, such as a margin parsed from text) moves the field to a double and deprecates the accounts'
 * shape, and every account made before is migrated on its next access, a few microseconds each. After a restore of
 * 100k accounts whose open margins all fit, the first live open would do that, and the next scan of all accounts (a
 * new leader's count of open trades at takeover) would pay for 100k migrations: 150–300 ms on a 2-core machine,
 * against about 10 ms. Born as doubles, no account ever changes shape.
 */
export function newAccount(userId: string, assetCount: number): Account {
  const account: Account = {
    userId,
    usd: DOUBLE_FIELD,
    holdings: new Array<number>(assetCount).fill(0),
    openTrades: new Map(),
    openMarginMicros: DOUBLE_FIELD,
    pendingOrders: new Map(),
    eventSeq: 0,
  };
  account.usd = 0;
  account.openMarginMicros = 0;
  return account;
}

export function assetAt(state: EngineState, index: number): AssetConfig {
  const a = state.params.assets[index];
  if (a === undefined) throw new Error(`no asset at index ${index}`);
  return a;
}

/** A trade's protective exit: stop-loss or liquidation, whichever the price reaches first; 0 when neither. */
export function exitLevel(isLong: boolean, stopLossTicks: number, liquidationTicks: number): number {
  if (stopLossTicks === 0) return liquidationTicks;
  if (liquidationTicks === 0) return stopLossTicks;
  return isLong ? Math.max(stopLossTicks, liquidationTicks) : Math.min(stopLossTicks, liquidationTicks);
}

/** An open trade from its facts; every trade object is built here so all share one shape (see `ANY_NUMBER`). */
export function makeTrade(account: Account, f: TradeFacts): Trade {
  const trade: Writable<Trade> = {
    seq: f.seq,
    assetIndex: f.assetIndex,
    isLong: f.isLong,
    marginMicros: ANY_NUMBER,
    leverage: f.leverage,
    quantitySteps: ANY_NUMBER,
    openPriceTicks: ANY_NUMBER,
    stopLossTicks: ANY_NUMBER,
    takeProfitTicks: ANY_NUMBER,
    liquidationTicks: ANY_NUMBER,
    openedAtMs: f.openedAtMs,
    account,
    exitTicks: ANY_NUMBER,
    trailing: null,
    exitPos: -1,
    profitPos: -1,
  };
  trade.marginMicros = f.marginMicros;
  trade.quantitySteps = f.quantitySteps;
  trade.openPriceTicks = f.openPriceTicks;
  trade.stopLossTicks = f.stopLossTicks;
  trade.takeProfitTicks = f.takeProfitTicks;
  trade.liquidationTicks = f.liquidationTicks;
  trade.exitTicks = exitLevel(f.isLong, f.stopLossTicks, f.liquidationTicks);
  return trade;
}

/** Files a new open trade under its account, its margin counted in the account's open margin. */
export function fileTrade(account: Account, trade: Trade): void {
  account.openTrades.set(trade.seq, trade);
  account.openMarginMicros += trade.marginMicros;
}

/** A trade's facts as they are now, apart from the trade (whose exits may still move): what a receipt keeps. */
export function factsOf(t: TradeFacts): TradeFacts {
  return {
    seq: t.seq,
    assetIndex: t.assetIndex,
    isLong: t.isLong,
    marginMicros: t.marginMicros,
    leverage: t.leverage,
    quantitySteps: t.quantitySteps,
    openPriceTicks: t.openPriceTicks,
    stopLossTicks: t.stopLossTicks,
    takeProfitTicks: t.takeProfitTicks,
    liquidationTicks: t.liquidationTicks,
    openedAtMs: t.openedAtMs,
  };
}

/** Trade and spot order ids: shard-aware, from the state's sequence, so a replay assigns the same ones. */
export function tradeId(shard: number, seq: number): string {
  return `T${shard}-${seq}`;
}

/** The sequence number in a trade id of this shard, exactly as `tradeId` writes it; -1 for any other string. */
export function tradeSeq(shard: number, id: string): number {
  return seqOf("T", shard, id);
}

/** Pending entry order ids: `P<shard>-<seq>`, apart from trades' `T` and spot orders' `O`, from the same sequence. */
export function pendingOrderId(shard: number, seq: number): string {
  return `P${shard}-${seq}`;
}

/** The sequence number in a pending order id of this shard, exactly as `pendingOrderId` writes it; else -1. */
export function pendingOrderSeq(shard: number, id: string): number {
  return seqOf("P", shard, id);
}

function seqOf(letter: string, shard: number, id: string): number {
  const prefix = `${letter}${shard}-`;
  if (!id.startsWith(prefix) || id.length > prefix.length + 16) return -1;
  const seq = Number(id.slice(prefix.length));
  return Number.isSafeInteger(seq) && seq > 0 && `${prefix}${seq}` === id ? seq : -1;
}

export function orderId(shard: number, seq: number): string {
  return `O${shard}-${seq}`;
}

/** [free USD, ...holdings]: an account's amounts at this moment, as receipts keep them. */
export function amountsOf(account: Account): number[] {
  const amounts = new Array<number>(account.holdings.length + 1);
  amounts[0] = account.usd;
  for (let i = 0; i < account.holdings.length; i++) amounts[i + 1] = account.holdings[i]!;
  return amounts;
}
