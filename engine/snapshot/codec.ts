/**
 * Versioned binary snapshot of the whole engine state, including the id of the last input applied and the
 * engine parameters. The encoding is canonical — accounts sorted by user id, each account's trades in sequence
 * order, idempotency entries in log order — so equal states give equal bytes, and the state hash is a hash of
 * these bytes. "Equal" includes where each trade sits in its trigger heaps: that layout is saved, so a restore
 * needs no heapify (tenths of a second at 1M open trades); it follows from the log alone (every heap operation is
 * deterministic), so an engine restored from a snapshot and one that applied the whole log still hash alike.
 *
 * Layout (version 5), all numbers varints:
 *   "PBSN" version params(JSON) lastInputId nextSeq ignoredPriceUpdates
 *   house: usd holdings×assets, as decimal strings (bigints: the house can exceed 2^53 micros)
 *   quotes: per asset, present? bid ask atMs exchangeTimeUs source
 *   heaps: per asset, the sizes of its trigger heaps longExit longProfit shortExit shortProfit
 *   accounts: count, then per account: userId usd holdings×assets eventSeq tradeCount
 *             and per trade: seqDelta TRADE(openedAtMs as a signed delta from the previous trade's)
 *             exitPos profitPos (its positions in its exit and take-profit heaps, plus one; 0: not in that heap)
 *   pending orders (pending-codec.ts): per account, in the accounts section's order: orderCount, then per order
 *             seqDelta asset·4+stop·2+long price margin leverage stopLoss takeProfit expiresAtMs(0: none)
 *             placedAtMs ocoSeq(the other leg's sequence number; 0: not linked). Their heaps are not saved:
 *             rebuilt by heapify (their orders are total, so the rebuilt heaps act exactly as the saved ones).
 *   idempotency: count, then per entry: accountIndex requestId atMs(delta from the previous entry) length RECEIPT
 *   TRADE = asset·2+long margin leverage quantity openPrice stopLoss takeProfit liquidation openedAt
 *   RECEIPT = kind, then: rejected: code message | create_account: granted AMOUNTS
 *             | open_trade: seq TRADE AMOUNTS | close_trade: seq TRADE price pnl reason AMOUNTS
 *             | spot_order: seq asset·2+buy quantity price total AMOUNTS;   AMOUNTS = usd holdings×assets
 *             | answer: the answer as JSON (instructions rare enough not to need a compact receipt)
 *   trailing stops (from version 4; the last section): count, then per stop, in accounts-section order (account, then
 *             trade sequence): accountIndex seq percent+2·activated amount activation [best, when activated]
 *             (amount: a distance in price ticks, or a percent in hundredths; activation 0: none). Their groups
 *             (trailing-book.ts) are not saved: equal best price means the same group, so a restore rebuilds them.
 *   Times inside a receipt are signed deltas from its entry's time. accountIndex is the account's position in
 *   the accounts section. Receipts are length-prefixed so a restore can leave them packed (idempotency-window.ts):
 *   it checks each one's kind and bounds, and decodes it only when its request comes again.
 * Version 4 is version 5 without each account's eventSeq (the seq of its last private output); a restore of one
 * starts every account at 0, so seqs count from that snapshot's point. An engine that wrote version 4 gave its
 * outputs no seq, so nothing holds an older number; but two engines restored from two such snapshots would number
 * the same later outputs differently, so an upgrade from such a release is stop-then-start (docs/operations.md).
 * Version 3 is version 4 without the `answer` receipt, the trailing_stop close reason, the pending orders and the
 * trailing stops.
 * Version 2 has no heap sizes or positions: its heaps are rebuilt (heapified) on decode. Version 1 also differs in
 * the idempotency entries: key("userId requestId") atMs RECEIPT, with no length, read eagerly. Versions 1 to 4 are
 * still read, never written.
 * Params of any version whose assets lack `minQuantitySteps` (saved before it existed) read it as 1.
 * Derived data (trade ids, exit levels, each account's open margin, lookups) is rebuilt on decode.
 */
