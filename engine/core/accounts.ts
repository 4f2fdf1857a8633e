/** Accounts: the starting grant, paid by the house exactly once per user. */
import type { Outcome } from "./receipts.ts";
import { amountsOf, newAccount, type EngineState } from "./state.ts";
import { emitBalancesChanged, type Step } from "./step.ts";
import { balancesView } from "./views.ts";

export function createAccount(state: EngineState, step: Step, userId: string): Outcome {
  const existing = state.accounts.get(userId);
  if (existing !== undefined) {
    const amounts = amountsOf(existing);
    return {
      receipt: { kind: "create_account", granted: false, balances: amounts },
      answer: { ok: true, result: { kind: "create_account", granted: false, balances: balancesView(state, amounts) } },
    };
  }
  const account = newAccount(userId, state.params.assets.length);
  account.usd = state.params.initialBalanceMicros;
  state.house.usd -= BigInt(state.params.initialBalanceMicros);
  state.accounts.set(userId, account);
  const amounts = amountsOf(account);
  const balances = balancesView(state, amounts);
  emitBalancesChanged(step, account, balances);
  return {
    receipt: { kind: "create_account", granted: true, balances: amounts },
    answer: { ok: true, result: { kind: "create_account", granted: true, balances } },
  };
}
