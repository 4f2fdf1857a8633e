/**
 * Idempotency: the first answer to each (user, request id) is remembered for `dedupWindowMs` of log time (at most
 * `dedupMaxEntries`), so the same request acts once and gets the same answer, across restarts (it is part of the
 * snapshot). Transient refusals (NO_PRICE, STALE_PRICE) are not remembered: retrying them may act.
 */
import type { Answer } from "../../contract/messages.ts";
import { TRANSIENT_REJECTIONS, type RejectionCode } from "../../contract/rejections.ts";
import type { EngineState } from "./state.ts";

export function dedupKey(userId: string, requestId: string): string {
  // User ids cannot contain a space (contract), so the key is unambiguous.
  return `${userId} ${requestId}`;
}

export function recall(state: EngineState, key: string): Answer | undefined {
  return state.dedup.get(key)?.answer;
}

export function remember(state: EngineState, key: string, nowMs: number, answer: Answer): void {
  if (!answer.ok && TRANSIENT_REJECTIONS.has(answer.error.code as RejectionCode)) return;
  const { dedupWindowMs, dedupMaxEntries } = state.params;
  if (dedupMaxEntries === 0) return;
  state.dedup.set(key, { atMs: nowMs, answer });
  const oldestKept = nowMs - dedupWindowMs;
  for (const [k, entry] of state.dedup) {
    if (entry.atMs >= oldestKept && state.dedup.size <= dedupMaxEntries) break;
    state.dedup.delete(k);
  }
}
