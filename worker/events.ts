/**
 * The per-user private events store (STREAM-SPEC.md §2), as the stream process reads it: a sorted set per user
 * (`eventsKey`, score = seq, member "<log ms> <output JSON>") and the contiguous mark (`eventsSeqKey`: every event
 * with seq ≤ mark is stored and reflected in the read models). The worker writes both; the readers here are what a
 * stream replica needs to send a snapshot and to resume a client from the seq it last saw.
 */
import type { Redis } from "ioredis";
import type { Balances, OrderView, PrivateOutput, TradeView } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";

export interface PrivateState {
  seq: number;
  balances: Balances;
  trades: TradeView[];
  orders: OrderView[];
}

export type EventsAfter =
  { ok: true; events: PrivateOutput[]; mark: number } | { ok: false; reason: "beyond_retention" | "ahead" };

/** How many events one resume read returns at most when the caller gives no limit. */
export const EVENTS_AFTER_LIMIT = 1_000;

/** KEYS: balances, open trades, pending orders, mark. One script, so the read models and the mark agree. */
const READ_STATE = `
return {
  redis.call('GET', KEYS[4]) or '0',
  redis.call('HGETALL', KEYS[1]),
  redis.call('HVALS', KEYS[2]),
  redis.call('HVALS', KEYS[3])
}`;

/** KEYS: events, mark; ARGV: since, limit. {'ahead'} | {'beyond'} | {'ok', mark, member...}. */
const READ_AFTER = `
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
local since = tonumber(ARGV[1])
if since > mark then return {'ahead'} end
if since == mark then return {'ok', tostring(mark)} end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 or tonumber(first[2]) > since + 1 then return {'beyond'} end
local upto = math.min(mark, since + tonumber(ARGV[2]))
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. since, upto)
table.insert(members, 1, tostring(mark))
table.insert(members, 1, 'ok')
return members`;

/** One atomic read (Lua, one hash tag): read models + contiguous mark. Every event ≤ seq is reflected. */
export async function readPrivateState(redis: Redis, keys: Keyspace, userId: string): Promise<PrivateState> {
  const [mark, balances, trades, orders] = (await redis.eval(
    READ_STATE,
    4,
    keys.balancesKey(userId),
    keys.openTradesKey(userId),
    keys.pendingOrdersKey(userId),
    keys.eventsSeqKey(userId),
  )) as [string, string[], string[], string[]];
  const balanceMap: Balances = {};
  for (let i = 0; i + 1 < balances.length; i += 2) balanceMap[balances[i]!] = balances[i + 1]!;
  return {
    seq: Number(mark),
    balances: balanceMap,
    trades: trades.map((json) => JSON.parse(json) as TradeView),
    orders: orders.map((json) => JSON.parse(json) as OrderView),
  };
}

/** Events with seq in (since, min(mark, since + limit)], ascending and contiguous; or why there are none to give. */
export async function readEventsAfter(
  redis: Redis,
  keys: Keyspace,
  userId: string,
  since: number,
  limit = EVENTS_AFTER_LIMIT,
): Promise<EventsAfter> {
  const reply = (await redis.eval(
    READ_AFTER,
    2,
    keys.eventsKey(userId),
    keys.eventsSeqKey(userId),
    String(since),
    String(limit),
  )) as string[];
  if (reply[0] === "ahead") return { ok: false, reason: "ahead" };
  if (reply[0] === "beyond") return { ok: false, reason: "beyond_retention" };
  const events = reply.slice(2).map((member) => JSON.parse(member.slice(member.indexOf(" ") + 1)) as PrivateOutput);
  return { ok: true, events, mark: Number(reply[1]) };
}
