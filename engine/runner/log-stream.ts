/**
 * Reading `engine:input` and applying raw entries: decode against the contract, then `apply` (or
 * `applyMalformed` for an entry that fails it, so the cursor and the waiting sender both move on).
 */
import type { Redis } from "ioredis";
import type { EngineOutput } from "../../contract/messages.ts";
import { decodeInputFields, senderOf } from "../../contract/stream-fields.ts";
import { apply, applyMalformed } from "../core/apply.ts";
import type { EngineState } from "../core/state.ts";

export type RawEntry = [id: string, fields: string[]];

/** Entries strictly after `afterId`, waiting up to `blockMs` for the first one; [] on timeout. */
export async function readAfter(redis: Redis, stream: string, afterId: string, count: number, blockMs: number): Promise<RawEntry[]> {
  const reply = await redis.xread("COUNT", count, "BLOCK", blockMs, "STREAMS", stream, afterId);
  return reply?.[0]?.[1] ?? [];
}

/** Entries strictly after `afterId` without waiting (replay). */
export async function rangeAfter(redis: Redis, stream: string, afterId: string, count: number): Promise<RawEntry[]> {
  return redis.xrange(stream, `(${afterId}`, "+", "COUNT", count);
}

export function applyRaw(state: EngineState, [id, fields]: RawEntry): EngineOutput[] {
  const decoded = decodeInputFields(fields);
  return decoded.ok ? apply(state, { id, message: decoded.message }) : applyMalformed(state, id, senderOf(fields), decoded.reason);
}
