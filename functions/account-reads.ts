/**
 * How the API reads a user's read models together with the quotes, so that no answer combines states that never were.
 *
 * - A user's read models (balances, open trades, pending orders) that one answer combines are read in one script
 *   (worker/events.ts, readStoredState, the stream's snapshot read too): one engine step changes several of them at
 *   once (a close drops the trade and pays its margin and PnL into the balance), and separate reads, over REST each its
 *   own request, could take one from before a step and another from after it. A single key needs no script.
 * - The quotes are another cluster slot's key, so they cannot join that script; they are read on their own, first. A
 *   price moves independently of a step's money, so any quote values the account as it stands; but the worker writes
 *   a quote after the rest of its engine step (docs/architecture.md, Read models), so read models read after a quote
 *   reflect every step up to it: a trade its stop-loss closed at that quote is gone, never shown open past its stop.
 *   Read the other way round, they could be older than the quote. Newer read models than the quote only value a
 *   trade at a price a moment old.
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
