/**
 * How the API reads a user's read models together with the quotes, and what such a read can still show.
 *
 * - A user's read models (balances, open trades, pending orders) that one answer combines are read in one script
 *   (worker/events.ts, readStoredState, the stream's snapshot read too): separate reads, over REST each its own
 *   request, could combine keys written far apart. The worker still writes one engine step's outputs one script each
 *   (a close drops the trade, then pays its margin and PnL into the balance), and a batch may end inside a step, so
 *   a read can land between two of them. The script says so (`insideStep`: the event at the mark, or the newest one
 *   stored above a gap a dead worker left, was stored with `more`), and readAccount reads again until the step is
 *   whole, for up to ACCOUNT_STEP_WAIT.maxWaitMs: past that it answers with the part it read, logged
 *   (`account_read_mid_step`). A single key needs no script, nor such a wait.
 * - The quotes are another cluster slot's key, so they cannot join that script; they are read on their own, first,
 *   again before each read of the account. A price moves independently of a step's money, so any quote values the
 *   account as it stands. The worker writes a batch's quotes before the rest of it, so for up to one batch a trade
 *   its stop-loss closed at the quote read can still show open.
 */
import { insideStep, readPastStep, readStoredState, type StepWaitLimits, type StoredState } from "../worker/events.ts";
import type { ApiDeps } from "./context.ts";
import { quotesView, type Quote } from "./views.ts";

type Reads = Pick<ApiDeps, "redis" | "keys">;

/**
 * How long readAccount waits for the rest of an engine step its read landed inside. The step's next event comes in
 * the worker's next batch, once that batch's Postgres writes are done; a worker that died holding it leaves it to a
 * claim 30 s on, which no HTTP answer can wait for. So the wait is kept to what a client hardly notices on top of
 * the request: reads 10 ms apart at first, doubling to 80 ms, 250 ms in all (7 reads at the most, fewer with the
 * round trips between: over Upstash REST each read is two billed requests, the quotes and the script).
 */
export const ACCOUNT_STEP_WAIT: StepWaitLimits = { firstPauseMs: 10, maxPauseMs: 80, maxWaitMs: 250 };

/** The quotes, then the user's read models in one script; both again while that read is inside an engine step. */
export async function readAccount(
  deps: Reads & Pick<ApiDeps, "log">,
  userId: string,
): Promise<{ quotes: Map<string, Quote>; account: StoredState }> {
  const read = async () => {
    const quotes = quotesView(await deps.redis.hgetall(deps.keys.quotesKey));
    const account = await readStoredState(
      (script, keys, args) => deps.redis.eval(script, keys, args),
      deps.keys,
      userId,
    );
    return { quotes, account };
  };
  const { state, waitedMs } = (await readPastStep(
    ACCOUNT_STEP_WAIT,
    Date.now,
    read,
    (state) => insideStep(state.account),
    (_, ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  ))!; // `read` never answers undefined
  if (waitedMs !== undefined)
    deps.log.warn("account_read_mid_step", {
      userId,
      seq: state.account.seq,
      aheadSeq: state.account.aheadSeq,
      waitedMs,
    });
  return state;
}

/** The quotes, then the user's open trades (one key). */
export async function readOpenTrades(
  deps: Reads,
  userId: string,
): Promise<{ quotes: Map<string, Quote>; openTrades: Record<string, string> }> {
  const quotes = quotesView(await deps.redis.hgetall(deps.keys.quotesKey));
  return { quotes, openTrades: await deps.redis.hgetall(deps.keys.openTradesKey(userId)) };
}
