/**
 * Test support for the worker's integration tests: an engine in-process whose outputs go onto a keyspace's
 * engine:output, as the engine publishes them, and the inputs it is fed.
 */
import type { Redis } from "ioredis";
import type { EngineInput, EngineOutput, Instruction } from "../../contract/messages.ts";
import type { Keyspace } from "../../contract/names.ts";
import { outputEntries } from "../../contract/stream-fields.ts";
import { apply } from "../../engine/core/apply.ts";
import { makeParams } from "../../engine/core/params.ts";
import { createState } from "../../engine/core/state.ts";

export const instruct = (userId: string, requestId: string, instruction: Instruction): EngineInput => ({
  type: "user_instruction",
  userId,
  requestId,
  instruction,
});

/**
 * An engine of shard `shard` (its trade and order ids, and so its history rows, are its own) at log times from
 * `baseMs` on, publishing to `keys.output`.
 */
export function engineFeed(redis: Redis, keys: Pick<Keyspace, "output">, shard: number, baseMs: number) {
  const state = createState(makeParams({ shard }));
  const outputs: EngineOutput[] = [];
  let ms = baseMs;
  return {
    /** Every output published so far, in order. */
    outputs,
    /** Publishes at once what the engine outputs for `messages` (read as one batch); returns the last input id. */
    publish: async (...messages: EngineInput[]): Promise<string> => {
      const added = redis.multi();
      let id = "";
      for (const message of messages) {
        id = `${ms++}-0`;
        const out = apply(state, { id, message });
        outputs.push(...out);
        for (const fields of outputEntries(out)) added.xadd(keys.output, "*", ...fields);
      }
      await added.exec();
      return id;
    },
    /** A fresh ETH price (bid = ask) at the next log time. */
    price: (bid: string): EngineInput => ({
      type: "price_update",
      market: "ETH_USDC_PERP",
      bid,
      ask: bid,
      exchangeTimeUs: `${ms}000`,
      source: "sim",
    }),
  };
}
