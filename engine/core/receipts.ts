/**
 * Receipts: what an instruction did, as numbers. Handlers return one with the wire answer built from it; the
 * idempotency window keeps only the receipt (compact in memory and in snapshots) and rebuilds the same answer
 * from it when a request id comes again. `answerOf(receipt)` must equal the answer first sent — a property test
 * checks it for every instruction.
 */
import type { Answer, CloseReason } from "../../contract/messages.ts";
import type { AssetConfig } from "../../contract/markets.ts";
import { decimalsWord, formatUnits } from "../../contract/money.ts";
import { rejection, type RejectionCode } from "../../contract/rejections.ts";
import type { EngineState, TradeFacts } from "./state.ts";
import { balancesView, closedTradeView, spotOrderView, tradeView } from "./views.ts";

export interface CloseFacts {
  readonly priceTicks: number;
  readonly pnlMicros: number;
  readonly reason: CloseReason;
  readonly atMs: number;
}

export interface SpotFacts {
  readonly seq: number;
  readonly assetIndex: number;
  readonly buy: boolean;
  readonly quantitySteps: number;
  readonly priceTicks: number;
  readonly totalMicros: number;
  readonly atMs: number;
}

/** `balances` is [free USD, ...holdings] right after the instruction. */
export type Receipt =
  | { readonly kind: "rejected"; readonly code: RejectionCode; readonly message: string }
  | { readonly kind: "create_account"; readonly granted: boolean; readonly balances: readonly number[] }
  | { readonly kind: "open_trade"; readonly trade: TradeFacts; readonly balances: readonly number[] }
  | {
      readonly kind: "close_trade";
      readonly trade: TradeFacts;
      readonly close: CloseFacts;
      readonly balances: readonly number[];
    }
  | { readonly kind: "spot_order"; readonly order: SpotFacts; readonly balances: readonly number[] }
  /** The answer itself, for instructions rare enough that a compact receipt would not pay for its code. */
  | { readonly kind: "answer"; readonly answer: Answer };

/** A handler's result: the receipt and the answer built from it (views shared with the step's other outputs). */
export interface Outcome {
  readonly receipt: Receipt;
  readonly answer: Answer;
}

export function refuse(code: RejectionCode, detail?: string): Outcome {
  const r = rejection(code, detail);
  return { receipt: { kind: "rejected", code, message: r.message }, answer: { ok: false, error: r } };
}

/**
 * A refusal of one request field, in the form the API's own validation answers (docs/api.md, Errors):
 * `leverage: expected a whole number from 1 to 100, received 500.` `received` is as the message shows it (an id
 * JSON-quoted). No catalogue sentence before it: the field leads, as in every other answer naming one.
 */
export function refuseField(code: RejectionCode, field: string, expected: string, received: string): Outcome {
  const message = `${field}: expected ${expected}, received ${received}.`;
  return { receipt: { kind: "rejected", code, message }, answer: { ok: false, error: { code, message } } };
}

/** A close or modify of a trade the account has not open: never opened, closed, or another user's (all alike). */
export function refuseTradeNotFound(tradeId: string): Outcome {
  return refuseField("TRADE_NOT_FOUND", "tradeId", "the id of an open trade of this account", JSON.stringify(tradeId));
}

export function refuseUnknownAsset(state: EngineState, asset: string): Outcome {
  const symbols = state.params.assets.map((a) => a.symbol).join(", ");
  return refuse("UNKNOWN_ASSET", `asset must be one of ${symbols}; received ${JSON.stringify(asset)}.`);
}

/** The rule a price of the asset breaks when refused: its range as well as its decimals. */
export function priceRule(asset: AssetConfig): string {
  const max = formatUnits(asset.maxPriceTicks, asset.priceDecimals);
  return `a positive price up to ${max} with at most ${decimalsWord(asset.priceDecimals)}`;
}

/** Narrows "a value or a refusal" (handlers' intermediate results) to the refusal. */
export function isRefusal<T extends object>(x: T | Outcome): x is Outcome {
  return "receipt" in x && "answer" in x;
}

/** An outcome remembered as its answer (the `answer` receipt). */
export function remembered(answer: Answer): Outcome {
  return { receipt: { kind: "answer", answer }, answer };
}

export function answerOf(state: EngineState, receipt: Receipt): Answer {
  switch (receipt.kind) {
    case "answer":
      return receipt.answer;
    case "rejected":
      return { ok: false, error: { code: receipt.code, message: receipt.message } };
    case "create_account":
      return {
        ok: true,
        result: { kind: "create_account", granted: receipt.granted, balances: balancesView(state, receipt.balances) },
      };
    case "open_trade":
      return {
        ok: true,
        result: {
          kind: "open_trade",
          trade: tradeView(state, receipt.trade),
          balances: balancesView(state, receipt.balances),
        },
      };
    case "close_trade":
      return {
        ok: true,
        result: {
          kind: "close_trade",
          trade: closedTradeView(state, receipt.trade, receipt.close),
          remaining: null,
          balances: balancesView(state, receipt.balances),
        },
      };
    case "spot_order":
      return {
        ok: true,
        result: {
          kind: "spot_order",
          order: spotOrderView(state, receipt.order),
          balances: balancesView(state, receipt.balances),
        },
      };
    default:
      throw new Error(`unknown receipt ${JSON.stringify(receipt satisfies never)}`);
  }
}