import { answerSchema, type Answer, type CloseReason } from "../../contract/messages.ts";
import { REJECTIONS, type RejectionCode } from "../../contract/rejections.ts";
import { DEFAULT_PARAMS, validateParams, type EngineParams } from "../core/params.ts";
import type { Receipt } from "../core/receipts.ts";
import type { IdempotencyOwner, PackedReceipts } from "../core/idempotency-window.ts";
import {
  createState,
  fileTrade,
  makeTrade,
  newAccount,
  type Account,
  type EngineState,
  type Trade,
  type TradeFacts,
} from "../core/state.ts";
import { systemOf } from "../core/trailing-book.ts";
import { bestOf, newTrailingStop } from "../core/trailing-stop.ts";
import { parseInputId } from "../core/step.ts";
import { heapsOf, indexTrade, placeTrade } from "../core/trigger-index.ts";
import { ByteReader, ByteWriter, tokenEquals, type ByteSource } from "./bytes.ts";
import { PENDING_ORDER_VARINTS, readPendingOrders, writePendingOrders } from "./pending-codec.ts";

const MAGIC = [0x50, 0x42, 0x53, 0x4e]; // "PBSN"
export const SNAPSHOT_VERSION = 5;

/**
 * Encodes the state. The result is a view of the writer's buffer: pass the same `writer` to every snapshot of a
 * process (and finish with the bytes before the next) so a large state does not allocate tens of MB each time —
 * such an allocation forces an old-generation GC of the whole engine heap (tenths of a second at 1M trades).
 */
export function encodeSnapshot(state: EngineState, writer?: ByteWriter): Uint8Array {
  // Sized from the counts (about 20 bytes an open trade or pending order, 60 a remembered request) so it is written without
  // growing the buffer by doubling.
  let trades = 0;
  for (const a of state.accounts.values()) trades += a.openTrades.size + a.pendingOrders.size;
  const estimate = 4096 + state.accounts.size * 48 + trades * 24 + state.idempotency.size * 72;
  const w = writer ?? new ByteWriter(estimate);
  w.reset(estimate);
  for (const b of MAGIC) w.u8(b);
  w.uint(SNAPSHOT_VERSION);
  w.string(JSON.stringify(state.params));
  w.string(state.lastInputId);
  w.uint(state.nextSeq);
  w.uint(state.ignoredPriceUpdates);
  w.string(state.house.usd.toString());
  for (const h of state.house.holdings) w.string(h.toString());
  for (const q of state.quotes) {
    w.u8(q === undefined ? 0 : 1);
    if (q === undefined) continue;
    w.uint(q.bidTicks);
    w.uint(q.askTicks);
    w.uint(q.atMs);
    w.string(q.exchangeTimeUs);
    w.u8(q.source === "backpack" ? 0 : 1);
  }
  for (const book of state.books) for (const heap of heapsOf(book)) w.uint(heap.size);
  const userIds = [...state.accounts.keys()].sort();
  const accountIndex = new Map<string, number>();
  const trailing: Trade[] = [];
  w.uint(userIds.length);
  for (const userId of userIds) {
    const a = state.accounts.get(userId)!;
    accountIndex.set(userId, accountIndex.size);
    w.string(userId);
    w.uint(a.usd);
    for (const h of a.holdings) w.uint(h);
    w.uint(a.eventSeq);
    w.uint(a.openTrades.size);
    let prevSeq = 0;
    let prevAt = 0;
    for (const t of a.openTrades.values()) {
      // Trades enter an account in sequence order and the map keeps that order; a restore re-inserts in it.
      if (t.seq <= prevSeq) throw new Error(`trades of ${userId} are out of sequence order`);
      w.uint(t.seq - prevSeq);
      writeTrade(w, t, prevAt);
      w.uint(t.exitPos + 1);
      w.uint(t.profitPos + 1);
      if (t.trailing !== null) trailing.push(t);
      prevSeq = t.seq;
      prevAt = t.openedAtMs;
    }
  }
  writePendingOrders(w, state, userIds);
  w.uint(state.idempotency.size);
  const packed = state.idempotency.packedBytes;
  let prevAt = 0;
  state.idempotency.forEachStored((userId, requestId, atMs, receipt) => {
    w.uint(accountIndex.get(userId)!);
    w.string(requestId);
    w.uint(atMs - prevAt);
    prevAt = atMs;
    if (typeof receipt === "number") {
      // Still as a restore found it: length and bytes, copied.
      const r = new ByteReader(packed!, receipt);
      const length = r.uint();
      w.raw(packed!.subarray(receipt, r.position + length));
    } else {
      receiptWriter.reset();
      writeReceipt(receiptWriter, receipt, atMs);
      const bytes = receiptWriter.finish();
      w.uint(bytes.length);
      w.raw(bytes);
    }
  });
  writeTrailingStops(w, trailing, accountIndex);
  return w.finish();
}

