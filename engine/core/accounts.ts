/** Accounts: the starting grant, paid by the house exactly once per user. */
import type { Answer } from "../../contract/messages.ts";
import { newAccount, type EngineState } from "./state.ts";
import { emit, type Step } from "./step.ts";
import { balancesView } from "./views.ts";

export function createAccount(state: EngineState, step: Step, userId: string): Answer {
  const existing = state.accounts.get(userId);
  if (existing !== undefined) {
    return { ok: true, result: { kind: "create_account", granted: false, balances: balancesView(state, existing) } };
  }
  const account = newAccount(userId, state.params.assets.length);
  account.usd = state.params.initialBalanceMicros;
  state.house.usd -= state.params.initialBalanceMicros;
  state.accounts.set(userId, account);
  const balances = balancesView(state, account);
  emit(step, { type: "balances_changed", userId, balances });
  return { ok: true, result: { kind: "create_account", granted: true, balances } };
}
