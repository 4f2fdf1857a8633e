/**
 * How a function has the engine act: XADD a `user_instruction` to `engine:input`, then wait for the answer the
 * worker pushes onto the per-attempt response key (named by the XADD's entry id). The XADD runs in a script that
 * first checks the engine's lease: with no engine holding it, nothing is written and the caller gets 503 at once
 * rather than a timeout, and a later engine does not act on a request its client gave up on long ago. An engine
 * that holds the lease but does not answer in time gives 504; the instruction stays in the log and is applied, so
 * a retry with the same Idempotency-Key returns that first answer.
 */
import { answerSchema, type Answer, type Instruction } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import { ApiError } from "./errors.ts";
import type { ApiRedis } from "./redis/api-redis.ts";

/** KEYS[1] engine lease, KEYS[2] engine:input; ARGV the entry's fields. The entry id, or nil with no engine. */
const SEND = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV))`;

export interface EngineClient {
  /** The engine's answer to this user's instruction: a result or a refusal (rejections are data). */
  send(userId: string, requestId: string, instruction: Instruction): Promise<Answer>;
}

export function createEngineClient(redis: ApiRedis, keys: Keyspace, timeoutMs: number): EngineClient {
  return {
    async send(userId, requestId, instruction) {
      const fields = encodeFields({ type: "user_instruction", requestId, userId, instruction });
      const entryId = await redis.eval(SEND, [keys.engineLease, keys.input], fields);
      if (entryId === null) throw new ApiError("ENGINE_UNAVAILABLE");
      if (typeof entryId !== "string") throw new Error(`unexpected XADD reply ${JSON.stringify(entryId)}`);
      const raw = await redis.waitFirst(keys.responseKey(userId, entryId), timeoutMs);
      if (raw === null) throw new ApiError("ENGINE_TIMEOUT");
      return answerSchema.parse(JSON.parse(raw));
    },
  };
}
