/**
 * Reading `engine:input` and applying its entries: decode against the contract, then `apply` (or
 * `applyMalformed` for an entry that fails it, so the cursor and the waiting sender both move on). Decoding and
 * applying are separate steps so the decoding can run on another thread (log-prefetch.ts).
 */
import type { Redis } from "ioredis";
import type { EngineInput, EngineOutput } from "../../contract/messages.ts";
import { decodeInputFields, senderOf } from "../../contract/stream-fields.ts";
import { apply, applyMalformed } from "../core/apply.ts";
import type { EngineState } from "../core/state.ts";

export type RawEntry = [id: string, fields: string[]];

/** An entry as the contract reads it: its message, or why it has none (and who sent it, when that is known). */
export type DecodedEntry =
  | { readonly id: string; readonly message: EngineInput }
  | {
      readonly id: string;
      readonly message?: undefined;
      readonly reason: string;
      readonly sender: { userId: string; requestId: string } | undefined;
    };

/** Entries strictly after `afterId`, waiting up to `blockMs` for the first one; [] on timeout. */
export async function readAfter(
  redis: Redis,
  stream: string,
  afterId: string,
  count: number,
  blockMs: number,
): Promise<RawEntry[]> {
  const reply = await redis.xread("COUNT", count, "BLOCK", blockMs, "STREAMS", stream, afterId);
  return reply?.[0]?.[1] ?? [];
}

/** Entries strictly after `afterId` without waiting (replay). */
export async function rangeAfter(redis: Redis, stream: string, afterId: string, count: number): Promise<RawEntry[]> {
  return redis.xrange(stream, `(${afterId}`, "+", "COUNT", count);
}

export function decodeEntry([id, fields]: RawEntry): DecodedEntry {
  const decoded = decodeInputFields(fields);
  return decoded.ok ? { id, message: decoded.message } : { id, reason: decoded.reason, sender: senderOf(fields) };
}

export function applyDecoded(state: EngineState, entry: DecodedEntry): EngineOutput[] {
  return entry.message !== undefined
    ? apply(state, { id: entry.id, message: entry.message })
    : applyMalformed(state, entry.id, entry.sender, entry.reason);
}

export function applyRaw(state: EngineState, raw: RawEntry): EngineOutput[] {
  return applyDecoded(state, decodeEntry(raw));
}
