/**
 * Read models in Redis, kept current from engine outputs so queries never enter the log: per user the balances
 * (a hash of decimal strings), open trades (trade id → JSON) and pending entry orders (order id → JSON), and the
 * latest quote per asset.
 *
 * A replay after an engine restart re-emits old outputs (same ids) after newer ones were applied, and a batch
 * claimed from a dead worker is applied after newer outputs another worker already applied. Balances and quotes
 * are written whole, so each write is guarded by a watermark: the highest output id applied to that user (or
 * asset). An output at or below it is skipped, which makes applying idempotent and never lets a read model go back
 * in time. Open trades and pending orders change one at a time, so they are guarded per trade (order) instead (see ENTITY_WRITE).
 */
import { createHash } from "node:crypto";
import type { ChainableCommander } from "ioredis";
import { isPrivateOutput, type EngineOutput } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";
import { EVENT_APPEND, eventAppendCall, queueEventAppend } from "./events.ts";

/**
 * KEYS[1] watermark, KEYS[2] target; ARGV[1..3] output id as ms, seq, n; ARGV[4] op; ARGV[5..] op args. Returns 1
 * when written, 2 when this very output was written before (the model is still its), 0 when an older one. An `hset`
 * without field and value pairs (the codec refuses empty balances) raises an error before it writes anything.
 */
export const GUARDED_WRITE = `
local mark = redis.call('GET', KEYS[1])
if mark then
  local ms, seq, n = string.match(mark, '^(%d+) (%d+) (%d+)$')
  ms, seq, n = tonumber(ms), tonumber(seq), tonumber(n)
  local a, b, c = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  if a == ms and b == seq and c == n then return 2 end
  if a < ms or (a == ms and (b < seq or (b == seq and c < n))) then return 0 end
end
local op = ARGV[4]
if op == 'hset' then
  -- Checked before the DEL, since a script is not rolled back; raised, so that a chained append does not run either.
  if #ARGV < 6 or #ARGV % 2 ~= 0 then error({err = 'ERR hset needs field and value pairs'}) end
  redis.call('DEL', KEYS[2]); redis.call('HSET', KEYS[2], unpack(ARGV, 5))
elseif op == 'hput' then redis.call('HSET', KEYS[2], ARGV[5], ARGV[6]) end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return 1`;

/**
 * Open trades and pending orders: a user-wide watermark cannot guard them. When an older output arrives after a newer
 * one of the same user (a claimed batch), skipping it loses that trade's change for good: a closed trade stays
 * listed, or an open one never appears. Each trade (and each order) is guarded on its own instead, by two marks:
 * - ending it (a trade closed in full, an order that left the book) leaves a tombstone (its id scored by the
 *   end's log time), after which nothing about it is written again: no late output resurrects it;
 * - each write of its view records the output id it came from, and a view from an output at or below that id is
 *   skipped: no late output regresses it (a trade's exits moved twice, the older move arriving last).
 * Both writes are idempotent, and a put and an end commute. Tombstones older than TRADE_TOMBSTONE_MS of log time
 * are dropped as the user's trades (orders) end.
 *
 * KEYS[1] tombstones (sorted set), KEYS[2] the model (hash: id → JSON), KEYS[3] marks (hash: id → "ms seq n");
 * ARGV[1] 'put' | 'end', ARGV[2] the id, ARGV[3..5] the output id as ms, seq, n;
 * put: ARGV[6] the view's JSON; end: ARGV[6] the tombstone cutoff (ms).
 */
export const ENTITY_WRITE = `
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
if ARGV[1] == 'put' then
  local mark = redis.call('HGET', KEYS[3], ARGV[2])
  if mark then
    local ms, seq, n = string.match(mark, '^(%d+) (%d+) (%d+)$')
    ms, seq, n = tonumber(ms), tonumber(seq), tonumber(n)
    local a, b, c = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
    if a < ms or (a == ms and (b < seq or (b == seq and c <= n))) then return 0 end
  end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
  return 1
end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[6])
return 1`;

/** How long a closed trade's (an ended order's) tombstone is kept: far longer than any claimed or replayed output can come late. */
export const TRADE_TOMBSTONE_MS = 24 * 60 * 60 * 1000;

/** "1795554219233-0:2" → ["1795554219233", "0", "2"]. */
export function outputIdParts(id: string): [string, string, string] {
  const m = /^(\d+)-(\d+):(\d+)$/.exec(id);
  if (m === null) throw new Error(`malformed output id ${id}`);
  return [m[1]!, m[2]!, m[3]!];
}

/**
 * An answer onto its response key, with the key's expiry. A script like the read-model writes, so that if Redis has
 * lost its scripts, the answers of a batch fail with its read-model writes instead of going out ahead of them
 * (the worker then reloads the scripts and runs the batch again). KEYS[1] response key; ARGV[1] answer, ARGV[2] ttl ms.
 */
export const ANSWER_WRITE = `
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * Lua that runs two scripts' bodies in one call (one command, and atomic together): the first with the first
 * ARGV[1] keys and the ARGV[2] arguments after those two counts, then the second with the rest. Returns the first's
 * result. Each body becomes a function whose parameters stand for KEYS and ARGV, so its own `return` ends only it.
 */
export function chainScripts(first: string, second: string): string {
  return `
