/**
 * Idempotency: the first answer to each (user, request id) is remembered, as a receipt, for `idempotencyWindowMs` of
 * log time, so the same request acts once and gets the same answer, across restarts (it is part of the
 * snapshot). Memory is bounded per user (`idempotencyMaxPerUser`: a user past it forgets their own oldest requests,
 * never anyone else's) and in total (`idempotencyMaxEntries`, a backstop sized well above normal traffic, and fair:
 * past it the user holding the most entries forgets their oldest, so one user's volume never shortens the horizon
 * of a user holding fewer; with u users remembered, nobody is pushed below ⌊idempotencyMaxEntries / u⌋).
 * Transient refusals (NO_PRICE, STALE_PRICE) are not remembered: a retry may act.
 * Nor is anything a user without an account sends (ACCOUNT_NOT_FOUND): the same request may act once the
 * account exists. A create_account is remembered on the account it creates.
 */
import { TRANSIENT_REJECTIONS } from "../../contract/rejections.ts";
import type { Receipt } from "./receipts.ts";
import type { Account, EngineState } from "./state.ts";

export function recall(state: EngineState, account: Account, requestId: string, nowMs: number): Receipt | undefined {
  const slot = state.idempotency.find(account.userId, requestId);
  // Expiry is applied on insert, so an entry can outlive its window while nothing new arrives: check it here.
  return slot >= 0 && state.idempotency.atMs(slot) >= nowMs - state.params.idempotencyWindowMs
    ? state.idempotency.receipt(slot)
    : undefined;
}

export function remember(
  state: EngineState,
  account: Account,
  requestId: string,
  nowMs: number,
  receipt: Receipt,
): void {
  if (receipt.kind === "rejected" && TRANSIENT_REJECTIONS.has(receipt.code)) return;
  const { idempotencyWindowMs, idempotencyMaxEntries, idempotencyMaxPerUser } = state.params;
  if (idempotencyMaxEntries === 0 || idempotencyMaxPerUser === 0) return;
  // Expired entries leave first: one for this same request (entries are in time order) must go before it is re-added.
  state.idempotency.evict(nowMs - idempotencyWindowMs);
  state.idempotency.evictOwn(account.userId, idempotencyMaxPerUser - 1);
  state.idempotency.add(account.userId, requestId, nowMs, receipt);
  // The total cap after the add, so the new entry counts towards its owner: the busiest owner (this one included)
  // gives up its oldest, which is what makes ⌊max / owners⌋ a floor nobody is pushed below (idempotency-window.ts).
  state.idempotency.evictBusiest(idempotencyMaxEntries);
}