function writeTrailingStops(w: ByteWriter, trades: readonly Trade[], accountIndex: ReadonlyMap<string, number>): void {
  w.uint(trades.length);
  for (const t of trades) {
    const stop = t.trailing!;
    w.uint(accountIndex.get(t.account.userId)!);
    w.uint(t.seq);
    w.uint((stop.byPercent ? 1 : 0) + (stop.activated ? 2 : 0));
    w.uint(stop.amount);
    w.uint(stop.activationTicks);
    if (stop.activated) w.uint(bestOf(stop));
  }
}

/** Version 4's trailing stops section: back on their trades, active ones regrouped by best price. */
function readTrailingStops(r: ByteReader, state: EngineState, accounts: readonly Account[]): void {
  const count = r.uint();
  for (let i = 0; i < count; i++) {
    const account = accounts[r.uint()];
    const trade = account?.openTrades.get(r.uint());
    if (trade === undefined || trade.trailing !== null)
      throw new Error("snapshot holds a trailing stop of no open trade, or two for one trade");
    const flags = r.uint();
    const amount = r.uint();
    const activationTicks = r.uint();
    const byPercent = (flags & 1) === 1;
    if (flags > 3 || amount === 0 || (byPercent && amount >= 10_000))
      throw new Error("snapshot holds a malformed trailing stop");
    const stop = newTrailingStop(trade, byPercent, amount, activationTicks);
    trade.trailing = stop;
    const book = state.books[trade.assetIndex]!.trailing;
    if (flags >= 2) {
      const best = r.uint();
      if (best === 0) throw new Error("snapshot holds a trailing stop without a best price");
      systemOf(book, stop).restore(stop, best);
    } else {
      if (activationTicks === 0) throw new Error("snapshot holds a pending trailing stop without an activation price");
      (trade.isLong ? book.long : book.short).pending.push(stop);
    }
  }
  for (const book of state.books) {
    for (const side of [book.trailing.long, book.trailing.short]) {
      side.byDistance.finishRestore();
      side.byPercent.finishRestore();
    }
  }
}

/** Receipts are written here first, to know their length. */
const receiptWriter = new ByteWriter(256);

/**
 * Rebuilds a state from `encodeSnapshot` bytes; throws a clear error on a foreign, newer or corrupt snapshot. The
 * state keeps `bytes` (its remembered requests' receipts stay packed in them): do not reuse the buffer. With
 * `more`, `bytes` is still being filled (a snapshot streaming in from its store) and decoding waits on it. With
 * `idempotency`, another thread has scanned the idempotency section already (`prescanIdempotency`): asked for its scan on reaching
 * that section, it returns it, or undefined to have this thread scan it after all.
 */
