/**
 * How a function has the engine act: XADD a `user_instruction` to `engine:input`, then wait for the answer the
 * worker pushes onto the per-attempt response key (named by the XADD's entry id). The XADD runs in a script that
 * first checks the engine's lease: with no engine holding it, nothing is written and the caller gets 503 at once
 * rather than a timeout, and a later engine does not act on a request its client gave up on long ago. An engine
 * that holds the lease but does not answer in time gives 504; the instruction stays in the log and is applied, so
 * a retry with the same Idempotency-Key returns that first answer.
 *
 * Any other failure once the instruction may be in the log is that 504 too, never the 503 ("retry") of an outage: a
 * client that retried without its key would place the order twice. That is every failure of the wait (a poll or a
 * BLPOP that failed says nothing about the engine, which applies the instruction all the same), and a failure of the
 * XADD's call on the way there or back (a timeout, a connection or a reply lost, a body from something in front of
 * Upstash): the script may have run, and there is no telling. Only Redis's or Upstash's own refusal of the call
 * (an error reply) means nothing was written, and keeps its own answer. Each such 504 is logged with its cause
 * (`engine_outcome_unknown`), since the client's answer says nothing of it.
 *
 * Deployed, a request must be answered before Lambda ends the function at its timeout, or API Gateway answers with
 * its own bare 5xx. Every step is bounded (a Redis call by REDIS_CALL_TIMEOUT_MS, two for a script Redis must be sent
 * again; a Neon query by NEON_QUERY_TIMEOUT_MS), but those bounds and ENGINE_TIMEOUT_MS can add up to more than the
 * function's timeout. So the wait for the answer, the one long step, is cut to what the caller has left (the Lambda
 * entry's remaining time less what the route still does after the answer), and with nothing left it is the same 504
 * as a timeout. The steps before the wait, each bounded, fit in the function's timeout on both routes that wait
 * (a trade; following a sign-in link, the longer).
 */
import { answerSchema, type Answer, type Instruction } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";
import { encodeFields } from "../contract/stream-fields.ts";
import type { Logger } from "../platform/log.ts";
import { isBackendFailure } from "./backend-failure.ts";
import { ApiError } from "./errors.ts";
import { isCommandReply, REDIS_CALL_TIMEOUT_MS, type ApiRedis } from "./redis/api-redis.ts";

/** KEYS[1] engine lease, KEYS[2] engine:input; ARGV the entry's fields. The entry id, or nil with no engine. */
const SEND = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV))`;

export interface EngineClient {
  /**
   * The engine's answer to this user's instruction: a result or a refusal (rejections are data). `timeLeftMs`, when
   * given, tells how long the caller can still spend before it must have the answer in hand; the wait is cut to fit,
   * the last read's own bound included.
   */
  send(userId: string, requestId: string, instruction: Instruction, timeLeftMs?: () => number): Promise<Answer>;
}

export function createEngineClient(redis: ApiRedis, keys: Keyspace, timeoutMs: number, log?: Logger): EngineClient {
  /** The 504 for an instruction that may be in the log, when a call failed rather than the engine being slow. */
  const outcomeUnknown = (requestId: string, step: "send" | "wait", err: unknown): ApiError => {
    log?.warn("engine_outcome_unknown", { requestId, step, error: err instanceof Error ? err.stack : String(err) });
    return new ApiError("ENGINE_TIMEOUT");
  };
  return {
    async send(userId, requestId, instruction, timeLeftMs) {
      const fields = encodeFields({ type: "user_instruction", requestId, userId, instruction });
      let entryId: unknown;
      try {
        entryId = await redis.eval(SEND, [keys.engineLease, keys.input], fields);
      } catch (err) {
        if (isBackendFailure(err) && !isCommandReply(err)) throw outcomeUnknown(requestId, "send", err);
        throw err;
      }
      if (entryId === null) throw new ApiError("ENGINE_UNAVAILABLE");
      if (typeof entryId !== "string") throw new Error(`unexpected XADD reply ${JSON.stringify(entryId)}`);
      const waitMs = timeLeftMs === undefined ? timeoutMs : Math.min(timeoutMs, timeLeftMs() - REDIS_CALL_TIMEOUT_MS);
      if (!(waitMs >= 1)) throw new ApiError("ENGINE_TIMEOUT");
      let raw: string | null;
      try {
        raw = await redis.waitFirst(keys.responseKey(userId, entryId), waitMs);
      } catch (err) {
        throw outcomeUnknown(requestId, "wait", err);
      }
      if (raw === null) throw new ApiError("ENGINE_TIMEOUT");
      return answerSchema.parse(JSON.parse(raw));
    },
  };
}
