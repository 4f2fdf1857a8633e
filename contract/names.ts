/**
 * Every Redis stream and key name, in one place. Names carry the engine shard in a hash tag (`{0}`) so that one
 * shard's keys land in one Redis Cluster slot when the engine shards by user (DESIGN §9).
 */

export interface ShardNames {
  /** The one ordered log: prices and user instructions. Source of truth for replay. */
  readonly input: string;
  /** What the engine decided: responses, closed orders, read-model changes. */
  readonly output: string;
  /** Consumer group of the workers on `output`. */
  readonly workerGroup: string;
  /** Lease that lets exactly one engine apply `input` (value: holder and fencing token). */
  readonly engineLease: string;
}

export function shardNames(shard = 0): ShardNames {
  const tag = `{${shard}}`;
  return {
    input: `engine:${tag}:input`,
    output: `engine:${tag}:output`,
    workerGroup: "workers",
    engineLease: `engine:${tag}:lease`,
  };
}

/** Key a worker writes an instruction's answer to; the function that sent the instruction waits on it. */
export function responseKey(userId: string, requestId: string): string {
  return `response:${userId}:${requestId}`;
}

/** Read models the worker keeps current for queries that must not enter the log. */
export const readModelKeys = {
  balances: (userId: string) => `account:${userId}:balances`,
  openTrades: (userId: string) => `account:${userId}:open-trades`,
  quotes: "quotes:latest",
} as const;