export function decodeSnapshot(
  bytes: Uint8Array,
  more?: ByteSource,
  idempotency?: () => IdempotencyScan | undefined,
): EngineState {
  const r = new ByteReader(bytes, 0, more);
  const { version, state } = readHead(r);
  const { params } = state;
  const n = params.assets.length;
  // Version 3 saves the heaps' layout: each trade goes back to its positions (placeTrade), nothing to reorder. The
  // positions are checked to fill each heap exactly once; their order is the saved heap's (the bytes matched the
  // head's SHA-256) and is not checked again, which would cost about what the heapify did.
  const placed = version >= 3;
  if (placed) {
    for (const book of state.books) {
      for (const heap of heapsOf(book)) {
        const size = r.uint();
        // Each trade takes more than a byte: a size beyond the snapshot's length is a cut or corrupt one.
        if (size > r.length) throw new RangeError("snapshot truncated");
        heap.reserve(size);
      }
    }
  }
  const accountCount = r.uint();
  const accounts = new Array<Account>(accountCount);
  for (let i = 0; i < accountCount; i++) {
    const account = newAccount(r.string(), n);
    accounts[i] = account;
    account.usd = r.uint();
    for (let j = 0; j < n; j++) account.holdings[j] = r.uint();
    if (version >= 5) account.eventSeq = r.uint();
    state.accounts.set(account.userId, account);
    const tradeCount = r.uint();
    let seq = 0;
    let openedAtMs = 0;
    for (let j = 0; j < tradeCount; j++) {
      seq += r.uint();
      const trade = makeTrade(account, readTrade(r, seq, openedAtMs, n));
      openedAtMs = trade.openedAtMs;
      fileTrade(account, trade);
      if (placed) placeTrade(state.books[trade.assetIndex]!, trade, r.uint() - 1, r.uint() - 1);
      else indexTrade(state.books[trade.assetIndex]!, trade, false);
    }
  }
  for (const book of state.books) {
    for (const heap of heapsOf(book)) {
      if (!placed) heap.heapify();
      else if (!heap.full) throw new Error(`snapshot leaves positions of a ${heap.slot} heap empty`);
    }
  }
  if (version >= 4) readPendingOrders(r, state, accounts);
  if (version === 1) {
    readIdempotencyV1(r, state);
  } else {
    let scan = idempotency?.();
    if (scan === undefined) {
      scan = scanIdempotency(r, accountCount, n);
    } else {
      if (scan.start !== r.position)
        throw new Error(`the idempotency scan starts at byte ${scan.start}, but the section does at ${r.position}`);
      r.skip(scan.end - scan.start);
    }
    restoreIdempotency(state, accounts, bytes, scan);
  }
  if (version >= 4) readTrailingStops(r, state, accounts);
  if (!r.done) throw new Error("snapshot has trailing bytes");
  return state;
}

/** Parameter names snapshots may still carry (the params are stored as JSON), and their current names. */
const FORMER_PARAM_NAMES: Readonly<Record<string, keyof EngineParams>> = {
  dedupWindowMs: "idempotencyWindowMs",
  dedupMaxEntries: "idempotencyMaxEntries",
  dedupMaxPerUser: "idempotencyMaxPerUser",
};

/** Parameters added since snapshots were first written: one that lacks them gets their defaults. */
const ADDED_PARAMS: readonly (keyof EngineParams)[] = ["maxPendingOrdersPerUser", "maxOrderExpiryMs"];

function withCurrentParamNames(stored: Record<string, unknown>): EngineParams {
  const params: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(stored)) params[FORMER_PARAM_NAMES[name] ?? name] = value;
  if (Array.isArray(params.assets)) params.assets = params.assets.map(withAssetDefaults);
  for (const name of ADDED_PARAMS) if (!(name in params)) params[name] = DEFAULT_PARAMS[name];
  return params as unknown as EngineParams;
}

