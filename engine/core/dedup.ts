/**
 * Idempotency: the first answer to each (user, request id) is remembered, as a receipt, for `dedupWindowMs` of
 * log time (at most `dedupMaxEntries`), so the same request acts once and gets the same answer, across restarts
 * (it is part of the snapshot). Transient refusals (NO_PRICE, STALE_PRICE) are not remembered: a retry may act.
 */
import { TRANSIENT_REJECTIONS } from "../../contract/rejections.ts";
import type { Receipt } from "./receipts.ts";
import type { EngineState } from "./state.ts";

export function dedupKey(userId: string, requestId: string): string {
  // User ids cannot contain a space (contract), so the key is unambiguous.
  return `${userId} ${requestId}`;
}

export function recall(state: EngineState, key: string, nowMs: number): Receipt | undefined {
  const entry = state.dedup.get(key);
  // Expiry is applied on insert, so an entry can outlive its window while nothing new arrives: check it here.
  return entry !== undefined && entry.atMs >= nowMs - state.params.dedupWindowMs ? entry.receipt : undefined;
}

export function remember(state: EngineState, key: string, nowMs: number, receipt: Receipt): void {
  if (receipt.kind === "rejected" && TRANSIENT_REJECTIONS.has(receipt.code)) return;
  const { dedupWindowMs, dedupMaxEntries } = state.params;
  if (dedupMaxEntries === 0) return;
  const dedup = state.dedup;
  dedup.set(key, { atMs: nowMs, receipt });
  const oldestKept = nowMs - dedupWindowMs;
  for (const [k, entry] of dedup) {
    if (entry.atMs >= oldestKept && dedup.size <= dedupMaxEntries) break;
    dedup.delete(k);
  }
}
