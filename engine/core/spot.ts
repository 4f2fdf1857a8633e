/**
 * Spot market orders: buy or sell a quantity of an asset against USD at the ask / bid, with the house as the
 * counterparty. total = quantity × price is exact (see contract/markets.ts), so nothing rounds.
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { Answer, Instruction } from "../../contract/messages.ts";
import { MAX_UNITS, formatUnits, formatUsd, mulWithin, parseUnits } from "../../contract/money.ts";
import { rejection } from "../../contract/rejections.ts";
import { isRejection, tradableQuote } from "./quotes.ts";
import { assetAt, type Account, type EngineState } from "./state.ts";
import { emit, isoTime, type Step } from "./step.ts";
import { balancesView } from "./views.ts";

type SpotOrder = Extract<Instruction, { kind: "spot_order" }>;

export function spotOrder(state: EngineState, step: Step, account: Account, order: SpotOrder): Answer {
  const p = state.params;
  const index = state.assetBySymbol.get(order.asset);
  if (index === undefined) {
    return { ok: false, error: rejection("UNKNOWN_ASSET", `Supported: ${p.assets.map((a) => a.symbol).join(", ")}.`) };
  }
  const asset = assetAt(state, index);
  const quantity = parseUnits(order.quantity, asset.quantityDecimals);
  if (!quantity.ok || quantity.units === 0) {
    return { ok: false, error: rejection("INVALID_AMOUNT", `Quantity must be positive with at most ${asset.quantityDecimals} decimals.`) };
  }
  const quote = tradableQuote(state, step, index);
  if (isRejection(quote)) return { ok: false, error: quote };
  const buy = order.side === "buy";
  const priceTicks = buy ? quote.askTicks : quote.bidTicks;
  const total = mulWithin(quantity.units, priceTicks * microsPerTickStep(asset), p.maxNotionalMicros);
  if (total === undefined) return { ok: false, error: rejection("NOTIONAL_TOO_LARGE", `A spot order may be worth at most ${p.maxNotionalMicros / 1e6} USD.`) };
  const held = account.holdings[index]!;
  if (buy ? total > account.usd : quantity.units > held) return { ok: false, error: rejection("INSUFFICIENT_BALANCE") };
  if (buy ? held + quantity.units > MAX_UNITS : account.usd + total > MAX_UNITS) {
    return { ok: false, error: rejection("NOTIONAL_TOO_LARGE", "The resulting balance would exceed the account limit.") };
  }

  const signedQty = buy ? quantity.units : -quantity.units;
  const signedTotal = buy ? -total : total;
  account.holdings[index] = held + signedQty;
  state.house.holdings[index]! -= signedQty;
  account.usd += signedTotal;
  state.house.usd -= signedTotal;

  const seq = state.nextSeq++;
  const balances = balancesView(state, account);
  emit(step, { type: "balances_changed", userId: account.userId, balances });
  return {
    ok: true,
    result: {
      kind: "spot_order",
      order: {
        id: `O${p.shard}-${seq}`,
        asset: asset.symbol,
        side: order.side,
        quantity: formatUnits(quantity.units, asset.quantityDecimals),
        price: formatUnits(priceTicks, asset.priceDecimals),
        total: formatUsd(total),
        executedAt: isoTime(step.nowMs),
      },
      balances,
    },
  };
}
