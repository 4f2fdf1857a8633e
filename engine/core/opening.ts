/**
 * Opening a sized trade at a fill price: shared by open_trade (trading.ts, at the current quote) and a pending
 * order's fill (pending-fill.ts, at the quote that triggered it). Quantity = margin × leverage / fill price, rounded
 * down to the step; the liquidation level is liquidation.ts's. Apart from trading.ts so that the price update's
 * pending fills need not import the instruction handlers (which import quotes.ts).
 */
import { microsPerTickStep, type AssetConfig } from "../../contract/markets.ts";
import type { TradeView } from "../../contract/messages.ts";
import { divFloor, formatUnits, formatUsd, mulWithin } from "../../contract/money.ts";
import { liquidationTicks } from "./liquidation.ts";
import { refuse, type Outcome } from "./receipts.ts";
import { assetAt, fileTrade, makeTrade, type Account, type EngineState, type Trade } from "./state.ts";
import { emitTradeOpened, type Step } from "./step.ts";
import { indexTrade } from "./trigger-index.ts";
import { tradeView } from "./views.ts";

/** An open_trade instruction (or an entry order's terms) read into numbers; 0 for an absent stop-loss or take-profit. */
export interface OpenOrder {
  readonly assetIndex: number;
  readonly isLong: boolean;
  readonly leverage: number;
  readonly marginMicros: number;
  readonly stopLossTicks: number;
  readonly takeProfitTicks: number;
}

/** A trade's size at a fill price: quantity rounded down to the step, and its liquidation level. */
export interface TradeSize {
  readonly quantitySteps: number;
  readonly liquidationTicks: number;
}

/** Sizes a trade of this margin and leverage at `fillTicks`, or refuses (NOTIONAL_TOO_LARGE, QUANTITY_TOO_SMALL). */
export function sizeTrade(state: EngineState, order: OpenOrder, fillTicks: number): TradeSize | Outcome {
  const p = state.params;
  const notional = mulWithin(order.marginMicros, order.leverage, p.maxNotionalMicros);
  if (notional === undefined) {
    return refuse(
      "NOTIONAL_TOO_LARGE",
      `Margin × leverage may be at most ${formatUsd(p.maxNotionalMicros)} USD; received margin ` +
        `${formatUsd(order.marginMicros)} USD × leverage ${order.leverage}.`,
    );
  }
  const asset = assetAt(state, order.assetIndex);
  const k = microsPerTickStep(asset);
  const stepCost = fillTicks * k;
  const quantity = divFloor(notional, stepCost);
  if (quantity === 0) {
    const leastMargin = divFloor(stepCost + order.leverage - 1, order.leverage);
    return refuse(
      "QUANTITY_TOO_SMALL",
      `Margin × leverage is ${formatUsd(notional)} USD; one step (${formatUnits(1, asset.quantityDecimals)} ` +
        `${asset.symbol}) at ${formatUnits(fillTicks, asset.priceDecimals)} costs ${formatUsd(stepCost)} USD: at ` +
        `leverage ${order.leverage}, a margin of at least ${formatUsd(leastMargin)} USD.`,
    );
  }
  const liquidation = liquidationTicks(
    order.isLong,
    order.marginMicros,
    fillTicks,
    quantity * k,
    p.maintenanceMarginPpm,
  );
  return { quantitySteps: quantity, liquidationTicks: liquidation };
}

/**
 * Opens a sized trade at `fillTicks` whose margin the caller has already taken from free USD (open_trade) or from
 * a reservation (a pending order's fill): files and indexes it and emits trade_opened. The caller emits the balances.
 * `attach` adds what the trade has beyond its facts (a trailing stop) before its view is taken.
 */
export function startTrade(
  state: EngineState,
  step: Step,
  account: Account,
  order: OpenOrder,
  fillTicks: number,
  size: TradeSize,
  attach?: (trade: Trade) => void,
): { trade: Trade; view: TradeView } {
  const seq = state.nextSeq++;
  const trade = makeTrade(account, {
    seq,
    assetIndex: order.assetIndex,
    isLong: order.isLong,
    marginMicros: order.marginMicros,
    leverage: order.leverage,
    quantitySteps: size.quantitySteps,
    openPriceTicks: fillTicks,
    stopLossTicks: order.stopLossTicks,
    takeProfitTicks: order.takeProfitTicks,
    liquidationTicks: size.liquidationTicks,
    openedAtMs: step.nowMs,
  });
  fileTrade(account, trade);
  indexTrade(state.books[order.assetIndex]!, trade);
  attach?.(trade);
  const view = tradeView(state, trade);
  emitTradeOpened(step, account, view);
  return { trade, view };
}

/** The TOO_MANY_OPEN_TRADES refusal: the limit, and how many the account has open. */
export function refuseOpenTradeLimit(state: EngineState, account: Account): Outcome {
  const max = state.params.maxOpenTradesPerUser;
  const n = account.openTrades.size;
  return refuse("TOO_MANY_OPEN_TRADES", `The limit is ${max}; ${n} ${n === 1 ? "is" : "are"} open.`);
}

/** Whether a trade with this liquidation level would be liquidatable at once at this bid and ask. */
export function wouldLiquidate(isLong: boolean, bidTicks: number, askTicks: number, liquidation: number): boolean {
  return liquidation !== 0 && (isLong ? bidTicks <= liquidation : askTicks >= liquidation);
}

/**
 * The WOULD_LIQUIDATE refusal, in numbers: the leverage, where the trade opens, its liquidation price and the price
 * already at or past it — a long's bid or a short's ask, or, for an entry order checked at its own price
 * (`quote` undefined), that price. Apart from wouldLiquidate so that an accepted open formats nothing.
 */
export function refuseLiquidatable(
  asset: AssetConfig,
  trade: { readonly isLong: boolean; readonly leverage: number },
  entryTicks: number,
  liquidation: number,
  quote?: { readonly bidTicks: number; readonly askTicks: number },
): Outcome {
  const price = (ticks: number) => formatUnits(ticks, asset.priceDecimals);
  const { isLong, leverage } = trade;
  const at = quote === undefined ? `at the order price ${price(entryTicks)}` : `at ${price(entryTicks)}`;
  const reached =
    quote === undefined
      ? "that price"
      : isLong
        ? `the current bid ${price(quote.bidTicks)}`
        : `the current ask ${price(quote.askTicks)}`;
  return refuse(
    "WOULD_LIQUIDATE",
    `At leverage ${leverage}, a ${isLong ? "long" : "short"} opened ${at} has liquidation price ` +
      `${price(liquidation)}, ${isLong ? "at or above" : "at or below"} ${reached}.`,
  );
}