/** Asset fields a snapshot may predate: an asset saved before markets had a minimum quantity gets one step. */
function withAssetDefaults(asset: unknown): unknown {
  if (typeof asset !== "object" || asset === null || "minQuantitySteps" in asset) return asset;
  return { ...asset, minQuantitySteps: 1 };
}

/** Everything before the accounts section, into a fresh state; and the snapshot's version. */
function readHead(r: ByteReader): { version: number; state: EngineState } {
  for (const b of MAGIC) if (r.u8() !== b) throw new Error("not an engine snapshot");
  const version = r.uint();
  if (version < 1 || version > SNAPSHOT_VERSION)
    throw new Error(`snapshot version ${version} is not supported (expected ${SNAPSHOT_VERSION})`);
  const params = withCurrentParamNames(JSON.parse(r.string()) as Record<string, unknown>);
  validateParams(params);
  const state = createState(params);
  const n = params.assets.length;
  state.lastInputId = r.string();
  const last = parseInputId(state.lastInputId);
  state.lastInputMs = last.ms;
  state.lastInputSeq = last.seq;
  state.nextSeq = r.uint();
  state.ignoredPriceUpdates = r.uint();
  state.house.usd = readBigInt(r);
  for (let i = 0; i < n; i++) state.house.holdings[i] = readBigInt(r);
  for (let i = 0; i < n; i++) {
    if (r.u8() === 0) continue;
    const bidTicks = r.uint();
    const askTicks = r.uint();
    const atMs = r.uint();
    const exchangeTimeUs = r.string();
    const source = r.u8() === 0 ? "backpack" : "sim";
    state.quotes[i] = { bidTicks, askTicks, atMs, exchangeTimeUs, source };
  }
  return { version, state };
}

/**
 * The idempotency section of a (version 2) snapshot, checked but left packed: per entry, its account's position in the
 * accounts section, where its request id and its receipt start in the snapshot's bytes, and its time. Typed arrays,
 * so a scan made on another thread crosses over without a copy.
 */
export interface IdempotencyScan {
  /** Where the section starts (at its count) and ends, in the snapshot's bytes. */
  readonly start: number;
  readonly end: number;
  readonly accounts: Uint32Array<ArrayBuffer>;
  readonly requestIds: Uint32Array<ArrayBuffer>;
  readonly receipts: Uint32Array<ArrayBuffer>;
  readonly times: Float64Array<ArrayBuffer>;
}

/**
 * For a thread holding a whole snapshot while another decodes it (snapshot-loader-thread.ts): steps over the
 * accounts section and scans the idempotency section, which the decode then takes instead of scanning it itself (at 1M
 * remembered requests, a tenth of a second or more of the restore). Undefined for a version-1 snapshot (decoded
 * eagerly); throws on a snapshot it cannot read, as the decode would.
 */
export function prescanIdempotency(bytes: Uint8Array): IdempotencyScan | undefined {
  const r = new ByteReader(bytes);
  const { version, state } = readHead(r);
  if (version === 1) return undefined;
  const n = state.params.assets.length;
  if (version >= 3) r.skipVarints(4 * n); // heap sizes
  const tradeVarints = version >= 3 ? TRADE_VARINTS + 2 : TRADE_VARINTS;
  const accountCount = r.uint();
  for (let i = 0; i < accountCount; i++) {
    r.skip(r.uint()); // the user id
    r.skipVarints(version >= 5 ? 2 + n : 1 + n); // usd, holdings (and eventSeq)
    r.skipVarints(r.uint() * tradeVarints);
  }
  if (version >= 4) for (let i = 0; i < accountCount; i++) r.skipVarints(r.uint() * PENDING_ORDER_VARINTS);
  const scan = scanIdempotency(r, accountCount, n);
  // The sections after it are stepped over too, so a cut snapshot is refused here as the decode would refuse it.
  if (version >= 4) skipTrailingStops(r);
  return scan;
}

