/**
 * Invariants of the engine state, checked after every step in tests (and available to the runner as a
 * self-check). Any violation is a bug and throws with a description.
 *
 * - Conservation: for USD and every asset, users + margin locked in open trades + margin reserved by pending orders
 *   + house = 0.
 * - No user balance is negative; every amount is an exact integer within range; so is every account's eventSeq.
 * - Every account's USD (free, reserved and in open trades) is within the account limit (account-limit.ts), and its
 *   running open margin is the sum of its open trades' margins.
 * - Every open trade is indexed exactly where its levels say; heaps are ordered; every trailing stop is indexed once.
 * - No open trade should already have fired at the market's current quote.
 * - Pending orders: filed, linked and indexed consistently, none left that should have filled or expired
 *   (pending-invariants.ts).
 */
import { MAX_UNITS } from "../../contract/money.ts";
import { reservedMicros } from "./pending-book.ts";
import { checkPendingOrders } from "./pending-invariants.ts";
import { tradeId, type EngineState, type Trade, type TriggerBook } from "./state.ts";
import { heapsOf } from "./trigger-index.ts";
import { verifyTrailBook } from "./trailing-book.ts";

export function checkInvariants(state: EngineState): void {
  const n = state.params.assets.length;
  // Sums in bigint: across many accounts they leave the exact range of a double.
  let usd = state.house.usd;
  const holdings = [...state.house.holdings];
  let openCount = 0;
  for (const account of state.accounts.values()) {
    amount(account.usd, `usd of ${account.userId}`, true);
    if (!Number.isSafeInteger(account.eventSeq) || account.eventSeq < 0)
      throw new Error(`eventSeq of ${account.userId} is not a count: ${account.eventSeq}`);
    const reserved = reservedMicros(account);
    usd += BigInt(account.usd) + BigInt(reserved);
    for (let i = 0; i < n; i++) {
      const h = account.holdings[i]!;
      amount(h, `holding ${i} of ${account.userId}`, true);
      holdings[i]! += BigInt(h);
    }
    let margins = 0;
    for (const [seq, t] of account.openTrades) {
      const id = tradeId(state.params.shard, seq);
      if (t.seq !== seq || t.account !== account) throw new Error(`trade ${id} is filed under the wrong account`);
      amount(t.marginMicros, `margin of ${id}`, true);
      if (t.quantitySteps <= 0) throw new Error(`trade ${id} has no quantity`);
      usd += BigInt(t.marginMicros);
      margins += t.marginMicros;
      openCount++;
      checkIndexed(state.books[t.assetIndex]!, t, id);
    }
    if (account.openMarginMicros !== margins) {
      throw new Error(
        `open margin of ${account.userId} is ${account.openMarginMicros} micros; its open trades hold ${margins}`,
      );
    }
    // Summed as doubles: one past 2^53 may round, but it is past MAX_UNITS either way, and refused.
    amount(account.usd + reserved + margins, `USD of ${account.userId} (free, reserved and in open trades)`, true);
  }
  if (usd !== 0n) throw new Error(`USD is not conserved: off by ${usd} micros`);
  holdings.forEach((h, i) => {
    if (h !== 0n) throw new Error(`asset ${i} is not conserved: off by ${h}`);
  });
  let indexed = 0;
  let trailing = 0;
  state.books.forEach((book, i) => {
    for (const heap of heapsOf(book)) {
      heap.verify();
      indexed += heap.size;
    }
    const q = state.quotes[i];
    trailing += verifyTrailBook(book.trailing, q?.bidTicks, q?.askTicks);
    if (q === undefined) return;
    const fired =
      (book.longExit.peek()?.exitTicks ?? -Infinity) >= q.bidTicks ||
      (book.longProfit.peek()?.takeProfitTicks ?? Infinity) <= q.bidTicks ||
      (book.shortExit.peek()?.exitTicks ?? Infinity) <= q.askTicks ||
      (book.shortProfit.peek()?.takeProfitTicks ?? -Infinity) >= q.askTicks;
    if (fired) throw new Error(`market ${i} has an open trade that should have fired at the current quote`);
  });
  let expected = 0;
  let trailingExpected = 0;
  for (const a of state.accounts.values()) {
    for (const t of a.openTrades.values()) {
      expected += (t.exitTicks !== 0 ? 1 : 0) + (t.takeProfitTicks !== 0 ? 1 : 0);
      if (t.trailing === null) continue;
      if (t.trailing.trade !== t) throw new Error(`trade #${t.seq} holds another trade's trailing stop`);
      trailingExpected++;
    }
  }
  if (indexed !== expected)
    throw new Error(`trigger heaps hold ${indexed} entries, open trades need ${expected} (${openCount} open)`);
  if (trailing !== trailingExpected)
    throw new Error(`trailing indexes hold ${trailing} stops, open trades have ${trailingExpected}`);
  checkPendingOrders(state);
}

function checkIndexed(book: TriggerBook, t: Trade, id: string): void {
  const exitHeap = t.isLong ? book.longExit : book.shortExit;
  const profitHeap = t.isLong ? book.longProfit : book.shortProfit;
  if ((t.exitTicks !== 0) !== t.exitPos >= 0) throw new Error(`trade ${id} exit indexing is wrong`);
  if ((t.takeProfitTicks !== 0) !== t.profitPos >= 0) throw new Error(`trade ${id} take-profit indexing is wrong`);
  if (t.exitPos >= exitHeap.size || t.profitPos >= profitHeap.size) throw new Error(`trade ${id} points past its heap`);
}

function amount(x: number, what: string, nonNegative: boolean): void {
  if (!Number.isSafeInteger(x) || Math.abs(x) > MAX_UNITS) throw new Error(`${what} is not an exact amount: ${x}`);
  if (nonNegative && x < 0) throw new Error(`${what} is negative: ${x}`);
}