local function first(KEYS, ARGV)
${first}
end
local function second(KEYS, ARGV)
${second}
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local k1, a1, k2, a2 = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= nk then k1[i] = KEYS[i] else k2[i - nk] = KEYS[i] end
end
for i = 3, #ARGV do
  if i - 2 <= na then a1[i - 2] = ARGV[i] else a2[i - 2 - na] = ARGV[i] end
end
local result = first(k1, a1)
second(k2, a2)
return result`;
}

/** A private output's read-model write, then its event's append (events.ts), as one script: one command per event. */
const THEN_APPEND = new Map([GUARDED_WRITE, ENTITY_WRITE].map((write) => [write, chainScripts(write, EVENT_APPEND)]));

/** Every script the worker runs by hash: it loads them once (SCRIPT LOAD) and sends only the hash with each write. */
export const READ_MODEL_SCRIPTS = [GUARDED_WRITE, ENTITY_WRITE, ANSWER_WRITE, ...THEN_APPEND.values()] as const;
const SHA = new Map(READ_MODEL_SCRIPTS.map((script) => [script, createHash("sha1").update(script).digest("hex")]));

/** Queues an answer for the function waiting on `key` (EVALSHA: load READ_MODEL_SCRIPTS first). */
export function queueAnswer(pipe: ChainableCommander, key: string, answerJson: string, ttlMs: number): void {
  pipe.evalsha(SHA.get(ANSWER_WRITE)!, 1, key, answerJson, String(ttlMs));
}

interface ScriptCall {
  readonly script: string;
  readonly keys: readonly string[];
  readonly args: readonly string[];
}

/**
 * Queues what an output writes, on a pipeline (EVALSHA: load READ_MODEL_SCRIPTS and EVENT_SCRIPTS first): its read
 * model, if any, and for a private event its append to the user's events store (events.ts), in the same script
 * when it has both, so the events mark never covers a change the read models lack. The script's result is the
 * read-model write's (1 written, 0 skipped as older), or the append's when there is no read-model write. `more`:
 * the output's engine:output entry said `more 1`, stored with its event (events.ts, eventMember).
 */
export function queueOutputWrite(pipe: ChainableCommander, keys: Keyspace, output: EngineOutput, more = false): void {
  const write = readModelWrite(keys, output);
  const append = isPrivateOutput(output) ? eventAppendCall(keys, output, more) : undefined;
  if (write !== undefined && append !== undefined) {
    const counts = [String(write.keys.length), String(write.args.length)];
    pipe.evalsha(
      SHA.get(THEN_APPEND.get(write.script)!)!,
      write.keys.length + append.keys.length,
      ...write.keys,
      ...append.keys,
      ...counts,
      ...write.args,
      ...append.args,
    );
  } else if (write !== undefined) {
    pipe.evalsha(SHA.get(write.script)!, write.keys.length, ...write.keys, ...write.args);
  } else if (isPrivateOutput(output)) {
    queueEventAppend(pipe, keys, output, more);
  }
}

/** The read-model write an output calls for, if any. */
function readModelWrite(keys: Keyspace, output: EngineOutput): ScriptCall | undefined {
  const id = outputIdParts(output.id);
  const guarded = (mark: string, target: string, ...args: string[]): ScriptCall => ({
    script: GUARDED_WRITE,
    keys: [mark, target],
    args: [...id, ...args],
  });
  const cutoff = String(Number(id[0]) - TRADE_TOMBSTONE_MS);
  const entity = (userId: string, kind: "trade" | "order", op: "put" | "end", entityId: string, arg: string) => ({
    script: ENTITY_WRITE,
    keys:
      kind === "trade"
        ? [guardKey(keys, userId, "closed-trades"), keys.openTradesKey(userId), guardKey(keys, userId, "trade-marks")]
        : [
            guardKey(keys, userId, "ended-orders"),
            keys.pendingOrdersKey(userId),
            guardKey(keys, userId, "order-marks"),
          ],
    args: [op, entityId, ...id, arg],
  });
  switch (output.type) {
    case "balances_changed":
      return guarded(
        watermark(keys, output.userId, "balances"),
        keys.balancesKey(output.userId),
        "hset",
        ...Object.entries(output.balances).flat(),
      );
    case "trade_opened":
    case "trade_updated":
      return entity(output.userId, "trade", "put", output.trade.id, JSON.stringify(output.trade));
    case "closed_order":
      // A partial close leaves the trade open; its trade_updated carries what stays.
      return output.trade.remainingQuantity === "0"
        ? entity(output.userId, "trade", "end", output.trade.id, cutoff)
        : undefined;
    case "order_updated": {
      const { order, userId } = output;
      const ended = order.status !== "pending";
      return entity(userId, "order", ended ? "end" : "put", order.id, ended ? cutoff : JSON.stringify(order));
    }
    case "quote_updated":
      return guarded(
        `${keys.quotesKey}:mark:${output.asset}`,
        keys.quotesKey,
        "hput",
        output.asset,
        JSON.stringify(output),
      );
    case "order_response":
      return undefined;
    default:
      throw new Error(`unhandled output ${JSON.stringify(output satisfies never)}`);
  }
}

function watermark(keys: Keyspace, userId: string, model: string): string {
  // Beside its model, in the user's hash tag, so one Lua call touches one cluster slot.
  return `${keys.balancesKey(userId)}:${model}-mark`;
}

/** The per-entity guards' keys: beside the user's read models, in the user's hash tag. */
function guardKey(keys: Keyspace, userId: string, kind: string): string {
  return `${keys.balancesKey(userId)}:${kind}`;
}