function skipTrailingStops(r: ByteReader): void {
  const count = r.uint();
  for (let i = 0; i < count; i++) {
    r.skipVarints(2);
    r.skipVarints(r.uint() >= 2 ? 3 : 2);
  }
}

/** Varints per open trade in the accounts section: seqDelta, then TRADE's nine (and from version 3, two positions). */
const TRADE_VARINTS = 10;

/** The smallest idempotency entry: account, a 1-byte request id with its length, atMs, a receipt's length and kind. */
const MIN_IDEMPOTENCY_ENTRY_BYTES = 6;

function scanIdempotency(r: ByteReader, accountCount: number, assetCount: number): IdempotencyScan {
  const start = r.position;
  const count = r.uint();
  // More entries than the bytes left can hold: the snapshot was cut short (or its count is corrupt). Said before
  // sizing the arrays by it.
  if (count > (r.length - r.position) / MIN_IDEMPOTENCY_ENTRY_BYTES) throw new RangeError("snapshot truncated");
  const accounts = new Uint32Array(count);
  const requestIds = new Uint32Array(count);
  const receipts = new Uint32Array(count);
  const times = new Float64Array(count);
  let atMs = 0;
  for (let i = 0; i < count; i++) {
    const account = r.uint();
    if (account >= accountCount) throw new Error("snapshot remembers a request of an unknown account");
    accounts[i] = account;
    // Left packed (checked here, so decoding it later cannot fail): most are never looked at again.
    requestIds[i] = r.position;
    r.skipToken(MAX_REQUEST_ID_LENGTH);
    atMs += r.uint();
    times[i] = atMs;
    receipts[i] = r.position;
    const end = r.uint() + r.position;
    checkReceipt(r, assetCount);
    if (r.position !== end) throw new Error("snapshot holds a receipt of the wrong length");
  }
  return { start, end: r.position, accounts, requestIds, receipts, times };
}

function restoreIdempotency(
  state: EngineState,
  accounts: readonly Account[],
  bytes: Uint8Array,
  scan: IdempotencyScan,
): void {
  const assetCount = state.params.assets.length;
  const packed: PackedReceipts = {
    bytes,
    unpack(offset, atMs) {
      const reader = new ByteReader(bytes, offset);
      const end = reader.uint() + reader.position;
      const receipt = readReceipt(reader, atMs, assetCount);
      if (reader.position !== end) throw new Error("snapshot holds a receipt of the wrong length");
      return receipt;
    },
    key: (offset) => new ByteReader(bytes, offset).string(),
    keyEquals: (offset, other) => tokenEquals(bytes, offset, other),
  };
  const { times, requestIds, receipts } = scan;
  const owners = scan.accounts;
  // One owner record per account with remembered requests, made on its first entry.
  const ownerOf = new Array<IdempotencyOwner | undefined>(accounts.length);
  for (let i = 0; i < owners.length; i++) {
    const index = owners[i]!;
    const owner = (ownerOf[index] ??= state.idempotency.owner(accounts[index]!.userId));
    state.idempotency.addPacked(owner, requestIds[i]!, times[i]!, packed, receipts[i]!);
  }
}

/** Version 1: "userId requestId" keys, receipts inline without a length, decoded eagerly. */
function readIdempotencyV1(r: ByteReader, state: EngineState): void {
  const count = r.uint();
  let atMs = 0;
  for (let i = 0; i < count; i++) {
    const key = r.string();
    const space = key.indexOf(" ");
    if (space <= 0) throw new Error("snapshot holds a malformed request key");
    const account = state.accounts.get(key.slice(0, space));
    if (account === undefined) throw new Error("snapshot remembers a request of an unknown account");
    atMs += r.uint();
    state.idempotency.add(account.userId, key.slice(space + 1), atMs, readReceipt(r, atMs, state.params.assets.length));
  }
}

/** What the contract allows a request id (contract/messages.ts): printable ASCII without spaces, at most this long. */
const MAX_REQUEST_ID_LENGTH = 128;

