/**
 * Spot market orders: buy or sell a quantity of an asset against USD at the ask / bid, with the house as the
 * counterparty. total = quantity × price is exact (see contract/markets.ts), so nothing rounds.
 */
import { microsPerTickStep } from "../../contract/markets.ts";
import type { Instruction } from "../../contract/messages.ts";
import { MAX_UNITS, decimalsWord, formatUnits, formatUsd, mulWithin, toUnits } from "../../contract/money.ts";
import { roomMicros } from "./account-limit.ts";
import { tradableQuote } from "./quotes.ts";
import { isRefusal, refuse, refuseUnknownAsset, type Outcome, type SpotFacts } from "./receipts.ts";
import { amountsOf, assetAt, type Account, type EngineState } from "./state.ts";
import { emitBalancesChanged, type Step } from "./step.ts";
import { balancesView, spotOrderView } from "./views.ts";

type SpotOrder = Extract<Instruction, { kind: "spot_order" }>;

export function spotOrder(state: EngineState, step: Step, account: Account, order: SpotOrder): Outcome {
  const p = state.params;
  const index = state.assetBySymbol.get(order.asset);
  if (index === undefined) return refuseUnknownAsset(state, order.asset);
  const asset = assetAt(state, index);
  const quantity = toUnits(order.quantity, asset.quantityDecimals);
  if (quantity <= 0) {
    const most = formatUnits(MAX_UNITS, asset.quantityDecimals);
    return refuse(
      "INVALID_AMOUNT",
      `quantity must be a positive amount of ${asset.symbol} up to ${most} with at most ` +
        `${decimalsWord(asset.quantityDecimals)}; received ${JSON.stringify(order.quantity)}.`,
    );
  }
  const quote = tradableQuote(state, step, index);
  if (isRefusal(quote)) return quote;
  const buy = order.side === "buy";
  const priceTicks = buy ? quote.askTicks : quote.bidTicks;
  const total = mulWithin(quantity, priceTicks * microsPerTickStep(asset), p.maxNotionalMicros);
  if (total === undefined) {
    const price = `the current ${buy ? "ask" : "bid"} ${formatUnits(priceTicks, asset.priceDecimals)}`;
    return refuse(
      "NOTIONAL_TOO_LARGE",
      `A spot order may be worth at most ${formatUsd(p.maxNotionalMicros)} USD; received quantity ` +
        `${order.quantity} ${asset.symbol}, at ${price}.`,
    );
  }
  const held = account.holdings[index]!;
  if (buy ? total > account.usd : quantity > held) {
    const amount = (units: number) => `${formatUnits(units, asset.quantityDecimals)} ${asset.symbol}`;
    return refuse(
      "INSUFFICIENT_BALANCE",
      buy
        ? `It costs ${formatUsd(total)} USD; ${formatUsd(account.usd)} USD is free.`
        : `It sells ${amount(quantity)}; ${amount(held)} is held.`,
    );
  }
  if (buy && held + quantity > MAX_UNITS) {
    const most = formatUnits(MAX_UNITS, asset.quantityDecimals);
    return refuse(
      "NOTIONAL_TOO_LARGE",
      `A ${asset.symbol} balance may be at most ${most}; ${formatUnits(held, asset.quantityDecimals)} is held and ` +
        `this buys ${order.quantity}.`,
    );
  }
  if (!buy && total > roomMicros(account)) {
    return refuse(
      "NOTIONAL_TOO_LARGE",
      `An account's USD (free, reserved and in open trades) may be at most ${formatUsd(MAX_UNITS)} USD; this sale ` +
        `pays ${formatUsd(total)} USD and only ${formatUsd(Math.max(0, roomMicros(account)))} USD more fits.`,
    );
  }

  const signedQty = buy ? quantity : -quantity;
  const signedTotal = buy ? -total : total;
  account.holdings[index] = held + signedQty;
  state.house.holdings[index]! -= BigInt(signedQty);
  account.usd += signedTotal;
  state.house.usd -= BigInt(signedTotal);

  const facts: SpotFacts = {
    seq: state.nextSeq++,
    assetIndex: index,
    buy,
    quantitySteps: quantity,
    priceTicks,
    totalMicros: total,
    atMs: step.nowMs,
  };
  const amounts = amountsOf(account);
  const balances = balancesView(state, amounts);
  emitBalancesChanged(step, account, balances);
  return {
    receipt: { kind: "spot_order", order: facts, balances: amounts },
    answer: { ok: true, result: { kind: "spot_order", order: spotOrderView(state, facts), balances } },
  };
}
