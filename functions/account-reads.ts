/**
 * How the API reads a user's read models together with the quotes, and what such a read can still show.
 *
 * - A user's read models (balances, open trades, pending orders) that one answer combines are read in one script
 *   (worker/events.ts, readStoredState, the stream's snapshot read too): separate reads, over REST each its own
 *   request, could combine keys written far apart. The worker still writes one engine step's outputs one script each
 *   (a close drops the trade, then pays its margin and PnL into the balance), so a read between two of them shows
 *   part of the step for up to one batch (docs/architecture.md, Read models). A single key needs no script.
 * - The quotes are another cluster slot's key, so they cannot join that script; they are read on their own, first. A
 *   price moves independently of a step's money, so any quote values the account as it stands. The worker writes a
 *   batch's quotes before the rest of it, so for up to one batch a trade its stop-loss closed at the quote read can
 *   still show open.
 */
import { readStoredState, type StoredState } from "../worker/events.ts";
import type { ApiDeps } from "./context.ts";
import { quotesView, type Quote } from "./views.ts";

type Reads = Pick<ApiDeps, "redis" | "keys">;

/** The quotes, then the user's read models in one script. */
export async function readAccount(
  deps: Reads,
  userId: string,
): Promise<{ quotes: Map<string, Quote>; account: StoredState }> {
  const quotes = quotesView(await deps.redis.hgetall(deps.keys.quotesKey));
  const account = await readStoredState((script, keys, args) => deps.redis.eval(script, keys, args), deps.keys, userId);
  return { quotes, account };
}

/** The quotes, then the user's open trades (one key). */
export async function readOpenTrades(
  deps: Reads,
  userId: string,
): Promise<{ quotes: Map<string, Quote>; openTrades: Record<string, string> }> {
  const quotes = quotesView(await deps.redis.hgetall(deps.keys.quotesKey));
  return { quotes, openTrades: await deps.redis.hgetall(deps.keys.openTradesKey(userId)) };
}
