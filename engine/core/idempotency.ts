/**
 * Idempotency: the first answer to each (user, request id) is remembered, as a receipt, for `idempotencyWindowMs` of
 * log time, so the same request acts once and gets the same answer, across restarts (it is part of the
 * snapshot). Memory is bounded per user (`idempotencyMaxPerUser`: a user past it forgets their own oldest requests,
 * never anyone else's) and in total (`idempotencyMaxEntries`, a backstop sized well above normal traffic). Transient refusals (NO_PRICE, STALE_PRICE) are not remembered: a retry may act.
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
  // Evict first: an expired entry for this same request (entries are in time order) leaves before it is re-added.
  state.idempotency.evict(nowMs - idempotencyWindowMs, idempotencyMaxEntries - 1);
  state.idempotency.evictOwn(account.userId, idempotencyMaxPerUser - 1);
  state.idempotency.add(account.userId, requestId, nowMs, receipt);
}
