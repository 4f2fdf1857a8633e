/**
 * The account limit: an account's USD — free, reserved by its pending orders, and locked as margin in its open
 * trades — stays within MAX_UNITS (a billion USD), so every amount it holds stays exact. USD enters an account
 * only as the starting grant (within the limit by the params' check), a close's profit (settlement.ts caps it) and
 * a spot sale (spot.ts refuses one past the limit); opening, filling, cancelling, expiring and rejecting, and the
 * margin a close returns, move USD between those three places and leave the sum as it is. So a close with a PnL of
 * zero or more always pays its margin back. Unreachable under the per-order limits, but never unchecked. (A state
 * saved before open margins counted may hold an account over the limit; it restores, and that account's closes pay
 * less than their margin back until it is under again: the check here never lets a payout take it further over.)
 */
import { MAX_UNITS } from "../../contract/money.ts";
import { reservedMicros } from "./pending-book.ts";
import type { Account } from "./state.ts";

/** The account's USD that counts against the limit: free, reserved by pending orders, and in open trades. */
export function limitedUsdMicros(account: Account): number {
  return account.usd + reservedMicros(account) + account.openMarginMicros;
}

/** How much more USD the account may receive before it reaches the limit. */
export function roomMicros(account: Account): number {
  return MAX_UNITS - limitedUsdMicros(account);
}