/** Indexes are the format: append only. */
const REASONS: readonly CloseReason[] = ["manual", "stop_loss", "take_profit", "liquidation", "trailing_stop"];
const RECEIPT_KINDS: readonly Receipt["kind"][] = [
  "rejected",
  "create_account",
  "open_trade",
  "close_trade",
  "spot_order",
  "answer",
];

function writeTrade(w: ByteWriter, t: TradeFacts, baseMs: number): void {
  w.uint(t.assetIndex * 2 + (t.isLong ? 1 : 0));
  w.uint(t.marginMicros);
  w.uint(t.leverage);
  w.uint(t.quantitySteps);
  w.uint(t.openPriceTicks);
  w.uint(t.stopLossTicks);
  w.uint(t.takeProfitTicks);
  w.uint(t.liquidationTicks);
  w.int(t.openedAtMs - baseMs);
}

function readTrade(r: ByteReader, seq: number, baseMs: number, assetCount: number): TradeFacts {
  const assetAndSide = r.uint();
  // Not `>> 1`: that works on 32 bits, so a corrupt value ≥ 2^31 would wrap to some valid (or negative) index.
  const assetIndex = Math.floor(assetAndSide / 2);
  if (assetIndex >= assetCount) throw new Error("snapshot names an unknown asset");
  return {
    seq,
    assetIndex,
    isLong: (assetAndSide & 1) === 1,
    marginMicros: r.uint(),
    leverage: r.uint(),
    quantitySteps: r.uint(),
    openPriceTicks: r.uint(),
    stopLossTicks: r.uint(),
    takeProfitTicks: r.uint(),
    liquidationTicks: r.uint(),
    openedAtMs: baseMs + r.int(),
  };
}

function writeReceipt(w: ByteWriter, receipt: Receipt, atMs: number): void {
  w.u8(RECEIPT_KINDS.indexOf(receipt.kind));
  switch (receipt.kind) {
    case "answer":
      w.string(JSON.stringify(receipt.answer));
      return;
    case "rejected":
      w.string(receipt.code);
      w.string(receipt.message);
      return;
    case "create_account":
      w.u8(receipt.granted ? 1 : 0);
      break;
    case "open_trade":
      w.uint(receipt.trade.seq);
      writeTrade(w, receipt.trade, atMs);
      break;
    case "close_trade":
      w.uint(receipt.trade.seq);
      writeTrade(w, receipt.trade, atMs);
      w.uint(receipt.close.priceTicks);
      w.int(receipt.close.pnlMicros);
      w.u8(REASONS.indexOf(receipt.close.reason));
      w.int(receipt.close.atMs - atMs);
      break;
    case "spot_order": {
      const o = receipt.order;
      w.uint(o.seq);
      w.uint(o.assetIndex * 2 + (o.buy ? 1 : 0));
      w.uint(o.quantitySteps);
      w.uint(o.priceTicks);
      w.uint(o.totalMicros);
      w.int(o.atMs - atMs);
      break;
    }
  }
  for (const amount of receipt.balances) w.uint(amount);
}

function readReceipt(r: ByteReader, atMs: number, assetCount: number): Receipt {
  const kind = RECEIPT_KINDS[r.u8()];
  switch (kind) {
    case "answer":
      return { kind, answer: readAnswer(r) };
    case "rejected": {
      const code = r.string();
      if (!Object.hasOwn(REJECTIONS, code)) throw new Error(`snapshot holds an unknown rejection code ${code}`);
      return { kind, code: code as RejectionCode, message: r.string() };
    }
    case "create_account":
      return { kind, granted: r.u8() === 1, balances: readAmounts(r, assetCount) };
    case "open_trade":
      return { kind, trade: readTrade(r, r.uint(), atMs, assetCount), balances: readAmounts(r, assetCount) };
    case "close_trade": {
      const trade = readTrade(r, r.uint(), atMs, assetCount);
      const priceTicks = r.uint();
      const pnlMicros = r.int();
      const reason = REASONS[r.u8()];
      if (reason === undefined) throw new Error("snapshot holds an unknown close reason");
      return {
        kind,
        trade,
        close: { priceTicks, pnlMicros, reason, atMs: atMs + r.int() },
        balances: readAmounts(r, assetCount),
      };
    }
    case "spot_order": {
      const seq = r.uint();
      const assetAndBuy = r.uint();
      const assetIndex = Math.floor(assetAndBuy / 2);
      if (assetIndex >= assetCount) throw new Error("snapshot names an unknown asset");
      const order = {
        seq,
        assetIndex,
        buy: (assetAndBuy & 1) === 1,
        quantitySteps: r.uint(),
        priceTicks: r.uint(),
        totalMicros: r.uint(),
        atMs: atMs + r.int(),
      };
      return { kind, order, balances: readAmounts(r, assetCount) };
    }
    default:
      throw new Error("snapshot holds an unknown receipt kind");
  }
}

/**
 * Walks a receipt as `readReceipt` reads it, checking what it checks, without building it: a restore checks every
 * packed receipt this way (decoding a million into objects that are dropped costs tenths of a second more).
 */
function checkReceipt(r: ByteReader, assetCount: number): void {
  const kind = RECEIPT_KINDS[r.u8()];
  switch (kind) {
    case "rejected": {
      const code = r.string();
      if (!Object.hasOwn(REJECTIONS, code)) throw new Error(`snapshot holds an unknown rejection code ${code}`);
      r.string(); // the message: checked as UTF-8 (refusals are few)
      return;
    }
    case "answer":
      parseAnswerJson(r);
      return;
    case "create_account":
      r.u8();
      break;
    case "open_trade":
      r.skipVarints(1);
      checkTrade(r, assetCount);
      break;
    case "close_trade":
      r.skipVarints(1);
      checkTrade(r, assetCount);
      r.skipVarints(2);
      if (REASONS[r.u8()] === undefined) throw new Error("snapshot holds an unknown close reason");
      r.skipVarints(1);
      break;
    case "spot_order":
      r.skipVarints(1);
      if (Math.floor(r.uint() / 2) >= assetCount) throw new Error("snapshot names an unknown asset");
      r.skipVarints(4);
      break;
    default:
      throw new Error("snapshot holds an unknown receipt kind");
  }
  r.skipVarints(assetCount + 1);
}

function checkTrade(r: ByteReader, assetCount: number): void {
  if (Math.floor(r.uint() / 2) >= assetCount) throw new Error("snapshot names an unknown asset");
  r.skipVarints(8);
}

/**
 * An answer kept whole (receipts.ts, `remembered`), checked against the contract when it is used. A restore only
 * parses it (`parseAnswerJson`): checking every remembered answer against the schema would cost a restore seconds
 * at a few hundred thousand of them, and the snapshot's bytes are hash-checked already.
 */
function readAnswer(r: ByteReader): Answer {
  const parsed = answerSchema.safeParse(parseAnswerJson(r));
  if (!parsed.success) throw new Error("snapshot holds an answer the contract does not allow");
  return parsed.data;
}

function parseAnswerJson(r: ByteReader): unknown {
  try {
    return JSON.parse(r.string());
  } catch {
    throw new Error("snapshot holds an answer that is not JSON");
  }
}

function readAmounts(r: ByteReader, assetCount: number): number[] {
  const amounts = new Array<number>(assetCount + 1);
  for (let i = 0; i <= assetCount; i++) amounts[i] = r.uint();
  return amounts;
}

function readBigInt(r: ByteReader): bigint {
  const text = r.string();
  if (!/^-?\d{1,40}$/.test(text)) throw new Error("snapshot holds a malformed house balance");
  return BigInt(text);
}
